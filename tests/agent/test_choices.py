"""What may happen next, derived from a real store's records (`agent.choices`)."""

from __future__ import annotations

import json
from typing import Any

from agent import prompts
from agent.chat_model import ToolCall
from agent.choices import (
    Facts,
    asks_for_changes,
    call_key,
    derive,
    item_focus,
    mentioned_items,
    read_facts,
    writable_orders,
)
from agent.store.database import RetailDatabase
from agent.tool_specs import WRITE_TOOLS

WRITE_ORDER_TOOLS = WRITE_TOOLS - {"modify_user_address"}


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


def _return(order: dict[str, Any], item_id: str) -> ToolCall:
    """A return of one item of the order, refunded to how it was paid."""
    paid = order["payment_history"][0]["payment_method_id"]
    arguments = {"order_id": order["order_id"], "item_ids": [item_id], "payment_method_id": paid}
    return ToolCall("return_delivered_order_items", arguments)


def _customer(db: RetailDatabase, status: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    data = db.export()
    for order in data["orders"].values():
        if order["status"] == status:
            return data["users"][order["user_id"]], order, data
    raise LookupError(status)


def _order_of(status: str, *names: str, order_id: str = "#W1000001") -> dict[str, Any]:
    """An order of items with these names (item ids 1, 2, ...; product ids p1, p2, ...)."""
    items = [{"name": n, "item_id": str(k), "product_id": f"p{k}"} for k, n in enumerate(names, start=1)]
    return {"order_id": order_id, "status": status, "items": items}


def _product_of(product_id: str, name: str, colours: dict[str, tuple[str, float]]) -> dict[str, Any]:
    """A product whose available variants differ by colour: item id -> (colour, price)."""
    variants = {
        item: {"item_id": item, "options": {"color": colour}, "available": True, "price": price}
        for item, (colour, price) in colours.items()
    }
    return {"product_id": product_id, "name": name, "variants": variants}


def _swap_args(order_id: str, old: str, new: str, pay: str) -> dict[str, Any]:
    """The arguments of a one-item swap (an exchange or an item change)."""
    return {"order_id": order_id, "item_ids": [old], "new_item_ids": [new], "payment_method_id": pay}


def _facts_after(text: str, *orders: dict[str, Any]) -> Facts:
    """The facts once the customer said `text` and these orders were looked up."""
    history: list[dict[str, Any]] = [{"role": "user", "content": text}]
    for n, order in enumerate(orders, start=1):
        history += _call("get_order_details", {"order_id": order["order_id"]}, n, json.dumps(order))
    return read_facts(history)


def test_nothing_of_an_account_before_identification(db: RetailDatabase) -> None:
    user, order, _ = _customer(db, "delivered")
    said = [{"role": "user", "content": f"hi, I want to return something from {order['order_id']}"}]
    possible = derive(said)
    assert "get_order_details" not in possible.names()
    assert not any(name.startswith(("return", "cancel", "modify", "exchange")) for name in possible.names())
    assert not possible.admits(ToolCall("find_user_id_by_email", {"email": user["email"]}))  # not said yet
    assert possible.reply and not possible.reply_text  # the graph asks for identification itself
    said.append({"role": "user", "content": f"my email is {user['email']}"})
    possible = derive(said)
    assert possible.admits(ToolCall("find_user_id_by_email", {"email": user["email"]}))
    assert not possible.admits(ToolCall("find_user_id_by_email", {"email": "someone@else.com"}))
    assert possible.names() == ["find_user_id_by_email"] and not possible.reply  # who they are comes first


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
    # The safety rules alone (what a reviewer may pick); the agent's guided steps are narrower (below).
    user, order, _data = _customer(db, "delivered")
    uid = user["user_id"] if "user_id" in user else order["user_id"]
    history: list[dict[str, Any]] = [
        {"role": "user", "content": f"I'm {user['email']}, I want to return an item"}
    ]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, uid)
    history += _call("get_user_details", {"user_id": uid}, 2, json.dumps({**user, "user_id": uid}))
    possible = derive(history, guided=False)
    assert "return_delivered_order_items" not in possible.names()  # no order looked up yet
    assert possible.admits(ToolCall("get_order_details", {"order_id": order["order_id"]}))
    assert not possible.admits(ToolCall("get_order_details", {"order_id": "#W0000000"}))  # invented
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    possible = derive(history, guided=False)
    assert possible.admits(_return(order, order["items"][0]["item_id"]))
    assert not possible.admits(_return(order, "123"))  # not an item of the order
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
    payment = order["payment_history"][0]["payment_method_id"]  # no method named: the order's own
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


def test_before_the_profile_an_exchange_is_paid_as_its_order_was(db: RetailDatabase) -> None:
    user, order, data = _customer(db, "delivered")
    item = order["items"][0]
    product = data["products"][item["product_id"]]
    others = [
        v["item_id"]
        for v in product["variants"].values()
        if v["available"] and v["item_id"] != item["item_id"]
    ]
    said = f"email {user['email']}: exchange the {item['name']} of order {order['order_id']} for another one"
    history: list[dict[str, Any]] = [{"role": "user", "content": said}]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, order["user_id"])
    history += _call("get_order_details", {"order_id": order["order_id"]}, 2, json.dumps(order))
    history += _call("get_product_details", {"product_id": item["product_id"]}, 3, json.dumps(product))
    paid = order["payment_history"][0]["payment_method_id"]
    args = {"order_id": order["order_id"], "item_ids": [item["item_id"]], "new_item_ids": others[:1]}
    possible = derive(history)  # the profile not looked up: the order's own payment is the customer's
    assert possible.admits(ToolCall("exchange_delivered_order_items", {**args, "payment_method_id": paid}))
    assert not possible.admits(
        ToolCall("exchange_delivered_order_items", {**args, "payment_method_id": "paypal_0000000"})
    )


# --- the guided steps: the work in the order a support agent does it ---


