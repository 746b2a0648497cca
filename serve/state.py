"""The service's own SQLite database (keys, conversations, ratings, flags, reviews); one connection."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    customer_id TEXT,
    name TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    customer_id TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    handed_off INTEGER NOT NULL DEFAULT 0,
    turns INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_customer ON conversations (customer_id, updated_at);
CREATE TABLE IF NOT EXISTS turn_texts (
    conversation_id TEXT NOT NULL,
    turn INTEGER NOT NULL,
    text TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (conversation_id, turn)
);
CREATE TABLE IF NOT EXISTS ratings (
    conversation_id TEXT NOT NULL,
    turn INTEGER NOT NULL,
    value INTEGER NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    customer_id TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (conversation_id, turn)
);
CREATE TABLE IF NOT EXISTS flags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    turn INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS flags_by_conversation ON flags (conversation_id, created_at);
CREATE TABLE IF NOT EXISTS reviews (
    conversation_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    message TEXT,
    reviewer TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (conversation_id, step)
);
CREATE TABLE IF NOT EXISTS erasures (
    conversation_id TEXT PRIMARY KEY,
    erased_at REAL NOT NULL
);
"""


class StateDB:
    """The service's SQLite file: one connection kept open (WAL), used under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # One long-lived connection: closing the last connection of a WAL database checkpoints and
        # fsyncs (~15 ms a call here when each call opened and closed its own).
        self._conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: no fsync per commit, and still never a corrupt file after a crash.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """The connection, held alone; commits on success, rolls back on error."""
        with self._lock, self._conn:
            yield self._conn

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def put_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under a key."""
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value, default=str)),
            )

    def get_meta(self, key: str) -> Any:
        """The JSON value under a key, or None."""
        with self.connect() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row["value"])
