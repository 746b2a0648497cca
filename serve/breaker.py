"""Backend health: a backend that failed answers 503 with Retry-After until a probe finds it back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from specialist.errors import BackendUnavailable

# How often a request may probe a backend that is down (others get 503 at once meanwhile).
PROBE_INTERVAL_S = 1.0

# Per turn, a list the metering wrappers append backend failures to. A ContextVar (not a thread-local):
# the agent's graph runs its nodes on its own executor threads, which copy the caller's context.
_turn_failures: ContextVar[list[BackendUnavailable] | None] = ContextVar("turn_failures", default=None)


def start_turn() -> list[BackendUnavailable]:
    """Begin collecting the backend failures of the turn running in this context."""
    failures: list[BackendUnavailable] = []
    _turn_failures.set(failures)
    return failures


def note_turn_failure(exc: BackendUnavailable) -> None:
    """Remember, for the turn running in this context, that a backend failed."""
    failures = _turn_failures.get()
    if failures is not None:
        failures.append(exc)


@dataclass
class _Down:
    error: BackendUnavailable
    since: float
    probed_at: float


class BackendBreaker:
    """Tracks which backends (knowledge base, model) are down and probes them back to health."""

    def __init__(self, *, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        self._down: dict[str, _Down] = {}
        self._lock = threading.Lock()

    def failed(self, name: str, error: BackendUnavailable) -> None:
        """Mark a backend down after a failure."""
        error.retry_after_s = self.retry_after_s
        now = time.monotonic()
        with self._lock:
            current = self._down.get(name)
            self._down[name] = _Down(error, current.since if current else now, now)

    def succeeded(self, name: str) -> None:
        """Mark a backend up after a success."""
        if name in self._down:
            with self._lock:
                self._down.pop(name, None)

    def down(self) -> dict[str, str]:
        """Backends that are down now, with their errors."""
        with self._lock:
            return {name: str(d.error) for name, d in self._down.items()}

    def check(self, probes: dict[str, Callable[[], None]]) -> None:
        """Raise the backend's error if one is down; at most once a second, probe it first."""
        for name, probe in probes.items():
            with self._lock:
                state = self._down.get(name)
                if state is None:
                    continue
                due = time.monotonic() - state.probed_at >= PROBE_INTERVAL_S
                if due:
                    state.probed_at = time.monotonic()
            if not due:
                raise state.error
            try:
                probe()
            except BackendUnavailable as exc:
                self.failed(name, exc)
                raise exc from None
            except Exception as exc:  # a probe that fails in any way means still down
                self.failed(name, type(state.error)(f"{state.error} ({type(exc).__name__})"))
                raise self._down[name].error from exc
            self.succeeded(name)
