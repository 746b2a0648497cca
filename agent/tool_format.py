"""Hermes-style tool-call rendering and parsing, shared by training and the in-process backends.

The assistant writes a tool call as `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (the
format vLLM's `hermes` tool parser reads). For the small in-process model the prompt is kept short:
tools are listed one line each with their argument names, tool results are compacted, and old history
is dropped first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.chat_model import ChatMessage, ToolCall, ToolSpec

TOOL_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
TOOL_RESULT_CHARS = 800
HISTORY_CHARS = 3000
# Old history is dropped a page at a time, so the prompt's start stays put while a conversation grows by
# less than a page, and the in-process engine reuses its KV cache instead of re-reading the whole prompt.
# A store record is up to 800 characters, so a 600-character page moved the cut on almost every call of a
# long conversation; with 1000 the benchmark's calls re-read 23% fewer prompt tokens (README).
HISTORY_PAGE_CHARS = 1000
_DROP_KEYS = frozenset({"fulfillments", "tracking_id", "transaction_type", "source", "brand"})


@dataclass
class ParsedReply:
    """What a raw completion says: text, tool calls, and whether every call block parsed."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    valid: bool = True
    errors: list[str] = field(default_factory=list)


def render_tool_call(call: ToolCall) -> str:
    """One Hermes tool-call block."""
    body = json.dumps({"name": call.name, "arguments": call.arguments}, separators=(", ", ": "))
    return f"<tool_call>{body}</tool_call>"


def render_assistant(message: ChatMessage) -> str:
    """The text an assistant message is trained to produce (tool calls after any text)."""
    parts = [message.content.strip()] if message.content.strip() else []
    parts.extend(render_tool_call(c) for c in message.tool_calls)
    return "\n".join(parts)


def parse_reply(raw: str) -> ParsedReply:
    """Split a completion into text and tool calls; malformed call blocks are reported, not raised."""
    out = ParsedReply()
    text = raw.replace("<|im_end|>", "").strip()
    for match in TOOL_CALL_RE.finditer(text):
        body = match.group(1).strip()
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            out.valid = False
            out.errors.append(f"tool call is not JSON: {exc.msg}")
            continue
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            out.valid = False
            out.errors.append("tool call has no name")
            continue
        args = data.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                args = None
        if not isinstance(args, dict):
            out.valid = False
            out.errors.append("tool call arguments are not an object")
            continue
        out.tool_calls.append(ToolCall(name=data["name"], arguments=args, id=f"call_{len(out.tool_calls)}"))
    out.text = TOOL_CALL_RE.sub("", text).strip()
    return out


def compact_tools(tools: Sequence[ToolSpec], *, with_arguments: bool = False) -> str:
    """The tool list in short form: names on one line (or `name(arg1, arg2)` per line)."""
    names = []
    for spec in tools:
        fn = spec.get("function", spec)
        args = ", ".join(fn.get("parameters", {}).get("properties", {}))
        names.append(f"{fn['name']}({args})" if with_arguments else str(fn["name"]))
    return "\n".join(names) if with_arguments else ", ".join(names)


def system_text(system_prompt: str, tools: Sequence[ToolSpec]) -> str:
    """The system message of the in-process model: the agent's prompt plus the compact tool list."""
    if not tools:
        return system_prompt
    return (
        f"{system_prompt}\nTools: {compact_tools(tools)}\n"
        'Call one as <tool_call>{"name": ..., "arguments": {...}}</tool_call>'
    )


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _DROP_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _options(options: dict[str, Any]) -> str:
    return "/".join(str(v) for v in options.values())


def _compact_record(data: Any) -> Any:
    """Shorter shapes of the store's records (orders, users, products); other JSON is kept as is."""
    if not isinstance(data, dict):
        return data
    if "order_id" in data and isinstance(data.get("items"), list):
        out = {k: data[k] for k in ("order_id", "status") if k in data}
        out["items"] = [
            {
                "name": i.get("name"),
                "product_id": i.get("product_id"),
                "item_id": i.get("item_id"),
                "price": i.get("price"),
                "options": _options(i.get("options") or {}),
            }
            for i in data["items"]
            if isinstance(i, dict)
        ]
        payments = [
            p.get("payment_method_id") for p in data.get("payment_history") or [] if isinstance(p, dict)
        ]
        if payments:
            out["paid_with"] = payments[0]
        return out
    if isinstance(data.get("payment_methods"), dict):
        data = {**data, "payment_methods": list(data["payment_methods"])}
    if isinstance(data.get("variants"), dict):
        # Only the variants that can be ordered: an exchange or item change must pick one of them, and a
        # product's full list ran past the 800-character cut for 24% of the new items the retail task specs
        # pick (7% with only available variants listed). A variant not listed is not available.
        data = {
            **data,
            "variants": [
                {
                    "item_id": v.get("item_id"),
                    "options": _options(v.get("options") or {}),
                    "available": v.get("available"),
                }
                for v in data["variants"].values()
                if isinstance(v, dict) and v.get("available", True)
            ],
        }
    return data


