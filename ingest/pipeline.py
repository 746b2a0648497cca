"""The Ingestor: incremental, crash-safe indexing of documents into the knowledge base."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from ingest.chunking import Chunker
from ingest.document import DocumentError, SourceDocument, document_from_record, read_path
from ingest.registry import DocumentRow, Registry
from ingest.settings import IngestSettings
from retrieval.chunk import Chunk
from retrieval.knowledge_base import KnowledgeBase
from retrieval.store import point_id
from specialist.errors import InvalidDocument, NotFound

ProgressFn = Callable[[int, int], None]
_T = TypeVar("_T")
_P = ParamSpec("_P")
# Chunks embedded per write group: big enough to batch the embedder, small enough to show progress.
_GROUP_CHUNKS = 256


@dataclass
class Failure:
    """One input that was not indexed, and why."""

    ref: str
    reason: str


@dataclass
class RunReport:
    """What one ingest run did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    chunks_written: int = 0
    version: str = ""
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """Whether the index changed."""
        return bool(self.added or self.updated or self.deleted)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def to_json(self) -> str:
        """JSON text."""
        return json.dumps(self.to_dict())

    def summary(self) -> str:
        """One line for humans."""
        return (
            f"added {len(self.added)}, updated {len(self.updated)}, unchanged {len(self.unchanged)}, "
            f"deleted {len(self.deleted)}, failed {len(self.failed)} ({self.chunks_written} chunks, "
            f"{self.seconds:.1f}s, version {self.version})"
        )


@dataclass
class _Planned:
    doc: SourceDocument
    content_hash: str
    version: int
    old_point_ids: list[str]
    is_new: bool
    chunks: list[Chunk] = field(default_factory=list)


