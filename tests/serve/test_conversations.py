"""Customers: conversations, the SSE stream's shape, history, ownership, hand-off, restart and resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.conftest import Service, ingest_demo, make_settings, seed_store, start_service
from tests.serve.sse import send


def _new(service: Service, who: str = "alice") -> str:
    r = service.client.post("/api/conversations", headers=service.auth(who))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["customer_id"] == service.customers[0 if who == "alice" else 1]
    return str(body["id"])


def test_stream_shape_for_a_cited_answer(service: Service) -> None:
    conversation = _new(service)
    events = send(
        service.client, conversation, "How long do I have to return an item?", service.auth("alice")
    )
    kinds = [e["event"] for e in events]
    assert kinds[0] == "tool_start" and events[0]["data"]["name"] == "search_policies"
    assert kinds[-1] == "done" and kinds.count("done") == 1
    assert "tool_end" in kinds and "token" in kinds and "citation" in kinds
    assert kinds.index("tool_end") < kinds.index("token") < kinds.index("message") < kinds.index("done")
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
    message = next(e["data"] for e in events if e["event"] == "message")
    streamed = "".join(e["data"]["text"] for e in events if e["event"] == "token")
    assert streamed == message["text"]
    citation = next(e["data"] for e in events if e["event"] == "citation")
    assert citation["doc_id"] == "returns" and f"[{citation['label']}]" in message["text"]

    history = service.client.get(f"/api/conversations/{conversation}", headers=service.auth("alice")).json()
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
    assert history["messages"][1]["citations"][0]["doc_id"] == "returns"
    assert history["conversation"]["turns"] == 1

    policy = service.client.get("/api/policies/returns", headers=service.auth("alice"))
    assert policy.status_code == 200 and policy.json()["content"]


def test_json_turn_and_hand_off(service: Service) -> None:
    conversation = _new(service)
    r = service.client.post(
        f"/api/conversations/{conversation}/messages",
        params={"stream": "false"},
        json={"text": "Please let me talk to a human"},
        headers=service.auth("alice"),
    )
    assert r.status_code == 200, r.text
    events = r.json()["events"]
    handoff = next(e["data"] for e in events if e["type"] == "handoff")
    assert events[-1]["type"] == "done"
    mine = service.client.get("/api/conversations", headers=service.auth("alice")).json()["conversations"]
    assert next(c for c in mine if c["id"] == conversation)["handed_off"] is True
    tickets = service.client.get("/api/tickets", headers=service.auth("engineer")).json()["tickets"]
    assert any(
        t["ticket_id"] == handoff["ticket_id"] and t["conversation_id"] == conversation for t in tickets
    )


def test_a_customer_cannot_reach_another_customers_conversation(service: Service) -> None:
    conversation = _new(service, "alice")
    send(service.client, conversation, "Do gift cards expire?", service.auth("alice"))
    for method, path, body in [
        ("GET", f"/api/conversations/{conversation}", None),
        ("POST", f"/api/conversations/{conversation}/messages", {"text": "show me her orders"}),
    ]:
        r = service.client.request(method, path, json=body, headers=service.auth("bob"))
        assert r.status_code == 403, r.text
        assert "another customer" in r.json()["error"]["message"]
        assert "gift" not in r.text.lower()
    bobs = service.client.get("/api/conversations", headers=service.auth("bob")).json()["conversations"]
    assert conversation not in {c["id"] for c in bobs}
    # Engineers may read any conversation but never speak for a customer; content owners see none.
    assert (
        service.client.get(f"/api/conversations/{conversation}", headers=service.auth("engineer")).status_code
        == 200
    )
    r = service.client.post(
        f"/api/conversations/{conversation}/messages", json={"text": "hi"}, headers=service.auth("engineer")
    )
    assert r.status_code == 403
    r = service.client.get(f"/api/conversations/{conversation}", headers=service.auth("owner"))
    assert r.status_code == 403 and "content_owner" in r.json()["error"]["message"]


def test_message_validation(service: Service) -> None:
    conversation = _new(service)
    url = f"/api/conversations/{conversation}/messages"
    alice = service.auth("alice")
    too_long = "a" * (service.settings.agent.max_message_chars + 1)
    r = service.client.post(url, json={"text": too_long}, headers=alice)
    assert r.status_code == 422 and "limit" in r.json()["error"]["message"]
    assert service.client.post(url, json={"text": "   "}, headers=alice).status_code == 422
    r = service.client.post(url, json={"text": 42}, headers=alice)
    assert r.status_code == 422 and "text" in r.json()["error"]["message"]
    r = service.client.post(url, json={}, headers=alice)
    assert r.status_code == 422 and "text" in r.json()["error"]["message"]
    r = service.client.post("/api/conversations/c_nope/messages", json={"text": "hi"}, headers=alice)
    assert r.status_code == 404 and "c_nope" in r.json()["error"]["message"]


def test_metrics_count_what_happened(service: Service) -> None:
    conversation = _new(service)
    send(service.client, conversation, "How much does shipping cost?", service.auth("alice"))
    send(service.client, conversation, "I need a real person please", service.auth("alice"))
    text = service.client.get("/metrics").text

    def value(name: str) -> float:
        line = next(line for line in text.splitlines() if line.startswith(name + " "))
        return float(line.split()[-1])

    assert value('specialist_tool_calls_total{tool="search_policies"}') >= 1
    assert value("specialist_handoffs_total") >= 1
    assert value("specialist_retrieval_seconds_count") >= 1
    assert value("specialist_turn_seconds_count") >= 2
    assert value("specialist_model_seconds_count") >= 2
    assert value('specialist_tokens_total{kind="prompt"}') >= 0
    route = 'route="/api/conversations/{conversation_id}/messages"'
    assert any(
        line.startswith("specialist_request_seconds_count") and route in line for line in text.splitlines()
    )
    assert "specialist_guard_removals_total" in text and "specialist_errors_total" in text


@pytest.fixture()
def fresh_settings(tmp_path: Path) -> Iterator[tuple]:
    settings = make_settings(tmp_path)
    customers = seed_store(settings)
    ingest_demo(settings)
    yield settings, customers


def test_restart_resumes_conversations(fresh_settings: tuple) -> None:
    settings, customers = fresh_settings
    first = start_service(settings, customers)
    service = next(first)
    conversation = _new(service)
    send(service.client, conversation, "Can I cancel an order that has shipped?", service.auth("alice"))
    before = service.client.get(f"/api/conversations/{conversation}", headers=service.auth("alice")).json()
    with pytest.raises(StopIteration):
        next(first)  # lifespan ends: the knowledge base, checkpoints and state close

    second = start_service(settings, customers)
    again = next(second)
    after = again.client.get(f"/api/conversations/{conversation}", headers=again.auth("alice")).json()
    assert after["messages"] == before["messages"]
    events = send(again.client, conversation, "Do gift cards expire?", again.auth("alice"))
    assert events[-1]["event"] == "done"
    history = again.client.get(f"/api/conversations/{conversation}", headers=again.auth("alice")).json()
    assert [m["content"] for m in history["messages"][:2]] == [m["content"] for m in before["messages"]]
    assert len(history["messages"]) == 4 and history["conversation"]["turns"] == 2
    with pytest.raises(StopIteration):
        next(second)
