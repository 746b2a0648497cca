"""One live conversation under review: its steps as the PII scrub leaves them, and reviewers' corrections.

The transcript of a conversation is the project's training format: the system prompt at index 0, then the
agent's history (customer messages, tool calls, tool results, replies) in OpenAI chat form, so a step's index
is the same in the review, in the export and in the dataset. A reviewer sees every value through the
conversation's scrubber (`finetune.pii`); a corrected tool call may name a value as shown (`[USER_ID_1]`) or
as stored, and is checked against the tool's JSON schema and against what `agent.choices.derive` allowed at
that step, so a correction is always a step the agent could have taken.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from agent import choices
from agent.chat_model import ChatMessage, ToolCall
from agent.prompts import for_model_message, system_prompt
from agent.tools import check_arguments
from finetune.pii import ConversationScrubber
from specialist.errors import InvalidInput

_OPENAI_FIELDS = ("role", "content", "tool_calls", "tool_call_id", "name")
MAX_REPLY_CHARS = 4000


def transcript_messages(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The system prompt and the agent's history in OpenAI chat form, as the model saw it (citations and
    guard notes dropped, listings without the customer's labels: `agent.prompts.for_model`), so that a
    transcript trains the model on the text it is prompted with."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system_prompt()}]
    for message in history:
        clean = {k: message[k] for k in _OPENAI_FIELDS if k in message}
        if clean.get("content") is None:
            clean["content"] = ""
        out.append(for_model_message(clean))
    return out


def turn_of(messages: Sequence[Mapping[str, Any]], index: int) -> int:
    """The turn a message belongs to: how many customer messages came up to it (0 before the first)."""
    return sum(1 for m in messages[: index + 1] if m.get("role") == "user")


def reply_index(messages: Sequence[Mapping[str, Any]], turn: int) -> int | None:
    """The index of the reply a customer saw at the end of turn `turn` (1-based), if any."""
    found = None
    for i, message in enumerate(messages):
        current = turn_of(messages, i)
        if current > turn:
            break
        if current == turn and message.get("role") == "assistant" and message.get("content"):
            found = i
    return found


def step_action(message: Mapping[str, Any]) -> str:
    """The action of an assistant step: the tool it called, or `reply`."""
    calls = message.get("tool_calls") or []
    return str(calls[0]["function"]["name"]) if calls else "reply"


def scrubber_for(conversation_id: str, messages: Sequence[Mapping[str, Any]]) -> ConversationScrubber:
    """The conversation's scrubber, having seen every message (so each value has its placeholder)."""
    scrubber = ConversationScrubber(mode="placeholder", seed=conversation_id)
    scrubber.learn_names([dict(m) for m in messages])
    for message in messages:
        scrubber.message(dict(message))
    return scrubber


def _state(messages: Sequence[Mapping[str, Any]], index: int, user_id: str | None) -> choices.Choices:
    """What was possible before step `index` (the graph's history holds no system prompt)."""
    return choices.derive([dict(m) for m in messages[1:index]], user_id=user_id, guided=False)


def _slot_values(slot: choices.Slot) -> list[str]:
    values = list(slot.values)
    for table_values in slot.table.values():
        values += [v for v in table_values if v not in values]
    return values


def shown_choices(
    messages: Sequence[Mapping[str, Any]], index: int, *, user_id: str | None, scrubber: ConversationScrubber
) -> list[dict[str, Any]]:
    """The actions possible at a step, each argument's values as the scrub shows them; `reply` last."""
    possible = _state(messages, index, user_id)
    out: list[dict[str, Any]] = []
    for action in possible.actions:
        slots = [
            {
                "name": slot.name,
                "kind": slot.kind,
                "values": [scrubber.text(v) for v in _slot_values(slot)],
                "depends_on": slot.depends_on,
            }
            for slot in action.slots
        ]
        out.append({"name": action.name, "arguments": slots})
    if possible.reply:
        out.append({"name": "reply", "arguments": []})
    return out


