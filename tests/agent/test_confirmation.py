"""What counts as an explicit yes, and as a listing of a write's details."""

from __future__ import annotations

import pytest

from agent.confirmation import action_key, details_listed, is_explicit_yes


@pytest.mark.parametrize(
    "text",
    ["yes", "Yes please", "YES, go ahead", "yep", "I confirm", "confirmed.", "Sure, proceed.", "ok yes"],
)
def test_explicit_yes(text: str) -> None:
    assert is_explicit_yes(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no",
        "yes but change the card",
        "not yet",
        "ok",
        "sure",
        "maybe",
        "yes?",
        "no wait, don't do that",
        "yes " * 20,
    ],
)
def test_not_a_yes(text: str) -> None:
    assert not is_explicit_yes(text)


def test_details_listed_needs_every_value() -> None:
    args = {"order_id": "#W1", "item_ids": ["111", "222"], "payment_method_id": "paypal_9"}
    assert details_listed(
        "Return items 111 and 222 of #W1 to paypal_9?", "return_delivered_order_items", args
    )
    assert not details_listed("Return item 111 of #W1 to paypal_9?", "return_delivered_order_items", args)


def test_action_key_is_stable_per_conversation_and_action() -> None:
    args = {"order_id": "#W1", "reason": "no longer needed"}
    assert action_key("c", "cancel_pending_order", args) == action_key(
        "c", "cancel_pending_order", dict(args)
    )
    assert action_key("c", "cancel_pending_order", args) != action_key("d", "cancel_pending_order", args)
