"""The one narrow model interface: messages + tool specs in, a reply (text and/or tool calls) out."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agent.choices import Choices

Role = Literal["system", "user", "assistant", "tool"]
ToolSpec = dict[str, Any]  # OpenAI function-tool schema: {"type": "function", "function": {...}}


@dataclass(frozen=True)
class ToolCall:
    """One tool call proposed by the model."""

    name: str
    arguments: dict[str, Any]
    id: str = ""

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI chat-format dict of this call."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }


@dataclass
class ChatMessage:
    """One message of a conversation, OpenAI chat format."""

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI chat-format dict of this message."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out

    @classmethod
    def from_openai(cls, data: dict[str, Any]) -> ChatMessage:
        """Parse an OpenAI chat-format dict (arguments may be a JSON string or an object)."""
        calls = []
        for raw in data.get("tool_calls") or []:
            fn = raw.get("function", raw)
            args = fn.get("arguments", {})
            if isinstance(args, str):
                args = json.loads(args) if args.strip() else {}
            calls.append(ToolCall(name=fn["name"], arguments=args, id=raw.get("id", "")))
        return cls(
            role=data["role"],
            content=data.get("content") or "",
            tool_calls=calls,
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
        )


@dataclass
class ChatReply:
    """What the model answered: text, tool calls, or both (the agent allows one at a time)."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    raw: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


@runtime_checkable
class ChatModel(Protocol):
    """Every backend (in-process, OpenAI-compatible HTTP, scripted) implements this."""

    name: str

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = (), choices: Choices | None = None
    ) -> ChatReply:
        """Answer the conversation so far with a reply or tool calls (within `choices` when given: the
        actions possible now, `agent.choices`)."""
        ...

    def stream(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()) -> Iterator[str]:
        """Yield the reply's text in pieces (tool calls are not streamed)."""
        ...


class ScriptedChatModel:
    """A fake for agent tests: returns scripted replies in order, or from a function of the messages."""

    name = "scripted"

    def __init__(self, script: Sequence[ChatReply] | None = None, *, policy: Any = None) -> None:
        self._script = list(script or [])
        self._policy = policy
        self.calls: list[list[ChatMessage]] = []
        self.choices: list[Choices | None] = []

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = (), choices: Choices | None = None
    ) -> ChatReply:
        """Return the next scripted reply (or the policy's answer); `choices` are recorded, not obeyed (the
        graph checks every call against them, which is what agent tests exercise)."""
        self.calls.append(list(messages))
        self.choices.append(choices)
        if self._policy is not None:
            reply: ChatReply = self._policy(list(messages), list(tools))
            return reply
        if not self._script:
            return ChatReply(text="I don't have that information.")
        return self._script.pop(0)

    def stream(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()) -> Iterator[str]:
        """Stream the next scripted reply's text word by word."""
        reply = self.complete(messages, tools)
        for i, word in enumerate(reply.text.split(" ")):
            yield word if i == 0 else " " + word
