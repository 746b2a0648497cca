"""KnowledgeBase: hybrid search over the current version, and the write steps ingest builds on."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from retrieval.chunk import Chunk
from retrieval.embedder import DenseEmbedder, SparseEncoder
from retrieval.passage import Citation, Passage, SearchFilters, SearchMode
from retrieval.rerank import Reranker
from retrieval.settings import RetrievalSettings
from retrieval.store import LIVE, STAGED, Hit, QueryFilter, StoredPoint, VectorStore, VersionCatalog, point_id
from specialist.errors import InvalidInput, KnowledgeBaseUnavailable


@dataclass(frozen=True)
class KbStatus:
    """What `kb status` shows."""

    backend: str
    location: str
    version: str
    previous_version: str | None
    points: int
    embedder: str
    dim: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class KnowledgeBase:
    """The searchable policy knowledge base (one engine, one current version)."""

    def __init__(
        self,
        *,
        catalog: VersionCatalog,
        embedder: DenseEmbedder,
        sparse: SparseEncoder,
        settings: RetrievalSettings,
        location: str,
        reranker: Reranker | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.sparse = sparse
        self.reranker = reranker
        self.location = location
        self._catalog = catalog
        # One lock orders every read against every multi-step write, so a search never sees half a change.
        self._lock = threading.RLock()
        current = catalog.current()
        if current is None:
            store = catalog.create(embedder.dim)
            catalog.switch(store.version)
        else:
            store = catalog.open(current)
        self._store: VectorStore = store
        self._closed = False

    # -- reading -------------------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """Name of the current version (edge shard directory or server collection)."""
        return self._store.version

    def search(
        self,
        query: str,
        k: int | None = None,
        filters: SearchFilters | None = None,
        *,
        mode: SearchMode = "hybrid",
    ) -> list[Passage]:
        """Best passages for `query`: dense + BM25 fused with RRF; by default only policies in force now."""
        query = query.strip()
        if not query:
            raise InvalidInput("the search query is empty")
        k = self.settings.default_k if k is None else k
        if k < 1 or k > 100:
            raise InvalidInput("k must be between 1 and 100")
        flt = _query_filter(filters or SearchFilters())
        dense = self.embedder.embed_query(query) if mode in ("hybrid", "dense") else None
        sparse = self.sparse.embed_query(query) if mode in ("hybrid", "bm25") else None
        # Fetch a little more than k: a crash mid-update may leave two live versions of a doc for a moment.
        depth = max(k * 2, k + 5)
        with self._lock:
            self._check_open()
            hits = self._store.query(
                dense=dense,
                sparse=sparse,
                mode=mode,
                limit=depth,
                prefetch_limit=max(self.settings.prefetch_k, depth),
                rrf_k=self.settings.rrf_k,
                flt=flt,
            )
        passages = [_passage(h) for h in _newest_versions(hits)]
        if self.reranker is not None:
            passages = self.reranker.rerank(query, passages)
        return passages[:k]

    def status(self) -> KbStatus:
        """Backend, current and previous version, number of indexed chunks."""
        with self._lock:
            self._check_open()
            return KbStatus(
                backend=self.settings.backend,
                location=self.location,
                version=self._store.version,
                previous_version=self._catalog.previous(),
                points=self._store.count(),
                embedder=self.settings.embedder,
                dim=self.embedder.dim,
            )

    # -- writing (used by ingest) ----------------------------------------------------------------------

    def stage(
        self, chunks: Sequence[Chunk], *, store: VectorStore | None = None, live: bool = False
    ) -> list[str]:
        """Embed and write chunks, staged (invisible to search) unless `live`; returns their point ids."""
        if not chunks:
            return []
        texts = [c.indexed_text() for c in chunks]
        dense = self.embedder.embed_documents(texts)
        points = [
            StoredPoint(
                point_id(c.chunk_id), d, self.sparse.embed_document(t), c.payload(LIVE if live else STAGED)
            )
            for c, d, t in zip(chunks, dense, texts, strict=True)
        ]
        with self._lock:
            self._check_open()
            (store or self._store).upsert(points)
        return [p.point_id for p in points]

    def upsert_points(self, points: Sequence[StoredPoint]) -> None:
        """Write points that are already embedded (bulk loads and benchmarks)."""
        with self._lock:
            self._check_open()
            self._store.upsert(points)

    def commit(self, *, publish: Sequence[str], retire: Sequence[str]) -> None:
        """Make staged points live and delete replaced ones, as one step for every reader of this process."""
        with self._lock:
            self._check_open()
            self._store.set_state(publish, LIVE)
            self._store.delete(retire)

    def remove(self, point_ids: Sequence[str]) -> None:
        """Delete points."""
        with self._lock:
            self._check_open()
            self._store.delete(point_ids)

    def existing(self, point_ids: Sequence[str]) -> set[str]:
        """Which of these point ids are stored in the current version."""
        with self._lock:
            self._check_open()
            return self._store.existing(point_ids)

    def optimize(self) -> None:
        """Build indexes after a bulk load (faster queries)."""
        with self._lock:
            self._check_open()
            self._store.optimize()

    # -- versions ----------------------------------------------------------------------------------

    def create_version(self) -> VectorStore:
        """An empty new version to rebuild into; `activate` makes it current."""
        with self._lock:
            self._check_open()
            return self._catalog.create(self.embedder.dim)

    def activate(self, store: VectorStore) -> None:
        """Switch searches to `store` atomically; the old version is kept for rollback."""
        with self._lock:
            self._check_open()
            store.optimize()
            old = self._store
            self._catalog.switch(store.version)
            self._store = store
            old.close()

    def rollback(self) -> str:
        """Make the previous version current again (the current one becomes previous); returns its name."""
        with self._lock:
            self._check_open()
            previous = self._catalog.previous()
            if previous is None:
                raise KnowledgeBaseUnavailable("there is no previous knowledge-base version to roll back to")
            old = self._store
            old.close()
            try:
                store = self._catalog.open(previous)
            except KnowledgeBaseUnavailable:
                self._store = self._catalog.open(old.version)
                raise
            self._catalog.switch(previous)
            self._store = store
            return previous

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush and release the engine (and the process lock)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._store.close()
            self._catalog.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise KnowledgeBaseUnavailable("the knowledge base is closed")


def _query_filter(filters: SearchFilters) -> QueryFilter:
    at_ts: float | None = None
    if filters.only_in_force:
        at_ts = (filters.effective_at or datetime.now(UTC)).timestamp()
    return QueryFilter(tags=tuple(filters.tags), at_ts=at_ts)


def _newest_versions(hits: list[Hit]) -> list[Hit]:
    newest: dict[str, int] = {}
    for hit in hits:
        doc = str(hit.payload.get("doc_id"))
        newest[doc] = max(newest.get(doc, 0), int(hit.payload.get("version", 0)))
    return [h for h in hits if int(h.payload.get("version", 0)) == newest[str(h.payload.get("doc_id"))]]


def _passage(hit: Hit) -> Passage:
    p = hit.payload
    citation = Citation(
        doc_id=str(p.get("doc_id", "")),
        title=str(p.get("title", "")),
        section=str(p.get("section", "")),
        version=int(p.get("version", 0)),
    )
    return Passage(
        text=str(p.get("text", "")),
        score=hit.score,
        citation=citation,
        chunk_id=str(p.get("chunk_id", hit.point_id)),
        source=str(p.get("source", "")),
    )


def open_knowledge_base(
    settings: RetrievalSettings,
    *,
    embedder: DenseEmbedder | None = None,
    reranker: Reranker | None = None,
) -> KnowledgeBase:
    """Open (creating if needed) the knowledge base the settings describe; pass `embedder` to share one."""
    if settings.backend == "server":
        from retrieval.server import ServerCatalog

        if not settings.qdrant_url:
            raise KnowledgeBaseUnavailable(
                "backend=server needs SPECIALIST_RETRIEVAL__QDRANT_URL (e.g. http://localhost:6333)"
            )
        catalog: VersionCatalog = ServerCatalog.connect(
            settings.qdrant_url, settings.qdrant_api_key, settings.collection
        )
        location = settings.qdrant_url
    else:
        from retrieval.edge import EdgeCatalog

        catalog = EdgeCatalog(settings.data_dir)
        location = str(settings.data_dir)
    try:
        if embedder is None:
            embedder = DenseEmbedder(
                settings.embedder,
                threads=settings.torch_threads,
                cache_size=settings.query_cache_size,
                query_windows=settings.query_windows,
            )
        return KnowledgeBase(
            catalog=catalog,
            embedder=embedder,
            sparse=SparseEncoder(avg_len=settings.bm25_avg_len),
            settings=settings,
            location=location,
            reranker=reranker,
        )
    except BaseException:
        catalog.close()
        raise
