"""The OpenAI-compatible HTTP backend (vLLM in production; any /v1/chat/completions server works)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from agent import decoding
from agent.chat_model import ChatMessage, ChatReply, ToolCall, ToolSpec
from agent.choices import Choices
from agent.tool_format import parse_reply
from agent.tool_specs import TOOL_SPECS
from specialist.errors import BackendUnavailable, ModelUnavailable
from specialist.live_model import LiveModel


class OpenAIChatModel:
    """Chat completions over HTTP with full tool schemas; runtime LoRA loading through vLLM's endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        *,
        max_tokens: int = 256,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model
        self.name = f"openai:{model}"
        self.max_tokens = max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _post(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        try:
            resp = self._client.post(f"{self.base_url}{path}", json=payload)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"model server {self.base_url} unreachable: {exc}") from exc
        if resp.status_code >= 500:
            raise BackendUnavailable(f"model server error {resp.status_code}: {resp.text[:200]}")
        if resp.status_code >= 400:
            raise ModelUnavailable(f"model server refused {path} ({resp.status_code}): {resp.text[:200]}")
        return resp

    def _payload(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], stream: bool
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_openai() for m in messages],
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "stream": stream,
        }
        if tools:
            payload["tools"] = list(tools)
            payload["tool_choice"] = "auto"
        return payload

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = (), choices: Choices | None = None
    ) -> ChatReply:
        """One chat completion; tool calls come from the server's parser or from Hermes tags in the text.

        With `choices`, only the possible tools are offered, each argument narrowed to its allowed values
        (`enum`s), and `tool_choice` is "required" where no reply is possible: vLLM's guided decoding then
        keeps the call inside the schema. The graph checks the pairing of values (`Choices.admits`)."""
        payload = self._payload(messages, tools, stream=False)
        if choices is not None:
            narrowed = decoding.tool_specs(choices, tools or TOOL_SPECS)
            if narrowed:
                payload["tools"] = narrowed
                payload["tool_choice"] = "auto" if choices.reply else "required"
            else:
                payload.pop("tools", None)
                payload.pop("tool_choice", None)
        data = self._post("/chat/completions", payload).json()
        try:
            message = data["choices"][0]["message"]
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendUnavailable(f"malformed reply from model server: {str(data)[:200]}") from exc
        text = message.get("content") or ""
        calls = []
        for raw in message.get("tool_calls") or []:
            fn = raw.get("function", {})
            args = fn.get("arguments") or "{}"
            try:
                parsed = json.loads(args) if isinstance(args, str) else args
            except json.JSONDecodeError:
                parsed = {"_invalid": args}
            calls.append(ToolCall(name=fn.get("name", ""), arguments=parsed, id=raw.get("id", "")))
        if not calls and "<tool_call>" in text:
            hermes = parse_reply(text)
            text, calls = hermes.text, hermes.tool_calls
        usage = data.get("usage") or {}
        return ChatReply(
            text=text.strip(),
            tool_calls=calls,
            raw=message.get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )

    def stream(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()) -> Iterator[str]:
        """Yield text deltas from a streamed completion (server-sent events)."""
        payload = self._payload(messages, tools, stream=True)
        try:
            with self._client.stream("POST", f"{self.base_url}/chat/completions", json=payload) as resp:
                if resp.status_code >= 400:
                    raise ModelUnavailable(f"model server refused the stream ({resp.status_code})")
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    body = line[5:].strip()
                    if body == "[DONE]":
                        break
                    delta = (json.loads(body).get("choices") or [{}])[0].get("delta") or {}
                    if delta.get("content"):
                        yield delta["content"]
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"model server {self.base_url} unreachable: {exc}") from exc

    def load_lora_adapter(self, lora_name: str, lora_path: str) -> None:
        """Ask vLLM to load a LoRA adapter at runtime (`/v1/load_lora_adapter`).

        vLLM serves that endpoint when started with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora.
        """
        root = self.base_url[: -len("/v1")]
        try:
            resp = self._client.post(
                f"{root}/v1/load_lora_adapter", json={"lora_name": lora_name, "lora_path": lora_path}
            )
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"model server {root} unreachable: {exc}") from exc
        already = resp.status_code == 400 and "already" in resp.text.lower()
        if resp.status_code >= 400 and not already:
            raise ModelUnavailable(
                f"the server did not load adapter {lora_name} ({resp.status_code}): {resp.text[:200]}"
            )

    def reload(self, record: LiveModel) -> None:
        """Serve a newly promoted run: load its exported adapter into vLLM and address it by name."""
        path = record.export_dir or record.adapter_dir
        if not path:
            raise ModelUnavailable("the live record has no adapter to load")
        self.load_lora_adapter(record.name, path)
        self.model = record.name
        self.name = f"openai:{self.model}"
