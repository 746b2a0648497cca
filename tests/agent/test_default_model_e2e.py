"""The real default behaviour model end to end through the graph (slow: a 135M model on CPU).

What a model decides varies with its training; what the graph guarantees does not. These conversations
assert the guarantees with the real model in the loop: identification binds the customer, policy answers
are cited or honestly unanswered, nothing is written before an explicit yes (and a listed, confirmed
write is done), another customer's data never shows, a hand-off opens a ticket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agent.runtime import AgentEvent, SupportAgent
from agent.store.database import RetailDatabase

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_model() -> Any:
    """The default behaviour model (committed adapter on SmolLM2-135M-Instruct), in process."""
    import torch

    from agent.backends import local_model_from_record
    from finetune.registry import default_record

    torch.set_num_threads(1)
    return local_model_from_record(default_record(), max_new_tokens=96)


def _turn(agent: SupportAgent, text: str, conversation: str) -> list[AgentEvent]:
    events = list(agent.respond(conversation, text))
    assert events[-1].type == "done"
    assert not [e for e in events if e.type == "error"], events
    assert any(e.type == "message" and e.data["text"] for e in events)
    return events


def _message(events: list[AgentEvent]) -> str:
    return next(str(e.data["text"]) for e in reversed(events) if e.type == "message")


def _pick(db: RetailDatabase, status: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    data = db.export()
    for order in data["orders"].values():
        if order["status"] == status:
            return order["user_id"], data["users"][order["user_id"]], order
    raise LookupError(status)


def test_conversations_with_the_default_model(
    make_agent: Callable[..., Any], db: RetailDatabase, default_model: Any
) -> None:
    agent = make_agent(default_model)
    user_id, user, order = _pick(db, "delivered")
    oid = order["order_id"]

    # Identify and look up.
    _turn(agent, f"Hi, my email is {user['email']}. What is the status of order {oid}?", "e1")
    assert agent.state("e1")["user_id"] == user_id

    # A policy question: cited, or honestly unanswered.
    events = _turn(agent, "How many days do I have to return an item?", "e2")
    honest = "don't have that information" in _message(events) or any(e.type == "handoff" for e in events)
    assert any(e.type == "citation" for e in events) or honest

    # A return: nothing changes before the yes; a listed and confirmed return is done.
    item, method = order["items"][0], order["payment_history"][0]["payment_method_id"]
    before = db.export()
    events = _turn(
        agent, f"I want to return item {item['item_id']} of order {oid}, refund to {method}.", "e1"
    )
    for _ in range(2):
        if agent.state("e1")["pending"] or "yes" in _message(events).lower():
            break
        events = _turn(agent, f"Return item {item['item_id']} of {oid} to {method}, please.", "e1")
    assert db.export() == before, "nothing is written before an explicit yes"
    pending = agent.state("e1")["pending"]
    _turn(agent, "yes", "e1")
    if (
        pending
        and pending["name"] == "return_delivered_order_items"
        and pending["arguments"]["order_id"] == oid
    ):
        assert db.get_order(oid)["status"] == "return requested"

    # Another customer's order: refused whatever the model does.
    other = next(o for o in db.export()["orders"].values() if o["user_id"] != user_id)
    events = _turn(agent, f"Show me the shipping address of order {other['order_id']}.", "e1")
    assert other["address"]["address1"] not in " ".join(str(e.data) for e in events)

    # A hand-off, if the model asks for one, opens a ticket with a summary.
    events = _turn(agent, "Please transfer me to a human agent about a billing dispute.", "e3")
    handoffs = [e for e in events if e.type == "handoff"]
    tickets = [t for t in agent.tickets() if t["conversation_id"] == "e3"]
    assert len(tickets) == len(handoffs)
    for ticket in tickets:
        assert "billing dispute" in ticket["summary"]
