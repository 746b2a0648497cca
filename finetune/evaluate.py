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

from agent.chat_model import ChatMessage, ChatModel, ChatReply, ToolCall
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
    # Constrained (dev replay) scoring only: next action on the steps where the model has a choice.
    choice_n: int | None = None
    choice_next_action_acc: float | None = None

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


# --- the dev replays (real-style tasks), in the graph's convention, scored with constrained decisions ------


def _replay_call(message: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for raw in message.get("tool_calls") or []:
        fn = raw.get("function", raw)
        args = fn.get("arguments") or "{}"
        out.append({"name": fn["name"], "arguments": json.loads(args) if isinstance(args, str) else args})
    return out


def _call_msg(call: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
            }
        ],
    }


def replay_conversation(replay: dict[str, Any]) -> list[tuple[list[dict[str, Any]], dict[str, Any]]]:
    """A dev replay as the graph would hold it, with the model's steps: (history before the step, gold call).

    The replay's listing of a write becomes the model's write proposal (the graph lists it itself); the write
    after the customer's yes is the graph's execution, preceded by its proposal, the "not done yet" tool
    message, the graph's listing and the yes. Several writes after one yes are proposed one after another."""
    from agent import prompts
    from agent.tool_specs import WRITE_TOOLS

    history: list[dict[str, Any]] = []
    steps: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []
    messages = [m for m in replay["messages"] if m["role"] != "system"]
    results: dict[str, str] = {}
    for m in messages:
        if m["role"] == "tool":
            results[str(m.get("tool_call_id"))] = m.get("content") or ""
    n = 0
    i = 0
    while i < len(messages):
        m = messages[i]
        if m["role"] == "user":
            history.append({"role": "user", "content": m["content"]})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            for raw, call in zip(m["tool_calls"], _replay_call(m), strict=True):
                n += 1
                call_id = f"call_{n}"
                result = results.get(str(raw.get("id")), "")
                if call["name"] in WRITE_TOOLS:
                    steps.append((list(history), call))
                    history += [
                        _call_msg(call, call_id),
                        {
                            "role": "tool",
                            "content": prompts.PENDING_CONFIRMATION,
                            "tool_call_id": call_id,
                            "name": call["name"],
                        },
                        {
                            "role": "assistant",
                            "content": prompts.write_details(call["name"], call["arguments"]),
                        },
                        {"role": "user", "content": "yes"},
                    ]
                    n += 1
                    call_id = f"call_{n}"
                else:
                    steps.append((list(history), call))
                history += [
                    _call_msg(call, call_id),
                    {"role": "tool", "content": result, "tool_call_id": call_id, "name": call["name"]},
                ]
            # the customer's yes to the replay's own listing is already in the history
            if i + 1 < len(messages) and messages[i + 1]["role"] == "tool":
                while i + 1 < len(messages) and messages[i + 1]["role"] == "tool":
                    i += 1
        elif m["role"] == "assistant":
            following = messages[i + 1 : i + 3]
            writes_next = (
                len(following) == 2
                and following[0]["role"] == "user"
                and any(c["name"] in WRITE_TOOLS for c in _replay_call(following[1]))
            )
            if writes_next:
                i += 2  # the listing and the yes: the graph's, made when the write is proposed
                continue
            history.append({"role": "assistant", "content": m.get("content") or ""})
        i += 1
    return steps


def replay_steps(path: Path, *, limit: int | None = None) -> list[Step]:
    """The model's steps of the dev replays (gold tool calls, write proposals included)."""
    from agent.tool_specs import TOOL_SPECS, WRITE_TOOLS

    steps: list[Step] = []
    with path.open() as fh:
        replays = [json.loads(line) for line in fh if line.strip()]
    for replay in replays[:limit] if limit else replays:
        for index, (history, call) in enumerate(replay_conversation(replay)):
            gold = {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
                    }
                ],
            }
            prompt = [ChatMessage.from_openai(m) for m in history]
            category = "write" if call["name"] in WRITE_TOOLS else "lookup"
            steps.append(Step(str(replay.get("id")), index, category, prompt, gold, list(TOOL_SPECS)))
    return steps


