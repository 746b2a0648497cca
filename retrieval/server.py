"""Server engine: qdrant-client against a Qdrant server, one collection per KB version behind an alias."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from retrieval.embedder import SparseVector
from retrieval.passage import SearchMode
from retrieval.store import DENSE, INDEXED_FIELDS, SPARSE, Hit, QueryFilter, StoredPoint
from specialist.errors import KnowledgeBaseUnavailable

_BATCH = 256
log = logging.getLogger(__name__)


@contextmanager
def _unavailable_on_transport_errors(what: str) -> Iterator[None]:
    """Network and server failures become KnowledgeBaseUnavailable (the API answers 503)."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        yield
    except UnexpectedResponse as exc:
        if exc.status_code is not None and exc.status_code < 500:
            raise
        raise KnowledgeBaseUnavailable(f"Qdrant server failed to {what}: {exc}") from exc
    except (ResponseHandlingException, OSError) as exc:
        raise KnowledgeBaseUnavailable(f"cannot reach the Qdrant server to {what}: {exc}") from exc


def _server_filter(flt: QueryFilter) -> Any:
    from qdrant_client import models

    must: list[Any] = []
    if flt.live_only:
        must.append(models.FieldCondition(key="state", match=models.MatchValue(value="live")))
    if flt.tags:
        must.append(models.FieldCondition(key="tags", match=models.MatchAny(any=list(flt.tags))))
    if flt.at_ts is not None:
        must.append(models.FieldCondition(key="eff_from_ts", range=models.Range(lte=flt.at_ts)))
        must.append(models.FieldCondition(key="eff_to_ts", range=models.Range(gt=flt.at_ts)))
    return models.Filter(must=must) if must else None


def _sparse(vec: SparseVector) -> Any:
    from qdrant_client import models

    return models.SparseVector(indices=vec.indices, values=vec.values)


class ServerStore:
    """One collection of a Qdrant server (or qdrant-client's local mode, the same API)."""

    def __init__(self, client: Any, collection: str) -> None:
        self._client = client
        self.collection = collection
        self.version = collection
        self._rrf_with_k = True

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        """Insert or replace points; wait=True so they are searchable when this returns."""
        from qdrant_client import models

        for start in range(0, len(points), _BATCH):
            batch = [
                models.PointStruct(
                    id=p.point_id, vector={DENSE: p.dense, SPARSE: _sparse(p.sparse)}, payload=p.payload
                )
                for p in points[start : start + _BATCH]
            ]
            with _unavailable_on_transport_errors("write"):
                self._client.upsert(self.collection, points=batch, wait=True)

    def set_state(self, point_ids: Sequence[str], state: str) -> None:
        """Mark points live or staged."""
        if point_ids:
            self._client.set_payload(
                self.collection, payload={"state": state}, points=list(point_ids), wait=True
            )

    def delete(self, point_ids: Sequence[str]) -> None:
        """Remove points."""
        from qdrant_client import models

        if point_ids:
            with _unavailable_on_transport_errors("delete"):
                self._client.delete(
                    self.collection, points_selector=models.PointIdsList(points=list(point_ids)), wait=True
                )

    def existing(self, point_ids: Sequence[str]) -> set[str]:
        """Which of these ids are stored."""
        if not point_ids:
            return set()
        with _unavailable_on_transport_errors("read"):
            records = self._client.retrieve(self.collection, ids=list(point_ids), with_payload=False)
        return {str(r.id) for r in records}

    def query(
        self,
        *,
        dense: list[float] | None,
        sparse: SparseVector | None,
        mode: SearchMode,
        limit: int,
        prefetch_limit: int,
        rrf_k: int,
        flt: QueryFilter,
    ) -> list[Hit]:
        """Dense, sparse, or both fused with RRF by the server in one query_points call."""
        from qdrant_client import models

        server_filter = _server_filter(flt)
        if mode == "hybrid":
            prefetch = []
            if dense is not None:
                prefetch.append(
                    models.Prefetch(query=dense, using=DENSE, limit=prefetch_limit, filter=server_filter)
                )
            if sparse is not None:
                prefetch.append(
                    models.Prefetch(
                        query=_sparse(sparse), using=SPARSE, limit=prefetch_limit, filter=server_filter
                    )
                )
            response = self._fused(prefetch, rrf_k, server_filter, limit)
        else:
            query: Any = dense if mode == "dense" else _sparse(sparse) if sparse else None
            with _unavailable_on_transport_errors("search"):
                response = self._client.query_points(
                    self.collection,
                    query=query,
                    using=DENSE if mode == "dense" else SPARSE,
                    query_filter=server_filter,
                    limit=limit,
                    with_payload=True,
                )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]

    def _fused(self, prefetch: list[Any], rrf_k: int, server_filter: Any, limit: int) -> Any:
        from qdrant_client import models
        from qdrant_client.http.exceptions import UnexpectedResponse

        with _unavailable_on_transport_errors("search"):
            if self._rrf_with_k:
                try:
                    return self._client.query_points(
                        self.collection,
                        prefetch=prefetch,
                        query=models.RrfQuery(rrf=models.Rrf(k=rrf_k)),
                        query_filter=server_filter,
                        limit=limit,
                        with_payload=True,
                    )
                except UnexpectedResponse as exc:
                    if exc.status_code not in (400, 422):
                        raise
                    # An older server without RRF parameters: fall back to its default RRF (rankings differ
                    # a little from the embedded engine's; upgrade the server to match it).
                    log.warning(
                        "Qdrant server rejected RRF with k=%s (%s); using its default RRF", rrf_k, exc
                    )
                    self._rrf_with_k = False
            return self._client.query_points(
                self.collection,
                prefetch=prefetch,
                query=models.FusionQuery(fusion=models.Fusion.RRF),
                query_filter=server_filter,
                limit=limit,
                with_payload=True,
            )

    def count(self) -> int:
        """Number of points."""
        with _unavailable_on_transport_errors("count"):
            return int(self._client.count(self.collection, exact=True).count)

    def optimize(self) -> None:
        """The server optimises in the background."""

    def close(self) -> None:
        """The client is closed by the catalog."""


