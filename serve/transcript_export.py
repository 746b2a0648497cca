"""Live conversations as training transcripts (docs/training.md's format), PII scrubbed, with their signals.

Each line is one conversation: the system prompt and the agent's history in OpenAI chat form with the tool
schemas, `outcome`, `rating`, the reviewers' `corrections` (the step's index and the message it should have
been, with who and when) and, under `metadata`, the flags, ratings and every review. `metadata.source` is
`live` and `metadata.targets` is `reviewed`: the dataset builder trains only on the steps a reviewer
marked good or corrected, never on what the live model did unchecked. A conversation whose customer's
account data was deleted is gone from the store and from every later export.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.tool_specs import TOOL_SPECS
from finetune.pii import ScrubReport, scrub_conversation
from serve.conversations import Conversation, ConversationStore
from serve.feedback import FeedbackStore, Rating, Review
from serve.review import scrubber_for, transcript_messages
from specialist.errors import InvalidInput

History = Callable[[str], list[dict[str, Any]]]
LIVE_SOURCE = "live"


def iso(ts: float) -> str:
    """A timestamp as an ISO 8601 UTC time."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def parse_since(text: str | None) -> float | None:
    """`--since` as a timestamp: an ISO date or date-time (UTC unless it says otherwise)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"--since {text!r} is not a date like 2026-12-01 or 2026-12-01T09:30") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _rating(ratings: list[Rating]) -> float | None:
    """The conversation's rating on the transcripts' 1-5 scale: thumbs up 5, thumbs down 1, averaged."""
    if not ratings:
        return None
    return sum(5.0 if r.up else 1.0 for r in ratings) / len(ratings)


def _outcome(conv: Conversation, ratings: list[Rating], flagged: bool) -> str:
    if conv.handed_off:
        return "handed_off"
    if any(not r.up for r in ratings):
        return "unsatisfied"
    return "flagged" if flagged else "completed"


def export_record(
    conv: Conversation,
    history: list[dict[str, Any]],
    *,
    feedback: FeedbackStore,
) -> dict[str, Any] | None:
    """One conversation's transcript record (not yet scrubbed); None when it has no assistant step."""
    messages = transcript_messages(history)
    if not any(m["role"] == "assistant" for m in messages):
        return None
    flags = feedback.flags(conv.id)
    ratings = feedback.ratings(conv.id)
    reviews: list[Review] = [
        r
        for r in feedback.reviews(conv.id)
        if r.step < len(messages) and messages[r.step]["role"] == "assistant"
    ]
    corrections = [
        {"index": r.step, "message": r.message, "reviewer": r.reviewer, "at": iso(r.created_at)}
        for r in reviews
        if r.verdict == "corrected" and r.message is not None
    ]
    record: dict[str, Any] = {
        "id": conv.id,
        "messages": messages,
        "tools": TOOL_SPECS,
        "outcome": _outcome(conv, ratings, bool(flags)),
        "corrections": corrections,
        "metadata": {
            "source": LIVE_SOURCE,
            "targets": "reviewed",
            "created_at": iso(conv.created_at),
            "updated_at": iso(conv.updated_at),
            "turns": conv.turns,
            "flags": [f.to_dict() for f in flags],
            "ratings": [r.to_dict() for r in ratings],
            "reviews": [
                {"index": r.step, "verdict": r.verdict, "reviewer": r.reviewer, "at": iso(r.created_at)}
                for r in reviews
            ],
            "good_steps": [r.step for r in reviews if r.verdict == "good"],
        },
    }
    rating = _rating(ratings)
    if rating is not None:
        record["rating"] = rating
    return record


def scrubbed(record: dict[str, Any], report: ScrubReport, *, pii_mode: str) -> dict[str, Any]:
    """The record with PII replaced in messages, corrections and the customers' rating comments."""
    out = scrub_conversation(record, report, mode=pii_mode)
    scrubber = scrubber_for(record["id"], record["messages"])
    meta = dict(out["metadata"])
    meta["ratings"] = [{**r, "comment": scrubber.text(r["comment"])} for r in meta.get("ratings", [])]
    out["metadata"] = meta
    return out


@dataclass
class ExportReport:
    """What an export wrote: the file's hash, counts and the date range of its conversations."""

    out: Path
    sha256: str
    conversations: int
    flagged: int
    reviewed: int
    corrections: int
    ratings: int
    first: str | None
    last: str | None
    scrub: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "out": str(self.out),
            "sha256": self.sha256,
            "conversations": self.conversations,
            "flagged": self.flagged,
            "reviewed": self.reviewed,
            "corrections": self.corrections,
            "ratings": self.ratings,
            "first": self.first,
            "last": self.last,
            "scrub": self.scrub,
        }


def export_transcripts(
    *,
    conversations: ConversationStore,
    feedback: FeedbackStore,
    history: History,
    out: Path,
    since: float | None = None,
    flagged: bool = False,
    reviewed: bool = False,
    pii_mode: str = "placeholder",
) -> ExportReport:
    """Write the live conversations (updated since `since`; only flagged / reviewed if asked) as JSONL."""
    if pii_mode not in ("placeholder", "surrogate"):
        raise InvalidInput(
            f"unknown PII mode {pii_mode!r}: placeholder or surrogate (export is always scrubbed)"
        )
    report = ScrubReport()
    records = []
    for conv in conversations.since(since):
        if feedback.erased(conv.id):
            continue
        record = export_record(conv, history(conv.id), feedback=feedback)
        if record is None:
            continue
        meta = record["metadata"]
        if flagged and not meta["flags"]:
            continue
        if reviewed and not meta["reviews"]:
            continue
        records.append(scrubbed(record, report, pii_mode=pii_mode))
    out.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(out)
    created = [r["metadata"]["created_at"] for r in records]
    return ExportReport(
        out=out,
        sha256=hashlib.sha256(body.encode("utf-8")).hexdigest(),
        conversations=len(records),
        flagged=sum(1 for r in records if r["metadata"]["flags"]),
        reviewed=sum(1 for r in records if r["metadata"]["reviews"]),
        corrections=sum(len(r["corrections"]) for r in records),
        ratings=sum(len(r["metadata"]["ratings"]) for r in records),
        first=min(created) if created else None,
        last=max(created) if created else None,
        scrub={**report.to_json(), "mode": pii_mode},
    )


@contextmanager
def checkpoint_history(settings: Any) -> Iterator[History]:
    """The agent's stored histories, read from its checkpointer without a model (for the CLI)."""
    from agent.graph import build_graph
    from agent.runtime import make_checkpointer

    saver = make_checkpointer(settings)
    graph = build_graph().compile(checkpointer=saver)

    def history(conversation_id: str) -> list[dict[str, Any]]:
        values = graph.get_state({"configurable": {"thread_id": conversation_id}}).values or {}
        return [dict(m) for m in values.get("messages", [])]

    try:
        yield history
    finally:
        conn = getattr(saver, "conn", None)
        if conn is not None:
            conn.close()