def _two_order_customer(db: RetailDatabase) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A customer with at least two orders, the last one delivered, holding an item named in no other."""
    data = db.export()
    for uid, user in data["users"].items():
        orders = [data["orders"][o] for o in user["orders"] if o in data["orders"]]
        if len(orders) < 2 or orders[-1]["status"] != "delivered":
            continue
        elsewhere = {i["name"] for o in orders[:-1] for i in o["items"]}
        if any(i["name"] not in elsewhere for i in orders[-1]["items"]):
            return {**user, "user_id": uid}, orders
    raise LookupError("no customer with two orders")


def _identified(user: dict[str, Any], text: str) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = [{"role": "user", "content": f"{text} My email is {user['email']}."}]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, user["user_id"])
    history += _call("get_user_details", {"user_id": user["user_id"]}, 2, json.dumps(user))
    return history


def test_orders_are_looked_up_one_at_a_time_named_ones_first(db: RetailDatabase) -> None:
    user, orders = _two_order_customer(db)
    first, last = orders[0]["order_id"], orders[-1]["order_id"]
    history = _identified(user, f"I need some help with my order {last}.")
    possible = derive(history)
    assert possible.admits(ToolCall("get_order_details", {"order_id": last}))
    assert not possible.admits(ToolCall("get_order_details", {"order_id": first}))  # not yet: one at a time
    assert derive(history, guided=False).admits(ToolCall("get_order_details", {"order_id": first}))
    history += _call("get_order_details", {"order_id": last}, 3, json.dumps(orders[-1]))
    possible = derive(history)
    assert possible.admits(ToolCall("get_order_details", {"order_id": first}))  # then the profile's, in order


def test_a_write_waits_for_the_order_holding_what_the_customer_names(db: RetailDatabase) -> None:
    user, orders = _two_order_customer(db)
    target = orders[-1]
    elsewhere = {i["name"] for o in orders[:-1] for i in o["items"]}
    item = next(i for i in target["items"] if i["name"] not in elsewhere)
    history = _identified(user, f"I'd like to return the {item['name'].lower()} I got.")
    for n, order in enumerate(orders[:-1], start=3):
        history += _call("get_order_details", {"order_id": order["order_id"]}, n, json.dumps(order))
        possible = derive(history)
        # the orders read so far hold nothing the customer named: no write yet, the next lookup instead
        assert not any(a.name in WRITE_ORDER_TOOLS for a in possible.actions), possible.names()
    assert possible.admits(ToolCall("get_order_details", {"order_id": target["order_id"]}))
    history += _call("get_order_details", {"order_id": target["order_id"]}, 9, json.dumps(target))
    possible = derive(history)
    paid = target["payment_history"][0]["payment_method_id"]
    ret = {"order_id": target["order_id"], "payment_method_id": paid}
    assert possible.admits(ToolCall("return_delivered_order_items", {**ret, "item_ids": [item["item_id"]]}))
    others = [i["item_id"] for i in target["items"] if i["name"] != item["name"]]
    for other in others[:1]:  # an item the customer did not name is not returned
        assert not possible.admits(ToolCall("return_delivered_order_items", {**ret, "item_ids": [other]}))
        assert derive(history, guided=False).admits(
            ToolCall("return_delivered_order_items", {**ret, "item_ids": [other]})
        )
    assert "get_product_details" not in possible.names()  # a return needs no product lookup
    history.append({"role": "user", "content": "Which other colors does it come in?"})
    products = derive(history).action("get_product_details")  # a product question: the named item's
    assert products is not None and products.slots[0].values == (item["product_id"],)


def test_who_they_are_then_their_profile_come_before_any_other_step(db: RetailDatabase) -> None:
    user, orders = _two_order_customer(db)
    first, last = user["name"]["first_name"], user["name"]["last_name"]
    zip_code = user["address"]["zip"]
    text = f"I'm {first} {last}, zip {zip_code}, or try {user['email']}. I want to exchange the lamp."
    history: list[dict[str, Any]] = [{"role": "user", "content": text}]
    possible = derive(history)
    assert set(possible.names()) == {"find_user_id_by_email", "find_user_id_by_name_zip"}
    assert not possible.reply  # no search, no reply, while who they are can be looked up
    assert possible.sole_call() is None  # which lookup is the model's choice
    wrong = {"first_name": first, "last_name": last, "zip": zip_code}
    history += _call("find_user_id_by_name_zip", wrong, 1, "Error: user not found")
    possible = derive(history)
    assert possible.names() == ["find_user_id_by_email"]  # a lookup not tried yet, before a hand-off
    assert not possible.admits(ToolCall("find_user_id_by_name_zip", wrong))
    # one call, one email in the words: nothing is left to a model
    assert possible.sole_call() == ToolCall("find_user_id_by_email", {"email": user["email"]})
    history += _call("find_user_id_by_email", {"email": user["email"]}, 2, user["user_id"])
    possible = derive(history)
    assert possible.names() == ["get_user_details"] and not possible.reply  # then the profile
    assert possible.sole_call() == ToolCall("get_user_details", {"user_id": user["user_id"]})
    question = [{"role": "user", "content": "Can I return something I bought?"}]
    possible = derive(question, user_id=user["user_id"])  # a question to search: it may come first
    assert {"search_policies", "get_user_details"} <= set(possible.names())
    assert possible.sole_call() is None
    named = orders[-1]["order_id"]
    history = [{"role": "user", "content": f"I have a question about order {named}. I am {user['email']}"}]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, user["user_id"])
    names = derive(history).names()
    assert "get_order_details" in names and "get_user_details" not in names  # an order named comes first
    history += _call("get_order_details", {"order_id": named}, 2, json.dumps(orders[-1]))
    possible = derive(history)
    assert "get_user_details" in possible.names() and possible.reply  # and may be all the request needs


def test_a_change_of_address_alone_looks_up_no_product(db: RetailDatabase) -> None:
    user, orders = _two_order_customer(db)
    move = "Please change the addresses of all my orders that can still be changed to 101 Highway, New York."
    history = _identified(user, move)
    history += _call("get_order_details", {"order_id": orders[0]["order_id"]}, 3, json.dumps(orders[0]))
    names = derive(history).names()
    assert "get_product_details" not in names and "list_all_product_types" not in names
    history.append({"role": "user", "content": "And can I change the lamp to a blue one?"})
    assert "list_all_product_types" in derive(history).names()  # an item swap asks for products


def test_a_policy_search_comes_first_in_a_turn(db: RetailDatabase) -> None:
    user, orders = _two_order_customer(db)
    history = _identified(user, "How long do I have to return something?")
    assert "search_policies" in derive(history).names()  # identification and the profile do not count
    history += _call("get_order_details", {"order_id": orders[0]["order_id"]}, 3, json.dumps(orders[0]))
    assert "search_policies" not in derive(history).names()  # in the middle of the work: no
    history.append({"role": "user", "content": "And can I return it without the box?"})
    assert derive(history).admits(
        ToolCall("search_policies", {"query": "And can I return it without the box?"})
    )


def test_a_hand_off_when_asked_for_or_once_the_records_were_looked_into(db: RetailDatabase) -> None:
    user, orders = _two_order_customer(db)
    said = [{"role": "user", "content": f"cancel my pending order, my email is {user['email']}"}]
    assert "transfer_to_human_agents" not in derive(said).names()
    asked = [{"role": "user", "content": "can I talk to a real person please"}]
    assert "transfer_to_human_agents" in derive(asked).names()
    history = _identified(user, "My package is late.")
    assert "transfer_to_human_agents" not in derive(history).names()
    slip = [*history, *_call("calculate", {"expression": "my order"}, 3, "Error: Cannot calculate")]
    assert "transfer_to_human_agents" not in derive(slip).names()  # the model's own slip: not a reason
    refused = {"order_id": orders[0]["order_id"], "reason": "no longer needed"}
    failed = [*history, *_call("cancel_pending_order", refused, 3, "Error: the order is not pending")]
    assert "transfer_to_human_agents" in derive(failed).names()  # a write the systems refused
    history += _call("get_order_details", {"order_id": orders[0]["order_id"]}, 3, json.dumps(orders[0]))
    assert "transfer_to_human_agents" in derive(history).names()


def test_a_write_is_only_of_the_kind_the_request_asks_for(db: RetailDatabase) -> None:
    data = db.export()
    user, orders = next(
        ({**u, "user_id": uid}, [data["orders"][o] for o in u["orders"]])
        for uid, u in data["users"].items()
        if {"pending", "delivered"} <= {data["orders"][o]["status"] for o in u["orders"]}
    )
    delivered = next(o for o in orders if o["status"] == "delivered")
    pending = next(o for o in orders if o["status"] == "pending")
    history = _identified(user, "I want to cancel my pending order, I don't need it anymore.")
    for n, order in enumerate(orders, start=3):
        history += _call("get_order_details", {"order_id": order["order_id"]}, n, json.dumps(order))
    possible = derive(history)  # every order looked up: any of them may be written, but only a cancel
    assert possible.admits(
        ToolCall("cancel_pending_order", {"order_id": pending["order_id"], "reason": "no longer needed"})
    )
    assert "return_delivered_order_items" not in possible.names()
    assert "get_product_details" not in possible.names()  # no swap, no product question
    assert "list_all_product_types" not in possible.names() and "calculate" not in possible.names()
    assert "return_delivered_order_items" in derive(history, guided=False).names()
    history.append({"role": "user", "content": "Actually, I'd rather send back what I got instead."})
    possible = derive(history)
    assert possible.admits(_return(delivered, delivered["items"][0]["item_id"]))
    history.append({"role": "user", "content": "yes"})  # a bare yes keeps the request as it was
    assert "return_delivered_order_items" in derive(history).names()


def test_a_policy_search_is_of_the_question_just_asked() -> None:
    said = [
        {"role": "user", "content": "How long do I have to return an item?"},
        {"role": "assistant", "content": "You have 30 days."},
        {"role": "user", "content": "Do gift card balances expire?"},
    ]
    search = derive(said).action("search_policies")
    assert search is not None and search.slots[0].values == ("Do gift card balances expire?",)
    assert not derive(said).admits(
        ToolCall("search_policies", {"query": "How long do I have to return an item?"})
    )


def test_a_request_about_the_customers_own_orders_is_not_a_policy_search() -> None:
    for text in [
        "I want to cancel my pending order, I don't need it anymore",
        "What is the status of my orders?",
    ]:
        assert "search_policies" not in derive([{"role": "user", "content": text}]).names(), text
    for text in [
        "Can I cancel my order after it shipped?",
        "I want to return something, how long do I have?",
    ]:
        assert "search_policies" in derive([{"role": "user", "content": text}]).names(), text


def _pending_customer(db: RetailDatabase) -> tuple[dict[str, Any], dict[str, Any]]:
    """A customer and a pending order of theirs, shipped (in the store) to a relative's address."""
    data = db.export()
    for uid, user in data["users"].items():
        for oid in user["orders"]:
            order = data["orders"].get(oid)
            if order and order["status"] == "pending":
                away = {**order["address"], "address1": "12 Birch Road", "city": "Tacoma", "zip": "98402"}
                with db.transaction() as conn:
                    db.put_order(conn, {**order, "address": away})
                return {**user, "user_id": uid}, db.get_order(oid)
    raise LookupError("no pending order")


def _move(order: dict[str, Any], **address: str) -> ToolCall:
    return ToolCall("modify_pending_order_address", {"order_id": order["order_id"], **address})


def test_an_address_change_writes_the_address_the_customer_wrote_out(db: RetailDatabase) -> None:
    user, order = _pending_customer(db)
    history = _identified(
        user, f"Please ship order {order['order_id']} to 445 Maple Drive, Suite 394, Fort Worth, Texas 76165."
    )
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    possible = derive(history)
    written = {
        "address1": "445 Maple Drive",
        "address2": "Suite 394",
        "city": "Fort Worth",
        "state": "TX",
        "country": "USA",
        "zip": "76165",
    }
    assert possible.admits(_move(order, **written))
    for wrong in ({"zip": "76156"}, {"address1": "445 Maple Dr"}, {"state": "Texas"}):
        assert not possible.admits(_move(order, **{**written, **wrong}))  # no digit dropped, nothing reworded
    assert not possible.admits(_move(order, **user["address"]))  # an address the customer did not ask for
    # the reviewer (unguided) may type any address
    assert derive(history, guided=False).admits(_move(order, **{**written, "zip": "76156"}))


def test_an_address_change_to_one_on_the_records_is_that_whole_address(db: RetailDatabase) -> None:
    user, order = _pending_customer(db)
    history = _identified(
        user, f"Order {order['order_id']} went to the wrong place, send it to my default address."
    )
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    possible = derive(history)
    assert possible.admits(_move(order, **user["address"]))
    assert not possible.admits(_move(order, **order["address"]))  # where it goes already: not a change
    home = user["address"]
    assert not possible.admits(_move(order, **{**home, "address2": ""}))
    history.append({"role": "user", "content": "Actually no, send it to 12 Oak Street instead."})
    possible = derive(history)  # an address written out that does not parse: the model writes it
    assert possible.admits(_move(order, **{**home, "address1": "12 Oak Street"}))


def test_changing_the_default_address_back_offers_the_one_it_had(db: RetailDatabase) -> None:
    user, _ = _pending_customer(db)
    new = {"address1": "101 Highway", "address2": "", "city": "New York", "state": "NY", "country": "USA"}
    history = _identified(user, "Change my default address to 101 Highway, New York, NY 10001.")
    # the profile as the CRM returns it after the change (the record has no user id in it)
    changed = {**{k: v for k, v in user.items() if k != "user_id"}, "address": {**new, "zip": "10001"}}
    args = {"user_id": user["user_id"], **new, "zip": "10001"}
    assert derive(history).admits(ToolCall("modify_user_address", args))
    history += _call("modify_user_address", args, 3, json.dumps(changed))
    history.append(
        {"role": "user", "content": "Sorry, please change my default address back to the original."}
    )
    possible = derive(history)
    assert possible.admits(ToolCall("modify_user_address", {"user_id": user["user_id"], **user["address"]}))
    assert not possible.admits(ToolCall("modify_user_address", args))  # what it is now: not a change


