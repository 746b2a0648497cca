"""Constrained decoding: the model's step chosen within `Choices`, on any backend that can score text.

The output is the Hermes tool-call text the model is trained on
(`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`), built piece by piece: a reply or a call, then
the tool among those possible, then each argument among its allowed values (a list element by element,
closing when the model prefers to), ranked by the model's likelihood of the piece's tokens after what was
chosen so far. Free-text arguments (an address, a hand-off summary) are decoded greedily up to the closing
quote. A tool or an id outside `Choices` cannot come out.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.chat_model import ChatReply, ToolCall
from agent.choices import Action, Choices, Slot, call_key

CALL_OPEN = '<tool_call>{"name": "'
CALL_CLOSE = "}}</tool_call>"


class Scorer(Protocol):
    """What a backend offers constrained decoding: likelihoods of continuations, and greedy text."""

    def logprobs(self, prefix: str, continuations: Sequence[str]) -> list[float]:
        """Log-likelihood of each continuation's tokens after `prefix` (the prompt and output so far)."""
        ...

    def greedy(self, prefix: str, *, stop: str, max_tokens: int) -> str:
        """Greedy text after `prefix`, up to (not including) `stop` or `max_tokens` tokens."""
        ...


@dataclass
class Trace:
    """How a decision was made: each choice point with its candidates' scores (for tests and benchmarks)."""

    points: list[dict[str, Any]] = field(default_factory=list)
    scored: int = 0  # continuations scored in all


@dataclass
class _Memo:
    """What one step's passes have scored and generated (a pass that diverges late re-scores nothing)."""

    scores: dict[tuple[str, tuple[str, ...]], list[float]] = field(default_factory=dict)
    texts: dict[tuple[str, int], str] = field(default_factory=dict)


class _Decoder:
    """One pass of decoding: each choice point takes the best candidate unless `forced` names another."""

    def __init__(
        self, scorer: Scorer, trace: Trace, memo: _Memo, forced: Mapping[int, int] | None = None
    ) -> None:
        self.scorer, self.trace, self.memo = scorer, trace, memo
        self.forced = dict(forced or {})
        self.points: list[tuple[int, list[float]]] = []  # this pass's choice points: (chosen, scores)

    def pick(self, prefix: str, candidates: Sequence[str], what: str) -> int:
        if len(candidates) == 1:
            return 0
        key = (prefix, tuple(candidates))
        scores = self.memo.scores.get(key)
        if scores is None:
            scores = self.memo.scores[key] = self.scorer.logprobs(prefix, candidates)
            self.trace.scored += len(candidates)
        best = self.forced.get(len(self.points))
        if best is None:
            best = max(range(len(candidates)), key=lambda i: scores[i])
        self.points.append((best, scores))
        self.trace.points.append(
            {"what": what, "candidates": list(candidates), "scores": scores, "chosen": best}
        )
        return best

    def text(self, prefix: str, slot: Slot) -> str:
        """A free-text argument, greedy up to its closing quote."""
        key = (prefix, slot.max_tokens)
        if key not in self.memo.texts:
            raw = self.scorer.greedy(prefix, stop='"', max_tokens=slot.max_tokens)
            self.memo.texts[key] = raw.replace("\\", "").strip() or "-"
        return self.memo.texts[key]


def _fill(decoder: _Decoder, prefix: str, action: Action) -> tuple[dict[str, Any], str]:
    """Each argument of the action in turn; returns the arguments and the call's text."""
    out = prefix
    args: dict[str, Any] = {}
    for i, slot in enumerate(action.slots):
        out += ("" if i == 0 else ", ") + json.dumps(slot.name) + ": "
        if slot.kind == "text":
            value = decoder.text(out + '"', slot)
            args[slot.name] = value
            out += json.dumps(value)
            continue
        if slot.kind == "one":
            domain = slot.domain(args)
            pieces = [json.dumps(v) for v in domain]
            chosen = domain[decoder.pick(out, pieces, slot.name)]
            args[slot.name] = chosen
            out += json.dumps(chosen)
            continue
        values: list[str] = []
        out += "["
        if slot.paired:
            for key in args.get(slot.depends_on or "") or []:
                domain = slot.domain(args, str(key))
                sep = "" if not values else ", "
                pieces = [sep + json.dumps(v) for v in domain]
                chosen = domain[decoder.pick(out, pieces, slot.name)]
                values.append(chosen)
                out += sep + json.dumps(chosen)
        elif slot.is_whole(args):  # the items the customer named: all of them, nothing to choose
            values = list(slot.domain(args))
            out += ", ".join(json.dumps(v) for v in values)
        else:
            domain = slot.domain(args)
            while True:
                rest = [v for v in domain if v not in values]
                if not rest:
                    break
                sep = "" if not values else ", "
                done = bool(values) and slot.covered(values, args)  # each named product in it
                pieces = [sep + json.dumps(v) for v in rest] + (["]"] if done else [])
                pick = decoder.pick(out, pieces, slot.name)
                if pick == len(rest):
                    break
                values.append(rest[pick])
                out += pieces[pick]
        out += "]"
        args[slot.name] = values
    return args, out + CALL_CLOSE


