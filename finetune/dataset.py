"""Transcripts to datasets: scrubbed SFT steps and DPO pairs, de-duplicated, split by conversation, hashed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.pii import ScrubReport, scrub_conversation
from finetune.transcripts import ReadReport, Transcript, read_transcripts
from specialist.errors import InvalidTranscript
from specialist.jsonio import read_jsonl

SFT_TRAIN, SFT_VAL, DPO_TRAIN, DPO_VAL = (
    "sft_train.jsonl",
    "sft_val.jsonl",
    "dpo_train.jsonl",
    "dpo_val.jsonl",
)
MANIFEST = "manifest.json"


def content_hash(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


GRAPH_STEP = "graph"  # an assistant step the agent graph writes itself (not the model): never a target


def step_action(message: dict[str, Any]) -> str:
    """The action of an assistant step: the tool name, or `reply`."""
    calls = message.get("tool_calls") or []
    return str(calls[0]["function"]["name"]) if calls else "reply"


def step_category(record: dict[str, Any], index: int) -> str:
    """The category of an assistant step (from metadata, else from its action)."""
    cats = (record.get("metadata") or {}).get("step_categories") or {}
    if str(index) in cats:
        return str(cats[str(index)])
    action = step_action(record["messages"][index])
    return "reply" if action == "reply" else "tool"


def in_validation(conversation_id: str, fraction: float) -> bool:
    """Deterministic split by conversation id."""
    bucket = int(hashlib.sha256(conversation_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < fraction


def sft_examples(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each assistant step as the target given the conversation before it (tools included)."""
    out = []
    for i, msg in enumerate(record["messages"]):
        if msg["role"] != "assistant" or step_category(record, i) == GRAPH_STEP:
            continue
        out.append(
            {
                "conversation_id": record["id"],
                "step": i,
                "category": step_category(record, i),
                "prompt": record["messages"][:i],
                "completion": [msg],
                "tools": record.get("tools") or [],
            }
        )
    return out


def dpo_pairs(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chosen = a correction (or the better-rated step for the same prefix), rejected = the original."""
    pairs = []
    for rec in records:
        for corr in rec.get("corrections") or []:
            i = corr["index"]
            chosen = {**corr["message"], "role": "assistant"}
            pairs.append(_pair(rec, i, chosen, rec["messages"][i], source="correction"))
    by_prefix: dict[str, list[tuple[float, dict[str, Any], int]]] = {}
    for rec in records:
        if rec.get("rating") is None:
            continue
        for i, msg in enumerate(rec["messages"]):
            if msg["role"] == "assistant":
                by_prefix.setdefault(_key(rec["messages"][:i]), []).append((float(rec["rating"]), rec, i))
    for steps in by_prefix.values():
        best = max(steps, key=lambda s: s[0])
        worst = min(steps, key=lambda s: s[0])
        b_msg, w_msg = best[1]["messages"][best[2]], worst[1]["messages"][worst[2]]
        if best[0] > worst[0] and _key(_visible(b_msg)) != _key(_visible(w_msg)):
            pairs.append(_pair(best[1], best[2], b_msg, w_msg, source="rating"))
    return pairs


def _visible(msg: dict[str, Any]) -> Any:
    return [msg.get("content") or "", [c["function"] for c in msg.get("tool_calls") or []]]


def _pair(
    rec: dict[str, Any], index: int, chosen: dict[str, Any], rejected: dict[str, Any], *, source: str
) -> dict[str, Any]:
    return {
        "conversation_id": rec["id"],
        "step": index,
        "source": source,
        "prompt": rec["messages"][:index],
        "chosen": [chosen],
        "rejected": [rejected],
        "tools": rec.get("tools") or [],
    }


def _dedupe(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for row in rows:
        key = _key([row.get(f) for f in fields])
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


@dataclass
class DatasetBuild:
    """What a dataset build wrote."""

    out_dir: Path
    manifest: dict[str, Any]


def _write(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def build_dataset(
    sources: Sequence[Path],
    out_dir: Path,
    *,
    val_fraction: float = 0.1,
    scrub: bool = True,
    pii_mode: str = "placeholder",
) -> DatasetBuild:
    """Read transcripts, scrub PII, write SFT/DPO train/validation files and a manifest with hashes."""
    transcripts: list[Transcript] = []
    reports: dict[str, ReadReport] = {}
    for src in sources:
        got, rep = read_transcripts(src, require_any=False)
        transcripts += got
        reports[str(src)] = rep
    if not transcripts:
        details = "; ".join(f"{s}: {'; '.join(r.lines()[:3]) or 'empty'}" for s, r in reports.items())
        raise InvalidTranscript(f"no usable conversation in the input ({details})")
    scrub_report = ScrubReport()
    records = [t.to_json() for t in transcripts]
    if scrub:
        records = [scrub_conversation(r, scrub_report, mode=pii_mode) for r in records]
    records = _dedupe(records, ("messages", "corrections", "rating"))
    train = [r for r in records if not in_validation(r["id"], val_fraction)]
    val = [r for r in records if in_validation(r["id"], val_fraction)]
    if not train:
        train, val = val, []
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        SFT_TRAIN: _dedupe([e for r in train for e in sft_examples(r)], ("prompt", "completion")),
        SFT_VAL: _dedupe([e for r in val for e in sft_examples(r)], ("prompt", "completion")),
        DPO_TRAIN: _dedupe(dpo_pairs(train), ("prompt", "chosen", "rejected")),
        DPO_VAL: _dedupe(dpo_pairs(val), ("prompt", "chosen", "rejected")),
    }
    for name, rows in files.items():
        _write(rows, out_dir / name)
    _write(train, out_dir / "conversations_train.jsonl")
    _write(val, out_dir / "conversations_val.jsonl")
    manifest = {
        "sources": {str(s): content_hash(s) for s in sources},
        "conversations": {"train": len(train), "val": len(val)},
        "rows": {name: len(rows) for name, rows in files.items()},
        "files": {
            name: content_hash(out_dir / name)
            for name in [*files, "conversations_train.jsonl", "conversations_val.jsonl"]
        },
        "scrub": {**scrub_report.to_json(), "mode": pii_mode} if scrub else None,
        "skipped": {s: r.lines() for s, r in reports.items() if r.skipped},
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return DatasetBuild(out_dir=out_dir, manifest=manifest)


__all__ = ["build_dataset", "read_jsonl", "step_action"]
