"""Prometheus metrics of one service instance (its own registry, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Latency of requests, turns and retrieval; tokens, tool calls, hand-offs, guard removals, errors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "specialist_request_seconds",
            "HTTP request latency (to the response head for streams)",
            ["method", "route", "status"],
            buckets=_FAST,
            registry=r,
        )
        self.turn_seconds = Histogram(
            "specialist_turn_seconds", "One agent turn, message in to done", buckets=_SLOW, registry=r
        )
        self.first_event_seconds = Histogram(
            "specialist_turn_first_event_seconds",
            "Message in to first streamed event",
            buckets=_SLOW,
            registry=r,
        )
        self.tokens = Counter("specialist_tokens", "Model tokens", ["kind"], registry=r)
        self.tool_calls = Counter("specialist_tool_calls", "Tool calls by tool name", ["tool"], registry=r)
        self.retrieval_seconds = Histogram(
            "specialist_retrieval_seconds", "Knowledge-base search latency", buckets=_FAST, registry=r
        )
        self.model_seconds = Histogram(
            "specialist_model_seconds", "Behaviour model call latency", buckets=_SLOW, registry=r
        )
        self.handoffs = Counter("specialist_handoffs", "Conversations handed to a human", registry=r)
        self.guard_removals = Counter(
            "specialist_guard_removals",
            "Unsupported statements removed by the groundedness guard",
            registry=r,
        )
        self.approvals_pending = Counter(
            "specialist_approvals_pending", "Refunds paused for human approval", registry=r
        )
        self.errors = Counter("specialist_errors", "Errors by kind", ["kind"], registry=r)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
