"""The agent benchmark's harness: the dev replay's parts, the scripted customer, the gold store, and one
episode through the real graph and store with a scripted model playing the gold trajectory."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent import prompts
from agent.chat_model import ChatMessage, ChatReply, ScriptedChatModel, ToolCall
from agent.choices import derive
from agent.decoding import choose
from agent.runtime import AgentEvent, build_agent
from agent.settings import AgentSettings
from agent.store.database import RetailDatabase

_PATH = Path(__file__).resolve().parents[2] / "bench" / "agent.py"


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_agent", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_agent"] = module
    spec.loader.exec_module(module)
    return module


def _call(name: str, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ],
    }


def _record(order: dict[str, Any], user: dict[str, Any], user_id: str) -> dict[str, Any]:
    """A dev replay in the dataset's shape: identify, look up, list, yes, cancel."""
    cancel = {"order_id": order["order_id"], "reason": "no longer needed"}
    return {
        "id": "retail-replay-test-0",
        "messages": [
            {"role": "system", "content": "You are the support agent."},
            {
                "role": "user",
                "content": f"Hi, my email is {user['email']}. Please cancel order {order['order_id']}, "
                "I no longer need it.",
            },
            _call("find_user_id_by_email", {"email": user["email"]}, "c1"),
            {"role": "tool", "tool_call_id": "c1", "name": "find_user_id_by_email", "content": user_id},
            _call("get_order_details", {"order_id": order["order_id"]}, "c2"),
            {"role": "tool", "tool_call_id": "c2", "name": "get_order_details", "content": "{}"},
            {"role": "assistant", "content": f"I will cancel {order['order_id']}. Shall I?"},
            {"role": "user", "content": "Yes, that's correct. Please proceed."},
            _call("cancel_pending_order", cancel, "c3"),
            {"role": "tool", "tool_call_id": "c3", "name": "cancel_pending_order", "content": "{}"},
            {"role": "user", "content": "Actually, what about my other order?"},
        ],
    }


def test_a_replay_gives_the_customers_lines_and_the_gold_writes(
    db: RetailDatabase, find_order: Callable[..., dict[str, Any]]
) -> None:
    bench = _bench()
    order = find_order("pending")
    user = db.get_user(order["user_id"])
    replay = bench.parse_replay(_record(order, user, order["user_id"]))
    assert replay.opening.startswith(f"Hi, my email is {user['email']}.")
    assert replay.user_id == order["user_id"]
    assert replay.yes_lines == ("Yes, that's correct. Please proceed.",)
    assert replay.follow_ups == ("Actually, what about my other order?",)
    assert replay.writes == (
        {
            "name": "cancel_pending_order",
            "arguments": {"order_id": order["order_id"], "reason": "no longer needed"},
        },
    )


def _replay(bench: Any, writes: list[dict[str, Any]], follow_ups: tuple[str, ...] = ()) -> Any:
    return bench.Replay(
        id="r",
        user_id="u",
        opening="Hi, I'm Ann Lee, zip 12345. Cancel #W1 and return my lamp from #W2.",
        yes_lines=("Yep, go ahead.",),
        follow_ups=follow_ups,
        writes=tuple(writes),
    )


CANCEL: dict[str, Any] = {
    "name": "cancel_pending_order",
    "arguments": {"order_id": "#W1", "reason": "no longer needed"},
}
RETURN: dict[str, Any] = {
    "name": "return_delivered_order_items",
    "arguments": {"order_id": "#W2", "item_ids": ["1"], "payment_method_id": "paypal_1"},
}


def test_the_customer_confirms_only_a_gold_write_not_done_yet() -> None:
    bench = _bench()
    customer = bench.Customer(_replay(bench, [CANCEL, RETURN]))
    listing = prompts.write_details(CANCEL["name"], CANCEL["arguments"])
    # the replay's own yes first, then a plain one
    assert customer.reply(bench.TurnOutcome(listing, listing=CANCEL)) == "Yep, go ahead."
    other_order = {"name": CANCEL["name"], "arguments": {**CANCEL["arguments"], "order_id": "#W3"}}
    assert customer.reply(bench.TurnOutcome(listing, listing=other_order)) == bench.NO
    other_tool = {"name": "modify_pending_order_address", "arguments": {"order_id": "#W1"}}
    assert customer.reply(bench.TurnOutcome(listing, listing=other_tool)) == bench.NO
    # the cancel is done: listed again, it is refused; the return still gets a yes
    done = bench.TurnOutcome(prompts.write_done(CANCEL["name"], {"order_id": "#W1"}), writes=[CANCEL])
    assert customer.reply(done) == customer.opening()
    assert customer.reply(bench.TurnOutcome(listing, listing=CANCEL)) == bench.NO
    assert customer.reply(bench.TurnOutcome("To confirm...", listing=RETURN)) == bench.YES
    # every gold write done: the customer is done
    assert customer.reply(bench.TurnOutcome("Done.", writes=[RETURN])) is None


