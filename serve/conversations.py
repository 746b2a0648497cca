"""Which customer owns which conversation (the agent's checkpointer holds the messages themselves)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from serve.auth import Principal, Role
from serve.state import StateDB
from specialist.errors import Forbidden, NotFound


@dataclass(frozen=True)
class Conversation:
    """One conversation's record."""

    id: str
    customer_id: str | None
    created_at: float
    updated_at: float
    handed_off: bool
    turns: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "handed_off": self.handed_off,
            "turns": self.turns,
        }


def _row(row: Any) -> Conversation:
    return Conversation(
        id=row["id"],
        customer_id=row["customer_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        handed_off=bool(row["handed_off"]),
        turns=row["turns"],
    )


class ConversationStore:
    """Creates conversations and enforces that a customer only ever reaches their own.

    Every route that takes a conversation id goes through `get_for`: the API's one ownership check. The
    agent is then handed the owner recorded here and binds the conversation to it.
    """

    def __init__(self, db: StateDB) -> None:
        self._db = db

    def create(self, *, customer_id: str | None) -> Conversation:
        """A new conversation owned by `customer_id`."""
        now = time.time()
        conv = Conversation(
            id="c_" + uuid.uuid4().hex[:20],
            customer_id=customer_id,
            created_at=now,
            updated_at=now,
            handed_off=False,
            turns=0,
        )
        with self._db.connect() as conn:
            conn.execute(
                "INSERT INTO conversations (id, customer_id, created_at, updated_at) VALUES (?,?,?,?)",
                (conv.id, customer_id, now, now),
            )
        return conv

    def get(self, conversation_id: str) -> Conversation:
        """The conversation with this id, or NotFound."""
        with self._db.connect() as conn:
            row = conn.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise NotFound(f"no conversation {conversation_id!r}")
        return _row(row)

    def get_for(self, conversation_id: str, principal: Principal) -> Conversation:
        """The conversation if `principal` may see it: its customer, or an engineer."""
        conv = self.get(conversation_id)
        if principal.role is Role.engineer:
            return conv
        if principal.role is Role.customer and conv.customer_id == principal.customer_id:
            return conv
        # Same answer as for an id that does not exist would hide existence; a clear 403 is what the
        # issue asks for, and ids are random so nothing is learned by probing.
        raise Forbidden("this conversation belongs to another customer")

    def list_for(self, principal: Principal, *, limit: int = 50) -> list[Conversation]:
        """The caller's conversations, newest first (every conversation for an engineer)."""
        with self._db.connect() as conn:
            if principal.role is Role.engineer:
                rows = conn.execute(
                    "SELECT * FROM conversations ORDER BY updated_at DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM conversations WHERE customer_id = ? ORDER BY updated_at DESC LIMIT ?",
                    (principal.customer_id, limit),
                ).fetchall()
        return [_row(r) for r in rows]

    def record_turn(self, conversation_id: str, *, handed_off: bool) -> int:
        """Count a finished turn and remember a hand-off; returns the turn's number (1 for the first)."""
        with self._db.connect() as conn:
            conn.execute(
                "UPDATE conversations SET turns = turns + 1, updated_at = ?, "
                "handed_off = MAX(handed_off, ?) WHERE id = ?",
                (time.time(), int(handed_off), conversation_id),
            )
            row = conn.execute("SELECT turns FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        return int(row["turns"]) if row is not None else 0

    def of_customer(self, customer_id: str) -> list[Conversation]:
        """Every conversation of one customer, oldest first."""
        with self._db.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM conversations WHERE customer_id = ? ORDER BY created_at", (customer_id,)
            ).fetchall()
        return [_row(r) for r in rows]

    def since(self, since: float | None = None) -> list[Conversation]:
        """Every conversation updated at or after `since` (all without it), oldest first."""
        with self._db.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM conversations WHERE updated_at >= ? ORDER BY created_at", (since or 0.0,)
            ).fetchall()
        return [_row(r) for r in rows]

    def delete(self, conversation_id: str) -> None:
        """Remove a conversation's record (its customer's account data was deleted)."""
        with self._db.connect() as conn:
            conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
