"""Wrappers that time the knowledge base and the model for /metrics without changing what they do."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from agent.chat_model import ChatMessage, ChatModel, ChatReply, ToolSpec
from agent.choices import Choices
from serve.breaker import BackendBreaker, note_turn_failure
from serve.metrics import Metrics
from specialist.errors import BackendUnavailable, KnowledgeBaseUnavailable, ModelUnavailable


class MeteredKnowledgeBase:
    """Delegates to a knowledge base and records each search's latency."""

    def __init__(self, kb: Any, metrics: Metrics, breaker: BackendBreaker) -> None:
        self._kb = kb
        self._metrics = metrics
        self._breaker = breaker

    @property
    def inner(self) -> Any:
        """The wrapped knowledge base."""
        return self._kb

    def search(self, query: str, k: int | None = None, filters: Any = None) -> Any:
        """Search, timed; a backend failure marks the knowledge base down."""
        start = time.perf_counter()
        try:
            result = self._kb.search(query, k=k, filters=filters)
        except BackendUnavailable as exc:
            self._failed(exc)
            raise
        except (ConnectionError, TimeoutError) as exc:
            error = KnowledgeBaseUnavailable(f"the knowledge base did not answer: {exc}")
            self._failed(error)
            raise error from exc
        finally:
            self._metrics.retrieval_seconds.observe(time.perf_counter() - start)
        self._breaker.succeeded("knowledge base")
        return result

    def _failed(self, error: BackendUnavailable) -> None:
        self._metrics.errors.labels("knowledge_base_unavailable").inc()
        self._breaker.failed("knowledge base", error)
        note_turn_failure(error)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kb, name)


class MeteredChatModel:
    """Delegates to a chat model and counts its latency and tokens."""

    def __init__(self, model: ChatModel, metrics: Metrics, breaker: BackendBreaker) -> None:
        self.inner = model
        self._metrics = metrics
        self._breaker = breaker

    @property
    def name(self) -> str:
        """The wrapped model's current name (it changes when a backend reloads in place)."""
        return str(self.inner.name)

    @name.setter
    def name(self, value: str) -> None:
        self.inner.name = value

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = (), choices: Choices | None = None
    ) -> ChatReply:
        """One model call, timed and counted; a backend failure marks the model down."""
        start = time.perf_counter()
        try:
            reply = self.inner.complete(messages, tools, choices)
        except BackendUnavailable as exc:
            self._failed(exc)
            raise
        except (ConnectionError, TimeoutError) as exc:
            error = ModelUnavailable(f"the model backend did not answer: {exc}")
            self._failed(error)
            raise error from exc
        finally:
            self._metrics.model_seconds.observe(time.perf_counter() - start)
        self._breaker.succeeded("model backend")
        self._metrics.tokens.labels("prompt").inc(reply.prompt_tokens)
        self._metrics.tokens.labels("completion").inc(reply.completion_tokens)
        return reply

    def _failed(self, error: BackendUnavailable) -> None:
        self._metrics.errors.labels("model_unavailable").inc()
        self._breaker.failed("model backend", error)
        note_turn_failure(error)

    def stream(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()) -> Iterator[str]:
        """Streamed text, counted per piece."""
        for piece in self.inner.stream(messages, tools):
            self._metrics.tokens.labels("streamed").inc()
            yield piece

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
