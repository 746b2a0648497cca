"""The agent benchmark's harness: task parsing, and the gold trajectory reaching the expected store."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from agent.store.database import RetailDatabase
from agent.store.seed import generate_demo_data

_PATH = Path(__file__).resolve().parents[2] / "bench" / "agent.py"


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_agent", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_agent"] = module
    spec.loader.exec_module(module)
    return module


def test_instruction_parsing() -> None:
    bench = _bench()
    task = bench.parse_task(
        5,
        {
            "user_id": "omar_anderson_3203",
            "instruction": "Your name is Omar Anderson and your zip code is 19031. You are logical, polite. "
            "Cancel order #W1 because ordered by mistake. "
            "Return #W2 via paypal_1: Electric Kettle; Wall Clock; ",
            "actions": [],
        },
    )
    assert task.identity == "Hi, my name is Omar Anderson and my zip code is 19031."
    assert task.requests == [
        "Cancel order #W1 because ordered by mistake.",
        "Return #W2 via paypal_1: Electric Kettle; Wall Clock;",
    ]
    assert task.reasons == ["ordered by mistake"]
    assert [
        t.index for t in bench.held_out([{"actions": [1], "user_id": "u", "instruction": "Hi."}] * 11, None)
    ] == [0, 5, 10]


def test_gold_trajectory_through_the_graph_succeeds(tmp_path: Path, kb: Any) -> None:
    bench = _bench()
    data = generate_demo_data(11, n_users=20, n_orders=60)
    specs: list[Any] = []
    for status, name, extra in [
        ("pending", "cancel_pending_order", {"reason": "no longer needed"}),
        ("delivered", "return_delivered_order_items", {}),
    ]:
        order = next(o for o in data["orders"].values() if o["status"] == status)
        user = data["users"][order["user_id"]]
        args: dict[str, Any] = {"order_id": order["order_id"], **extra}
        if name == "return_delivered_order_items":
            args.update(
                item_ids=[order["items"][0]["item_id"]],
                payment_method_id=order["payment_history"][0]["payment_method_id"],
            )
        first, last = user["name"]["first_name"], user["name"]["last_name"]
        specs.append(
            bench.Task(
                len(specs),
                order["user_id"],
                f"Hi, my email is {user['email']}.",
                [f"Please handle order {order['order_id']}."],
                [],
                [{"name": name, "arguments": args}],
            )
        )
        assert first and last
    template = RetailDatabase(tmp_path / "template.sqlite")
    template.replace_all(data)
    result = bench.evaluate(
        "oracle",
        lambda t: bench.OracleModel(t, data),
        specs,
        template=template,
        data=data,
        kb=kb,
        work=tmp_path,
        teacher=None,
    )
    assert result["task_success"] == 1.0
    assert result["policy_violations"] == 0
    # the probe for another customer's order is answered by the graph: not a model turn
    assert result["turns"] > result["model_turns"] > 0
    assert result["p50_model_turn_s"] is not None and result["p50_model_turn_s"] > 0


def test_scripted_customer_confirms_only_their_order_and_re_asks_once() -> None:
    bench = _bench()
    task = bench.Task(
        0, "u", "Hi, my email is a@b.co.", ["Cancel order #W1 because no longer needed."], [], []
    )
    current = task.requests[0]
    listing = "To confirm, I will cancel order #W1 (reason: no longer needed). Please reply 'yes' to confirm."
    assert bench.customer_reply(task, listing, [], True, current) == "yes"
    wrong = listing.replace("#W1", "#W2")
    assert bench.customer_reply(task, wrong, [], True, current).startswith("No, that's not right.")
    status = "Order #W1 is pending: Water Bottle."
    assert bench.customer_reply(task, status, [], True, current, handled=False) == (
        f"That's not what I asked. {current}"
    )
    assert bench.customer_reply(task, status, [], True, current, handled=True) is None
    assert bench.customer_reply(task, status, ["next"], True, current, handled=True) == "next"


def test_scripted_customer_refuses_a_listing_of_another_action() -> None:
    bench = _bench()
    task = bench.Task(
        0, "u", "Hi.", ["For #W1, exchange Lamp {'color': 'red'} to {'color': 'blue'}; via paypal_1."], [], []
    )
    current = task.requests[0]
    wrong = (
        "To confirm, I will return items 1 of order #W1, refunded to paypal_1. Please reply 'yes' to confirm."
    )
    assert bench.customer_reply(task, wrong, [], True, current).startswith("No, that's not right.")
    right = wrong.replace("return items 1", "exchange items 1").replace("refunded to", "settling with")
    assert bench.customer_reply(task, right, [], True, current) == "yes"


def test_figures_are_printed_against_the_same_runs_base() -> None:
    base = {"task_success": 0.0, "next_action_acc": 0.1, "policy_violations": 0, "p50_turn_s": 8.0}
    tuned = {"task_success": 0.2, "next_action_acc": 0.57, "policy_violations": 0, "p50_turn_s": 4.0}
    bench = _bench()
    ratios = bench.against_base(base, tuned)
    assert ratios["p50_turn_s"] == "0.50x" and ratios["task_success"] == "0.00 -> 0.20"
    assert "p95_turn_s" not in ratios  # never printed without both figures
    assert bench.against_base({"unavailable": "ModelUnavailable: ..."}, tuned) == {}
