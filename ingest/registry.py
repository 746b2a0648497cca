"""The document registry (SQLite): per KB version, each document's hash, version and chunk point ids."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    version INTEGER NOT NULL,
    point_ids TEXT NOT NULL,
    source TEXT NOT NULL,
    record TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    PRIMARY KEY (collection, doc_id)
);
CREATE TABLE IF NOT EXISTS pending (
    collection TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    version INTEGER,
    content_hash TEXT,
    point_ids TEXT NOT NULL,
    source TEXT,
    record TEXT,
    PRIMARY KEY (collection, doc_id)
);
"""


@dataclass(frozen=True)
class DocumentRow:
    """What the registry knows about one document in one KB version."""

    doc_id: str
    content_hash: str
    version: int
    point_ids: list[str]
    source: str
    record: dict[str, Any]
    deleted: bool


@dataclass(frozen=True)
class PendingRow:
    """An update or delete that was started and not finished (version None means delete)."""

    doc_id: str
    version: int | None
    content_hash: str | None
    point_ids: list[str]
    source: str | None
    record: dict[str, Any] | None


class Registry:
    """SQLite registry; every change is one transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, collection: str, doc_id: str) -> DocumentRow | None:
        """One document's row, deleted ones included (their version numbers continue)."""
        with self._lock:
            row = self._db.execute(
                "SELECT doc_id, content_hash, version, point_ids, source, record, deleted FROM documents "
                "WHERE collection=? AND doc_id=?",
                (collection, doc_id),
            ).fetchone()
        return _doc(row) if row else None

    def documents(self, collection: str, *, include_deleted: bool = False) -> list[DocumentRow]:
        """All documents of a version, by id."""
        sql = (
            "SELECT doc_id, content_hash, version, point_ids, source, record, deleted FROM documents "
            "WHERE collection=?"
        )
        if not include_deleted:
            sql += " AND deleted=0"
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY doc_id", (collection,)).fetchall()
        return [_doc(r) for r in rows]

    def count(self, collection: str) -> int:
        """Number of live documents."""
        with self._lock:
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM documents WHERE collection=? AND deleted=0", (collection,)
            ).fetchone()
        return int(n)

    def begin(
        self,
        collection: str,
        doc_id: str,
        *,
        version: int | None,
        content_hash: str | None,
        point_ids: list[str],
        source: str | None,
        record: dict[str, Any] | None,
    ) -> None:
        """Record an update (or a delete, version None) before touching the index."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO pending VALUES (?,?,?,?,?,?,?)",
                (
                    collection,
                    doc_id,
                    version,
                    content_hash,
                    json.dumps(point_ids),
                    source,
                    json.dumps(record) if record is not None else None,
                ),
            )

    def pending(self, collection: str) -> list[PendingRow]:
        """Unfinished changes of a version."""
        with self._lock:
            rows = self._db.execute(
                "SELECT doc_id, version, content_hash, point_ids, source, record FROM pending "
                "WHERE collection=?",
                (collection,),
            ).fetchall()
        return [
            PendingRow(r[0], r[1], r[2], json.loads(r[3]), r[4], json.loads(r[5]) if r[5] else None)
            for r in rows
        ]

    def finish(self, collection: str, doc_id: str) -> None:
        """Apply the pending change to the document row and clear it, in one transaction."""
        with self._tx() as db:
            row = db.execute(
                "SELECT version, content_hash, point_ids, source, record FROM pending "
                "WHERE collection=? AND doc_id=?",
                (collection, doc_id),
            ).fetchone()
            if row is None:
                return
            version, content_hash, point_ids, source, record = row
            if version is None:
                db.execute(
                    "UPDATE documents SET deleted=1, point_ids='[]', updated_at=? "
                    "WHERE collection=? AND doc_id=?",
                    (time.time(), collection, doc_id),
                )
            else:
                db.execute(
                    "INSERT OR REPLACE INTO documents VALUES (?,?,?,?,?,?,?,0,?)",
                    (collection, doc_id, content_hash, version, point_ids, source, record, time.time()),
                )
            db.execute("DELETE FROM pending WHERE collection=? AND doc_id=?", (collection, doc_id))

    def abandon(self, collection: str, doc_id: str, *, invalidate: bool = False) -> None:
        """Drop a pending change; `invalidate` forces the next run to re-index the document."""
        with self._tx() as db:
            db.execute("DELETE FROM pending WHERE collection=? AND doc_id=?", (collection, doc_id))
            if invalidate:
                db.execute(
                    "UPDATE documents SET content_hash='', point_ids='[]' WHERE collection=? AND doc_id=?",
                    (collection, doc_id),
                )

    def set_source(self, collection: str, doc_id: str, source: str) -> None:
        """A document moved (same content): remember where it now comes from."""
        with self._tx() as db:
            db.execute(
                "UPDATE documents SET source=? WHERE collection=? AND doc_id=?", (source, collection, doc_id)
            )

    def copy_version(self, collection: str, rows: list[DocumentRow], point_ids: dict[str, list[str]]) -> None:
        """Register a rebuilt version's documents in one transaction."""
        with self._tx() as db:
            db.execute("DELETE FROM documents WHERE collection=?", (collection,))
            db.execute("DELETE FROM pending WHERE collection=?", (collection,))
            for r in rows:
                db.execute(
                    "INSERT INTO documents VALUES (?,?,?,?,?,?,?,0,?)",
                    (
                        collection,
                        r.doc_id,
                        r.content_hash,
                        r.version,
                        json.dumps(point_ids[r.doc_id]),
                        r.source,
                        json.dumps(r.record),
                        time.time(),
                    ),
                )

    def prune(self, keep: set[str]) -> None:
        """Forget versions that no longer exist."""
        with self._tx() as db:
            marks = ",".join("?" for _ in keep) or "''"
            db.execute(f"DELETE FROM documents WHERE collection NOT IN ({marks})", tuple(keep))
            db.execute(f"DELETE FROM pending WHERE collection NOT IN ({marks})", tuple(keep))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _doc(row: tuple[Any, ...]) -> DocumentRow:
    return DocumentRow(
        doc_id=row[0],
        content_hash=row[1],
        version=int(row[2]),
        point_ids=json.loads(row[3]),
        source=row[4],
        record=json.loads(row[5]),
        deleted=bool(row[6]),
    )
