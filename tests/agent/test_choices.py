"""What may happen next, derived from a real store's records (`agent.choices`)."""

from __future__ import annotations

import json
from typing import Any

from agent.chat_model import ToolCall
from agent.choices import derive, read_facts
from agent.store.database import RetailDatabase


def _call(name: str, arguments: dict[str, Any], n: int, result: str) -> list[dict[str, Any]]:
    call_id = f"c{n}"
    return [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
            ],
        },
        {"role": "tool", "content": result, "tool_call_id": call_id, "name": name},
    ]


def _customer(db: RetailDatabase, status: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    data = db.export()
    for order in data["orders"].values():
        if order["status"] == status:
            return data["users"][order["user_id"]], order, data
    raise LookupError(status)


def test_nothing_of_an_account_before_identification(db: RetailDatabase) -> None:
    user, order, _ = _customer(db, "delivered")
    said = [{"role": "user", "content": f"hi, I want to return something from {order['order_id']}"}]
    possible = derive(said)
    assert "get_order_details" not in possible.names()
    assert not any(name.startswith(("return", "cancel", "modify", "exchange")) for name in possible.names())
    assert not possible.admits(ToolCall("find_user_id_by_email", {"email": user["email"]}))  # not said yet
    said.append({"role": "user", "content": f"my email is {user['email']}"})
    possible = derive(said)
    assert possible.admits(ToolCall("find_user_id_by_email", {"email": user["email"]}))
    assert not possible.admits(ToolCall("find_user_id_by_email", {"email": "someone@else.com"}))
    assert possible.reply and not possible.reply_text  # the graph asks for identification itself


def test_name_and_zip_come_from_the_customers_words(db: RetailDatabase) -> None:
    user, _, _ = _customer(db, "pending")
    first, last, zip_code = user["name"]["first_name"], user["name"]["last_name"], user["address"]["zip"]
    said = [
        {
            "role": "user",
            "content": f"Good morning. I'm {first} {last}, zip code {zip_code}. I forgot my email.",
        }
    ]
    possible = derive(said)
    assert possible.admits(
        ToolCall("find_user_id_by_name_zip", {"first_name": first, "last_name": last, "zip": zip_code})
    )
    assert not possible.admits(
        ToolCall("find_user_id_by_name_zip", {"first_name": first, "last_name": last, "zip": "00000"})
    )


def test_writes_only_on_orders_looked_up_in_the_status_they_need(db: RetailDatabase) -> None:
    user, order, _data = _customer(db, "delivered")
    uid = user["user_id"] if "user_id" in user else order["user_id"]
    history: list[dict[str, Any]] = [
        {"role": "user", "content": f"I'm {user['email']}, I want to return an item"}
    ]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, uid)
    history += _call("get_user_details", {"user_id": uid}, 2, json.dumps({**user, "user_id": uid}))
    possible = derive(history)
    assert "return_delivered_order_items" not in possible.names()  # no order looked up yet
    assert possible.admits(ToolCall("get_order_details", {"order_id": order["order_id"]}))
    assert not possible.admits(ToolCall("get_order_details", {"order_id": "#W0000000"}))  # invented
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    possible = derive(history)
    item = order["items"][0]["item_id"]
    paid = order["payment_history"][0]["payment_method_id"]
    assert possible.admits(
        ToolCall(
            "return_delivered_order_items",
            {"order_id": order["order_id"], "item_ids": [item], "payment_method_id": paid},
        )
    )
    assert not possible.admits(
        ToolCall(
            "return_delivered_order_items",
            {"order_id": order["order_id"], "item_ids": ["123"], "payment_method_id": paid},
        )
    )
    assert "cancel_pending_order" not in possible.names()  # delivered, not pending
    # a read is not repeated with the same arguments since the last write
    assert not possible.admits(ToolCall("get_order_details", {"order_id": order["order_id"]}))
    assert read_facts(history).user_id == uid


def test_exchange_needs_the_product_and_pairs_each_item_with_its_own_variants(db: RetailDatabase) -> None:
    user, order, data = _customer(db, "delivered")
    uid = order["user_id"]
    item = order["items"][0]
    product = data["products"][item["product_id"]]
    history: list[dict[str, Any]] = [
        {"role": "user", "content": f"email {user['email']}: exchange my {item['name']}"}
    ]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, uid)
    history += _call("get_user_details", {"user_id": uid}, 2, json.dumps({**user, "user_id": uid}))
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    assert "exchange_delivered_order_items" not in derive(history).names()
    history += _call("get_product_details", {"product_id": item["product_id"]}, 4, json.dumps(product))
    possible = derive(history)
    others = [
        v["item_id"]
        for v in product["variants"].values()
        if v["available"] and v["item_id"] != item["item_id"]
    ]
    payment = next(iter(user["payment_methods"]))
    args = {"order_id": order["order_id"], "item_ids": [item["item_id"]], "payment_method_id": payment}
    if others:
        assert possible.admits(
            ToolCall("exchange_delivered_order_items", {**args, "new_item_ids": [others[0]]})
        )
    assert not possible.admits(
        ToolCall("exchange_delivered_order_items", {**args, "new_item_ids": [item["item_id"]]})
    )
    unavailable = [v["item_id"] for v in product["variants"].values() if not v["available"]]
    for variant in unavailable[:1]:
        assert not possible.admits(
            ToolCall("exchange_delivered_order_items", {**args, "new_item_ids": [variant]})
        )