def _order_with_items(db: RetailDatabase, status: str, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A customer and an order of theirs in that status with at least `n` differently named items."""
    data = db.export()
    for order in data["orders"].values():
        if order["status"] == status and len({i["name"] for i in order["items"]}) >= n:
            user = data["users"][order["user_id"]]
            return {**user, "user_id": order["user_id"]}, order
    raise LookupError(f"no {status} order with {n} items")


def test_a_return_is_of_exactly_the_items_named_for_it(db: RetailDatabase) -> None:
    user, order = _order_with_items(db, "delivered", 3)
    first, second, third = order["items"][:3]
    history = _identified(
        user,
        f"I want to return the {first['name'].lower()} and the {second['name'].lower()}, "
        f"and exchange the {third['name'].lower()} for another color.",
    )
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    paid = order["payment_history"][0]["payment_method_id"]

    def ret(*items: dict[str, Any]) -> ToolCall:
        ids = [i["item_id"] for i in items]
        arguments = {"order_id": order["order_id"], "item_ids": ids, "payment_method_id": paid}
        return ToolCall("return_delivered_order_items", arguments)

    possible = derive(history)
    assert possible.admits(ret(first, second))
    assert not possible.admits(ret(first))  # not one of them only: both were asked for
    assert not possible.admits(ret(first, second, third))  # the third is to be exchanged, not returned
    assert derive(history, guided=False).admits(ret(first))
    history.append({"role": "user", "content": f"Actually, only the {second['name'].lower()}, please."})
    possible = derive(history)
    assert possible.admits(ret(second)) and not possible.admits(ret(first, second))


def test_an_exchange_waits_for_every_named_items_product(db: RetailDatabase) -> None:
    user, order = _order_with_items(db, "delivered", 2)
    first, second = order["items"][:2]
    history = _identified(
        user,
        f"I'd like to exchange the {first['name'].lower()} and the {second['name'].lower()} for others.",
    )
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    history += _call(
        "get_product_details",
        {"product_id": first["product_id"]},
        4,
        json.dumps(db.get_product(first["product_id"])),
    )
    assert "exchange_delivered_order_items" not in derive(history).names()  # one exchange per order: wait
    assert "exchange_delivered_order_items" in derive(history, guided=False).names()
    history += _call(
        "get_product_details",
        {"product_id": second["product_id"]},
        5,
        json.dumps(db.get_product(second["product_id"])),
    )
    action = derive(history).action("exchange_delivered_order_items")
    assert action is not None
    items = next(s for s in action.slots if s.name == "item_ids")
    assert items.is_whole({"order_id": order["order_id"]})
    assert set(items.domain({"order_id": order["order_id"]})) == {first["item_id"], second["item_id"]}


def test_a_word_shared_with_a_named_item_does_not_name_another() -> None:
    order = _order_of("delivered", "Smart Thermostat", "Smart Watch", "Jigsaw Puzzle")
    facts = _facts_after("Exchange the smart thermostat, and return the 1000-piece jigsaw.", order)
    assert [i["item_id"] for i in mentioned_items(facts)] == ["1", "3"]
    assert item_focus(facts, "return") == {"3"} and item_focus(facts, "swap") == {"1"}


def test_a_word_ending_a_compound_name_or_two_words_making_one_name_the_item() -> None:
    order = _order_of("pending", "Wristwatch", "Bookshelf", "Notebook")

    def named(text: str, *orders: dict[str, Any]) -> list[str]:
        return [i["item_id"] for i in mentioned_items(_facts_after(text, *(orders or (order,))))]

    assert named("I'd like to change my watch to one with a black dial.") == ["1"]
    assert named("Change the book shelf to 4 foot, same colour.") == ["2"]
    assert named("Please change the note book.") == ["3"]
    assert named("Return all the bookshelves and both watches.") == ["1", "2"]  # plurals past the "s"
    # the start of a compound, or a short end of one ("tch"), names nothing
    assert named("The wrist strap broke; cancel the order.") == []
    assert named("I want to cancel the order.") == []
    # a head said as a whole word wins over a compound that ends with it
    smart = _order_of("pending", "Wristwatch", "Bookshelf", "Notebook", "Smart Watch")
    assert named("Return the watch.", smart) == ["4"]


def test_asking_to_talk_to_a_person_is_a_hand_off_only(db: RetailDatabase) -> None:
    user, _ = _two_order_customer(db)
    history = _identified(user, "Can I talk to a human about my refund, please?")
    possible = derive(history)
    assert possible.names() == ["transfer_to_human_agents"] and not possible.reply  # not a search, no excuse
    assert "search_policies" in derive(history, guided=False).names()
    history.append({"role": "user", "content": "How long does a refund take to reach my card?"})
    assert "search_policies" in derive(history).names()  # a question again: searched, as any other


def test_a_status_question_is_answered_only_after_the_orders_were_looked_up(db: RetailDatabase) -> None:
    user, orders = _two_order_customer(db)
    history = _identified(user, "What is the status of my orders?")
    for n, order in enumerate(orders, start=3):
        possible = derive(history)
        assert not possible.reply and possible.admits(
            ToolCall("get_order_details", {"order_id": order["order_id"]})
        )  # no answer from thin air: the next order first
        assert derive(history, guided=False).reply
        history += _call("get_order_details", {"order_id": order["order_id"]}, n, json.dumps(order))
    possible = derive(history)
    assert possible.reply and not possible.reply_text  # every order looked up: the graph says their status
    assert possible.actions == () and possible.status_of == tuple(o["order_id"] for o in orders)
    policy = _identified(user, "What is the status of my orders, and how long do returns take?")
    for n, order in enumerate(orders, start=3):
        policy += _call("get_order_details", {"order_id": order["order_id"]}, n, json.dumps(order))
    assert derive(policy).status_of == ()  # a policy question too: not only the records' status
    asked = _identified(user, f"Where is order {orders[0]['order_id']}?")
    asked += _call("get_order_details", {"order_id": orders[0]["order_id"]}, 3, json.dumps(orders[0]))
    assert derive(asked).reply  # the order asked about was looked up


def test_a_refund_goes_to_the_kind_of_payment_the_customer_names(db: RetailDatabase) -> None:
    data = db.export()
    user, order = next(
        ({**data["users"][o["user_id"]], "user_id": o["user_id"]}, o)
        for o in data["orders"].values()
        if o["status"] == "delivered"
        and not o["payment_history"][0]["payment_method_id"].startswith("gift_card")
        and any(p.startswith("gift_card") for p in data["users"][o["user_id"]]["payment_methods"])
    )
    item = order["items"][0]
    paid = order["payment_history"][0]["payment_method_id"]
    gift = next(p for p in user["payment_methods"] if p.startswith("gift_card"))

    def ret(to: str) -> ToolCall:
        arguments = {"order_id": order["order_id"], "item_ids": [item["item_id"]], "payment_method_id": to}
        return ToolCall("return_delivered_order_items", arguments)

    for words, refund_to, not_to in (
        ("Please put the refund on my gift card.", gift, paid),
        ("Refund it to the original payment method.", paid, gift),
    ):
        history = _identified(
            user, f"I want to return the {item['name'].lower()} from {order['order_id']}. {words}"
        )
        history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
        possible = derive(history)
        assert possible.admits(ret(refund_to)) and not possible.admits(ret(not_to)), words
        assert derive(history, guided=False).admits(ret(not_to))


def _return_items(
    history: list[dict[str, Any]], order_id: str, **kwargs: Any
) -> tuple[tuple[str, ...], bool]:
    """The items a guided return on that order offers, and whether the list is all of them."""
    action = derive(history, **kwargs).action("return_delivered_order_items")
    assert action is not None
    items = next(s for s in action.slots if s.name == "item_ids")
    return items.domain({"order_id": order_id}), items.is_whole({"order_id": order_id})


def test_everything_but_the_item_named_after_except(db: RetailDatabase) -> None:
    user, order = _order_with_items(db, "delivered", 3)
    kept = order["items"][-1]
    history = _identified(
        user, f"I want to return everything from order {order['order_id']} except the {kept['name'].lower()}."
    )
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    offered, whole = _return_items(history, order["order_id"])
    assert whole and set(offered) == {i["item_id"] for i in order["items"]} - {kept["item_id"]}


def test_two_alike_items_are_both_returned_only_when_the_customer_says_so() -> None:
    order = {
        "order_id": "#W1000001",
        "status": "delivered",
        "items": [
            {"name": "Skateboard", "item_id": "1", "product_id": "p1", "options": {}},
            {"name": "Skateboard", "item_id": "2", "product_id": "p1", "options": {}},
            {"name": "Smart Watch", "item_id": "3", "product_id": "p2", "options": {}},
        ],
        "payment_history": [{"transaction_type": "payment", "amount": 1.0, "payment_method_id": "paypal_1"}],
    }
    lookup = _call("get_order_details", {"order_id": "#W1000001"}, 1, json.dumps(order))
    for words, whole_list in (
        ("I want to return the two skateboards from #W1000001.", True),
        ("I want to return a skateboard from #W1000001.", False),  # which one: the model picks
    ):
        history = [{"role": "user", "content": words}, *lookup]
        offered, whole = _return_items(history, "#W1000001", user_id="u1")
        assert set(offered) == {"1", "2"} and whole is whole_list, words


def test_an_order_the_customer_names_is_looked_up_before_the_profile(db: RetailDatabase) -> None:
    user, order, _ = _customer(db, "delivered")
    uid = order["user_id"]
    history: list[dict[str, Any]] = [
        {"role": "user", "content": f"I'm {user['email']}, please return an item of {order['order_id']}"}
    ]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, uid)
    possible = derive(history)
    assert "get_user_details" not in possible.names()
    assert possible.admits(ToolCall("get_order_details", {"order_id": order["order_id"]}))
    history += _call("get_order_details", {"order_id": order["order_id"]}, 2, json.dumps(order))
    assert derive(history).admits(ToolCall("get_user_details", {"user_id": uid}))  # then the profile
    # without an order named, the profile comes first as before
    plain = [{"role": "user", "content": f"I'm {user['email']}, I want to return an item"}]
    plain += _call("find_user_id_by_email", {"email": user["email"]}, 1, uid)
    assert derive(plain).names() and "get_user_details" in derive(plain).names()


def test_a_request_about_all_orders_looks_each_one_up_before_a_write(db: RetailDatabase) -> None:
    data = db.export()
    user = next(  # a customer with two pending orders or more
        u
        for u in data["users"].values()
        if sum(data["orders"][o]["status"] == "pending" for o in u["orders"] if o in data["orders"]) >= 2
    )
    uid = next(o["user_id"] for o in data["orders"].values() if o["order_id"] in user["orders"])
    orders = [data["orders"][o] for o in user["orders"]]
    history: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": f"I'm {user['email']}. Please cancel all my pending orders, no longer needed.",
        }
    ]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, uid)
    history += _call("get_user_details", {"user_id": uid}, 2, json.dumps({**user, "user_id": uid}))
    for n, order in enumerate(orders[:-1], start=3):
        history += _call("get_order_details", {"order_id": order["order_id"]}, n, json.dumps(order))
        possible = derive(history)
        assert "cancel_pending_order" not in possible.names()  # an order is still not looked up
        assert possible.admits(ToolCall("get_order_details", {"order_id": orders[n - 2]["order_id"]}))
    last = orders[-1]
    history += _call("get_order_details", {"order_id": last["order_id"]}, 9, json.dumps(last))
    pending = next(o for o in orders if o["status"] == "pending")
    call = ToolCall("cancel_pending_order", {"order_id": pending["order_id"], "reason": "no longer needed"})
    assert derive(history).admits(call)


def test_a_question_about_a_policy_is_searched_not_acted_on(db: RetailDatabase) -> None:
    user, order, _ = _customer(db, "delivered")
    uid = order["user_id"]
    history: list[dict[str, Any]] = [{"role": "user", "content": f"I'm {user['email']}"}]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, uid)
    history += _call("get_user_details", {"user_id": uid}, 2, json.dumps({**user, "user_id": uid}))
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    for question in ("Do gift cards expire?", "How long do refunds to a credit card take?"):
        # no word of the customer's own, no policy word: a question about the store all the same
        assert derive([*history, {"role": "user", "content": question}]).names() == ["search_policies"]
    history.append({"role": "user", "content": "Hi, what is your return policy?"})
    possible = derive(history)
    assert "return_delivered_order_items" not in possible.names()  # a question, not a request
    assert possible.names() == ["search_policies"]  # searched first: no lookup, no hand-off
    searched = [*history, *_call("search_policies", {"query": "Hi, what is your return policy?"}, 4, "[]")]
    assert "transfer_to_human_agents" in derive(searched).names()  # then a person may take it
    history.append({"role": "user", "content": f"I want to return the {order['items'][0]['name']}."})
    assert "return_delivered_order_items" in derive(history).names()  # asked for: offered


def test_a_status_question_after_a_refund_question_asks_for_no_refund(db: RetailDatabase) -> None:
    user, orders = _two_order_customer(db)
    for question, then in (
        ("How long until a refund shows up on my credit card?", "What is the status of my orders?"),
        ("Hi, what is your return policy?", "Can you show me my orders?"),  # tried as a customer: a return
    ):
        history = _identified(user, question)
        history += _call("search_policies", {"query": question}, 3, "[]")
        history.append({"role": "assistant", "content": "Refunds to a card take 5 to 7 business days."})
        history.append({"role": "user", "content": then})
        for n, order in enumerate(orders, start=4):
            history += _call("get_order_details", {"order_id": order["order_id"]}, n, json.dumps(order))
            assert not set(derive(history).names()) & WRITE_TOOLS, then  # the question was no ask
        assert derive(history).status_of == tuple(o["order_id"] for o in orders), then


def test_a_policy_question_answered_before_a_request_asks_for_nothing_of_it(db: RetailDatabase) -> None:
    # tried as a customer: "how long do I have to return something?", answered, then "please cancel my pending
    # order" was listed with a return of an item nobody asked to send back
    data = db.export()
    uid, user = next(
        (u, user)
        for u, user in data["users"].items()
        if {data["orders"][o]["status"] for o in user["orders"] if o in data["orders"]}
        >= {"pending", "delivered"}
    )
    user = {**user, "user_id": uid}
    orders = [data["orders"][o] for o in user["orders"] if o in data["orders"]]
    question = "How long do I have to return something?"
    history = _identified(user, question)
    history += _call("search_policies", {"query": question}, 3, "[]")
    history.append({"role": "assistant", "content": "Delivered items can be returned within 30 days."})
    history.append({"role": "user", "content": "Please cancel my pending order, I ordered it by mistake"})
    for n, order in enumerate(orders, start=4):
        history += _call("get_order_details", {"order_id": order["order_id"]}, n, json.dumps(order))
    names = derive(history).names()
    assert "cancel_pending_order" in names
    assert "return_delivered_order_items" not in names  # the question was answered: no ask for a return


def test_a_change_the_records_allow_is_proposed_not_handed_off(db: RetailDatabase) -> None:
    user, order, _ = _customer(db, "delivered")
    uid = order["user_id"]
    item = order["items"][0]
    history: list[dict[str, Any]] = [
        {"role": "user", "content": f"I'm {user['email']}. I'd like to return the {item['name']} please."}
    ]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, uid)
    history += _call("get_user_details", {"user_id": uid}, 2, json.dumps({**user, "user_id": uid}))
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    names = derive(history).names()
    assert "return_delivered_order_items" in names and "transfer_to_human_agents" not in names
    history.append({"role": "user", "content": "Actually, can a real person handle this?"})
    assert "transfer_to_human_agents" in derive(history).names()  # asked for: always possible


def test_an_order_to_be_shipped_elsewhere_is_an_address_change_not_new_items(db: RetailDatabase) -> None:
    user, order, _ = _customer(db, "pending")
    uid = order["user_id"]
    item = order["items"][0]
    said = (
        f"I'm {user['email']}. Can I change the {item['name']} order to be shipped to "
        "12 Elm Street, Springfield, IL 62704?"
    )
    history: list[dict[str, Any]] = [{"role": "user", "content": said}]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, uid)
    history += _call("get_user_details", {"user_id": uid}, 2, json.dumps({**user, "user_id": uid}))
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    names = derive(history).names()
    assert "modify_pending_order_address" in names and "modify_pending_order_items" not in names


def test_an_item_change_said_beside_an_address_change_is_asked_for(db: RetailDatabase) -> None:
    user, order = _pending_customer(db)  # shipped to a relative's address
    uid = user["user_id"]
    item = order["items"][0]
    product = db.get_product(item["product_id"])
    other = next(
        v for v in product["variants"].values() if v["item_id"] != item["item_id"] and v["available"]
    )
    for swap in (
        f"change the {item['name']} to item {other['item_id']}",
        f"change the {item['name']} to a new one",
    ):
        said = f"I'm {user['email']}. Please ship order {order['order_id']} to my default address and {swap}."
        history: list[dict[str, Any]] = [{"role": "user", "content": said}]
        history += _call("find_user_id_by_email", {"email": user["email"]}, 1, uid)
        history += _call("get_user_details", {"user_id": uid}, 2, json.dumps({**user, "user_id": uid}))
        history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
        history += _call("get_product_details", {"product_id": item["product_id"]}, 4, json.dumps(product))
        assert "modify_pending_order_address" in derive(history).names()  # the items are changed last
        home = {k: str(v) for k, v in user["address"].items()}
        moved = {**order, "address": home}
        history += _call("modify_pending_order_address", _move(order, **home).arguments, 5, json.dumps(moved))
        assert "modify_pending_order_items" in derive(history).names(), swap
    # "changed back to the original one" is no item change
    said = f"I'm {user['email']}. Change order {order['order_id']}'s address back to the original one."
    history = [{"role": "user", "content": said}]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, uid)
    history += _call("get_user_details", {"user_id": uid}, 2, json.dumps({**user, "user_id": uid}))
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    history += _call("get_product_details", {"product_id": item["product_id"]}, 4, json.dumps(product))
    assert "modify_pending_order_items" not in derive(history).names()


def _listed(call: ToolCall, n: int) -> list[dict[str, Any]]:
    """A write the agent listed for confirmation (the graph's messages for it)."""
    return [
        *_call(call.name, call.arguments, n, prompts.PENDING_CONFIRMATION),
        {"role": "assistant", "content": "To confirm, ... Please reply 'yes' to confirm."},
    ]


def test_a_write_the_customer_said_no_to_is_not_proposed_again(db: RetailDatabase) -> None:
    user, order = _order_with_items(db, "delivered", 2)
    first, second = order["items"][:2]
    history = _identified(user, f"I want to return something from order {order['order_id']}.")
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    wrong, right = _return(order, first["item_id"]), _return(order, second["item_id"])
    assert derive(history).admits(wrong)
    history += _listed(wrong, 4)
    history.append({"role": "user", "content": "No, that's not what I asked for."})
    possible = derive(history)
    assert read_facts(history).declined == [call_key(wrong.name, wrong.arguments)]
    assert not possible.admits(wrong) and possible.admits(right)
    assert derive(history, guided=False).admits(wrong)  # a reviewer may still pick it
    history.append({"role": "user", "content": f"I want to return something from order {order['order_id']}."})
    assert not derive(history).admits(wrong)  # asked again: still not that one


def test_a_write_confirmed_with_a_yes_is_not_declined(db: RetailDatabase) -> None:
    user, order = _order_with_items(db, "delivered", 2)
    history = _identified(user, f"I want to return something from order {order['order_id']}.")
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    call = _return(order, order["items"][0]["item_id"])
    history += _listed(call, 4)
    history.append({"role": "user", "content": "Yes, please go ahead."})
    assert read_facts(history).declined == []
    assert derive(history).admits(call)  # the gate then executes it


def test_what_they_want_instead_and_the_entire_order_name_no_other_order() -> None:
    luggage = _order_of("pending", "Luggage Set", "Smart Watch", order_id="#W1000001")
    coat = _order_of("pending", "Coat", order_id="#W1000002")
    coat["items"][0].update(item_id="3", product_id="p3")  # its own ids
    text = (
        "I want to change the luggage set in my order for a coat. If that is not possible, cancel the "
        "entire order."
    )
    facts = _facts_after(text, luggage, coat)
    facts.profile = {"orders": [luggage["order_id"], coat["order_id"]]}
    assert [i["name"] for i in mentioned_items(facts)] == ["Luggage Set"]  # the coat: what they would like
    mentioned = mentioned_items(facts)
    assert writable_orders(facts, named=[], mentioned=mentioned) == {luggage["order_id"]}


def test_from_the_product_list_only_a_product_the_customer_names_is_looked_up(db: RetailDatabase) -> None:
    user, _ = _order_with_items(db, "delivered", 1)
    catalogue = {str(p["name"]): str(pid) for pid, p in db.export()["products"].items()}
    history = _identified(user, "What is the cheapest trail backpack you have? I might swap mine for it.")
    history += _call("list_all_product_types", {}, 3, json.dumps(catalogue))
    possible = derive(history)
    backpack, mug = catalogue["Trail Backpack"], catalogue["Ceramic Mug"]
    assert possible.admits(ToolCall("get_product_details", {"product_id": backpack}))
    assert not possible.admits(ToolCall("get_product_details", {"product_id": mug}))  # never named
    assert derive(history, guided=False).admits(ToolCall("get_product_details", {"product_id": mug}))


def test_not_yet_is_no_no(db: RetailDatabase) -> None:
    user, order = _order_with_items(db, "delivered", 2)
    history = _identified(user, f"I want to return something from order {order['order_id']}.")
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    call = _return(order, order["items"][0]["item_id"])
    history += _listed(call, 4)
    history.append({"role": "user", "content": "no wait, not yet"})
    history.append({"role": "user", "content": "ok, return it"})
    assert read_facts(history).declined == [] and derive(history).admits(call)


def test_no_hand_off_while_an_order_that_may_hold_the_item_is_not_looked_up(db: RetailDatabase) -> None:
    user, orders = _two_order_customer(db)
    elsewhere = {i["name"] for o in orders[:-1] for i in o["items"]}
    item = next(i for i in orders[-1]["items"] if i["name"] not in elsewhere)
    history = _identified(user, f"I want to return the {item['name'].lower()} I received.")
    for n, order in enumerate(orders[:-1]):
        history += _call("get_order_details", {"order_id": order["order_id"]}, 10 + n, json.dumps(order))
    possible = derive(history)
    assert "transfer_to_human_agents" not in possible.names()
    assert possible.admits(ToolCall("get_order_details", {"order_id": orders[-1]["order_id"]}))
    assert not possible.reply  # a reply now would leave the return undone
    thanks = derive([*history, {"role": "user", "content": "Never mind, thanks for your help."}])
    assert thanks.reply  # the customer's latest words ask for no change
    history += _call("get_order_details", {"order_id": orders[-1]["order_id"]}, 99, json.dumps(orders[-1]))
    possible = derive(history)
    assert any(a.name == "return_delivered_order_items" for a in possible.actions) and possible.reply


def test_a_change_asked_for_all_orders_goes_on_to_the_next_order_after_each_write(db: RetailDatabase) -> None:
    data = db.export()
    user = next(
        {**u, "user_id": uid}
        for uid, u in data["users"].items()
        if sum(data["orders"][o]["status"] == "pending" for o in u["orders"]) >= 2
    )
    orders = [data["orders"][o] for o in user["orders"]]
    history = _identified(
        user,
        "Please change the shipping address of all my pending orders to 445 Maple Drive, Suite 394, "
        "Fort Worth, TX 76165, USA.",
    )
    for n, order in enumerate(orders):
        history += _call("get_order_details", {"order_id": order["order_id"]}, 10 + n, json.dumps(order))
    new = {"address1": "445 Maple Drive", "address2": "Suite 394", "city": "Fort Worth", "state": "TX"}
    new |= {"country": "USA", "zip": "76165"}
    first, second = [o for o in orders if o["status"] == "pending"][:2]
    assert derive(history).admits(_move(first, **new))
    history += _listed(_move(first, **new), 40)
    history.append({"role": "user", "content": "yes"})
    history += _call(
        "modify_pending_order_address",
        _move(first, **new).arguments,
        41,
        json.dumps({**first, "address": new}),
    )
    possible = derive(history)
    assert possible.admits(_move(second, **new)) and not possible.admits(_move(first, **new))
    assert not possible.reply  # a reply now would leave the other pending orders where they were going
    one = [{**history[0], "content": history[0]["content"].replace("all my pending orders", "my order")}]
    assert derive([*one, *history[1:]]).reply  # a change asked for one order: done, the reply says so


def test_a_swap_of_all_items_looks_up_each_product_before_a_reply_or_a_hand_off(db: RetailDatabase) -> None:
    data = db.export()
    order = next(
        o
        for o in data["orders"].values()
        if o["status"] == "pending"
        and len({i["product_id"] for i in o["items"]}) >= 2
        and data["users"][o["user_id"]]["orders"] == [o["order_id"]]
    )
    user = {**data["users"][order["user_id"]], "user_id": order["user_id"]}
    history = _identified(user, "I want to upgrade all my items to their most expensive versions.")
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    first, *rest = dict.fromkeys(i["product_id"] for i in order["items"])
    product = data["products"][first]
    history += _call("get_product_details", {"product_id": first}, 4, json.dumps(product))
    possible = derive(history)
    assert "transfer_to_human_agents" not in possible.names() and not possible.reply
    assert possible.admits(ToolCall("get_product_details", {"product_id": rest[0]}))
    one = [{**history[0], "content": history[0]["content"].replace("all my items", "my order")}]
    assert derive([*one, *history[1:]]).reply  # not about all items: the swap is possible as it stands


def test_an_order_named_by_its_digits_alone_is_looked_up_first(db: RetailDatabase) -> None:
    user, orders = _two_order_customer(db)
    digits = orders[-1]["order_id"].removeprefix("#W")
    history = _identified(user, f"I have a question about order {digits}.")
    possible = derive(history)
    assert possible.admits(ToolCall("get_order_details", {"order_id": orders[-1]["order_id"]}))
    assert not possible.admits(ToolCall("get_order_details", {"order_id": orders[0]["order_id"]}))


def test_an_items_details_only_of_an_item_id_the_customer_wrote(db: RetailDatabase) -> None:
    user, order = _order_with_items(db, "delivered", 2)
    first, second = order["items"][:2]
    history = _identified(user, f"Can I exchange my {first['name'].lower()} for item {second['item_id']}?")
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    possible = derive(history)
    assert possible.admits(ToolCall("get_item_details", {"item_id": second["item_id"]}))
    assert not possible.admits(ToolCall("get_item_details", {"item_id": first["item_id"]}))  # in the order
    assert derive(history, guided=False).admits(ToolCall("get_item_details", {"item_id": first["item_id"]}))


def test_a_calculation_made_is_not_made_again(db: RetailDatabase) -> None:
    user, _ = _order_with_items(db, "delivered", 1)
    history = _identified(user, "What is the total of my orders? How much did I spend in all?")
    same = ToolCall("calculate", {"expression": "10 + 20"})
    assert derive(history).admits(same)
    history += _call("calculate", same.arguments, 3, "30")
    possible = derive(history)
    assert not possible.admits(same) and possible.admits(ToolCall("calculate", {"expression": "10 + 25"}))


def test_a_named_order_that_is_not_found_does_not_block_the_profile(db: RetailDatabase) -> None:
    user, _ = _order_with_items(db, "delivered", 1)
    history = _identified(user, "I want to return the lamp from order 1234567.")[:3]  # identified, no profile
    assert not derive(history).admits(ToolCall("get_user_details", {"user_id": user["user_id"]}))
    history += _call("get_order_details", {"order_id": "#W1234567"}, 3, "Error: order #W1234567 not found.")
    assert derive(history).admits(ToolCall("get_user_details", {"user_id": user["user_id"]}))


def _alike_order() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    order = {
        "order_id": "#W1000002",
        "status": "delivered",
        "items": [
            {"name": "Vacuum Cleaner", "item_id": "1", "product_id": "p1", "options": {}},
            {"name": "Air Purifier", "item_id": "2", "product_id": "p2", "options": {}},
            {"name": "Vacuum Cleaner", "item_id": "3", "product_id": "p1", "options": {}},
            {"name": "Patio Umbrella", "item_id": "4", "product_id": "p3", "options": {}},
        ],
        "payment_history": [{"transaction_type": "payment", "amount": 1.0, "payment_method_id": "paypal_1"}],
    }
    return order, _call("get_order_details", {"order_id": order["order_id"]}, 1, json.dumps(order))


def test_a_return_of_two_products_holds_one_of_each_when_the_order_has_two_alike() -> None:
    _, lookup = _alike_order()
    history = [
        {"role": "user", "content": "I want to return an air purifier and a vacuum cleaner from #W1000002."},
        *lookup,
    ]
    possible = derive(history, user_id="u1")
    offered, whole = _return_items(history, "#W1000002", user_id="u1")
    assert set(offered) == {"1", "2", "3"} and not whole  # which vacuum cleaner: the model picks

    def ret(items: list[str]) -> ToolCall:
        args = {"order_id": "#W1000002", "item_ids": items, "payment_method_id": "paypal_1"}
        return ToolCall("return_delivered_order_items", args)

    assert possible.admits(ret(["2", "3"])) and possible.admits(ret(["1", "2"]))
    assert not possible.admits(ret(["3"])) and not possible.admits(ret(["2"]))  # the purifier and a vacuum


def test_everything_but_the_item_excepted_is_all_of_them_even_with_two_alike() -> None:
    _, lookup = _alike_order()
    history = [{"role": "user", "content": "Return everything from #W1000002 except the umbrella."}, *lookup]
    offered, whole = _return_items(history, "#W1000002", user_id="u1")
    assert whole and set(offered) == {"1", "2", "3"}


def test_items_named_before_a_return_of_them_are_what_it_returns() -> None:
    _, lookup = _alike_order()
    for words, expected in (
        ("The two vacuum cleaners broke and I want to return them, plus the umbrella.", {"1", "3", "4"}),
        ("I love the two vacuum cleaners but I want to return the umbrella.", {"4"}),
    ):
        history = [{"role": "user", "content": words + " Order #W1000002."}, *lookup]
        offered, whole = _return_items(history, "#W1000002", user_id="u1")
        assert set(offered) == expected and whole, words


def _moved_home(db: RetailDatabase, request: str) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """A pending order going to a relative's address (Tacoma), the customer's request ({order}, {city}: their
    home city, filled in) and its move to their home address, which the choices allowed."""
    user, order = _pending_customer(db)
    home = {k: str(v) for k, v in user["address"].items()}
    request = request.format(order=order["order_id"], city=home["city"])
    history = _identified(user, request)
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    move = _move(order, **home)
    assert derive(history).admits(move)
    history += _call(
        "modify_pending_order_address", move.arguments, 4, json.dumps({**order, "address": home})
    )
    return order, request, history


def test_an_address_change_made_is_not_undone_when_the_request_is_said_again(db: RetailDatabase) -> None:
    order, request, history = _moved_home(db, "Please ship order {order} to my {city} address.")
    history.append({"role": "user", "content": request})  # the same words again: it is done
    assert derive(history).action("modify_pending_order_address") is None
    history.append({"role": "user", "content": "Sorry, please change it back to where it was going."})
    back = derive(history)
    assert back.admits(_move(order, **order["address"]))


def test_a_payment_named_first_with_a_fallback_is_used_until_billing_refuses_it(db: RetailDatabase) -> None:
    data = db.export()
    user, order = next(
        ({**data["users"][o["user_id"]], "user_id": o["user_id"]}, o)
        for o in data["orders"].values()
        if o["status"] == "pending"
        and any(p.startswith("gift_card") for p in data["users"][o["user_id"]]["payment_methods"])
        and any(p.startswith("paypal") for p in data["users"][o["user_id"]]["payment_methods"])
    )
    gift = next(p for p in user["payment_methods"] if p.startswith("gift_card"))
    paypal = next(p for p in user["payment_methods"] if p.startswith("paypal"))
    history = _identified(
        user,
        f"Please change the payment of order {order['order_id']} to my gift card, "
        "or PayPal if the gift card isn't possible.",
    )
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))

    def pay(method: str) -> ToolCall:
        return ToolCall(
            "modify_pending_order_payment", {"order_id": order["order_id"], "payment_method_id": method}
        )

    paid = order["payment_history"][0]["payment_method_id"]
    first = gift if gift != paid else paypal
    possible = derive(history)
    assert possible.admits(pay(first)) and not possible.admits(pay(paypal if first == gift else gift))
    if first == gift:  # billing refuses the gift card (its balance): the fallback is what is offered then
        history += _call(
            "modify_pending_order_payment",
            {"order_id": order["order_id"], "payment_method_id": gift},
            4,
            "Error: the gift card balance is too low.",
        )
        again = derive(history)
        assert again.admits(pay(paypal)) and not again.admits(pay(gift))


