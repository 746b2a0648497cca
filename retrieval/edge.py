"""Embedded engine: qdrant-edge shards on disk, one directory per KB version, pointer swapped atomically."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from retrieval.embedder import SparseVector
from retrieval.passage import SearchMode
from retrieval.store import DENSE, INDEXED_FIELDS, SPARSE, Hit, QueryFilter, StoredPoint
from specialist.errors import KnowledgeBaseUnavailable
from specialist.jsonio import read_json, write_json

_BATCH = 512


def _edge_filter(flt: QueryFilter) -> Any:
    from qdrant_edge import FieldCondition, Filter, MatchAny, MatchValue, RangeFloat

    must: list[Any] = []
    if flt.live_only:
        must.append(FieldCondition(key="state", match=MatchValue("live")))
    if flt.tags:
        must.append(FieldCondition(key="tags", match=MatchAny(list(flt.tags))))
    if flt.at_ts is not None:
        must.append(FieldCondition(key="eff_from_ts", range=RangeFloat(lte=flt.at_ts)))
        must.append(FieldCondition(key="eff_to_ts", range=RangeFloat(gt=flt.at_ts)))
    return Filter(must=must) if must else None


class EdgeStore:
    """One qdrant-edge shard."""

    def __init__(self, path: Path, shard: Any) -> None:
        self.path = path
        self.version = path.name
        self._shard = shard

    @classmethod
    def create(cls, path: Path, dim: int) -> EdgeStore:
        """Create an empty shard with dense + BM25 (IDF) vectors and payload indexes."""
        from qdrant_edge import (
            Distance,
            EdgeConfig,
            EdgeShard,
            EdgeSparseVectorParams,
            EdgeVectorParams,
            Modifier,
            PayloadSchemaType,
            UpdateOperation,
        )

        config = EdgeConfig(
            vectors={DENSE: EdgeVectorParams(size=dim, distance=Distance.Cosine)},
            sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)},
        )
        shard = EdgeShard.create(str(path), config)
        kinds = {"keyword": PayloadSchemaType.Keyword, "float": PayloadSchemaType.Float}
        for name, kind in INDEXED_FIELDS.items():
            shard.update(UpdateOperation.create_field_index(name, kinds[kind]))
        return cls(path, shard)

    @classmethod
    def load(cls, path: Path) -> EdgeStore:
        """Open an existing shard."""
        from qdrant_edge import EdgeShard

        try:
            return cls(path, EdgeShard.load(str(path)))
        except Exception as exc:  # the engine raises a bare Exception
            raise KnowledgeBaseUnavailable(f"cannot open knowledge base shard {path}: {exc}") from exc

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        """Insert or replace points."""
        from qdrant_edge import Point, UpdateOperation
        from qdrant_edge import SparseVector as EdgeSparse

        for start in range(0, len(points), _BATCH):
            batch = [
                Point(
                    p.point_id,
                    {DENSE: p.dense, SPARSE: EdgeSparse(p.sparse.indices, p.sparse.values)},
                    p.payload,
                )
                for p in points[start : start + _BATCH]
            ]
            self._shard.update(UpdateOperation.upsert_points(batch))

    def set_state(self, point_ids: Sequence[str], state: str) -> None:
        """Mark points live or staged."""
        from qdrant_edge import UpdateOperation

        if point_ids:
            self._shard.update(UpdateOperation.set_payload(list(point_ids), {"state": state}))

    def delete(self, point_ids: Sequence[str]) -> None:
        """Remove points."""
        from qdrant_edge import UpdateOperation

        if point_ids:
            self._shard.update(UpdateOperation.delete_points(list(point_ids)))

    def existing(self, point_ids: Sequence[str]) -> set[str]:
        """Which of these ids are stored."""
        if not point_ids:
            return set()
        return {
            str(r.id) for r in self._shard.retrieve(list(point_ids), with_payload=False, with_vector=False)
        }

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
        """Dense, sparse, or both fused with RRF inside the engine."""
        from qdrant_edge import Fusion, Prefetch, Query, QueryRequest
        from qdrant_edge import SparseVector as EdgeSparse

        edge_filter = _edge_filter(flt)
        dense_q = Query.Nearest(dense, using=DENSE) if dense is not None else None
        sparse_q = Query.Nearest(EdgeSparse(sparse.indices, sparse.values), using=SPARSE) if sparse else None
        if mode == "hybrid":
            prefetches = [
                Prefetch(limit=prefetch_limit, query=q, filter=edge_filter)
                for q in (dense_q, sparse_q)
                if q is not None
            ]
            request = QueryRequest(
                limit=limit,
                query=Fusion.Rrf(k=rrf_k),  # type: ignore[arg-type]  # the stub omits nested Fusion classes
                prefetches=prefetches,
                filter=edge_filter,
                with_payload=True,
            )
        else:
            request = QueryRequest(
                limit=limit,
                query=dense_q if mode == "dense" else sparse_q,
                filter=edge_filter,
                with_payload=True,
            )
        return [Hit(str(r.id), float(r.score), dict(r.payload or {})) for r in self._shard.query(request)]

    def count(self) -> int:
        """Number of points."""
        return int(self._shard.info().points_count)

    def optimize(self) -> None:
        """Merge segments and build HNSW."""
        self._shard.optimize()

    def close(self) -> None:
        """Flush and release the shard."""
        with contextlib.suppress(Exception):
            self._shard.flush()
        self._shard.close()


class EdgeCatalog:
    """Versions under `data_dir/shards/`, the current one named in `data_dir/CURRENT.json` (os.replace)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.shards_dir = data_dir / "shards"
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file: IO[str] | None = self._acquire_lock()

    def _acquire_lock(self) -> IO[str]:
        handle = (self.data_dir / "LOCK").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise KnowledgeBaseUnavailable(
                f"the knowledge base at {self.data_dir} is in use by {owner} (one process owns the embedded "
                "engine; while the service runs, send changes through its API, or stop it first)"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        return handle

    def _pointer(self) -> dict[str, str | None]:
        path = self.data_dir / "CURRENT.json"
        if not path.exists():
            return {"current": None, "previous": None}
        data = read_json(path)
        return {"current": data.get("current"), "previous": data.get("previous")}

    def _write_pointer(self, current: str | None, previous: str | None) -> None:
        write_json(
            self.data_dir / "CURRENT.json",
            {"current": current, "previous": previous},
            indent=None,
            fsync=True,
        )

    def current(self) -> str | None:
        """Name of the version searches use."""
        return self._pointer()["current"]

    def previous(self) -> str | None:
        """The version kept for rollback."""
        return self._pointer()["previous"]

    def create(self, dim: int) -> EdgeStore:
        """A new empty shard directory, not current yet."""
        numbers = [int(p.name[1:]) for p in self.shards_dir.glob("v*") if p.name[1:].isdigit()]
        name = f"v{max(numbers, default=0) + 1:04d}"
        return EdgeStore.create(self.shards_dir / name, dim)

    def open(self, version: str) -> EdgeStore:
        """Open an existing version."""
        return EdgeStore.load(self.shards_dir / version)

    def switch(self, version: str) -> None:
        """Point CURRENT at `version`; keep the old current as previous; delete every other shard."""
        old = self.current()
        previous = old if old != version else self.previous()
        self._write_pointer(version, previous)
        for path in self.shards_dir.glob("v*"):
            if path.name not in (version, previous):
                shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Release the lock."""
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None
