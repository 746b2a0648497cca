"""bench/loop.py's simulated reviewer: the gold steps it applies (the loop is a command, not a test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.tool_specs import IDENTIFY_TOOLS
from bench.loop import _key, gold_calls, made_calls, request_done

REPLAYS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "retail" / "dev_replays.jsonl"


def test_the_reviewer_knows_the_gold_calls_without_identification() -> None:
    record = {
        "id": "r",
        "task_id": "0",
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "hi, ada@example.com, where is #W1234567?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "a",
                        "type": "function",
                        "function": {
                            "name": "find_user_id_by_email",
                            "arguments": '{"email": "ada@example.com"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "ada_berg_1"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "b",
                        "type": "function",
                        "function": {"name": "get_order_details", "arguments": '{"order_id": "#W1234567"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "b", "content": "{}"},
            {"role": "assistant", "content": "It is on its way."},
        ],
    }
    gold = gold_calls(record)
    assert [g["name"] for g in gold] == ["get_order_details"]
    assert not any(g["name"] in IDENTIFY_TOOLS for g in gold)
    made = made_calls(record["messages"])
    assert _key("get_order_details", {"order_id": "#W1234567"}) in made and len(made) == 2


def test_gold_calls_of_the_dev_replays_are_tool_calls() -> None:
    if not REPLAYS.exists():
        pytest.skip(f"the retail dev replays are not at {REPLAYS}")
    first = json.loads(REPLAYS.read_text().splitlines()[0])
    gold = gold_calls(first)
    assert gold and all(set(g) >= {"name", "arguments"} for g in gold)


def _write(call_id: str, result: str) -> list[dict[str, object]]:
    args = json.dumps({"order_id": "#W1234567", "reason": "no longer needed"})
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": "cancel_pending_order", "arguments": args},
    }
    return [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": result},
    ]


def test_the_simulated_customer_is_satisfied_only_by_exactly_the_changes_asked_for() -> None:
    gold = [
        {"name": "cancel_pending_order", "arguments": {"order_id": "#W1234567", "reason": "no longer needed"}}
    ]
    done = [{"role": "user", "content": "cancel it"}, *_write("a", '{"order_id": "#W1234567"}')]
    refused = [{"role": "user", "content": "cancel it"}, *_write("a", "Error: the order is not pending")]
    assert request_done(done, gold)
    assert not request_done(refused, gold)  # a refused write changed nothing
    assert not request_done([*done, *_write("b", '{"order_id": "#W1234567"}')], gold)  # one change too many
    assert request_done([{"role": "user", "content": "what is your return policy?"}], [])