def test_paying_a_swaps_difference_with_a_card_asks_for_no_payment_change(db: RetailDatabase) -> None:
    data = db.export()
    user, order = next(
        ({**data["users"][o["user_id"]], "user_id": o["user_id"]}, o)
        for o in data["orders"].values()
        if o["status"] == "pending" and len(data["users"][o["user_id"]]["payment_methods"]) > 1
    )
    lookup = _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    settled = _identified(
        user,
        f"I want to upgrade the items of order {order['order_id']} to their most expensive versions. "
        "I'd like to pay the difference with my gift card, or PayPal if that isn't possible.",
    )
    assert derive(settled + lookup).action("modify_pending_order_payment") is None
    asked = _identified(user, f"Please change the payment method of order {order['order_id']} to my PayPal.")
    assert derive(asked + lookup).action("modify_pending_order_payment") is not None


def test_the_new_item_can_be_the_same_products_item_on_another_order() -> None:
    def order(oid: str, status: str, item_id: str) -> dict[str, Any]:
        item = {"name": "Garden Hose", "item_id": item_id, "product_id": "p1", "options": {"length": item_id}}
        return {
            "order_id": oid,
            "status": status,
            "items": [item],
            "payment_history": [
                {"transaction_type": "payment", "amount": 1.0, "payment_method_id": "paypal_1"}
            ],
        }

    variants = {i: {"item_id": i, "options": {"length": i}, "available": True} for i in ("10", "20", "30")}
    product = {"product_id": "p1", "name": "Garden Hose", "variants": variants}
    history: list[dict[str, Any]] = []
    for n, o in enumerate((order("#W1000001", "delivered", "10"), order("#W1000002", "pending", "20"))):
        history += _call("get_order_details", {"order_id": o["order_id"]}, n, json.dumps(o))
    history += _call("get_product_details", {"product_id": "p1"}, 3, json.dumps(product))
    profile = {"user_id": "u1", "orders": ["#W1000001", "#W1000002"], "payment_methods": {"paypal_1": {}}}
    history[:0] = _call("get_user_details", {"user_id": "u1"}, 9, json.dumps(profile))

    def offered(words: str) -> tuple[str, ...]:
        action = derive([{"role": "user", "content": words}, *history], user_id="u1").action(
            "exchange_delivered_order_items"
        )
        assert action is not None, words
        new = next(s for s in action.slots if s.name == "new_item_ids")
        return new.domain({}, "10")

    assert offered("Exchange the garden hose I received for the type that's in my pending order.") == ("20",)
    assert set(offered("Exchange the garden hose I received for another length.")) == {"20", "30"}


