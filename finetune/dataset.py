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


REVIEWED_ONLY = "reviewed"  # metadata.targets of live exports: only reviewed steps are training targets


def sft_examples(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each assistant step as the target given the conversation before it (tools included).

    A corrected step's target is its correction. In a record whose `metadata.targets` is `reviewed` (a live
    export) only the steps a reviewer corrected or marked good (`metadata.good_steps`) are targets.
    """
    meta = record.get("metadata") or {}
    corrected = {int(c["index"]): c["message"] for c in record.get("corrections") or []}
    reviewed_only = meta.get("targets") == REVIEWED_ONLY
    good = {int(i) for i in meta.get("good_steps") or []}
    out = []
    for i, msg in enumerate(record["messages"]):
        if msg["role"] != "assistant" or step_category(record, i) == GRAPH_STEP:
            continue
        if reviewed_only and i not in corrected and i not in good:
            continue
        target = {**corrected[i], "role": "assistant"} if i in corrected else msg
        out.append(
            {
                "conversation_id": record["id"],
                "step": i,
                "category": step_category(record, i),
                "prompt": record["messages"][:i],
                "completion": [target],
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


def _fraction(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _weighted(rows: list[dict[str, Any]], weight_of: dict[str, float], *, sft: bool) -> list[dict[str, Any]]:
    """Rows repeated by their source's weight: 2.5 keeps every row twice and half of them a third time
    (chosen by a hash, so reproducible); 0.5 keeps half. SFT copies get their own conversation id, since the
    packer folds identical steps of one conversation into one sequence."""
    out = []
    for row in rows:
        weight = weight_of.get(row["conversation_id"], 1.0)
        whole, part = int(weight), weight - int(weight)
        copies = whole + (
            1 if part > 0 and _fraction(f"{row['conversation_id']}:{row['step']}") < part else 0
        )
        for k in range(copies):
            out.append({**row, "conversation_id": f"{row['conversation_id']}~{k}"} if sft and k else row)
    return out


def live_summary(path: Path, records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """What a live export (`specialist transcripts export`) brought: its hash, counts and date range."""
    live = [r for r in records if (r.get("metadata") or {}).get("source") == "live"]
    if not live:
        return None
    created = sorted(str(r["metadata"].get("created_at", "")) for r in live)
    return {
        "path": str(path),
        "sha256": content_hash(path),
        "conversations": len(live),
        "corrections": sum(len(r.get("corrections") or []) for r in live),
        "reviewed_steps": sum(len(r["metadata"].get("reviews") or []) for r in live),
        "ratings": sum(len(r["metadata"].get("ratings") or []) for r in live),
        "first": created[0] or None,
        "last": created[-1] or None,
    }


def build_dataset(
    sources: Sequence[Path],
    out_dir: Path,
    *,
    val_fraction: float = 0.1,
    scrub: bool = True,
    pii_mode: str = "placeholder",
    weights: Sequence[float] | None = None,
) -> DatasetBuild:
    """Read transcripts, scrub PII, write SFT/DPO train/validation files and a manifest with hashes.

    `weights` (one per source) repeats or thins each source's training rows: the mix of live exports
    and synthesized transcripts a config asks for (`TrainConfig.mix`)."""
    if weights is not None and (len(weights) != len(sources) or any(w < 0 for w in weights)):
        raise InvalidTranscript("give one weight of 0 or more per source")
    transcripts: list[Transcript] = []
    reports: dict[str, ReadReport] = {}
    weight_of: dict[str, float] = {}
    live: list[dict[str, Any]] = []
    for n, src in enumerate(sources):
        got, rep = read_transcripts(src, require_any=False)
        transcripts += got
        reports[str(src)] = rep
        for t in got:
            weight_of[t.id] = float(weights[n]) if weights is not None else 1.0
        summary = live_summary(src, [t.to_json() for t in got])
        if summary is not None:
            live.append({**summary, "weight": weight_of[got[0].id]})
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
    if weights is not None:
        files[SFT_TRAIN] = _weighted(files[SFT_TRAIN], weight_of, sft=True)
        files[DPO_TRAIN] = _weighted(files[DPO_TRAIN], weight_of, sft=False)
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
        "weights": {str(s): float(w) for s, w in zip(sources, weights, strict=True)} if weights else None,
        "live": live,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return DatasetBuild(out_dir=out_dir, manifest=manifest)


__all__ = ["build_dataset", "read_jsonl", "step_action"]
