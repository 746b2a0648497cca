"""Reading support transcripts (JSONL, OpenAI chat format with tool calls), skipping malformed lines."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specialist.errors import InvalidTranscript

ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass
class Transcript:
    """One conversation: OpenAI-format messages, the tool schemas, and optional metadata."""

    id: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    outcome: str | None = None
    rating: float | None = None
    corrections: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSONL record of this transcript."""
        out: dict[str, Any] = {"id": self.id, "messages": self.messages, "tools": self.tools}
        if self.outcome is not None:
            out["outcome"] = self.outcome
        if self.rating is not None:
            out["rating"] = self.rating
        if self.corrections:
            out["corrections"] = self.corrections
        if self.metadata:
            out["metadata"] = self.metadata
        return out


@dataclass
class ReadReport:
    """What a read kept and what it skipped (line number and reason)."""

    kept: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable skip report."""
        return [f"line {n}: {reason}" for n, reason in self.skipped]


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError("empty conversation")
    pending: dict[str, str] = {}
    has_assistant = False
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ValueError(f"message {i} is not an object")
        role = msg.get("role")
        if role not in ROLES:
            raise ValueError(f"message {i} has unknown role {role!r}")
        if role == "assistant":
            has_assistant = True
            if pending:
                raise ValueError(f"tool call {next(iter(pending))} has no result before message {i}")
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise ValueError(f"message {i} has a tool call without a name")
                args = fn.get("arguments", "{}")
                try:
                    parsed = json.loads(args) if isinstance(args, str) else args
                except json.JSONDecodeError as exc:
                    raise ValueError(f"message {i} has tool-call arguments that are not JSON") from exc
                if not isinstance(parsed, dict):
                    raise ValueError(f"message {i} has tool-call arguments that are not an object")
                pending[str(call.get("id", ""))] = fn["name"]
        elif role == "tool":
            call_id = str(msg.get("tool_call_id", ""))
            if call_id not in pending:
                raise ValueError(f"message {i} is a tool result without a matching call")
            pending.pop(call_id)
        elif not isinstance(msg.get("content", ""), str):
            raise ValueError(f"message {i} content is not text")
    if pending:
        raise ValueError(f"tool call {next(iter(pending))} has no result")
    if not has_assistant:
        raise ValueError("no assistant message")


def parse_transcript(data: Any, *, fallback_id: str) -> Transcript:
    """Validate one JSON record; raises ValueError with the reason."""
    if not isinstance(data, dict):
        raise ValueError("line is not a JSON object")
    messages: list[dict[str, Any]] = data.get("messages")  # type: ignore[assignment]
    _check_messages(messages)
    tools = data.get("tools") or []
    if not isinstance(tools, list):
        raise ValueError("tools is not a list")
    corrections = data.get("corrections") or []
    for c in corrections:
        idx = c.get("index") if isinstance(c, dict) else None
        if not isinstance(idx, int) or not (0 <= idx < len(messages)) or messages[idx]["role"] != "assistant":
            raise ValueError("correction does not point at an assistant message")
        _check_messages([*messages[:idx], {**c["message"], "role": "assistant"}, *_results_for(c["message"])])
    rating = data.get("rating")
    return Transcript(
        id=str(data.get("id") or fallback_id),
        messages=messages,
        tools=tools,
        outcome=data.get("outcome"),
        rating=float(rating) if isinstance(rating, int | float) else None,
        corrections=corrections,
        metadata=data.get("metadata") or {},
    )


def _results_for(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Placeholder results so a correction's tool calls validate as answered."""
    return [
        {"role": "tool", "tool_call_id": str(c.get("id", "")), "content": ""}
        for c in message.get("tool_calls") or []
    ]


def read_transcripts(path: Path, *, require_any: bool = True) -> tuple[list[Transcript], ReadReport]:
    """Read a JSONL file; malformed lines are skipped and reported with their line numbers."""
    report = ReadReport()
    out: list[Transcript] = []
    if not path.exists():
        raise InvalidTranscript(f"transcript file not found: {path}")
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                out.append(parse_transcript(json.loads(line), fallback_id=f"{path.stem}-{number}"))
            except json.JSONDecodeError as exc:
                report.skipped.append((number, f"bad JSON: {exc.msg}"))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                report.skipped.append((number, str(exc) or type(exc).__name__))
    report.kept = len(out)
    if require_any and not out:
        detail = "; ".join(report.lines()[:5]) or "the file is empty"
        raise InvalidTranscript(f"no usable conversation in {path} ({detail})")
    return out, report


def iter_records(transcripts: Iterable[Transcript]) -> Iterable[dict[str, Any]]:
    """The JSONL records of transcripts."""
    return (t.to_json() for t in transcripts)