def test_a_request_put_as_a_thought_is_a_request_a_policy_question_is_not() -> None:
    for words in (
        "I'd like to return the mug.",
        "The jigsaw is too hard, I wonder if I can change it to the easiest one.",
        "I might have typed my address wrong; please check and potentially correct all order addresses.",
    ):
        assert asks_for_changes(words), words
    for words in ("What is your return policy?", "Can I change the delivery address after it has shipped?"):
        assert not asks_for_changes(words), words


def test_changing_the_default_address_is_not_an_orders_address_change(db: RetailDatabase) -> None:
    user, order = _pending_customer(db)
    history = _identified(user, "Please change my default address to 12 Elm Street, Springfield, IL 62704.")
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    names = derive(history).names()
    assert "modify_user_address" in names and "modify_pending_order_address" not in names
    both = _identified(
        user,
        f"Change my default address and the address of order {order['order_id']} to 12 Elm Street, "
        "Springfield, IL 62704.",
    )
    both += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    assert {"modify_user_address", "modify_pending_order_address"} <= set(derive(both).names())


def test_an_orders_items_are_changed_after_its_address(db: RetailDatabase) -> None:
    user, order = _pending_customer(db)  # the order goes to Tacoma; the customer lives elsewhere
    data = db.export()
    item = next(
        i
        for i in order["items"]
        if any(
            v["available"] and v["item_id"] != i["item_id"]
            for v in data["products"][i["product_id"]]["variants"].values()
        )
    )
    home = {k: str(v) for k, v in user["address"].items()}
    request = (
        f"Please ship order {order['order_id']} to my {home['city']} address, and change the "
        f"{item['name'].lower()} in it to a different one."
    )
    history = _identified(user, request)
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    product = data["products"][item["product_id"]]
    history += _call("get_product_details", {"product_id": item["product_id"]}, 4, json.dumps(product))
    possible = derive(history)
    move = _move(order, **home)
    assert possible.admits(move)
    assert possible.action("modify_pending_order_items") is None  # it would end the address change
    history += _call(
        "modify_pending_order_address", move.arguments, 5, json.dumps({**order, "address": home})
    )
    history.append({"role": "user", "content": request})
    after = derive(history).action("modify_pending_order_items")
    assert after is not None and order["order_id"] in after.slots[0].values


