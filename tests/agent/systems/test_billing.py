"""The store policy is enforced by the billing and CRM systems themselves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agent.store.database import RetailDatabase
from agent.systems.billing import SqliteBilling
from agent.systems.crm import SqliteCRM
from specialist.errors import InvalidInput, NotFound, PolicyViolation

Find = Callable[..., dict[str, Any]]


def _other_variant(db: RetailDatabase, item: dict[str, Any], *, available: bool = True) -> str:
    product = db.get_product(item["product_id"])
    for item_id, variant in product["variants"].items():
        if item_id != item["item_id"] and variant["available"] is available:
            return str(item_id)
    raise LookupError(item["item_id"])


def test_cancel_only_pending_with_a_valid_reason_and_refund(db: RetailDatabase, find_order: Find) -> None:
    billing = SqliteBilling(db)
    delivered = find_order("delivered")
    with pytest.raises(PolicyViolation, match="only pending"):
        billing.cancel_pending_order(delivered["order_id"], "no longer needed")
    pending = find_order("pending")
    with pytest.raises(PolicyViolation, match="reason"):
        billing.cancel_pending_order(pending["order_id"], "too expensive")
    order = billing.cancel_pending_order(pending["order_id"], "ordered by mistake")
    assert order["status"] == "cancelled"
    assert order["payment_history"][-1]["transaction_type"] == "refund"
    assert order["payment_history"][-1]["amount"] == order["payment_history"][0]["amount"]
    with pytest.raises(PolicyViolation):
        billing.cancel_pending_order(pending["order_id"], "ordered by mistake")


def test_cancel_refunds_a_gift_card_at_once(db: RetailDatabase, find_order: Find) -> None:
    order = find_order(
        "pending", lambda o: o["payment_history"][0]["payment_method_id"].startswith("gift_card")
    )
    method = order["payment_history"][0]["payment_method_id"]
    before = db.get_user(order["user_id"])["payment_methods"][method]["balance"]
    SqliteBilling(db).cancel_pending_order(order["order_id"], "no longer needed")
    after = db.get_user(order["user_id"])["payment_methods"][method]["balance"]
    assert after == pytest.approx(before + order["payment_history"][0]["amount"])


def test_returns_only_delivered_items_to_original_method_or_gift_card(
    db: RetailDatabase, find_order: Find
) -> None:
    billing = SqliteBilling(db)
    pending = find_order("pending")
    with pytest.raises(PolicyViolation, match="only delivered"):
        billing.return_delivered_order_items(
            pending["order_id"],
            [pending["items"][0]["item_id"]],
            pending["payment_history"][0]["payment_method_id"],
        )
    order = find_order("delivered")
    user = db.get_user(order["user_id"])
    original = order["payment_history"][0]["payment_method_id"]
    others = [m for m, v in user["payment_methods"].items() if m != original and v["source"] != "gift_card"]
    if others:
        with pytest.raises(PolicyViolation, match="original payment method"):
            billing.return_delivered_order_items(order["order_id"], [order["items"][0]["item_id"]], others[0])
    with pytest.raises(PolicyViolation, match="not in order"):
        billing.return_delivered_order_items(order["order_id"], ["0000000000"], original)
    with pytest.raises(PolicyViolation, match="not one of the customer's"):
        billing.return_delivered_order_items(
            order["order_id"], [order["items"][0]["item_id"]], "paypal_0000000"
        )
    done = billing.return_delivered_order_items(order["order_id"], [order["items"][0]["item_id"]], original)
    assert done["status"] == "return requested"
    assert done["return_items"] == [order["items"][0]["item_id"]]


def test_exchange_and_modify_stay_within_the_product_and_available(
    db: RetailDatabase, find_order: Find
) -> None:
    billing = SqliteBilling(db)
    order = find_order("delivered", lambda o: len(o["items"]) >= 2)
    first, second = order["items"][0], order["items"][1]
    method = order["payment_history"][0]["payment_method_id"]
    with pytest.raises(PolicyViolation, match="not a variant"):
        billing.exchange_delivered_order_items(
            order["order_id"], [first["item_id"]], [second["item_id"]], method
        )
    with pytest.raises(InvalidInput, match="one new item"):
        billing.exchange_delivered_order_items(order["order_id"], [first["item_id"]], [], method)
    try:
        unavailable = _other_variant(db, first, available=False)
    except LookupError:
        unavailable = None
    if unavailable:
        with pytest.raises(PolicyViolation, match="not available"):
            billing.exchange_delivered_order_items(
                order["order_id"], [first["item_id"]], [unavailable], method
            )
    new = _other_variant(db, first)
    done = billing.exchange_delivered_order_items(order["order_id"], [first["item_id"]], [new], method)
    assert done["status"] == "exchange requested" and done["exchange_new_items"] == [new]


def test_modify_items_only_once_and_charges_the_difference(db: RetailDatabase, find_order: Find) -> None:
    billing = SqliteBilling(db)
    order = find_order(
        "pending", lambda o: not o["payment_history"][0]["payment_method_id"].startswith("gift")
    )
    item = order["items"][0]
    method = order["payment_history"][0]["payment_method_id"]
    new = _other_variant(db, item)
    done = billing.modify_pending_order_items(order["order_id"], [item["item_id"]], [new], method)
    assert done["status"] == "pending (item modified)"
    assert done["items"][0]["item_id"] == new
    diff = db.get_product(item["product_id"])["variants"][new]["price"] - item["price"]
    assert done["payment_history"][-1]["amount"] == pytest.approx(abs(diff), abs=0.011)
    with pytest.raises(PolicyViolation, match="already modified"):
        billing.modify_pending_order_items(order["order_id"], [new], [item["item_id"]], method)
    with pytest.raises(PolicyViolation, match="only pending"):
        billing.cancel_pending_order(order["order_id"], "no longer needed")


def test_gift_card_balance_must_cover_a_payment_change(db: RetailDatabase, find_order: Find) -> None:
    billing = SqliteBilling(db)

    def has_poor_gift_card(o: dict[str, Any]) -> bool:
        methods = db.get_user(o["user_id"])["payment_methods"].values()
        paid = o["payment_history"][0]
        return any(
            m["source"] == "gift_card"
            and m["balance"] < paid["amount"]
            and m["id"] != paid["payment_method_id"]
            for m in methods
        )

    order = find_order("pending", has_poor_gift_card)
    card = next(
        m["id"]
        for m in db.get_user(order["user_id"])["payment_methods"].values()
        if m["source"] == "gift_card"
        and m["balance"] < order["payment_history"][0]["amount"]
        and m["id"] != order["payment_history"][0]["payment_method_id"]
    )
    with pytest.raises(PolicyViolation, match="does not cover"):
        billing.modify_pending_order_payment(order["order_id"], card)
    with pytest.raises(PolicyViolation, match="must differ"):
        billing.modify_pending_order_payment(
            order["order_id"], order["payment_history"][0]["payment_method_id"]
        )


def test_idempotency_key_makes_a_retried_write_happen_once(db: RetailDatabase, find_order: Find) -> None:
    billing = SqliteBilling(db)
    order = find_order("pending")
    first = billing.cancel_pending_order(order["order_id"], "no longer needed", idempotency_key="k1")
    again = billing.cancel_pending_order(order["order_id"], "no longer needed", idempotency_key="k1")
    assert first == again
    refunds = [
        p for p in db.get_order(order["order_id"])["payment_history"] if p["transaction_type"] == "refund"
    ]
    assert len(refunds) == 1
    assert db.action_count("cancel_pending_order") == 1


def test_crm_lookups_and_address_change(db: RetailDatabase) -> None:
    crm = SqliteCRM(db)
    user_id, user = next(iter(db.export()["users"].items()))
    assert crm.find_user_id_by_email(user["email"]) == user_id
    with pytest.raises(NotFound):
        crm.find_user_id_by_email("nobody@example.com")
    item_id = db.get_order(user["orders"][0])["items"][0]["item_id"]
    assert crm.get_item_details(item_id)["item_id"] == item_id
    address = {
        "address1": "1 New Road",
        "address2": "",
        "city": "Austin",
        "state": "TX",
        "country": "USA",
        "zip": "78701",
    }
    assert crm.modify_user_address(user_id, address)["address"] == address
    with pytest.raises(InvalidInput):
        crm.modify_user_address(user_id, {"address1": "x"})
    assert db.get_user(user_id)["address"] == address


def test_check_write_raises_what_the_write_would_and_changes_nothing(
    db: RetailDatabase, find_order: Find
) -> None:
    billing = SqliteBilling(db)
    delivered, pending = find_order("delivered"), find_order("pending")
    before = db.export()
    with pytest.raises(PolicyViolation, match="only pending"):
        billing.check_write(
            "cancel_pending_order", {"order_id": delivered["order_id"], "reason": "no longer needed"}
        )
    with pytest.raises(PolicyViolation, match="not in order"):
        billing.check_write(
            "return_delivered_order_items",
            {
                "order_id": delivered["order_id"],
                "item_ids": ["0000000000"],
                "payment_method_id": delivered["payment_history"][0]["payment_method_id"],
            },
        )
    with pytest.raises(InvalidInput, match="Bad arguments"):
        billing.check_write("cancel_pending_order", {"order_id": pending["order_id"]})
    with pytest.raises(InvalidInput, match="not a billing write"):
        billing.check_write("get_order_details", {"order_id": pending["order_id"]})
    cancel = {"order_id": pending["order_id"], "reason": "no longer needed"}
    billing.check_write("cancel_pending_order", cancel)  # allowed: the whole write ran, then rolled back
    assert db.export() == before and db.action_count() == 0
    billing.cancel_pending_order(**cancel, idempotency_key="k1")
    billing.check_write("cancel_pending_order", cancel, idempotency_key="k1")  # a repeat returns the record
    with pytest.raises(PolicyViolation, match="only pending"):
        billing.check_write("cancel_pending_order", cancel)  # a new one would be refused
    assert db.action_count() == 1