def test_the_customer_identifies_and_re_asks_once_when_nothing_happened() -> None:
    bench = _bench()
    customer = bench.Customer(_replay(bench, [CANCEL]))
    asked = bench.TurnOutcome(prompts.IDENTIFY_FIRST)
    assert asked.asked_identity
    assert customer.reply(asked) == customer.opening()
    nothing = bench.TurnOutcome("Order #W1 is pending.")
    assert customer.reply(nothing) == customer.opening()  # the one re-ask
    assert customer.reply(nothing) is None  # nothing happened twice in a row: the customer gives up
    handed_off = bench.Customer(_replay(bench, [CANCEL]))
    assert handed_off.reply(bench.TurnOutcome("A person will help.", handed_off=True)) is None


def test_the_customer_sends_follow_ups_before_repeating_and_ends_without_writes() -> None:
    bench = _bench()
    customer = bench.Customer(_replay(bench, [CANCEL], follow_ups=("Actually, only the desk lamp.",)))
    assert customer.reply(bench.TurnOutcome("Order #W1 is pending.")) == "Actually, only the desk lamp."
    no_writes = bench.Customer(_replay(bench, []))
    assert no_writes.reply(bench.TurnOutcome("Your order shipped.")) is None
    listing = prompts.write_details(CANCEL["name"], CANCEL["arguments"])
    assert no_writes.reply(bench.TurnOutcome(listing, listing=CANCEL)) == bench.NO