def test_after_a_write_the_rest_of_the_request_goes_on_on_orders_not_looked_up(db: RetailDatabase) -> None:
    user, orders = _two_order_customer(db)
    elsewhere = {i["name"] for o in orders[:-1] for i in o["items"]}
    item = next(i for i in orders[-1]["items"] if i["name"] not in elsewhere)
    last = orders[-1]

    def returned(request: str) -> list[dict[str, Any]]:
        history = _identified(user, request)
        history += _call("get_order_details", {"order_id": last["order_id"]}, 3, json.dumps(last))
        call = _return(last, item["item_id"])
        history += [*_listed(call, 4), {"role": "user", "content": "yes"}]
        done = json.dumps({**last, "status": "return requested"})
        return history + _call(call.name, call.arguments, 5, done)

    both = returned(f"I want to return the {item['name'].lower()} I received, and cancel my other order.")
    possible = derive(both)
    assert not possible.reply  # the cancellation is still to come, on an order not looked up yet
    assert possible.admits(ToolCall("get_order_details", {"order_id": orders[0]["order_id"]}))
    one = derive(returned(f"I want to return the {item['name'].lower()} I received."))
    assert one.reply and not one.reply_text  # done as asked: the graph says so


def test_after_a_write_the_rest_of_the_request_that_is_possible_now_comes_next(db: RetailDatabase) -> None:
    data = db.export()
    uid, user, pending, delivered = next(
        (uid, u, p, d)
        for uid, u in data["users"].items()
        for p in (data["orders"][o] for o in u["orders"] if data["orders"][o]["status"] == "pending")
        for d in (data["orders"][o] for o in u["orders"] if data["orders"][o]["status"] == "delivered")
    )
    item = delivered["items"][0]
    history = _identified(
        {**user, "user_id": uid},
        f"I'd like to return the {item['name'].lower()} I received, and cancel order {pending['order_id']}.",
    )
    history += _call("get_order_details", {"order_id": pending["order_id"]}, 3, json.dumps(pending))
    history += _call("get_order_details", {"order_id": delivered["order_id"]}, 4, json.dumps(delivered))
    cancel = ToolCall("cancel_pending_order", {"order_id": pending["order_id"], "reason": "no longer needed"})
    history += [*_listed(cancel, 5), {"role": "user", "content": "yes"}]
    history += _call(cancel.name, cancel.arguments, 6, json.dumps({**pending, "status": "cancelled"}))
    history += _call("get_order_details", {"order_id": pending["order_id"]}, 7, json.dumps(pending))
    possible = derive(history)  # the cancellation done (and its order read again): the return comes next
    assert not possible.reply
    assert possible.admits(_return(delivered, item["item_id"]))


def _order_asked(user: dict[str, Any], order: dict[str, Any], words: str) -> list[dict[str, Any]]:
    """The identified customer's words, then the order looked up."""
    history = _identified(user, words)
    return history + _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))


def _cancel(order: dict[str, Any], reason: str) -> ToolCall:
    return ToolCall("cancel_pending_order", {"order_id": order["order_id"], "reason": reason})


def test_a_cancellation_gives_the_reason_the_customer_says(db: RetailDatabase) -> None:
    user, order = _pending_customer(db)
    mistake, unneeded = "ordered by mistake", "no longer needed"
    for words, allowed in (
        ("I ordered it by mistake.", {mistake}),
        ("I don't need it anymore.", {unneeded}),
        ("I don't need it anymore, and the second one I bought by mistake.", {mistake, unneeded}),
        ("", {unneeded}),  # no reason said: the plain one, which the listing shows
    ):
        history = _order_asked(user, order, f"Please cancel order {order['order_id']}. {words}")
        possible = derive(history)
        for reason in (mistake, unneeded):
            assert possible.admits(_cancel(order, reason)) == (reason in allowed), (words, reason)
        assert derive(history, guided=False).admits(_cancel(order, mistake))  # the reviewer picks any


def test_a_mistake_that_is_not_the_order_asks_for_no_cancellation(db: RetailDatabase) -> None:
    user, order = _pending_customer(db)
    words = f"Order {order['order_id']} went to my son's address by mistake, please fix the address."
    history = _order_asked(user, order, words)
    possible = derive(history)
    assert "modify_pending_order_address" in possible.names()
    assert "cancel_pending_order" not in possible.names()
    history.append({"role": "user", "content": "Actually I ordered it by mistake, I'd rather drop it."})
    assert derive(history).admits(_cancel(order, "ordered by mistake"))


