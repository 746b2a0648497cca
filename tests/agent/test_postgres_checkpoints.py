"""Conversation checkpoints in a real Postgres server: a conversation survives a restart of the agent
with its history, its pending write and its refund waiting for approval."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.chat_model import ScriptedChatModel
from agent.store.database import RetailDatabase
from tests.agent.test_graph import (
    approve_cancellation_once,
    call,
    identify,
    message,
    say,
    tool_results,
    turn,
    user_with,
)


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    """A fresh database on the session's throwaway server, dropped after the test."""
    import psycopg

    name = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres_url.replace("/postgres?", f"/{name}?")
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def checkpoint_rows(url: str, conversation: str) -> int:
    """How many checkpoints Postgres holds for a conversation."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", [conversation]).fetchone()
    assert row is not None
    return int(row[0])


def test_conversation_and_pending_write_survive_a_restart(
    make_agent: Callable[..., Any], db: RetailDatabase, pg_url: str, tmp_path: Path
) -> None:
    _, user, order = user_with(db, "pending")
    oid = order["order_id"]
    model = ScriptedChatModel()
    agent = make_agent(model, postgres_url=pg_url)
    identify(agent, model, user)
    model._script[:0] = [
        call("get_order_details", order_id=oid),  # a write is possible only on an order looked up
        call("cancel_pending_order", order_id=oid, reason="no longer needed"),
    ]
    events = turn(agent, f"cancel {oid}, I no longer need it")
    assert oid in message(events) and "yes" in message(events)
    pending = agent.state("c1")["pending"]
    assert pending is not None
    agent.close()
    # The checkpoints went to Postgres, not to the SQLite default.
    assert checkpoint_rows(pg_url, "c1") > 0
    assert not (tmp_path / "checkpoints.sqlite").exists()
    assert db.get_order(oid)["status"] == "pending"

    # A new process: fresh agent, fresh model, same database.
    restarted = make_agent(ScriptedChatModel([say(f"Order {oid} is cancelled.")]), postgres_url=pg_url)
    assert [m["role"] for m in restarted.history("c1")] == ["user", "assistant", "user", "assistant"]
    assert restarted.state("c1")["pending"] == pending
    events = turn(restarted, "yes")
    assert [r["name"] for r in tool_results(events)] == ["cancel_pending_order"]
    assert db.get_order(oid)["status"] == "cancelled"
    assert db.action_count("cancel_pending_order") == 1
    assert len(restarted.history("c1")) == 6
    restarted.close()


def test_refund_waiting_for_approval_survives_a_restart(
    make_agent: Callable[..., Any], db: RetailDatabase, pg_url: str
) -> None:
    _, user, order = user_with(db, "pending")
    oid = order["order_id"]
    model = ScriptedChatModel()
    agent = make_agent(model, refund_approval_threshold=1.0, postgres_url=pg_url)
    identify(agent, model, user)
    model._script[:0] = [
        call("get_order_details", order_id=oid),  # a write is possible only on an order looked up
        call("cancel_pending_order", order_id=oid, reason="no longer needed"),
    ]
    turn(agent, f"cancel {oid}")
    events = turn(agent, "yes")
    assert [e.type for e in events if e.type == "approval_pending"] == ["approval_pending"]
    agent.close()

    restarted = make_agent(
        ScriptedChatModel([say(f"Your order {oid} is cancelled.")]),
        refund_approval_threshold=1.0,
        postgres_url=pg_url,
    )
    # The interrupt itself came back from Postgres: the conversation still waits for the engineer.
    assert "review" in message(turn(restarted, "any news?"))
    assert db.get_order(oid)["status"] == "pending"
    approve_cancellation_once(restarted, db, oid)
    restarted.close()