def _pairs(args: dict[str, Any]) -> list[tuple[Any, Any]]:
    items = args.get("item_ids") or []
    return sorted(zip(items, args.get("new_item_ids") or items, strict=False))


def same_arguments(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Exact match of arguments; item lists compare as sets of (item, new item) pairs (their order in the
    call does not change what the write does)."""
    if set(got) != set(want):
        return False
    if "item_ids" in want:
        rest = {k for k in want if k not in ("item_ids", "new_item_ids")}
        return _pairs(got) == _pairs(want) and all(got[k] == want[k] for k in rest)
    return got == want


@dataclass
class ConstrainedReport:
    """Teacher-forced scores of constrained decisions on gold steps."""

    model: str
    n: int
    next_action_acc: float
    arg_exact: float
    reachable: float  # share of gold calls that `agent.choices` allows (the ceiling of both scores)
    invalid_calls: int
    seconds_per_step: float
    # The same two scores on the steps where the model chooses: not those where the choices leave one call
    # (`Choices.sole_call`), which the graph makes whatever the model.
    n_choice: int = 0
    choice_next_action_acc: float = 0.0
    choice_arg_exact: float = 0.0
    per_tool: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready report."""
        return dict(self.__dict__)


def evaluate_constrained(
    model: ChatModel, steps: Sequence[Step], *, variant_matcher: bool = False
) -> ConstrainedReport:
    """Each gold step predicted as the graph would ask for it: within `agent.choices` of its history."""
    import time

    from agent.choices import derive
    from agent.prompts import system_prompt

    hits = exact = reachable = invalid = 0
    choice = [0, 0, 0]  # steps with a choice: n, right tool, exact arguments
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    errors: list[dict[str, Any]] = []
    start = time.perf_counter()
    for step in steps:
        history = [m.to_openai() for m in step.prompt]
        possible = derive(history, variant_matcher=variant_matcher)
        want = _replay_call(step.gold)[0]
        gold_call = ToolCall(want["name"], want["arguments"])
        reachable += possible.admits(gold_call)
        prompt = [ChatMessage(role="system", content=system_prompt()), *step.prompt]
        reply = model.complete(prompt, step.tools, possible)
        got = reply.tool_calls[0] if reply.tool_calls else None
        if got is not None and not possible.admits(got):
            invalid += 1
        hit = got is not None and got.name == want["name"]
        ok = hit and got is not None and same_arguments(got.arguments, want["arguments"])
        hits += hit
        exact += ok
        forced = possible.sole_call() is not None
        if not forced:
            choice[0] += 1
            choice[1] += hit
            choice[2] += ok
        row = per[want["name"]]
        row[0] += 1
        row[1] += hit
        row[2] += ok
        if not ok and len(errors) < 80:
            errors.append(
                {
                    "conversation": step.conversation_id,
                    "step": step.index,
                    "gold": want,
                    "predicted": {"name": got.name, "arguments": got.arguments}
                    if got
                    else {"reply": reply.text[:80]},
                    "reachable": possible.admits(gold_call),
                    "forced": forced,
                }
            )
    n = len(steps)
    return ConstrainedReport(
        model=getattr(model, "name", "model"),
        n=n,
        next_action_acc=_ratio(hits, n),
        arg_exact=_ratio(exact, n),
        reachable=_ratio(reachable, n),
        invalid_calls=invalid,
        seconds_per_step=(time.perf_counter() - start) / n if n else 0.0,
        n_choice=choice[0],
        choice_next_action_acc=_ratio(choice[1], choice[0]),
        choice_arg_exact=_ratio(choice[2], choice[0]),
        per_tool={
            k: {"n": v[0], "acc": _ratio(v[1], v[0]), "arg_exact": _ratio(v[2], v[0])}
            for k, v in sorted(per.items())
        },
        errors=errors,
    )