def test_a_card_named_by_its_brand_or_last_digits_is_the_one_used(db: RetailDatabase) -> None:
    user, order = _pending_customer(db)
    visa = {"source": "credit_card", "brand": "visa", "last_four": "6791", "id": "credit_card_1000001"}
    master = {"source": "credit_card", "brand": "mastercard", "last_four": "8484"}
    master["id"] = "credit_card_1000002"
    user = {**user, "payment_methods": {**user["payment_methods"], visa["id"]: visa, master["id"]: master}}

    def pay(method: str) -> ToolCall:
        arguments = {"order_id": order["order_id"], "payment_method_id": method}
        return ToolCall("modify_pending_order_payment", arguments)

    for words, card, other in (
        ("my Visa card", visa, master),
        ("the card ending in 8484", master, visa),
    ):
        history = _order_asked(
            user, order, f"Please change the payment of order {order['order_id']} to {words}."
        )
        possible = derive(history)
        assert possible.admits(pay(card["id"])) and not possible.admits(pay(other["id"])), words
    words = f"Please change the payment of order {order['order_id']} to a credit card, it has 8484 dollars."
    history = _order_asked(user, order, words)
    possible = derive(history)  # no card named (a number that is no card's ending): either card
    assert possible.admits(pay(visa["id"])) and possible.admits(pay(master["id"]))


def test_an_address_changed_this_turn_is_not_changed_again_before_the_customer_says_more(
    db: RetailDatabase,
) -> None:
    request = "Please ship order {order} to my default address, and update my default address."
    order, _, history = _moved_home(db, request)
    home = json.loads(history[-1]["content"])["address"]
    after = derive(history)  # the same turn: that order's address is done
    moved = after.action("modify_pending_order_address")
    assert moved is None or not any(
        after.admits(_move(order, **a)) for a in ({**home}, {k: str(v) for k, v in order["address"].items()})
    )
    history.append({"role": "user", "content": "Sorry, please change it back to where it was going."})
    assert derive(history).admits(_move(order, **order["address"]))


def _pending(oid: str, name: str, item_id: str) -> dict[str, Any]:
    item = {"name": name, "item_id": item_id, "product_id": f"p{item_id}", "options": {}, "price": 10.0}
    payment = {"transaction_type": "payment", "amount": 10.0, "payment_method_id": "paypal_1"}
    return {"order_id": oid, "status": "pending", "items": [item], "payment_history": [payment]}


