"""The shipped default model doing the job on the real store and knowledge base (no scripted model)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import prompts
from agent.store.database import RetailDatabase


@pytest.fixture(scope="module")
def default_model() -> Iterator[Any]:
    from agent.backends import local_model_from_record
    from finetune.registry import default_record

    model = local_model_from_record(default_record(), max_new_tokens=192)
    yield model
    model.close()


def _turn(agent: Any, text: str, conversation: str = "c1") -> list[Any]:
    return list(agent.respond(conversation, text))


def _message(events: list[Any]) -> dict[str, Any]:
    return next(e.data for e in reversed(events) if e.type == "message")


def _calls(events: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(e.data["name"], e.data.get("arguments") or {}) for e in events if e.type == "tool_start"]


def _vague_request(db: RetailDatabase) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A delivered order holding an item whose product name is in no other order of that customer."""
    data = db.export()
    for user_id, user in data["users"].items():
        orders = [data["orders"][o] for o in user["orders"] if o in data["orders"]]
        names = Counter(i["name"] for o in orders for i in o["items"])
        for order in orders:
            if order["status"] != "delivered":
                continue
            for item in order["items"]:
                if names[item["name"]] == 1 and len(orders) > 1:
                    return {**user, "user_id": user_id}, order, item
    raise LookupError("no such customer in the seeded store")


def test_a_vague_request_ends_in_the_right_orders_lookup(
    make_agent: Callable[..., Any], db: RetailDatabase, default_model: Any
) -> None:
    user, order, item = _vague_request(db)
    agent = make_agent(default_model)
    text = f"Hi, my email is {user['email']}. I want to send back the {item['name'].lower()} I got."
    events = _turn(agent, text)
    calls = _calls(events)
    assert calls[:2] == [
        ("find_user_id_by_email", {"email": user["email"]}),
        ("get_user_details", {"user_id": user["user_id"]}),
    ]
    looked_up = [args["order_id"] for name, args in calls if name == "get_order_details"]
    assert order["order_id"] in looked_up  # found among the profile's orders, no id given
    assert all(o in user["orders"] for o in looked_up)  # never another customer's order
    assert not any(e.type == "invalid_call" for e in events)
    assert db.get_order(order["order_id"])["status"] == "delivered"  # nothing written without a yes


def test_policy_questions_are_answered_with_a_citation_or_declined(
    make_agent: Callable[..., Any], default_model: Any
) -> None:
    agent = make_agent(default_model)
    answered = _message(_turn(agent, "How long do I have to send something back?", "p1"))
    assert "30 days" in answered["text"]
    assert any(c["doc_id"] == "returns" for c in answered["citations"])
    declined = _message(_turn(agent, "Do you give loyalty points for every dollar I spend?", "p2"))
    assert declined["text"] == prompts.NO_INFORMATION and not declined["citations"]


def test_an_edited_policy_changes_the_answer_to_the_next_question(
    make_agent: Callable[..., Any], default_model: Any, tmp_path: Path
) -> None:
    from ingest import Ingestor, demo_policy_dir
    from retrieval import RetrievalSettings, open_knowledge_base

    kb = open_knowledge_base(RetrievalSettings(data_dir=tmp_path / "kb"))
    ingestor = Ingestor(kb)
    ingestor.ingest_path(demo_policy_dir())
    agent = make_agent(default_model, kb=kb)
    question = "How long do I have to send something back?"
    assert "30 days" in _message(_turn(agent, question, "e1"))["text"]
    edited = tmp_path / "returns.md"
    edited.write_text((demo_policy_dir() / "returns.md").read_text().replace("30 days", "45 days"))
    ingestor.ingest_path(edited)
    after = _message(_turn(agent, question, "e2"))
    assert "45 days" in after["text"] and "30 days" not in after["text"]
