"""The composition root: settings become the knowledge base, the model, the agent and the service's stores."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from agent.chat_model import ChatModel, ScriptedChatModel
from serve.auth import KeyStore
from serve.breaker import BackendBreaker
from serve.conversations import ConversationStore
from serve.demo_policy import DemoPolicy
from serve.feedback import FeedbackStore
from serve.metering import MeteredChatModel, MeteredKnowledgeBase
from serve.metrics import Metrics
from serve.rate_limit import RateLimiter
from serve.state import StateDB
from serve.turns import TurnGate
from specialist.errors import BackendUnavailable, KnowledgeBaseUnavailable, ModelUnavailable, SpecialistError

if TYPE_CHECKING:
    from serve.settings import Settings

log = logging.getLogger("specialist.serve")

# After a backend failed to open, wait this long before trying again (so a down backend is not
# hammered, yet the service recovers by itself within a second or two of it coming back).
_REOPEN_INTERVAL_S = 1.0


def build_chat_model(settings: Settings, *, registry: Any = None) -> ChatModel:
    """The behaviour model named by settings.model.backend: scripted, openai (vLLM) or local (in-process)."""
    backend = settings.model.backend
    if backend == "scripted":
        return ScriptedChatModel(policy=DemoPolicy())
    if backend == "scripted-nosearch":
        return ScriptedChatModel(policy=DemoPolicy(search=False))
    from agent.backends import build_backend

    model: ChatModel = build_backend(settings.model, registry=registry)
    return model


class Services:
    """Everything the routes use, built once per process from Settings; backends open lazily and reopen."""

    def __init__(self, settings: Settings, *, model: ChatModel | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.db = StateDB(settings.serve.state_path)
        self.keys = KeyStore(self.db)
        self.conversations = ConversationStore(self.db)
        self.feedback = FeedbackStore(self.db)
        self.rate_limiter = RateLimiter(
            per_minute=settings.serve.rate_limit_per_minute, burst=settings.serve.rate_limit_burst
        )
        self.write_lock = threading.Lock()  # one knowledge-base write at a time
        self.model_swap_lock = threading.Lock()  # one promote / roll back at a time
        self.turn_gate = TurnGate()
        self.breaker = BackendBreaker(retry_after_s=settings.serve.retry_after_s)
        self.executor = ThreadPoolExecutor(settings.serve.turn_workers, thread_name_prefix="turn")
        self._fixed_model = model
        self._lock = threading.RLock()
        self._kb: Any = None
        self._ingestor: Any = None
        self._agent: Any = None
        self._registry: Any = None
        self._model: MeteredChatModel | None = None
        self._failures: dict[str, tuple[float, BackendUnavailable]] = {}

    # -- backends ---------------------------------------------------------------------------------

    def _open(self, what: str, error: type[BackendUnavailable], factory: Callable[[], Any]) -> Any:
        """Build a backend client; after a failure, repeat that failure for a second instead of retrying."""
        failed = self._failures.get(what)
        if failed is not None and time.monotonic() - failed[0] < _REOPEN_INTERVAL_S:
            raise failed[1]
        try:
            client = factory()
        except BackendUnavailable as exc:
            self._failures[what] = (time.monotonic(), exc)
            raise
        except (OSError, ConnectionError, RuntimeError) as exc:
            wrapped = error(f"the {what} cannot be opened: {exc}")
            self._failures[what] = (time.monotonic(), wrapped)
            log.warning("%s failed to open: %s", what, exc)
            raise wrapped from exc
        self._failures.pop(what, None)
        return client

    def kb(self) -> Any:
        """The knowledge base (opened on first use; reopened after a failure)."""
        with self._lock:
            if self._kb is None:
                from retrieval import open_knowledge_base

                opened = self._open(
                    "knowledge base",
                    KnowledgeBaseUnavailable,
                    lambda: open_knowledge_base(self.settings.retrieval),
                )
                self._kb = MeteredKnowledgeBase(opened, self.metrics, self.breaker)
            return self._kb

    def ingestor(self) -> Any:
        """The ingestor writing into the service's own knowledge base."""
        with self._lock:
            if self._ingestor is None:
                from ingest import Ingestor

                self._ingestor = Ingestor(self.kb().inner, self.settings.ingest)
            return self._ingestor

    def registry(self) -> Any:
        """The model registry (runs, gate reports, the live record)."""
        with self._lock:
            if self._registry is None:
                from finetune.registry import ModelRegistry

                self._registry = ModelRegistry.from_settings(self.settings.finetune)
            return self._registry

    def model(self) -> MeteredChatModel:
        """The live behaviour model."""
        with self._lock:
            if self._model is None:
                raw = self._open("model backend", ModelUnavailable, self._build_model)
                self._model = MeteredChatModel(raw, self.metrics, self.breaker)
            return self._model

    def _build_model(self) -> ChatModel:
        return self._fixed_model or build_chat_model(self.settings, registry=self._registry_or_none())

    def _registry_or_none(self) -> Any:
        try:
            return self.registry()
        except ImportError:
            return None

    def agent(self) -> Any:
        """The support agent over the live model and the knowledge base."""
        with self._lock:
            if self._agent is None:
                from agent.runtime import build_agent

                self._agent = build_agent(
                    settings=self.settings.agent,
                    model=self.model(),
                    kb=self.kb(),
                    checkpointer=self._checkpointer(),
                )
                log.info("agent ready", extra={"model": self.model().name})
            return self._agent

    def _checkpointer(self) -> Any:
        """The agent's checkpointer; SQLite in WAL mode with synchronous=NORMAL.

        Each graph step commits a checkpoint: with the default rollback journal and a full sync per
        commit a turn spent ~40 ms in fsync here; WAL + NORMAL measured ~13 ms and stays crash-safe
        (a power cut may lose the last turn, never corrupt the file).
        """
        from agent.runtime import make_checkpointer

        saver = make_checkpointer(self.settings.agent)
        conn = getattr(saver, "conn", None)
        if isinstance(conn, sqlite3.Connection):
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        return saver

    def reload_model(self) -> str:
        """Serve the registry's live model from the next turn on (no restart).

        A backend that can reload in place (in-process weights, vLLM's runtime LoRA load) does so;
        otherwise a new model is built and handed to the agent.
        """
        with self._lock:
            current = self._model
        live = self.registry().live()
        # A promoted run reloads in place; the default or base model is rebuilt from settings (for vLLM
        # that addresses the model it was started with instead of a runtime-loaded adapter).
        if current is not None and self._fixed_model is None and live.kind == "run":
            reload = getattr(current.inner, "reload", None)
            if callable(reload):
                reload(live)
                log.info("model reloaded in place", extra={"model": current.name})
                return current.name
        metered = MeteredChatModel(self._build_model(), self.metrics, self.breaker)
        with self._lock:
            self._model = metered
            if self._agent is not None:
                self._agent.set_model(metered)
        log.info("model swapped", extra={"model": metered.name})
        return metered.name

    def erase_customer(self, customer_id: str) -> list[str]:
        """Delete a customer's conversations (records, ratings, flags, reviews, checkpoints); their ids.

        The account policy's deletion of account data: nothing of these conversations reaches a later export.
        """
        ids = [c.id for c in self.conversations.of_customer(customer_id)]
        if not ids:
            return []
        agent = self.agent()
        for conversation_id in ids:
            agent.forget(conversation_id)
        self.feedback.erase(ids)
        for conversation_id in ids:
            self.conversations.delete(conversation_id)
        return ids

    def documents_from_records(self, records: list[dict[str, Any]], *, source: str) -> list[Any]:
        """Validate JSON document records into the ingest room's documents (InvalidDocument names the id)."""
        from ingest.document import document_from_record
        from specialist.errors import InvalidDocument

        docs = []
        for record in records:
            try:
                docs.append(
                    document_from_record(
                        record, source=source, max_bytes=self.settings.ingest.max_document_bytes
                    )
                )
            except InvalidDocument as exc:
                raise InvalidDocument(f"document {record.get('id')!r}: {exc}") from exc
        return docs

    # -- readiness and shutdown -------------------------------------------------------------------

    def probe_model(self) -> None:
        """Raise ModelUnavailable unless the model backend answers now."""
        model = self.model()
        ping = getattr(model.inner, "ping", None)
        if callable(ping):
            ping()
            return
        if self._fixed_model is None and self.settings.model.backend == "openai":
            import httpx

            base = (self.settings.model.openai_base_url or "").rstrip("/")
            try:
                httpx.get(f"{base}/models", timeout=2.0).raise_for_status()
            except httpx.HTTPError as exc:
                raise ModelUnavailable(f"the model backend at {base} does not answer: {exc}") from exc

    def check_backends(self) -> None:
        """Before a turn: 503 at once while a backend is known down (probing it at most once a second)."""
        self.breaker.check({"knowledge base": lambda: self.kb().status(), "model backend": self.probe_model})

    def warm_up(self) -> None:
        """Open the backends at start-up; a backend that is down is logged and retried on later requests."""
        try:
            self.agent()
        except SpecialistError as exc:
            log.warning("starting without a backend (will retry): %s", exc)
        except Exception:  # the API, pages and health checks still serve; turns retry the build
            log.exception("the agent could not be built at start-up (will retry on the next turn)")

    def readiness(self) -> dict[str, Any]:
        """Whether the knowledge base and the model backend answer now."""
        checks: dict[str, Any] = {}
        try:
            status = self.kb().status()
            self.breaker.succeeded("knowledge base")
            checks["knowledge_base"] = {"ok": True, "status": jsonable(status)}
        except SpecialistError as exc:
            checks["knowledge_base"] = {"ok": False, "error": str(exc)}
        try:
            self.probe_model()
            self.breaker.succeeded("model backend")
            checks["model"] = {"ok": True, "name": self.model().name}
        except SpecialistError as exc:
            checks["model"] = {"ok": False, "error": str(exc)}
        return checks

    def close(self) -> None:
        """Release the backends (the embedded knowledge base is owned by one process at a time)."""
        with self._lock:
            closer = getattr(self._agent, "close", None)
            if callable(closer):
                closer()
            if self._kb is not None:
                self._kb.close()
            if self._model is not None and self._fixed_model is None:
                # a model this service built (the in-process engine's thread and weights); a model handed in
                # belongs to the caller. A model swapped out by `reload_model` is left to garbage collection,
                # since a turn in progress may still be using it.
                model_closer = getattr(self._model.inner, "close", None)
                if callable(model_closer):
                    model_closer()
            self._kb = self._ingestor = self._agent = self._model = None
        self.executor.shutdown(wait=True, cancel_futures=False)
        self.db.close()


def jsonable(value: Any) -> Any:
    """A JSON-ready form of a record: its to_dict(), a dataclass as a dict, paths as text."""
    from dataclasses import asdict, is_dataclass

    from fastapi.encoders import jsonable_encoder

    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        value = to_dict()
    elif is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    elif isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return jsonable_encoder(value)