def _all_read(words: str, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The customer's words, then their profile and each of its orders looked up."""
    profile = {
        "user_id": "u1",
        "orders": [o["order_id"] for o in orders],
        "payment_methods": {"paypal_1": {}},
    }
    history: list[dict[str, Any]] = [{"role": "user", "content": words}]
    history += _call("get_user_details", {"user_id": "u1"}, 1, json.dumps(profile))
    for n, o in enumerate(orders, start=2):
        history += _call("get_order_details", {"order_id": o["order_id"]}, n, json.dumps(o))
    return history


def test_once_every_order_was_read_a_write_stays_on_the_orders_the_customer_pointed_at() -> None:
    jacket, lamp = (
        _pending("#W1000001", "Fleece Jacket", "1111111111"),
        _pending("#W1000002", "Desk Lamp", "22"),
    )

    def cancels(words: str) -> set[str]:
        possible = derive(_all_read(words, [jacket, lamp]), user_id="u1")
        return {o["order_id"] for o in (jacket, lamp) if possible.admits(_cancel(o, "no longer needed"))}

    assert cancels("Please cancel the fleece jacket order, I don't need it.") == {"#W1000001"}
    assert cancels("Please cancel all my pending orders, I don't need them.") == {"#W1000001", "#W1000002"}
    # nothing named that any order holds: any order looked up may be the one
    assert cancels("Please cancel the hoodie order, I don't need it.") == {"#W1000001", "#W1000002"}


def test_after_a_write_an_item_named_for_a_swap_and_not_swapped_yet_is_still_to_do() -> None:
    def swappable(oid: str, name: str, item_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        order = _pending(oid, name, item_id)
        variants = {
            v: {"item_id": v, "options": {"n": v}, "available": True} for v in (item_id, item_id + "9")
        }
        return order, {"product_id": f"p{item_id}", "name": name, "variants": variants}

    (laptop, laptop_p), (watch, watch_p) = (
        swappable("#W1000001", "Laptop", "11"),
        swappable("#W1000002", "Watch", "22"),
    )
    history = _all_read(
        "Please change my laptop to a new one, and my watch to a new one too.", [laptop, watch]
    )
    for n, product in enumerate((laptop_p, watch_p), start=5):
        history += _call("get_product_details", {"product_id": product["product_id"]}, n, json.dumps(product))
    swap = _swap_args("#W1000001", "11", "119", "paypal_1")
    assert derive(history, user_id="u1").admits(ToolCall("modify_pending_order_items", swap))
    changed = {**laptop, "status": "pending (item modified)"}
    history += _call("modify_pending_order_items", swap, 8, json.dumps(changed))
    after = derive(history, user_id="u1")  # the watch is still to change: no reply yet
    assert not after.reply and "modify_pending_order_items" in after.names()


def test_an_item_the_customer_holds_back_is_not_in_the_write() -> None:
    items = [
        {"name": "Air Purifier", "item_id": "1000000001", "product_id": "p1", "options": {}, "price": 10.0},
        {"name": "Vacuum Cleaner", "item_id": "1000000002", "product_id": "p2", "options": {}, "price": 10.0},
    ]
    payment = {"transaction_type": "payment", "amount": 20.0, "payment_method_id": "paypal_1"}
    order = {"order_id": "#W1000001", "status": "delivered", "items": items, "payment_history": [payment]}

    def ret(*ids: str) -> ToolCall:
        arguments = {"order_id": "#W1000001", "item_ids": list(ids), "payment_method_id": "paypal_1"}
        return ToolCall("return_delivered_order_items", arguments)

    held = (
        "I'd like to return the air purifier I got, it's not working. Could you also check whether I could "
        "return the vacuum cleaner? I'm not sure yet, so don't process that one."
    )
    possible = derive(_all_read(held, [order]), user_id="u1")
    assert possible.admits(ret("1000000001"))
    assert not possible.admits(ret("1000000001", "1000000002")) and not possible.admits(ret("1000000002"))
    both = derive(_all_read("Please return the air purifier and the vacuum cleaner.", [order]), user_id="u1")
    assert both.admits(ret("1000000001", "1000000002"))
    # a check before the return is no hold
    checked = "Please check whether the vacuum cleaner can be returned, and return it."
    assert derive(_all_read(checked, [order]), user_id="u1").admits(ret("1000000002"))


def test_of_two_alike_items_a_return_of_the_more_expensive_one_is_of_that_one() -> None:
    def speaker(item_id: str, price: float) -> dict[str, Any]:
        return {
            "name": "Bluetooth Speaker",
            "item_id": item_id,
            "product_id": "p1",
            "options": {},
            "price": price,
        }

    lamp = {"name": "Desk Lamp", "item_id": "1000000003", "product_id": "p2", "options": {}, "price": 5.0}
    payment = {"transaction_type": "payment", "amount": 1.0, "payment_method_id": "paypal_1"}
    items = [speaker("1000000001", 289.0), speaker("1000000002", 305.0), lamp]
    order = {"order_id": "#W1000001", "status": "delivered", "items": items, "payment_history": [payment]}

    def ret(*ids: str) -> ToolCall:
        arguments = {"order_id": "#W1000001", "item_ids": list(ids), "payment_method_id": "paypal_1"}
        return ToolCall("return_delivered_order_items", arguments)

    for words, right, wrong in (
        ("I want to return the speaker that is more expensive.", "1000000002", "1000000001"),
        ("I want to return the cheaper speaker.", "1000000001", "1000000002"),
    ):
        possible = derive(_all_read(words, [order]), user_id="u1")
        assert possible.admits(ret(right)), words
        assert not possible.admits(ret(wrong)) and not possible.admits(ret(right, wrong)), words
    either = derive(_all_read("I want to return a speaker.", [order]), user_id="u1")
    assert either.admits(ret("1000000001")) and either.admits(ret("1000000002"))


def test_each_cancellation_gives_the_reason_said_about_its_own_order() -> None:
    jacket, board = (
        _pending("#W1000001", "Fleece Jacket", "1000000001"),
        _pending("#W1000002", "Skateboard", "2"),
    )
    words = (
        "I ordered a fleece jacket by mistake, please cancel that order. "
        "I also want to change the skateboard. "
        "If that is not possible, cancel that order since I no longer need it."
    )
    possible = derive(_all_read(words, [jacket, board]), user_id="u1")
    assert possible.admits(_cancel(jacket, "ordered by mistake"))
    assert not possible.admits(_cancel(jacket, "no longer needed"))
    assert possible.admits(_cancel(board, "no longer needed"))
    assert not possible.admits(_cancel(board, "ordered by mistake"))
    # a reason said apart from the order's own words still counts
    later = derive(
        _all_read("Please cancel the skateboard order. I ordered it by mistake.", [board]), user_id="u1"
    )
    assert later.admits(_cancel(board, "ordered by mistake"))


def test_after_a_write_an_item_named_for_a_swap_waits_on_its_products_lookup_not_a_reply() -> None:
    laptop, watch = _pending("#W1000001", "Laptop", "11"), _pending("#W1000002", "Watch", "22")
    variants = {v: {"item_id": v, "options": {"n": v}, "available": True} for v in ("11", "119")}
    laptop_p = {"product_id": "p11", "name": "Laptop", "variants": variants}
    history = _all_read(
        "Please change my laptop to a new one, and my watch to a new one too.", [laptop, watch]
    )
    history += _call("get_product_details", {"product_id": "p11"}, 5, json.dumps(laptop_p))
    swap = _swap_args("#W1000001", "11", "119", "paypal_1")
    history += _call(
        "modify_pending_order_items", swap, 6, json.dumps({**laptop, "status": "pending (item modified)"})
    )
    after = derive(history, user_id="u1")  # the watch's product is still to look up: that comes next
    assert not after.reply
    assert after.admits(ToolCall("get_product_details", {"product_id": "p22"}))


def test_no_payment_method_named_means_the_orders_own_until_billing_refuses_it() -> None:
    user = {
        "user_id": "kim_lee_1",
        "email": "kim@example.com",
        "orders": ["#W1000001", "#W1000002"],
        "payment_methods": {
            "credit_card_1": {
                "source": "credit_card",
                "brand": "visa",
                "last_four": "1111",
                "id": "credit_card_1",
            },
            "gift_card_2": {"source": "gift_card", "balance": 10, "id": "gift_card_2"},
            "paypal_3": {"source": "paypal", "id": "paypal_3"},
        },
    }
    lamp = {"name": "Desk Lamp", "item_id": "11", "product_id": "p1", "options": {"color": "white"}}
    mug = {"name": "Coffee Mug", "item_id": "12", "product_id": "p2", "options": {}}
    pending = {
        "order_id": "#W1000001",
        "user_id": "kim_lee_1",
        "status": "pending",
        "items": [lamp],
        "payment_history": [
            {"transaction_type": "payment", "amount": 50, "payment_method_id": "gift_card_2"}
        ],
    }
    delivered = {
        "order_id": "#W1000002",
        "user_id": "kim_lee_1",
        "status": "delivered",
        "items": [mug],
        "payment_history": [{"transaction_type": "payment", "amount": 9, "payment_method_id": "paypal_3"}],
    }
    product = _product_of("p1", "Desk Lamp", {"11": ("white", 50), "13": ("black", 70)})

    def choices(text: str, *after: dict[str, Any]) -> Any:
        history = _identified(user, text)
        history += _call("get_order_details", {"order_id": "#W1000001"}, 3, json.dumps(pending))
        history += _call("get_order_details", {"order_id": "#W1000002"}, 4, json.dumps(delivered))
        history += _call("get_product_details", {"product_id": "p1"}, 5, json.dumps(product))
        return derive([*history, *after])

    def swap(pay: str) -> ToolCall:
        return ToolCall("modify_pending_order_items", _swap_args("#W1000001", "11", "13", pay))

    def refund(pay: str) -> ToolCall:
        args = {"order_id": "#W1000002", "item_ids": ["12"], "payment_method_id": pay}
        return ToolCall("return_delivered_order_items", args)

    said = "Change the desk lamp to a black one, and return the coffee mug."
    possible = choices(said)
    assert possible.admits(swap("gift_card_2")) and possible.admits(refund("paypal_3"))
    assert not possible.admits(swap("credit_card_1")) and not possible.admits(swap("paypal_3"))
    assert not possible.admits(refund("gift_card_2"))
    # a method they name is the one used
    named = choices(said + " Use my PayPal for both.")
    assert named.admits(swap("paypal_3")) and not named.admits(swap("gift_card_2"))
    assert named.admits(refund("paypal_3"))
    visa = choices(said + " The lamp goes on my Visa.")
    assert visa.admits(swap("credit_card_1")) and not visa.admits(swap("gift_card_2"))
    # billing refused the order's own (a gift card short of the difference): then any other one
    refused = choices(
        said,
        *_call(
            "modify_pending_order_items",
            swap("gift_card_2").arguments,
            6,
            "Error: insufficient gift card balance to pay for the price difference",
        ),
    )
    assert refused.admits(swap("paypal_3")) and refused.admits(swap("credit_card_1"))
    assert not refused.admits(swap("gift_card_2"))


def test_an_item_another_was_swapped_to_be_like_is_no_longer_to_swap() -> None:
    grill = {"name": "Grill", "product_id": "p1"}
    pending = {
        "order_id": "#W1000001",
        "status": "pending",
        "items": [{**grill, "item_id": "1"}],
    }
    delivered = {
        "order_id": "#W1000002",
        "status": "delivered",
        "items": [{**grill, "item_id": "2"}, {"name": "Luggage Set", "item_id": "3", "product_id": "p2"}],
    }
    said = (
        "Exchange the luggage set to a black one, and modify the grill I just ordered to the same type as "
        "the one I already received."
    )
    history = [
        {"role": "user", "content": said},
        *_call("get_order_details", {"order_id": "#W1000001"}, 1, json.dumps(pending)),
        *_call("get_order_details", {"order_id": "#W1000002"}, 2, json.dumps(delivered)),
    ]
    assert item_focus(read_facts(history), "swap") == {"1", "2", "3"}
    swap = _swap_args("#W1000001", "1", "2", "paypal_1")
    modified = {**pending, "status": "pending (item modified)", "items": [{**grill, "item_id": "2"}]}
    history += _call("modify_pending_order_items", swap, 3, json.dumps(modified))
    # the received grill was the model of that change: what is left to swap is the luggage set
    assert item_focus(read_facts(history), "swap") == {"3"}


def test_an_item_named_to_say_which_one_is_meant_is_not_part_of_the_request() -> None:
    order = _order_of("delivered", "Backpack", "Vacuum Cleaner")

    def focus(text: str) -> set[str]:
        return item_focus(_facts_after(text, order), "return")

    assert focus("I want to return the backpack I received with the vacuum cleaner.") == {"1"}
    assert focus("Return the backpack that came with my vacuum cleaner, thanks.") == {"1"}
    assert focus("I want to return the backpack along with the vacuum cleaner.") == {"1", "2"}
    assert focus("Return the backpack and the vacuum cleaner.") == {"1", "2"}
    # "in different orders" says where items are: no swap asked for, the return goes on after it
    said = "Return all my backpacks (they're in different orders), and the vacuum cleaner."
    assert focus(said) == {"1", "2"}


def test_a_cancelled_order_named_is_no_request_to_cancel(db: RetailDatabase) -> None:
    user, order, _ = _customer(db, "pending")
    uid = order["user_id"]
    text = (
        f"Please send {order['order_id']} to my new address, 12 Oak Street, Austin, TX 78701. And what's "
        f"the tracking number of my cancelled order? My email is {user['email']}."
    )
    history: list[dict[str, Any]] = [{"role": "user", "content": text}]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, uid)
    history += _call("get_user_details", {"user_id": uid}, 2, json.dumps({**user, "user_id": uid}))
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    assert "cancel_pending_order" not in derive(history).names()
    history[0] = {
        "role": "user",
        "content": f"Please cancel {order['order_id']}. My email is {user['email']}.",
    }
    assert "cancel_pending_order" in derive(history).names()


def test_the_only_order_in_a_status_is_pointed_at_by_it() -> None:
    user = {
        "user_id": "kim_lee_1",
        "email": "kim@example.com",
        "orders": ["#W1000001", "#W1000002"],
        "payment_methods": {"paypal_3": {"source": "paypal", "id": "paypal_3"}},
    }
    paid = [{"transaction_type": "payment", "amount": 50, "payment_method_id": "paypal_3"}]
    delivered = {
        "order_id": "#W1000001",
        "status": "delivered",
        "items": [{"name": "Desk Lamp", "item_id": "11", "product_id": "p1", "options": {}}],
        "payment_history": paid,
    }
    pending = {
        "order_id": "#W1000002",
        "status": "pending",
        "items": [{"name": "Luggage Set", "item_id": "21", "product_id": "p2", "options": {"color": "blue"}}],
        "payment_history": paid,
    }
    luggage = _product_of("p2", "Luggage Set", {"21": ("blue", 50), "22": ("red", 60)})
    history = _identified(user, "Return the desk lamp, and I'd like my pending order's item changed to red.")
    history += _call("get_order_details", {"order_id": "#W1000001"}, 3, json.dumps(delivered))
    history += _call("get_order_details", {"order_id": "#W1000002"}, 4, json.dumps(pending))
    assert derive(history).admits(ToolCall("get_product_details", {"product_id": "p2"}))
    history += _call("get_product_details", {"product_id": "p2"}, 5, json.dumps(luggage))
    swap = _swap_args("#W1000002", "21", "22", "paypal_3")
    assert derive(history).admits(ToolCall("modify_pending_order_items", swap))
    # two pending orders: "my pending order" points at neither
    second = {**pending, "order_id": "#W1000003"}
    two = _identified({**user, "orders": [*user["orders"], "#W1000003"]}, history[0]["content"])
    two += _call("get_order_details", {"order_id": "#W1000001"}, 3, json.dumps(delivered))
    two += _call("get_order_details", {"order_id": "#W1000002"}, 4, json.dumps(pending))
    two += _call("get_order_details", {"order_id": "#W1000003"}, 5, json.dumps(second))
    assert not derive(two).admits(ToolCall("get_product_details", {"product_id": "p2"}))


def test_a_listing_says_each_id_in_the_customers_words(db: RetailDatabase) -> None:
    user, order, _ = _customer(db, "delivered")
    uid = order["user_id"]
    history = _identified({**user, "user_id": uid}, "I want to return something.")
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    labels = read_facts(history).labels()
    item = order["items"][0]
    assert labels[item["item_id"]].startswith(item["name"] + ", ")  # its name, then its options
    assert all(str(v) in labels[item["item_id"]] for v in item["options"].values())
    for pid, method in user["payment_methods"].items():
        words = {
            "paypal": "PayPal",
            "gift_card": "gift card",
            "credit_card": f"ending {method.get('last_four')}",
        }
        assert words[method["source"]] in labels[pid]
    paid = order["payment_history"][0]["payment_method_id"]
    text = prompts.write_details(
        "return_delivered_order_items",
        {"order_id": order["order_id"], "item_ids": [item["item_id"]], "payment_method_id": paid},
        labels=labels,
    )
    assert f"{item['item_id']} ({labels[item['item_id']]})" in text and f"{paid} ({labels[paid]})" in text


def test_a_question_of_when_the_store_does_something_is_searched_first(db: RetailDatabase) -> None:
    # tried as a customer: after an exchange, "When will I see my refund?" looked up the order and the
    # product, then said it had no information (no search was made)
    user, orders = _two_order_customer(db)
    history = _identified(user, "I'd like to exchange my speaker for a red one.")
    for n, order in enumerate(orders, start=3):
        history += _call("get_order_details", {"order_id": order["order_id"]}, n, json.dumps(order))
    history.append({"role": "assistant", "content": "Done: order #W1 is now 'exchange requested'."})
    for question in ("When will I see my refund?", "How long does a refund to my card take?"):
        assert derive([*history, {"role": "user", "content": question}]).names() == ["search_policies"]
    # where their order is, or a change asked for, is not a question for the policies alone
    for request in (
        "When will my order arrive?",
        "How soon can you cancel my pending order? I'd like to cancel it.",
    ):
        assert derive([*history, {"role": "user", "content": request}]).names() != ["search_policies"]
