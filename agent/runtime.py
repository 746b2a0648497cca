"""The agent's public API for the service: build it once, then `respond` per customer message."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent import prompts
from agent.answers import PolicyAnswerer, answerer_from_kb
from agent.chat_model import ChatModel
from agent.settings import AgentSettings
from agent.store.database import AgentRecords, RetailDatabase
from agent.systems.billing import Billing, SqliteBilling
from agent.systems.crm import CRM, SqliteCRM
from agent.tools import KnowledgeBaseLike, Session
from specialist.errors import BackendUnavailable, Conflict, InvalidInput

log = logging.getLogger(__name__)

EventType = Literal[
    "token", "tool_start", "tool_end", "citation", "handoff", "approval_pending", "message", "error", "done"
]


@dataclass
class AgentEvent:
    """One thing that happened while the agent answered: a token, a tool call, a citation, the message..."""

    type: EventType
    data: dict[str, Any] = field(default_factory=dict)


def make_checkpointer(settings: AgentSettings) -> Any:
    """The SQLite saver (default) or the Postgres saver when `postgres_url` is set."""
    if settings.postgres_url:
        try:
            import psycopg
            from langgraph.checkpoint.postgres import PostgresSaver
            from psycopg.rows import dict_row
        except ImportError as exc:
            raise BackendUnavailable("Postgres checkpoints need `pip install .[postgres]`.") from exc
        try:
            conn = psycopg.connect(
                settings.postgres_url, autocommit=True, prepare_threshold=0, row_factory=dict_row
            )
        except psycopg.Error as exc:
            raise BackendUnavailable(
                "Postgres for conversation checkpoints is unreachable; check SPECIALIST_AGENT__POSTGRES_URL."
            ) from exc
        postgres = PostgresSaver(conn)
        try:
            postgres.setup()  # creates the tables and runs the saver's migrations; idempotent
        except psycopg.Error as exc:
            conn.close()
            raise BackendUnavailable("Postgres checkpoint tables could not be set up.") from exc
        return postgres
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(settings.checkpoint_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    saver = SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))
    saver.setup()
    return saver


class SupportAgent:
    """The support agent: one LangGraph graph, one checkpointer, the CRM and billing systems and the KB."""

    def __init__(
        self,
        *,
        settings: AgentSettings,
        model: ChatModel,
        kb: KnowledgeBaseLike | None,
        store: RetailDatabase,
        crm: CRM,
        billing: Billing,
        checkpointer: Any,
        phrasing_model: ChatModel | None = None,
        owns_store: bool = False,
    ) -> None:
        from agent.graph import build_graph

        self._owns_store = owns_store
        self.settings = settings
        self.store = store
        self.records = AgentRecords(store)
        self._model = model
        self._phrasing = phrasing_model
        self._kb = kb
        self._answerer: PolicyAnswerer | None = None
        self._crm = crm
        self._billing = billing
        self._checkpointer = checkpointer
        self._graph: Any = build_graph().compile(checkpointer=checkpointer)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @property
    def model(self) -> ChatModel:
        """The behaviour model that answers the next turn."""
        return self._model

    def set_model(self, model: ChatModel) -> None:
        """Swap the behaviour model; the next turn uses it."""
        self._model = model

    @property
    def answerer(self) -> PolicyAnswerer | None:
        """Policy answers quoted from the passages, over the KB's embedder (built on first use, else None)."""
        if self._answerer is None and self._kb is not None:
            self._answerer = answerer_from_kb(self._kb, self.settings.policy_answer_threshold)
        return self._answerer

    def _lock(self, conversation_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(conversation_id, threading.Lock())

    def _context(self, conversation_id: str) -> Any:
        from agent.graph import AgentContext

        return AgentContext(
            conversation_id=conversation_id,
            model=self._model,
            crm=self._crm,
            billing=self._billing,
            kb=self._kb,
            records=self.records,
            settings=self.settings,
            phrasing_model=self._phrasing,
            answerer=self.answerer,
        )

    @staticmethod
    def _config(conversation_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": conversation_id}}

    def _run(self, conversation_id: str, graph_input: Any) -> Iterator[AgentEvent]:
        try:
            for mode, chunk in self._graph.stream(
                graph_input,
                self._config(conversation_id),
                context=self._context(conversation_id),
                stream_mode=["custom", "updates"],
            ):
                if mode == "custom":
                    yield AgentEvent(chunk["type"], dict(chunk["data"]))
                elif isinstance(chunk, dict) and "__interrupt__" in chunk:
                    for pause in chunk["__interrupt__"]:
                        value = dict(pause.value)
                        yield AgentEvent("approval_pending", value)
                        text = prompts.AWAITING_APPROVAL.format(amount=f"${value['amount']:.2f}")
                        yield AgentEvent("message", {"text": text, "citations": []})
        except Exception as exc:  # the conversation must survive any failure; its checkpoint is intact
            log.exception("turn failed", extra={"conversation_id": conversation_id})
            yield AgentEvent(
                "error", {"message": f"{type(exc).__name__}: the agent could not finish this turn."}
            )
            yield AgentEvent("message", {"text": prompts.TOOL_FAILED, "citations": []})

    def respond(
        self, conversation_id: str, text: str, *, customer_id: str | None = None
    ) -> Iterator[AgentEvent]:
        """Answer one customer message; `customer_id` binds the conversation to a token-authenticated user."""
        if not conversation_id or len(conversation_id) > 200:
            yield AgentEvent("error", {"message": "A conversation id of 1 to 200 characters is required."})
            yield AgentEvent("done", {})
            return
        with self._lock(conversation_id):
            snapshot = self._graph.get_state(self._config(conversation_id))
            values = snapshot.values or {}
            session = Session(user_id=values.get("user_id"), token_user_id=values.get("token_user_id"))
            if not session.admits(customer_id):
                yield AgentEvent("error", {"message": "This conversation belongs to another customer."})
                yield AgentEvent("done", {})
                return
            if snapshot.interrupts:
                pending = dict(snapshot.interrupts[0].value)
                message = prompts.AWAITING_APPROVAL.format(amount=f"${pending['amount']:.2f}")
                yield AgentEvent("approval_pending", pending)
                yield AgentEvent("message", {"text": message, "citations": []})
                yield AgentEvent("done", {})
                return
            graph_input: dict[str, Any] = {"incoming": text if isinstance(text, str) else ""}
            if customer_id is not None:
                graph_input["token_user_id"] = customer_id
            yield from self._run(conversation_id, graph_input)
            yield AgentEvent("done", {})

    def history(self, conversation_id: str, *, include_tools: bool = False) -> list[dict[str, Any]]:
        """The conversation so far: customer and agent messages (and tool calls/results if asked)."""
        snapshot = self._graph.get_state(self._config(conversation_id))
        out: list[dict[str, Any]] = []
        for message in (snapshot.values or {}).get("messages", []):
            visible = message["role"] == "user" or (message["role"] == "assistant" and message.get("content"))
            if visible or include_tools:
                out.append(dict(message))
        return out

    def state(self, conversation_id: str) -> dict[str, Any]:
        """Who the conversation belongs to, whether it was handed off, and what waits for a yes."""
        values = self._graph.get_state(self._config(conversation_id)).values or {}
        return {k: values.get(k) for k in ("user_id", "ticket_id", "pending")}

    def pending_approvals(self) -> list[dict[str, Any]]:
        """Refunds waiting for an engineer's decision."""
        return self.records.approvals("pending")

    def decide_approval(self, approval_id: str, *, approved: bool, reviewer: str) -> list[AgentEvent]:
        """Approve or reject a paused refund and resume its conversation."""
        from langgraph.types import Command

        if not reviewer.strip():
            raise InvalidInput("A reviewer name is required.")
        record = self.records.approval(approval_id)
        if record["status"] != "pending":
            raise Conflict(f"Approval {approval_id} was already {record['status']}.")
        conversation_id = record["conversation_id"]
        with self._lock(conversation_id):
            snapshot = self._graph.get_state(self._config(conversation_id))
            if not snapshot.interrupts:
                raise Conflict(f"The conversation of approval {approval_id} is not waiting for it.")
            self.records.decide_approval(approval_id, approved=approved, reviewer=reviewer)
            resume: Any = Command(resume={"approved": approved, "reviewer": reviewer})
            events = list(self._run(conversation_id, resume))
        return [*events, AgentEvent("done", {})]

    def tickets(self) -> list[dict[str, Any]]:
        """Hand-off tickets, oldest first."""
        return self.records.tickets()

    def forget(self, conversation_id: str) -> None:
        """Delete a conversation's checkpoints (its customer's account data was deleted)."""
        with self._lock(conversation_id):
            self._checkpointer.delete_thread(conversation_id)

    def close(self) -> None:
        """Close the checkpointer's connection (and the store if the agent opened it)."""
        conn = getattr(self._checkpointer, "conn", None)
        if conn is not None:
            conn.close()
        if self._owns_store:
            self.store.close()


def build_agent(
    *,
    settings: AgentSettings,
    model: ChatModel,
    kb: KnowledgeBaseLike | None,
    store: RetailDatabase | None = None,
    crm: CRM | None = None,
    billing: Billing | None = None,
    phrasing_model: ChatModel | None = None,
    checkpointer: Any = None,
) -> SupportAgent:
    """Compose the support agent (SQLite store and systems unless other CRM/billing adapters are given)."""
    db = store if store is not None else RetailDatabase(settings.store_path)
    return SupportAgent(
        settings=settings,
        model=model,
        kb=kb,
        store=db,
        crm=crm if crm is not None else SqliteCRM(db),
        billing=billing if billing is not None else SqliteBilling(db),
        checkpointer=checkpointer if checkpointer is not None else make_checkpointer(settings),
        phrasing_model=phrasing_model,
        owns_store=store is None,
    )