def _serialised(method: Callable[Concatenate[Ingestor, _P], _T]) -> Callable[Concatenate[Ingestor, _P], _T]:
    @functools.wraps(method)
    def locked(self: Ingestor, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        with self._write_lock:
            return method(self, *args, **kwargs)

    return locked


class Ingestor:
    """Writes documents through a KnowledgeBase; the registry makes re-runs incremental and crash-safe."""

    def __init__(
        self, kb: KnowledgeBase, settings: IngestSettings | None = None, *, progress: ProgressFn | None = None
    ) -> None:
        self.kb = kb
        self.settings = settings or IngestSettings()
        self.progress = progress
        registry_path = self.settings.registry_path or kb.settings.data_dir / "registry.sqlite"
        self.registry = Registry(Path(registry_path))
        self.chunker = Chunker(self.settings, kb.embedder.token_counter())
        # Writes are serialised: two API calls replacing one document must not both plan "version + 1".
        self._write_lock = threading.RLock()
        self.repair()

    @property
    def _collection(self) -> str:
        return self.kb.version

    # -- public operations ---------------------------------------------------------------------------

    @_serialised
    def ingest_path(self, path: Path | str) -> RunReport:
        """Index a file or folder; documents that came from it and are gone now are deleted."""
        start = time.monotonic()
        path = Path(path).expanduser().resolve()
        docs, errors, _files = read_path(path, max_bytes=self.settings.max_document_bytes)
        report = RunReport()
        report.failed.extend(Failure(e.ref, e.reason) for e in errors)
        accepted = self._apply(docs, report)
        # Files that failed to parse keep their documents: bad input never loses what is indexed.
        protected = {e.source for e in errors if e.source}
        seen = accepted | {d.doc_id for d in docs}
        for row in self.registry.documents(self._collection):
            if row.doc_id not in seen and _within(row.source, path) and row.source not in protected:
                self._delete_row(row)
                report.deleted.append(row.doc_id)
        return self._finish(report, start)

    @_serialised
    def upsert_documents(
        self, docs: Iterable[SourceDocument | Mapping[str, Any]], *, source: str = "api"
    ) -> RunReport:
        """Create or replace documents given as SourceDocuments or `{id, title, content, ...}` records."""
        start = time.monotonic()
        report = RunReport()
        parsed: list[SourceDocument] = []
        for n, item in enumerate(docs, start=1):
            if isinstance(item, SourceDocument):
                parsed.append(item)
                continue
            try:
                parsed.append(
                    document_from_record(item, source=source, max_bytes=self.settings.max_document_bytes)
                )
            except InvalidDocument as exc:
                ref = (
                    item.get("id") if isinstance(item, Mapping) and isinstance(item.get("id"), str) else None
                )
                report.failed.append(Failure(str(ref or f"document #{n}"), str(exc)))
        self._apply(parsed, report)
        return self._finish(report, start)

    @_serialised
    def upsert_file(self, path: Path | str) -> RunReport:
        """Index one uploaded file (any supported format) without sweeping anything else."""
        start = time.monotonic()
        docs, errors, _ = read_path(Path(path), max_bytes=self.settings.max_document_bytes)
        report = RunReport(failed=[Failure(e.ref, e.reason) for e in errors])
        self._apply(docs, report)
        return self._finish(report, start)

    @_serialised
    def delete(self, doc_id: str) -> RunReport:
        """Remove every chunk of a document."""
        start = time.monotonic()
        row = self.registry.get(self._collection, doc_id)
        if row is None or row.deleted:
            raise NotFound(f"no document with id {doc_id!r} in the knowledge base")
        self._delete_row(row)
        return self._finish(RunReport(deleted=[doc_id]), start)

    def documents(self) -> list[DocumentRow]:
        """Documents of the current version."""
        return self.registry.documents(self._collection)

    def document(self, doc_id: str) -> DocumentRow:
        """One document of the current version."""
        row = self.registry.get(self._collection, doc_id)
        if row is None or row.deleted:
            raise NotFound(f"no document with id {doc_id!r} in the knowledge base")
        return row

    @_serialised
    def rebuild(self) -> RunReport:
        """Re-chunk and re-embed all into a new version, switch to it (the old one stays for rollback)."""
        start = time.monotonic()
        self.repair()
        rows = self.registry.documents(self._collection)
        store = self.kb.create_version()
        report = RunReport()
        point_ids: dict[str, list[str]] = {}
        total = len(rows)
        for done, row in enumerate(rows, start=1):
            doc = _from_registry(row)
            chunks = self.chunker.chunk(doc, version=row.version, content_hash=row.content_hash)
            point_ids[row.doc_id] = self.kb.stage(chunks, store=store, live=True)
            report.chunks_written += len(chunks)
            report.updated.append(row.doc_id)
            self._progress(done, total)
        self.registry.copy_version(store.version, rows, point_ids)
        self.kb.activate(store)
        self.registry.prune({v for v in (self.kb.version, self.kb.status().previous_version) if v})
        return self._finish(report, start)

    @_serialised
    def rollback(self) -> str:
        """Switch back to the previous version (see `rebuild`); returns its name."""
        return self.kb.rollback()

    @_serialised
    def repair(self) -> int:
        """Finish or undo changes a crash interrupted; returns how many were repaired."""
        collection = self._collection
        repaired = 0
        for pending in self.registry.pending(collection):
            row = self.registry.get(collection, pending.doc_id)
            old_ids = row.point_ids if row and not row.deleted else []
            if pending.version is None:  # an interrupted delete: finish it
                self.kb.remove(pending.point_ids)
                self.registry.finish(collection, pending.doc_id)
            elif old_ids and len(self.kb.existing(old_ids)) == len(old_ids):
                # The old version is intact: undo the half-written new one.
                self.kb.remove(pending.point_ids)
                self.registry.abandon(collection, pending.doc_id)
            elif len(self.kb.existing(pending.point_ids)) == len(pending.point_ids):
                # The swap had started: the new version is complete, finish it.
                self.kb.commit(publish=pending.point_ids, retire=old_ids)
                self.registry.finish(collection, pending.doc_id)
            else:
                self.kb.remove(pending.point_ids + old_ids)
                self.registry.abandon(collection, pending.doc_id, invalidate=True)
            repaired += 1
        return repaired

    def close(self) -> None:
        """Close the registry (the knowledge base is closed by its owner)."""
        self.registry.close()

    # -- internals ---------------------------------------------------------------------------------

    def _apply(self, docs: Sequence[SourceDocument], report: RunReport) -> set[str]:
        collection = self._collection
        planned: list[_Planned] = []
        first_source: dict[str, str] = {}
        for doc in docs:
            if doc.doc_id in first_source:
                report.failed.append(
                    Failure(
                        doc.doc_id,
                        f"duplicate id: also in {first_source[doc.doc_id]} (the first one is kept)",
                    )
                )
                continue
            first_source[doc.doc_id] = doc.source
            content_hash = doc.content_hash()
            row = self.registry.get(collection, doc.doc_id)
            live = row is not None and not row.deleted
            if row is not None and live and row.content_hash == content_hash:
                if row.source != doc.source:
                    self.registry.set_source(collection, doc.doc_id, doc.source)
                report.unchanged.append(doc.doc_id)
                continue
            plan = _Planned(
                doc=doc,
                content_hash=content_hash,
                version=(row.version + 1) if row else 1,
                old_point_ids=row.point_ids if row and live else [],
                is_new=not live,
            )
            try:
                plan.chunks = self.chunker.chunk(doc, version=plan.version, content_hash=content_hash)
            except InvalidDocument as exc:
                report.failed.append(Failure(doc.doc_id, str(exc)))
                continue
            planned.append(plan)
        total = sum(len(p.chunks) for p in planned)
        done = 0
        for group in _groups(planned):
            self._write_group(group)
            for plan in group:
                (report.added if plan.is_new else report.updated).append(plan.doc.doc_id)
                report.chunks_written += len(plan.chunks)
            done += sum(len(p.chunks) for p in group)
            self._progress(done, total)
        if report.chunks_written >= self.settings.optimize_after_chunks:
            self.kb.optimize()
        return set(first_source)

    def _write_group(self, group: list[_Planned]) -> None:
        """Register intent, write new chunks staged, then per document publish new + retire old at once."""
        collection = self._collection
        for plan in group:
            self.registry.begin(
                collection,
                plan.doc.doc_id,
                version=plan.version,
                content_hash=plan.content_hash,
                point_ids=[point_id(c.chunk_id) for c in plan.chunks],
                source=plan.doc.source,
                record=plan.doc.to_record(),
            )
        new_ids = self.kb.stage([c for plan in group for c in plan.chunks])
        offset = 0
        for plan in group:
            ids = new_ids[offset : offset + len(plan.chunks)]
            offset += len(plan.chunks)
            self.kb.commit(publish=ids, retire=plan.old_point_ids)
            self.registry.finish(collection, plan.doc.doc_id)

    def _delete_row(self, row: DocumentRow) -> None:
        collection = self._collection
        self.registry.begin(
            collection,
            row.doc_id,
            version=None,
            content_hash=None,
            point_ids=row.point_ids,
            source=None,
            record=None,
        )
        self.kb.remove(row.point_ids)
        self.registry.finish(collection, row.doc_id)

    def _finish(self, report: RunReport, start: float) -> RunReport:
        report.version = self._collection
        report.seconds = round(time.monotonic() - start, 3)
        return report

    def _progress(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)


def _groups(planned: list[_Planned]) -> Iterable[list[_Planned]]:
    group: list[_Planned] = []
    size = 0
    for plan in planned:
        group.append(plan)
        size += len(plan.chunks)
        if size >= _GROUP_CHUNKS:
            yield group
            group, size = [], 0
    if group:
        yield group


def _within(source: str, path: Path) -> bool:
    if path.is_dir():
        return source.startswith(str(path).rstrip("/") + "/")
    return source == str(path)


def _from_registry(row: DocumentRow) -> SourceDocument:
    record = row.record
    doc = document_from_record(record, source=row.source, max_bytes=1 << 62)
    return doc


__all__ = ["DocumentError", "Failure", "Ingestor", "RunReport"]