def _call(decoder: _Decoder, prompt: str, choices: Choices) -> tuple[ToolCall, str]:
    names = [a.name for a in choices.actions]
    pieces = [name + '", "arguments": {' for name in names]
    action = choices.actions[decoder.pick(prompt + CALL_OPEN, pieces, "tool")]
    head = prompt + CALL_OPEN + action.name + '", "arguments": {'
    args, text = _fill(decoder, head, action)
    return ToolCall(action.name, args), text[len(prompt) :]


MAX_PASSES = 8  # calls tried, best first, until one is not excluded


def choose(
    scorer: Scorer, prompt: str, choices: Choices, *, max_text_tokens: int = 80
) -> tuple[ChatReply, Trace]:
    """The model's next step within `choices`: one allowed tool call, or a reply.

    A call not to be made again (`Choices.excluded`: a write the customer turned down, a calculation made) is
    not returned: the next most likely call is (best first by the log-likelihood given up at the points
    where it differs), else a reply."""
    trace = Trace()
    if choices.actions and choices.reply:
        p_call = math.exp(scorer.logprobs(prompt, ["<tool_call>"])[0])
        trace.scored += 1
        trace.points.append({"what": "call", "candidates": ["<tool_call>"], "scores": [p_call], "chosen": 0})
        wants_call = p_call >= 0.5
    else:
        wants_call = bool(choices.actions)
    if wants_call:
        memo = _Memo()
        queue: list[tuple[float, int, dict[int, int]]] = [(0.0, 0, {})]
        pushed = passes = 0
        while queue and passes < MAX_PASSES:
            cost, _, forced = heapq.heappop(queue)
            decoder = _Decoder(scorer, trace, memo, forced)
            call, raw = _call(decoder, prompt, choices)
            passes += 1
            if call_key(call.name, call.arguments) not in choices.excluded:
                return ChatReply(tool_calls=[call], raw=raw), trace
            # the same pass up to a point after the last forced one, another candidate there
            start = max(forced, default=-1) + 1
            for index, (chosen, scores) in enumerate(decoder.points[start:], start):
                for other, score in enumerate(scores):
                    if other != chosen:
                        pushed += 1
                        heapq.heappush(
                            queue, (cost + scores[chosen] - score, pushed, {**forced, index: other})
                        )
        if (
            not choices.reply
        ):  # every call tried was excluded and no reply is possible: the graph says its line
            return ChatReply(text=""), trace
    text = scorer.greedy(prompt, stop="<|im_end|>", max_tokens=max_text_tokens) if choices.reply_text else ""
    if "<tool_call>" in text:
        text = text.split("<tool_call>")[0]
    return ChatReply(text=text.strip(), raw=text), trace


def json_schema(choices: Choices) -> dict[str, Any]:
    """The possible calls as one JSON schema with `enum`s (for servers with guided decoding, e.g. vLLM).

    Values that depend on an earlier argument are given as the union over it; the graph's `Choices.admits`
    checks the pairing of what comes back."""
    variants = []
    for action in choices.actions:
        properties: dict[str, Any] = {}
        for slot in action.slots:
            properties[slot.name] = _slot_schema(slot)
        variants.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": action.name},
                    "arguments": {
                        "type": "object",
                        "properties": properties,
                        "required": list(properties),
                        "additionalProperties": False,
                    },
                },
                "required": ["name", "arguments"],
            }
        )
    return {"anyOf": variants}


def _slot_schema(slot: Slot) -> dict[str, Any]:
    if slot.kind == "text":
        return {"type": "string", "minLength": 1}
    values = list(slot.values) or sorted({v for vs in slot.table.values() for v in vs})
    if slot.kind == "one":
        return {"type": "string", "enum": values}
    return {"type": "array", "items": {"type": "string", "enum": values}, "minItems": 1, "uniqueItems": True}


def tool_specs(choices: Choices, specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The tool specs of the possible actions, each argument narrowed to its allowed values (`enum`)."""
    by_name = {s["function"]["name"]: s for s in specs}
    out = []
    for action in choices.actions:
        spec = by_name.get(action.name)
        if spec is None:
            continue
        fn = dict(spec["function"])
        properties = {
            slot.name: {**fn["parameters"]["properties"].get(slot.name, {}), **_slot_schema(slot)}
            for slot in action.slots
        }
        fn["parameters"] = {**fn["parameters"], "properties": properties, "required": list(properties)}
        out.append({"type": "function", "function": fn})
    return out