class ServerCatalog:
    """Collections `<name>_vNNNN`; the alias `<name>` names the current one and is switched atomically."""

    def __init__(self, client: Any, name: str) -> None:
        self._client = client
        self.name = name

    @classmethod
    def connect(cls, url: str, api_key: str | None, name: str) -> ServerCatalog:
        """Connect to a Qdrant server (`:memory:` or `path:DIR` use the client's local mode)."""
        from qdrant_client import QdrantClient

        try:
            if url == ":memory:":
                client = QdrantClient(location=":memory:")
            elif url.startswith("path:"):
                client = QdrantClient(path=url.removeprefix("path:"))
            else:
                client = QdrantClient(url=url, api_key=api_key, timeout=10, check_compatibility=False)
            client.get_collections()
        except Exception as exc:
            raise KnowledgeBaseUnavailable(f"cannot reach Qdrant at {url}: {exc}") from exc
        return cls(client, name)

    def _versions(self) -> list[str]:
        prefix = f"{self.name}_v"
        names = [c.name for c in self._client.get_collections().collections]
        return sorted(n for n in names if n.startswith(prefix) and n[len(prefix) :].isdigit())

    def current(self) -> str | None:
        """The collection the alias points at."""
        for alias in self._client.get_aliases().aliases:
            if alias.alias_name == self.name:
                return str(alias.collection_name)
        return None

    def previous(self) -> str | None:
        """The other kept collection."""
        current = self.current()
        others = [v for v in self._versions() if v != current]
        return others[-1] if others else None

    def create(self, dim: int) -> ServerStore:
        """A new empty collection with dense + BM25 (IDF) vectors and payload indexes."""
        from qdrant_client import models

        versions = self._versions()
        number = int(versions[-1].rsplit("_v", 1)[1]) + 1 if versions else 1
        name = f"{self.name}_v{number:04d}"
        self._client.create_collection(
            name,
            vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
        )
        kinds = {"keyword": models.PayloadSchemaType.KEYWORD, "float": models.PayloadSchemaType.FLOAT}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # local mode warns that it ignores payload indexes
            for field, kind in INDEXED_FIELDS.items():
                self._client.create_payload_index(name, field_name=field, field_schema=kinds[kind])
        return ServerStore(self._client, name)

    def open(self, version: str) -> ServerStore:
        """Open an existing collection."""
        if not self._client.collection_exists(version):
            raise KnowledgeBaseUnavailable(f"collection {version} does not exist on the Qdrant server")
        return ServerStore(self._client, version)

    def switch(self, version: str) -> None:
        """Move the alias in one request; keep the old target as previous; drop older collections."""
        from qdrant_client import models

        old = self.current()
        previous = old if old != version else self.previous()
        actions: list[Any] = []
        if old is not None:
            actions.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.name)))
        actions.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=version, alias_name=self.name)
            )
        )
        self._client.update_collection_aliases(change_aliases_operations=actions)
        for name in self._versions():
            if name not in (version, previous):
                self._client.delete_collection(name)

    def close(self) -> None:
        """Close the client."""
        self._client.close()
