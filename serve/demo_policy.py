"""A deterministic behaviour policy for the `scripted` backend: measures the service, not a model."""

from __future__ import annotations

import json
import re
from typing import Any

from agent.chat_model import ChatMessage, ChatReply, ToolCall, ToolSpec

_HANDOFF = re.compile(r"\b(human|person|representative|real agent)\b", re.IGNORECASE)
_LABEL = re.compile(r"\[([^\[\]\n]{1,80})\]")


class DemoPolicy:
    """Search the policies for each customer message and answer from the top passage, with its citation.

    Asking for a human hands off. With `search=False` it replies without a tool call (the load
    benchmark's service-only mode).
    """

    def __init__(self, *, search: bool = True) -> None:
        self.search = search
        self._calls = 0

    def __call__(self, messages: list[ChatMessage], tools: list[ToolSpec]) -> ChatReply:
        """The next step for this conversation."""
        last = messages[-1] if messages else ChatMessage(role="user", content="")
        if last.role == "user":
            return self._on_user(last.content)
        if last.role == "tool":
            return self._on_tool(last)
        return ChatReply(text="How can I help you today?")

    def _call(self, name: str, arguments: dict[str, Any]) -> ChatReply:
        self._calls += 1
        return ChatReply(tool_calls=[ToolCall(name=name, arguments=arguments, id=f"call_{self._calls}")])

    def _on_user(self, text: str) -> ChatReply:
        if _HANDOFF.search(text):
            return self._call("transfer_to_human_agents", {"summary": text[:200]})
        if not self.search:
            return ChatReply(text="Thanks for your message. How else can I help?")
        return self._call("search_policies", {"query": text})

    def _on_tool(self, message: ChatMessage) -> ChatReply:
        if message.name == "transfer_to_human_agents":
            return ChatReply(text="I have passed your request to a human colleague.")
        label, passage = _top_passage(message.content)
        if label is None or not passage:
            return ChatReply(text="I don't have that information.")
        body = passage.rstrip(".!? ")
        return ChatReply(text=f"{body} [{label}].")


def _top_passage(content: str) -> tuple[str | None, str]:
    """The first passage's citation label and first sentence, from JSON or labelled-text tool output."""
    try:
        data = json.loads(content)
    except (json.JSONDecodeError, TypeError):
        data = None
    if isinstance(data, dict):
        data = data.get("passages") or data.get("results")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        first = data[0]
        label = first.get("id") or first.get("label") or (first.get("citation") or {}).get("doc_id")
        return (str(label) if label else None), _first_sentence(str(first.get("text", "")))
    match = _LABEL.search(content)
    if match is None:
        return None, ""
    line = content[match.end() :].split("\n", 1)[0]
    # "[1] Title § Section: text" -- the passage text follows the first ": ".
    _, sep, text = line.partition(": ")
    return match.group(1), _first_sentence(text if sep else line)


def _first_sentence(text: str) -> str:
    """The first real sentence (five words or more) of a passage, without list markers or markup."""
    text = re.sub(r"(^|\s)(\d+\.|[-*#>]+)\s+", " ", text)
    text = " ".join(text.replace("**", "").replace("`", "").split())
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if len(sentence.split()) >= 5:
            return sentence.strip()
    return text[:300].strip()
