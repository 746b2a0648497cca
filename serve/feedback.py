"""Signals from live conversations: customers' ratings, automatic flags with reasons, reviewers' verdicts.

A finished turn is flagged from its own events (a hand-off, a guard removal, a refused or invalid write, a
tool that failed, an agent error) and from the customer's words (the same request again: a re-ask); a
thumbs-down flags the rated turn. Reviewers' verdicts (a step marked good, or the step it should have been)
are kept per assistant step with who gave them and when. Everything here is keyed by conversation id, so
deleting a customer's account data removes it in one call (`erase`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agent.tool_specs import WRITE_TOOLS
from serve.state import StateDB
from specialist.errors import InvalidInput

Reason = Literal["handoff", "guard_removal", "refused_write", "tool_error", "reask", "low_rating"]
REASONS: tuple[Reason, ...] = (
    "handoff",
    "guard_removal",
    "refused_write",
    "tool_error",
    "reask",
    "low_rating",
)
Verdict = Literal["good", "corrected"]

_WORD = re.compile(r"[a-z0-9#@._-]+")
REASK_OVERLAP = 0.6  # word-set Jaccard of two consecutive customer messages at which the second is a re-ask
MAX_COMMENT_CHARS = 2000


class EventLike(Protocol):
    """A turn's event as the service streams it (`serve.turns.TurnEvent`)."""

    @property
    def type(self) -> str:
        """The event's type (tool_end, handoff, message, ...)."""

    @property
    def data(self) -> dict[str, Any]:
        """The event's JSON data."""


@dataclass(frozen=True)
class Flag:
    """Why a turn needs a reviewer's look."""

    conversation_id: str
    turn: int
    reason: str
    detail: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "turn": self.turn,
            "reason": self.reason,
            "detail": self.detail,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Rating:
    """A customer's thumbs up or down on one reply (the reply of turn `turn`)."""

    conversation_id: str
    turn: int
    up: bool
    comment: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "turn": self.turn,
            "value": "up" if self.up else "down",
            "comment": self.comment,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Review:
    """A reviewer's verdict on one assistant step: good, or corrected to `message`."""

    conversation_id: str
    step: int
    verdict: str
    message: dict[str, Any] | None
    reviewer: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "step": self.step,
            "verdict": self.verdict,
            "message": self.message,
            "reviewer": self.reviewer,
            "created_at": self.created_at,
        }


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def is_reask(text: str, previous: str | None) -> bool:
    """Whether a customer message asks again what their previous message asked (the reply did not help)."""
    if not previous:
        return False
    now, before = _words(text), _words(previous)
    if len(now) < 2 or len(before) < 2:
        return False
    return len(now & before) / len(now | before) >= REASK_OVERLAP


def turn_flags(events: Sequence[EventLike], *, text: str, previous: str | None) -> list[tuple[str, str]]:
    """The reasons (with a short, PII-free detail) to flag one finished turn, one per reason."""
    found: dict[str, list[str]] = {}

    def add(reason: str, detail: str) -> None:
        details = found.setdefault(reason, [])
        if detail not in details:
            details.append(detail)

    invalid: set[str] = set()
    for event in events:
        data = event.data
        name = str(data.get("name") or "")
        if event.type == "handoff":
            add("handoff", f"ticket {data.get('ticket_id', '')}".strip())
        elif event.type == "message" and data.get("removed"):
            removed = data["removed"]
            count = len(removed) if isinstance(removed, list) else int(removed)
            add("guard_removal", f"{count} unbacked statement(s) removed")
        elif event.type == "invalid_call":
            invalid.add(name)
            reason = "refused_write" if name in WRITE_TOOLS else "tool_error"
            add(reason, f"{name}: not possible at this step")
        elif event.type == "tool_end" and data.get("ok") is False and name not in invalid:
            add("refused_write" if name in WRITE_TOOLS else "tool_error", f"{name} refused or failed")
        elif event.type == "error":
            add("tool_error", "the agent could not finish the turn")
    if is_reask(text, previous):
        add("reask", "the customer asked the same again")
    return [(reason, "; ".join(details)) for reason, details in found.items()]


