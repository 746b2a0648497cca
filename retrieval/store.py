"""The store interface both Qdrant engines implement: points, hybrid queries and KB versions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from retrieval.embedder import SparseVector
from retrieval.passage import SearchMode

DENSE = "dense"
SPARSE = "bm25"
LIVE = "live"
STAGED = "staged"
# Open-ended effective-date bounds stored as numbers so one float range filter covers "no date".
NO_START_TS = -1.0e15
NO_END_TS = 1.0e15
INDEXED_FIELDS = {
    "doc_id": "keyword",
    "tags": "keyword",
    "state": "keyword",
    "eff_from_ts": "float",
    "eff_to_ts": "float",
}
_POINT_NS = uuid.UUID("6f1d2a4e-8a51-4f3b-9d0c-5b7a3c2e1f00")


def point_id(chunk_id: str) -> str:
    """Qdrant ids must be UUIDs or integers: derive a stable UUID from our chunk id."""
    return str(uuid.uuid5(_POINT_NS, chunk_id))


@dataclass(frozen=True)
class StoredPoint:
    """One chunk as the engines store it."""

    point_id: str
    dense: list[float]
    sparse: SparseVector
    payload: dict[str, Any]


@dataclass(frozen=True)
class QueryFilter:
    """Engine-neutral filter: live chunks only, any of tags, in force at a timestamp."""

    tags: tuple[str, ...] = field(default_factory=tuple)
    at_ts: float | None = None
    live_only: bool = True


@dataclass(frozen=True)
class Hit:
    """A scored point with its payload."""

    point_id: str
    score: float
    payload: dict[str, Any]


class VectorStore(Protocol):
    """One knowledge-base version (an edge shard or a server collection)."""

    version: str

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        """Insert or replace points; visible to the next query."""

    def set_state(self, point_ids: Sequence[str], state: str) -> None:
        """Mark points live or staged."""

    def delete(self, point_ids: Sequence[str]) -> None:
        """Remove points (missing ids are ignored)."""

    def existing(self, point_ids: Sequence[str]) -> set[str]:
        """Which of these ids are stored."""

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
        """Dense, sparse, or both fused with RRF inside the engine in one request."""

    def count(self) -> int:
        """Number of points."""

    def optimize(self) -> None:
        """Build indexes after a bulk load."""

    def close(self) -> None:
        """Release the version."""


class VersionCatalog(Protocol):
    """The versions of one knowledge base and which one is current (atomic switch)."""

    def current(self) -> str | None:
        """Name of the version searches use."""

    def previous(self) -> str | None:
        """The version kept for rollback."""

    def create(self, dim: int) -> VectorStore:
        """A new empty version (not current)."""

    def open(self, version: str) -> VectorStore:
        """Open an existing version."""

    def switch(self, version: str) -> None:
        """Make `version` current atomically; the old current becomes previous; older ones go."""

    def close(self) -> None:
        """Release the catalog (and its lock)."""
