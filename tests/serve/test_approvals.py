"""Engineers decide refunds the agent paused for approval; the customer's conversation resumes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.chat_model import ChatMessage, ChatReply, ScriptedChatModel, ToolCall
from agent.store.database import RetailDatabase
from tests.serve.conftest import Service, ingest_demo, make_settings, seed_store, start_service
from tests.serve.sse import send


def _delivered_orders(settings: Any) -> list[dict[str, Any]]:
    """Two delivered orders of one customer (from the seeded store)."""
    db = RetailDatabase(settings.agent.store_path)
    rows = db.query("SELECT user_id, data FROM orders WHERE status = 'delivered' ORDER BY order_id")
    db.close()
    by_user: dict[str, list[dict[str, Any]]] = {}
    for user_id, data in rows:
        by_user.setdefault(user_id, []).append(json.loads(data))
    orders = next(o for o in by_user.values() if len(o) >= 2)
    return orders[:2]


class ReturnPolicy:
    """The scripted behaviour model: 'return <order id>' proposes returning all of that order's items."""

    def __init__(self, orders: list[dict[str, Any]]) -> None:
        self.orders = {o["order_id"]: o for o in orders}

    def __call__(self, messages: list[ChatMessage], tools: list[Any]) -> ChatReply:
        # The customer's latest message (the graph may have looked its order up already).
        turn_start = max(i for i, m in enumerate(messages) if m.role == "user")
        last = messages[turn_start]
        proposed = [
            m for m in messages[turn_start:] if m.tool_calls and m.tool_calls[0].name != "get_order_details"
        ]
        looked_up = any(
            m.tool_calls and m.tool_calls[0].name == "get_order_details" for m in messages[turn_start:]
        )
        if not proposed:
            for order_id, order in self.orders.items():
                if order_id in last.content:
                    if not looked_up:  # a write is possible only on an order looked up
                        call = ToolCall("get_order_details", {"order_id": order_id}, id="call_o")
                        return ChatReply(tool_calls=[call])
                    args = {
                        "order_id": order_id,
                        "item_ids": [i["item_id"] for i in order["items"]],
                        "payment_method_id": order["payment_history"][0]["payment_method_id"],
                    }
                    return ChatReply(tool_calls=[ToolCall("return_delivered_order_items", args, id="call_r")])
        return ChatReply(text="Your return is being processed.")


@pytest.fixture()
def refunds(tmp_path: Path) -> Iterator[tuple[Service, list[dict[str, Any]]]]:
    settings = make_settings(tmp_path, agent={"refund_approval_threshold": 0.0})
    seed_store(settings)
    ingest_demo(settings)
    orders = _delivered_orders(settings)
    owner = orders[0]["user_id"]
    model = ScriptedChatModel(policy=ReturnPolicy(orders))
    yield from ((s, orders) for s in start_service(settings, [owner, "someone_else_1"], model=model))


def test_refund_waits_for_an_engineer_then_resumes(refunds: tuple[Service, list[dict[str, Any]]]) -> None:
    service, orders = refunds
    alice, eng = service.auth("alice"), service.auth("engineer")
    decisions = []
    for order, approved in zip(orders, (True, False), strict=True):
        conversation = service.client.post("/api/conversations", headers=alice).json()["id"]
        listing = send(service.client, conversation, f"I want to return {order['order_id']}", alice)
        assert "yes" in next(e["data"]["text"] for e in listing if e["event"] == "message").lower()
        paused = send(service.client, conversation, "yes", alice)
        pending = next(e["data"] for e in paused if e["event"] == "approval_pending")
        assert pending["amount"] > 0 and paused[-1]["event"] == "done"

        waiting = service.client.get("/api/approvals", headers=eng).json()["approvals"]
        assert [a["approval_id"] for a in waiting] == [pending["approval_id"]]
        assert service.client.get("/api/approvals", headers=alice).status_code == 403
        r = service.client.post(
            f"/api/approvals/{pending['approval_id']}", json={"approved": "maybe"}, headers=eng
        )
        assert r.status_code == 422
        r = service.client.post(
            f"/api/approvals/{pending['approval_id']}", json={"approved": approved}, headers=eng
        )
        assert r.status_code == 200, r.text
        decisions.append((order["order_id"], approved, r.json()))
        assert service.client.get("/api/approvals", headers=eng).json()["approvals"] == []
        again = service.client.post(
            f"/api/approvals/{pending['approval_id']}", json={"approved": approved}, headers=eng
        )
        assert again.status_code == 409

        history = service.client.get(f"/api/conversations/{conversation}", headers=alice).json()["messages"]
        assert history[-1]["role"] == "assistant" and history[-1]["content"]

    db = RetailDatabase(service.settings.agent.store_path)
    statuses = {
        order_id: db.query("SELECT status FROM orders WHERE order_id = ?", (order_id,))[0][0]
        for order_id, _, _ in decisions
    }
    db.close()
    assert statuses[orders[0]["order_id"]] != "delivered"  # approved: the return went through
    assert statuses[orders[1]["order_id"]] == "delivered"  # rejected: nothing changed
    r = service.client.post("/api/approvals/nope", json={"approved": True}, headers=eng)
    assert r.status_code == 404