def _unscrub(value: Any, known: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return known.get(value, value)
    if isinstance(value, list):
        return [_unscrub(v, known) for v in value]
    return value


def check_step(messages: Sequence[Mapping[str, Any]], index: int) -> None:
    """InvalidInput unless `index` is an assistant step of the transcript."""
    if not (0 <= index < len(messages)) or messages[index].get("role") != "assistant":
        steps = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        raise InvalidInput(
            f"message {index} is not an assistant step of this conversation; its steps are {steps}"
        )


def corrected_tool_call(
    messages: Sequence[Mapping[str, Any]],
    index: int,
    *,
    name: str,
    arguments: Any,
    user_id: str | None,
    scrubber: ConversationScrubber,
) -> dict[str, Any]:
    """A reviewer's tool call for step `index` as an assistant message, or InvalidInput saying why not."""
    check_step(messages, index)
    check_arguments(name, arguments)  # the tool exists and the arguments fit its JSON schema
    possible = _state(messages, index, user_id)
    action = possible.action(name)
    if action is None:
        allowed = ", ".join([*possible.names(), *(["reply"] if possible.reply else [])])
        raise InvalidInput(f"{name} was not possible at step {index}; the possible actions were: {allowed}")
    raw: dict[str, Any] = {}
    for slot in action.slots:
        known = {scrubber.text(v): v for v in _slot_values(slot)}
        raw[slot.name] = (
            arguments[slot.name] if slot.kind == "text" else _unscrub(arguments[slot.name], known)
        )
    for slot in action.slots:
        if not slot.admits(raw[slot.name], raw):
            shown = [scrubber.text(v) for v in slot.domain(raw)] if not slot.paired else []
            allowed = f" (allowed: {', '.join(shown[:12])})" if shown else ""
            raise InvalidInput(
                f"{name}: {slot.name} = {json.dumps(arguments[slot.name])} is not a value this conversation "
                f"allowed at step {index}{allowed}"
            )
    call = ToolCall(name=name, arguments=raw, id=f"review_{index}")
    return ChatMessage(role="assistant", tool_calls=[call]).to_openai()


def corrected_reply(messages: Sequence[Mapping[str, Any]], index: int, *, text: str) -> dict[str, Any]:
    """A reviewer's reply for step `index` as an assistant message."""
    check_step(messages, index)
    text = text.strip()
    if not text:
        raise InvalidInput("the corrected reply is empty")
    if len(text) > MAX_REPLY_CHARS:
        raise InvalidInput(f"the corrected reply is {len(text)} characters; the limit is {MAX_REPLY_CHARS}")
    return {"role": "assistant", "content": text}


def review_view(
    *,
    conversation: Mapping[str, Any],
    messages: Sequence[Mapping[str, Any]],
    flags: Sequence[Mapping[str, Any]],
    ratings: Sequence[Mapping[str, Any]],
    reviews: Sequence[Mapping[str, Any]],
    user_id: str | None,
) -> dict[str, Any]:
    """Everything the review page shows of one conversation, every value as the scrub leaves it."""
    scrubber = scrubber_for(str(conversation["id"]), messages)
    by_step = {int(r["step"]): r for r in reviews}
    steps = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        review = by_step.get(i)
        if review is not None and review.get("message"):
            review = {**review, "message": scrubber.message(dict(review["message"]))}
        steps.append(
            {
                "index": i,
                "turn": turn_of(messages, i),
                "action": step_action(message),
                "choices": shown_choices(messages, i, user_id=user_id, scrubber=scrubber),
                "review": review,
            }
        )
    return {
        "conversation": {
            k: conversation[k] for k in ("id", "created_at", "updated_at", "turns", "handed_off")
        },
        "messages": [scrubber.message(dict(m)) for m in messages],
        "steps": steps,
        "flags": list(flags),
        "ratings": [{**r, "comment": scrubber.text(str(r.get("comment", "")))} for r in ratings],
    }
