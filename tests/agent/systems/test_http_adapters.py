"""The HTTP adapters speak the documented contract with a real server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from agent.store.database import RetailDatabase
from agent.systems.billing import SqliteBilling
from agent.systems.crm import SqliteCRM
from agent.systems.http import HttpBilling, HttpCRM
from agent.systems.server import systems_app
from specialist.errors import BackendUnavailable, NotFound, PolicyViolation


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def base_url(db: RetailDatabase) -> Iterator[str]:
    port = _free_port()
    config = uvicorn.Config(
        systems_app(SqliteCRM(db), SqliteBilling(db)), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def test_crm_over_http(base_url: str, db: RetailDatabase) -> None:
    crm = HttpCRM(base_url)
    user_id, user = next(iter(db.export()["users"].items()))
    assert crm.find_user_id_by_email(user["email"]) == user_id
    name = user["name"]
    assert (
        crm.find_user_id_by_name_zip(name["first_name"], name["last_name"], user["address"]["zip"]) == user_id
    )
    assert crm.get_user_details(user_id) == user
    assert crm.get_order_details(user["orders"][0])["user_id"] == user_id
    assert set(crm.list_all_product_types().values()) == set(db.export()["products"])
    with pytest.raises(NotFound, match="No customer"):
        crm.find_user_id_by_email("ghost@example.com")


def test_billing_over_http_relays_policy_errors_and_is_idempotent(
    base_url: str, db: RetailDatabase, find_order: Callable[..., dict[str, Any]]
) -> None:
    billing = HttpBilling(base_url)
    delivered = find_order("delivered")
    with pytest.raises(PolicyViolation, match="only pending"):
        billing.cancel_pending_order(delivered["order_id"], "no longer needed")
    pending = find_order("pending")
    assert billing.refund_amount("cancel_pending_order", {"order_id": pending["order_id"]}) == pytest.approx(
        pending["payment_history"][0]["amount"]
    )
    with pytest.raises(PolicyViolation, match="only pending"):
        billing.check_write(
            "cancel_pending_order", {"order_id": delivered["order_id"], "reason": "no longer needed"}
        )
    billing.check_write(
        "cancel_pending_order", {"order_id": pending["order_id"], "reason": "no longer needed"}
    )
    assert db.get_order(pending["order_id"])["status"] == "pending"
    first = billing.cancel_pending_order(pending["order_id"], "no longer needed", idempotency_key="http-1")
    second = billing.cancel_pending_order(pending["order_id"], "no longer needed", idempotency_key="http-1")
    assert first == second and first["status"] == "cancelled"
    assert db.action_count() == 1


def test_unreachable_service_is_a_clear_error() -> None:
    crm = HttpCRM(f"http://127.0.0.1:{_free_port()}", timeout_s=1)
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        crm.get_user_details("anyone")


def test_agent_acts_through_the_http_adapters(base_url: str, db: RetailDatabase, tmp_path: Any) -> None:
    from agent.chat_model import ChatReply, ScriptedChatModel, ToolCall
    from agent.runtime import build_agent
    from agent.settings import AgentSettings

    user_id, user = next(
        (uid, u)
        for uid, u in db.export()["users"].items()
        if any(db.get_order(o)["status"] == "pending" for o in u["orders"])
    )
    order_id = next(o for o in user["orders"] if db.get_order(o)["status"] == "pending")
    model = ScriptedChatModel(
        [
            ChatReply(tool_calls=[ToolCall("find_user_id_by_email", {"email": user["email"]}, "c1")]),
            ChatReply(text="Found you."),
            ChatReply(tool_calls=[ToolCall("get_order_details", {"order_id": order_id}, "c3")]),
            ChatReply(
                tool_calls=[
                    ToolCall(
                        "cancel_pending_order", {"order_id": order_id, "reason": "no longer needed"}, "c2"
                    )
                ]
            ),
            ChatReply(text="Cancelled."),
        ]
    )
    settings = AgentSettings(
        store_path=tmp_path / "agent.sqlite",
        checkpoint_path=tmp_path / "cp.sqlite",
        refund_approval_threshold=1e9,
    )
    agent = build_agent(
        settings=settings, model=model, kb=None, crm=HttpCRM(base_url), billing=HttpBilling(base_url)
    )
    for text in (f"I am {user['email']}", f"cancel {order_id}", "yes"):
        list(agent.respond("h1", text))
    assert agent.state("h1")["user_id"] == user_id
    assert db.get_order(order_id)["status"] == "cancelled"
    agent.close()
