"""Runs an agent turn in a worker thread and hands its events to the event loop as they come."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from serve.breaker import start_turn
from serve.logs import conversation_id_var, request_id_var
from serve.metrics import Metrics
from specialist.errors import Conflict, SpecialistError

log = logging.getLogger("specialist.serve.turns")

_END = object()


@dataclass(frozen=True)
class TurnEvent:
    """An agent event in wire form."""

    type: str
    data: dict[str, Any]


def _wire(event: Any) -> TurnEvent:
    data = getattr(event, "data", None)
    return TurnEvent(type=str(getattr(event, "type", "message")), data=dict(data or {}))


class TurnGate:
    """At most one turn at a time per conversation (a second message while one streams is a 409)."""

    def __init__(self) -> None:
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def enter(self, conversation_id: str) -> None:
        """Claim the conversation or raise Conflict."""
        with self._lock:
            if conversation_id in self._busy:
                raise Conflict(
                    "a reply in this conversation is still streaming; send the next message after it"
                )
            self._busy.add(conversation_id)

    def leave(self, conversation_id: str) -> None:
        """Release the conversation."""
        with self._lock:
            self._busy.discard(conversation_id)


class Turn:
    """One running turn: `first()` waits for the first event (an error there is an HTTP error)."""

    def __init__(
        self,
        *,
        run: Callable[[], Iterator[Any]],
        executor: ThreadPoolExecutor,
        metrics: Metrics,
        conversation_id: str,
        on_finish: Callable[[list[TurnEvent]], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._metrics = metrics
        self._conversation_id = conversation_id
        self._on_finish = on_finish
        self._start = time.perf_counter()
        self._first: TurnEvent | None = None
        request_id = request_id_var.get()
        executor.submit(self._work, run, request_id)

    def _put(self, item: Any) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _work(self, run: Callable[[], Iterator[Any]], request_id: str | None) -> None:
        request_id_var.set(request_id)
        conversation_id_var.set(self._conversation_id)
        seen: list[TurnEvent] = []
        failures = start_turn()
        failed_before_output = False
        try:
            for raw in run():
                event = _wire(raw)
                seen.append(event)
                self._count(event)
                if failed_before_output:
                    continue  # the caller already got a 503; let the agent finish its bookkeeping
                # A backend failure before anything reached the customer becomes a 503 (Retry-After).
                if event.type == "error" and failures and all(e.type == "error" for e in seen):
                    failed_before_output = True
                    self._put(failures[-1])
                    continue
                self._put(event)
        except BaseException as exc:  # handed to the loop, which maps or reports it
            self._put(exc)
        finally:
            self._metrics.turn_seconds.observe(time.perf_counter() - self._start)
            try:
                self._on_finish(seen)
            except Exception:
                log.exception("recording the finished turn failed")
            self._put(_END)

    def _count(self, event: TurnEvent) -> None:
        m = self._metrics
        if event.type == "tool_start":
            m.tool_calls.labels(str(event.data.get("name") or event.data.get("tool") or "unknown")).inc()
        elif event.type == "handoff":
            m.handoffs.inc()
        elif event.type == "approval_pending":
            m.approvals_pending.inc()
        elif event.type == "error":
            m.errors.labels("turn").inc()
        removed = event.data.get("guard_removed") or event.data.get("removed")
        if event.type == "message" and removed:
            m.guard_removals.inc(len(removed) if isinstance(removed, list) else int(removed))

    async def first(self) -> TurnEvent | None:
        """The first event; raises the agent's error if the turn failed before producing one."""
        item = await self._queue.get()
        self._metrics.first_event_seconds.observe(time.perf_counter() - self._start)
        if item is _END:
            return None
        if isinstance(item, BaseException):
            await self._drain()
            self._metrics.errors.labels(type(item).__name__).inc()
            raise item
        self._first = item
        return item

    async def _drain(self) -> None:
        while (await self._queue.get()) is not _END:
            pass

    async def batches(self) -> AsyncIterator[list[TurnEvent]]:
        """The events after the first, all that are queued at once in one batch (one write per burst)."""
        done_seen = self._first is not None and self._first.type == "done"
        finished = False
        while not finished:
            items = [await self._queue.get()]
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            batch: list[TurnEvent] = []
            for item in items:
                if item is _END:
                    finished = True
                    break
                event = self._as_event(item)
                done_seen = done_seen or event.type == "done"
                batch.append(event)
            if finished and not done_seen:
                batch.append(TurnEvent("done", {}))
            if batch:
                yield batch

    async def events(self) -> AsyncIterator[TurnEvent]:
        """Every event after the first, one at a time."""
        async for batch in self.batches():
            for event in batch:
                yield event

    def _as_event(self, item: Any) -> TurnEvent:
        if isinstance(item, TurnEvent):
            return item
        if isinstance(item, SpecialistError):
            self._metrics.errors.labels(type(item).__name__).inc()
            return TurnEvent("error", {"message": str(item), "type": type(item).__name__})
        log.error("turn failed mid-stream", exc_info=item)
        self._metrics.errors.labels("internal").inc()
        return TurnEvent("error", {"message": "internal error; quote the request id when reporting it"})