def compact_tool_result(content: str, limit: int = TOOL_RESULT_CHARS) -> str:
    """A tool result as compact JSON without bookkeeping fields, cut to `limit` characters."""
    text = content.strip()
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        data = None
    if isinstance(data, dict | list):
        text = json.dumps(_strip(_compact_record(data)), separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def chat_messages(
    messages: Sequence[ChatMessage],
    tools: Sequence[ToolSpec],
    *,
    system_prompt: str | None = None,
    history_chars: int = HISTORY_CHARS,
    page_chars: int | None = None,
) -> list[dict[str, str]]:
    """Plain role/content dicts for the base model's chat template, newest history kept first.

    With `page_chars`, history over `history_chars` is dropped from the front in whole pages: the cut is
    the first message boundary at or past the smallest multiple of `page_chars` that brings the rest under
    `history_chars`. It moves only when the conversation grows into the next page, so consecutive prompts
    of a conversation share their start.
    """
    body = [m for m in messages if m.role != "system"]
    if system_prompt is None:
        system_prompt = next((m.content for m in messages if m.role == "system"), "")
    rendered: list[dict[str, str]] = []
    for message in body:
        if message.role == "assistant":
            content = render_assistant(message)
        elif message.role == "tool":
            content = compact_tool_result(message.content)
        else:
            content = message.content.strip()
        rendered.append({"role": message.role, "content": content})
    page = HISTORY_PAGE_CHARS if page_chars is None else page_chars
    kept = _paged(rendered, history_chars, page) if page > 0 else _newest(rendered, history_chars)
    while len(kept) > 1 and kept[0]["role"] == "tool":
        kept.pop(0)
    return [{"role": "system", "content": system_text(system_prompt, tools)}, *_pin_request(rendered, kept)]


def _pin_request(rendered: list[dict[str, str]], kept: list[dict[str, str]]) -> list[dict[str, str]]:
    """The kept history, led by the customer's request when the cut dropped it: every later step (the
    lookups, the proposals) depends on what was asked. The request is the last customer message that is
    not a plain yes."""
    from agent.confirmation import is_explicit_yes

    dropped = rendered[: len(rendered) - len(kept)]
    if any(m["role"] == "user" and not is_explicit_yes(m["content"]) for m in kept):
        return kept
    request = next(
        (m for m in reversed(dropped) if m["role"] == "user" and not is_explicit_yes(m["content"])), None
    )
    return [request, *kept] if request is not None else kept


def _newest(rendered: list[dict[str, str]], limit: int) -> list[dict[str, str]]:
    """The newest messages that fit in `limit` characters (always at least one)."""
    kept: list[dict[str, str]] = []
    used = 0
    for item in reversed(rendered):
        if kept and used + len(item["content"]) > limit:
            break
        kept.append(item)
        used += len(item["content"])
    kept.reverse()
    return kept


def _paged(rendered: list[dict[str, str]], limit: int, page: int) -> list[dict[str, str]]:
    """The messages after a cut that moves a page at a time (see `chat_messages`)."""
    excess = sum(len(m["content"]) for m in rendered) - limit
    if excess <= 0:
        return list(rendered)
    target = -(-excess // page) * page
    dropped = cut = 0
    while cut < len(rendered) - 1 and dropped < target:
        dropped += len(rendered[cut]["content"])
        cut += 1
    return rendered[cut:]


END_OF_TURN = "<|im_end|>"


def prompt_text(
    tokenizer: Any,
    messages: Sequence[ChatMessage],
    tools: Sequence[ToolSpec],
    *,
    system_prompt: str | None = None,
    history_chars: int = HISTORY_CHARS,
    page_chars: int | None = None,
) -> str:
    """The in-process model's prompt: compact system + tools + recent history, up to the assistant turn."""
    chat = chat_messages(
        messages, tools, system_prompt=system_prompt, history_chars=history_chars, page_chars=page_chars
    )
    return str(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))


def completion_text(message: ChatMessage) -> str:
    """What the model is trained to write for one assistant step, end-of-turn included."""
    return render_assistant(message) + END_OF_TURN


def chatml(chat: Sequence[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
    """SmolLM2's chat template (plain ChatML) without a tokenizer, for backends that take raw prompts."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in chat)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")