class FeedbackStore:
    """Ratings, flags, turn texts and reviews in the service's database."""

    def __init__(self, db: StateDB) -> None:
        self._db = db

    # -- turns and flags --------------------------------------------------------------------------

    def record_turn(
        self, conversation_id: str, *, turn: int, text: str, events: Sequence[EventLike]
    ) -> list[Flag]:
        """Remember the turn's customer text and flag the turn from its events; returns the new flags."""
        now = time.time()
        with self._db.connect() as conn:
            row = conn.execute(
                "SELECT text FROM turn_texts WHERE conversation_id = ? AND turn < ? "
                "ORDER BY turn DESC LIMIT 1",
                (conversation_id, turn),
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO turn_texts (conversation_id, turn, text, created_at) "
                "VALUES (?,?,?,?)",
                (conversation_id, turn, text, now),
            )
            flags = [
                Flag(conversation_id, turn, reason, detail, now)
                for reason, detail in turn_flags(events, text=text, previous=row["text"] if row else None)
            ]
            conn.executemany(
                "INSERT INTO flags (conversation_id, turn, reason, detail, created_at) VALUES (?,?,?,?,?)",
                [(f.conversation_id, f.turn, f.reason, f.detail, f.created_at) for f in flags],
            )
        return flags

    def flags(self, conversation_id: str) -> list[Flag]:
        """A conversation's flags, oldest first."""
        with self._db.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM flags WHERE conversation_id = ? ORDER BY created_at, id", (conversation_id,)
            ).fetchall()
        return [
            Flag(r["conversation_id"], r["turn"], r["reason"], r["detail"], r["created_at"]) for r in rows
        ]

    def queue(self, *, reason: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Flagged conversations, the most recently flagged first (only those with `reason` if given)."""
        if reason is not None and reason not in REASONS:
            raise InvalidInput(f"unknown flag reason {reason!r}; one of: {', '.join(REASONS)}")
        where, args = ("WHERE f.reason = ?", [reason]) if reason else ("", [])
        with self._db.connect() as conn:
            rows = conn.execute(
                "SELECT f.conversation_id AS id, MAX(f.created_at) AS flagged_at, c.turns AS turns, "
                "c.created_at AS created_at, c.handed_off AS handed_off "
                f"FROM flags f JOIN conversations c ON c.id = f.conversation_id {where} "
                "GROUP BY f.conversation_id ORDER BY flagged_at DESC LIMIT ?",
                [*args, limit],
            ).fetchall()
        out = []
        for r in rows:
            flags = self.flags(r["id"])
            out.append(
                {
                    "id": r["id"],
                    "flagged_at": r["flagged_at"],
                    "created_at": r["created_at"],
                    "turns": r["turns"],
                    "handed_off": bool(r["handed_off"]),
                    "reasons": sorted({f.reason for f in flags}),
                    "flags": [f.to_dict() for f in flags],
                    "reviewed_steps": len(self.reviews(r["id"])),
                }
            )
        return out

    # -- ratings ----------------------------------------------------------------------------------

    def rate(self, conversation_id: str, *, turn: int, up: bool, comment: str = "") -> Rating:
        """Record (or replace) the rating of one turn's reply; a thumbs-down flags the turn."""
        if len(comment) > MAX_COMMENT_CHARS:
            raise InvalidInput(f"the comment is {len(comment)} characters; the limit is {MAX_COMMENT_CHARS}")
        now = time.time()
        rating = Rating(conversation_id, turn, up, comment.strip(), now)
        with self._db.connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO ratings (conversation_id, turn, value, comment, created_at) "
                "VALUES (?,?,?,?,?)",
                (conversation_id, turn, 1 if up else -1, rating.comment, now),
            )
            conn.execute(
                "DELETE FROM flags WHERE conversation_id = ? AND turn = ? AND reason = 'low_rating'",
                (conversation_id, turn),
            )
            if not up:
                # the comment stays with the rating, which the review shows scrubbed; flags carry no PII
                detail = "thumbs down" + (" with a comment" if rating.comment else "")
                conn.execute(
                    "INSERT INTO flags (conversation_id, turn, reason, detail, created_at) "
                    "VALUES (?,?,?,?,?)",
                    (conversation_id, turn, "low_rating", detail, now),
                )
        return rating

    def ratings(self, conversation_id: str) -> list[Rating]:
        """A conversation's ratings, by turn."""
        with self._db.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM ratings WHERE conversation_id = ? ORDER BY turn", (conversation_id,)
            ).fetchall()
        return [
            Rating(conversation_id, r["turn"], r["value"] > 0, r["comment"], r["created_at"]) for r in rows
        ]

    # -- reviews ----------------------------------------------------------------------------------

    def review(
        self,
        conversation_id: str,
        *,
        step: int,
        verdict: Verdict,
        message: dict[str, Any] | None,
        reviewer: str,
    ) -> Review:
        """Record (or replace) a reviewer's verdict on one assistant step."""
        if not reviewer.strip():
            raise InvalidInput("a reviewer name is required")
        now = time.time()
        stored = json.dumps(message) if message is not None else None
        with self._db.connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO reviews "
                "(conversation_id, step, verdict, message, reviewer, created_at) "
                "VALUES (?,?,?,?,?,?)",
                (conversation_id, step, verdict, stored, reviewer, now),
            )
        return Review(conversation_id, step, verdict, message, reviewer, now)

    def reviews(self, conversation_id: str) -> list[Review]:
        """A conversation's reviewed steps, in step order."""
        with self._db.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM reviews WHERE conversation_id = ? ORDER BY step", (conversation_id,)
            ).fetchall()
        return [
            Review(
                conversation_id,
                r["step"],
                r["verdict"],
                json.loads(r["message"]) if r["message"] else None,
                r["reviewer"],
                r["created_at"],
            )
            for r in rows
        ]

    # -- account data -----------------------------------------------------------------------------

    def erase(self, conversation_ids: Sequence[str]) -> None:
        """Delete everything kept about these conversations and remember that they were erased."""
        now = time.time()
        with self._db.connect() as conn:
            for table in ("turn_texts", "ratings", "flags", "reviews"):
                conn.executemany(
                    f"DELETE FROM {table} WHERE conversation_id = ?", [(c,) for c in conversation_ids]
                )
            conn.executemany(
                "INSERT OR REPLACE INTO erasures (conversation_id, erased_at) VALUES (?, ?)",
                [(c, now) for c in conversation_ids],
            )

    def erased(self, conversation_id: str) -> bool:
        """Whether this conversation's data was deleted with its customer's account data."""
        with self._db.connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM erasures WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
        return row is not None