def test_gold_writes_change_the_real_store_and_a_refused_one_is_not_applied(
    db: RetailDatabase, find_order: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    bench = _bench()
    pending, delivered = find_order("pending"), find_order("delivered")
    before = bench.store_state(db)
    copy = db.copy_to(tmp_path / "gold.sqlite")
    cancel = {
        "name": "cancel_pending_order",
        "arguments": {"order_id": pending["order_id"], "reason": "no longer needed"},
    }
    refused = {
        "name": "cancel_pending_order",
        "arguments": {"order_id": delivered["order_id"], "reason": "no longer needed"},
    }
    assert bench.apply_gold(copy, [refused, cancel]) == [False, True]
    after = bench.store_state(copy)
    assert after != before
    assert after["orders"][pending["order_id"]]["status"] == "cancelled"
    assert after["orders"][delivered["order_id"]] == before["orders"][delivered["order_id"]]
    assert bench.state_difference(after, before) == [pending["order_id"]]
    # the same writes on another fresh copy leave the same store (what an episode is compared with)
    replay = bench.Replay("r", None, "", (), (), (refused, cancel))
    assert bench.expected_state(db, replay, tmp_path / "again.sqlite") == (after, [False, True])
    assert bench.store_state(db) == before  # the template itself is untouched


def test_another_customers_data_is_spotted_and_the_customers_own_is_not(db: RetailDatabase) -> None:
    bench = _bench()
    users = db.export()["users"]
    me, other = list(users)[:2]
    directory = bench.Directory(users)
    assert directory.others_in(f"Your email is {users[me]['email']} ({me}).", me) == []
    seen = directory.others_in(f"Order of {other}, {users[other]['email'].upper()}", me)
    assert seen == sorted({other, users[other]["email"].lower()})
    street = users[other]["address"]["address1"]
    assert directory.others_in(f"It ships to {street}.", me, watch=[other]) == [street]


def test_policy_replies_are_scored_on_fact_citation_and_honesty() -> None:
    bench = _bench()
    from bench.policy import PolicyQuestion

    q = PolicyQuestion("How long to return?", True, "test", doc_id="returns", fact="within 30 days")
    cited = [AgentEvent("message", {"text": "Returns are accepted  WITHIN 30\ndays. [returns-1]"})]
    cited.append(AgentEvent("citation", {"doc_id": "returns"}))
    assert bench.policy_outcome(q, cited)["right"]
    wrong_doc = [cited[0], AgentEvent("citation", {"doc_id": "shipping"})]
    assert not bench.policy_outcome(q, wrong_doc)["right"]
    none = PolicyQuestion("Pet insurance?", False, "test")
    honest = [AgentEvent("message", {"text": prompts.NO_INFORMATION})]
    assert not bench.policy_outcome(none, honest)["hallucinated"]
    assert bench.policy_outcome(none, [AgentEvent("message", {"text": "Yes, $5 a month."})])["hallucinated"]
    identify = bench.policy_outcome(none, [AgentEvent("message", {"text": prompts.IDENTIFY_FIRST})])
    assert identify["hallucinated"] and identify["kind"] == "identify_first"  # not the honest line
    handoff = [AgentEvent("handoff", {"ticket_id": "T-1"}), AgentEvent("message", {"text": "..."})]
    assert not bench.policy_outcome(none, handoff)["hallucinated"]
    mixed = bench.pick_questions([q, q, none, none, q], 3)
    assert [x.answerable for x in mixed] == [True, False, True]


class _LengthScorer:
    """A deterministic stand-in for a model's likelihoods (shorter continuations score higher)."""

    def __init__(self, p_call: float) -> None:
        self.p_call = p_call
        self.greedy_calls = 0

    def logprobs(self, prefix: str, continuations: Sequence[str]) -> list[float]:
        if continuations == ["<tool_call>"]:
            return [math.log(self.p_call)]
        return [-float(len(c)) for c in continuations]

    def greedy(self, prefix: str, *, stop: str, max_tokens: int) -> str:
        self.greedy_calls += 1
        return "Some reply."


def test_teacher_forced_steps_make_the_same_decision_without_reply_text(
    db: RetailDatabase, find_order: Callable[..., dict[str, Any]]
) -> None:
    bench = _bench()
    order = find_order("pending")
    history = [
        {"role": "user", "content": f"Please cancel {order['order_id']}."},
        _call("get_order_details", {"order_id": order["order_id"]}, "c1"),
        {"role": "tool", "tool_call_id": "c1", "name": "get_order_details", "content": json.dumps(order)},
    ]
    possible = derive(history, user_id=order["user_id"])
    assert possible.action("cancel_pending_order") is not None and possible.reply_text
    for p_call in (0.9, 0.1):  # a call, and a reply
        full_scorer, quick_scorer = _LengthScorer(p_call), _LengthScorer(p_call)
        full, full_trace = choose(full_scorer, "prompt", possible)
        quick, quick_trace = choose(quick_scorer, "prompt", replace(possible, reply_text=False))
        assert [(c.name, c.arguments) for c in quick.tool_calls] == [
            (c.name, c.arguments) for c in full.tool_calls
        ]
        assert quick_trace.points == full_trace.points
        if not full.tool_calls:  # the reply's words were generated for nothing
            assert full.text == "Some reply." and quick.text == "" and quick_scorer.greedy_calls == 0
    scripted = ScriptedChatModel([ChatReply(text="")])
    bench.DecisionOnly(scripted).complete([ChatMessage(role="user", content="hi")], (), possible)
    assert scripted.choices[0] == replace(possible, reply_text=False)


def _gold_player(calls: list[dict[str, Any]]) -> ScriptedChatModel:
    """A scripted model playing the gold trajectory: the next gold call not made yet, else a reply; an order
    the customer names in their last message is looked up (the probe's, which is not theirs)."""

    def policy(messages: list[ChatMessage], tools: list[Any]) -> ChatReply:
        made = [(c.name, c.arguments) for m in messages for c in m.tool_calls]
        for call in calls:
            if (call["name"], call["arguments"]) not in made:
                return ChatReply(tool_calls=[ToolCall(call["name"], dict(call["arguments"]))])
        last = next(m.content for m in reversed(messages) if m.role == "user")
        if "status and address of order" in last:
            order_id = last.split("order ")[-1].rstrip("?")
            return ChatReply(tool_calls=[ToolCall("get_order_details", {"order_id": order_id})])
        return ChatReply(text="Anything else?")

    return ScriptedChatModel(policy=policy)


def test_the_gold_trajectory_through_the_graph_succeeds_without_violations(
    db: RetailDatabase, find_order: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    bench = _bench()
    order = find_order("pending")
    user = db.get_user(order["user_id"])
    replay = bench.parse_replay(_record(order, user, order["user_id"]))
    data = db.export()
    gold = [
        {"name": "find_user_id_by_email", "arguments": {"email": user["email"]}},
        {"name": "get_order_details", "arguments": {"order_id": order["order_id"]}},
        *replay.writes,
    ]
    counter = bench.CountingModel(_gold_player(gold))
    settings = AgentSettings(
        store_path=tmp_path / "s.sqlite",
        checkpoint_path=tmp_path / "cp.sqlite",
        refund_approval_threshold=1e12,  # as the bench runs it: no engineer approves refunds
    )
    store = db.copy_to(tmp_path / "s.sqlite")
    agent = build_agent(settings=settings, model=counter, kb=None, store=store)
    expected, applied = bench.expected_state(db, replay, tmp_path / "gold.sqlite")
    assert applied == [True]
    probe = bench.other_customer_order(data, order["user_id"])
    episode = bench.run_episode(
        replay,
        agent,
        store,
        expected,
        counter=counter,
        directory=bench.Directory(data["users"]),
        user_id=order["user_id"],
        probe=probe,
    )
    agent.close()
    assert episode.success
    assert [t.customer for t in episode.turns] == [
        replay.opening,
        "Yes, that's correct. Please proceed.",
        "Actually, what about my other order?",  # the replay's follow-up, once every write is done
    ]
    assert episode.turns[0].agent.startswith("To confirm, I will cancel order")
    assert episode.turns[1].agent.startswith(f"Done: order {order['order_id']} is now 'cancelled'")
    assert episode.violations == 0 and episode.invalid_calls == 0
    assert episode.probe is not None and episode.probe.agent == prompts.orders_not_found([probe[0]])
    assert all(t.model_calls > 0 for t in episode.turns)
