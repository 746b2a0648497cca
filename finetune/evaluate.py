"""Replay held-out conversations step by step and score the model's next action.

Scores: next-action accuracy (which tool, or a reply; a hand-off is the transfer tool), argument exact
match, tool-call validity (parses, names a real tool, arguments fit the schema), refusal and hand-off
correctness, and a per-category table.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.chat_model import ChatMessage, ChatModel, ChatReply
from finetune.dataset import GRAPH_STEP, step_action, step_category
from finetune.transcripts import read_transcripts

REFUSAL_CATEGORIES = frozenset({"refuse", "decline"})
HANDOFF_TOOL = "transfer_to_human_agents"


@dataclass
class Step:
    """One assistant step to predict: the conversation before it and the gold message."""

    conversation_id: str
    index: int
    category: str
    prompt: list[ChatMessage]
    gold: dict[str, Any]
    tools: list[dict[str, Any]]


@dataclass
class StepResult:
    """What the model did at one step and how it scored."""

    step: Step
    predicted: str
    correct: bool
    arg_exact: bool | None
    attempted_call: bool
    valid: bool | None
    raw: str = ""


@dataclass
class EvalReport:
    """Aggregate scores and the per-category table."""

    model: str
    n: int
    next_action_acc: float
    arg_exact: float
    valid_rate: float
    refusal_acc: float | None
    handoff_acc: float | None
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready report."""
        return dict(self.__dict__)

    def table(self) -> str:
        """The per-category table as Markdown."""
        lines = ["| category | n | next-action acc |", "|---|---:|---:|"]
        for cat, row in sorted(self.per_category.items()):
            lines.append(f"| {cat} | {int(row['n'])} | {row['acc']:.2f} |")
        return "\n".join(lines)


def steps_of(path: Path, *, limit: int | None = None) -> list[Step]:
    """Every assistant step of a held-out transcript file."""
    transcripts, _ = read_transcripts(path)
    steps: list[Step] = []
    for t in transcripts:
        record = t.to_json()
        for i, msg in enumerate(t.messages):
            if msg["role"] != "assistant" or step_category(record, i) == GRAPH_STEP:
                continue
            prompt = [ChatMessage.from_openai(m) for m in t.messages[:i]]
            steps.append(Step(t.id, i, step_category(record, i), prompt, msg, t.tools))
            if limit is not None and len(steps) >= limit:
                return steps
    return steps


def _gold_args(msg: dict[str, Any]) -> dict[str, Any] | None:
    calls = msg.get("tool_calls") or []
    if not calls:
        return None
    args = calls[0]["function"].get("arguments") or "{}"
    parsed = json.loads(args) if isinstance(args, str) else args
    return parsed if isinstance(parsed, dict) else None


def _valid(reply: ChatReply, tools: Sequence[dict[str, Any]]) -> bool:
    """Every call parses, names a tool of the schema list and its arguments fit that schema."""
    import jsonschema

    if "<tool_call>" in reply.raw and not reply.tool_calls:
        return False
    if reply.raw.count("<tool_call>") > len(reply.tool_calls):
        return False
    schemas = {t["function"]["name"]: t["function"].get("parameters", {}) for t in tools}
    for call in reply.tool_calls:
        if call.name not in schemas or "_invalid" in call.arguments:
            return False
        try:
            jsonschema.validate(call.arguments, schemas[call.name])
        except jsonschema.ValidationError:
            return False
    return True


def score_step(step: Step, reply: ChatReply) -> StepResult:
    """Score one prediction against the gold step."""
    gold_action = step_action(step.gold)
    attempted = bool(reply.tool_calls) or "<tool_call>" in reply.raw
    if reply.tool_calls:
        predicted = reply.tool_calls[0].name
    elif attempted:
        predicted = "invalid"
    else:
        predicted = "reply"
    gold_args = _gold_args(step.gold)
    arg_exact = None
    if gold_args is not None:
        arg_exact = predicted == gold_action and reply.tool_calls[0].arguments == gold_args
    return StepResult(
        step=step,
        predicted=predicted,
        correct=predicted == gold_action,
        arg_exact=arg_exact,
        attempted_call=attempted,
        valid=_valid(reply, step.tools) if attempted else None,
        raw=reply.raw,
    )


def predict(model: ChatModel, steps: Sequence[Step], *, batch_size: int = 8) -> list[ChatReply]:
    """The model's reply at every step (batched when the backend supports it)."""
    batch = getattr(model, "complete_batch", None)
    if batch is None:
        return [model.complete(s.prompt, s.tools) for s in steps]
    replies: list[ChatReply] = []
    ordered = sorted(range(len(steps)), key=lambda i: len(json.dumps([m.content for m in steps[i].prompt])))
    by_index: dict[int, ChatReply] = {}
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        got = batch([(steps[i].prompt, steps[i].tools) for i in chunk], max_new_tokens=160, action_only=True)
        by_index.update(zip(chunk, got, strict=True))
    replies = [by_index[i] for i in range(len(steps))]
    return replies


def evaluate(model: ChatModel, steps: Sequence[Step], *, batch_size: int = 8) -> EvalReport:
    """Score a model on held-out steps."""
    results = [
        score_step(s, r) for s, r in zip(steps, predict(model, steps, batch_size=batch_size), strict=True)
    ]
    return summarize(getattr(model, "name", "model"), results)


def _ratio(hits: int, total: int) -> float:
    return hits / total if total else 0.0


def summarize(name: str, results: Sequence[StepResult]) -> EvalReport:
    """Aggregate step results."""
    per: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        per[r.step.category].append(r.correct)
    with_args = [r for r in results if r.arg_exact is not None]
    attempts = [r for r in results if r.attempted_call]
    refusals = [r for r in results if r.step.category in REFUSAL_CATEGORIES]
    handoffs = [r for r in results if step_action(r.step.gold) == HANDOFF_TOOL]
    return EvalReport(
        model=name,
        n=len(results),
        next_action_acc=_ratio(sum(r.correct for r in results), len(results)),
        arg_exact=_ratio(sum(bool(r.arg_exact) for r in with_args), len(with_args)),
        valid_rate=_ratio(sum(bool(r.valid) for r in attempts), len(attempts)),
        refusal_acc=_ratio(sum(r.correct for r in refusals), len(refusals)) if refusals else None,
        handoff_acc=_ratio(sum(r.correct for r in handoffs), len(handoffs)) if handoffs else None,
        per_category={
            cat: {"n": float(len(v)), "acc": _ratio(sum(v), len(v))} for cat, v in sorted(per.items())
        },
        errors=[
            {
                "conversation": r.step.conversation_id,
                "step": r.step.index,
                "gold": step_action(r.step.gold),
                "predicted": r.predicted,
                "raw": r.raw[:200],
            }
            for r in results
            if not r.correct
        ][:50],
    )
