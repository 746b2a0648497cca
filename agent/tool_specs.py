"""OpenAI function schemas of every tool the support agent may call (the retail TOOLS.md interface)."""

from __future__ import annotations

from typing import Any

from agent.chat_model import ToolSpec

_ADDRESS = ("address1", "address2", "city", "state", "country", "zip")


def _spec(name: str, description: str, params: dict[str, dict[str, Any]]) -> ToolSpec:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": params, "required": list(params)},
        },
    }


def _s(description: str = "") -> dict[str, Any]:
    return {"type": "string", "description": description} if description else {"type": "string"}


def _ids(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "description": description}


_ORDER = _s("like #W0000000")
_PAYMENT = _s("payment method id")

TOOL_SPECS: list[ToolSpec] = [
    _spec("find_user_id_by_email", "Find the customer's user id by email.", {"email": _s()}),
    _spec(
        "find_user_id_by_name_zip",
        "Find the customer's user id by first name, last name and zip.",
        {"first_name": _s(), "last_name": _s(), "zip": _s()},
    ),
    _spec("get_user_details", "Profile, addresses, payment methods and orders of a user.", {"user_id": _s()}),
    _spec("get_order_details", "Status, items, payments of an order.", {"order_id": _ORDER}),
    _spec("get_product_details", "A product and its variant items.", {"product_id": _s()}),
    _spec("get_item_details", "One variant item: options, price, availability.", {"item_id": _s()}),
    _spec("list_all_product_types", "All product names and ids.", {}),
    _spec(
        "cancel_pending_order",
        "Cancel a pending order. Needs the customer's yes.",
        {
            "order_id": _ORDER,
            "reason": {"type": "string", "enum": ["no longer needed", "ordered by mistake"]},
        },
    ),
    _spec(
        "modify_pending_order_address",
        "Change a pending order's shipping address. Needs yes.",
        {"order_id": _ORDER, **{k: _s() for k in _ADDRESS}},
    ),
    _spec(
        "modify_pending_order_items",
        "Swap items of a pending order for other options of the same product. Once only. Needs yes.",
        {
            "order_id": _ORDER,
            "item_ids": _ids("items to change"),
            "new_item_ids": _ids("new items, same order"),
            "payment_method_id": _PAYMENT,
        },
    ),
    _spec(
        "modify_pending_order_payment",
        "Change a pending order's payment method. Needs yes.",
        {"order_id": _ORDER, "payment_method_id": _PAYMENT},
    ),
    _spec(
        "modify_user_address",
        "Change the user's default address. Needs yes.",
        {"user_id": _s(), **{k: _s() for k in _ADDRESS}},
    ),
    _spec(
        "return_delivered_order_items",
        "Return items of a delivered order; refund to original payment or a gift card. Needs yes.",
        {"order_id": _ORDER, "item_ids": _ids("items to return"), "payment_method_id": _PAYMENT},
    ),
    _spec(
        "exchange_delivered_order_items",
        "Exchange items of a delivered order for other options of the same product. Once only. Needs yes.",
        {
            "order_id": _ORDER,
            "item_ids": _ids("items to exchange"),
            "new_item_ids": _ids("new items, same order"),
            "payment_method_id": _PAYMENT,
        },
    ),
    _spec("search_policies", "Search the store's policies and help articles.", {"query": _s()}),
    _spec(
        "transfer_to_human_agents",
        "Hand the conversation to a human with a short summary.",
        {"summary": _s()},
    ),
    _spec("calculate", "Evaluate an arithmetic expression.", {"expression": _s("e.g. 12.5 * 2")}),
    _spec("think", "Think privately; no effect.", {"thought": _s()}),
]

# The tools that change an account or an order: the graph runs each only after the customer's explicit yes,
# and the systems take an idempotency key for each. This is their one definition; the CRM owns the
# address, billing the rest (`agent.systems`).
CRM_WRITE_TOOLS: tuple[str, ...] = ("modify_user_address",)
BILLING_WRITE_TOOLS: tuple[str, ...] = (
    "cancel_pending_order",
    "modify_pending_order_address",
    "modify_pending_order_items",
    "modify_pending_order_payment",
    "return_delivered_order_items",
    "exchange_delivered_order_items",
)
WRITE_TOOLS: frozenset[str] = frozenset((*CRM_WRITE_TOOLS, *BILLING_WRITE_TOOLS))
IDENTIFY_TOOLS: frozenset[str] = frozenset({"find_user_id_by_email", "find_user_id_by_name_zip"})
TOOL_NAMES: frozenset[str] = frozenset(spec["function"]["name"] for spec in TOOL_SPECS)


def tool_arguments(name: str) -> list[str]:
    """The argument names of one tool, in schema order."""
    for spec in TOOL_SPECS:
        if spec["function"]["name"] == name:
            return list(spec["function"]["parameters"]["properties"])
    raise KeyError(name)
