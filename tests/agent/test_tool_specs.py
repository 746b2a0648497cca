"""The tool schemas match the retail TOOLS.md interface exactly."""

from __future__ import annotations

import jsonschema

from agent.prompts import system_prompt
from agent.tool_specs import TOOL_SPECS, WRITE_TOOLS, tool_arguments

EXPECTED = {
    "find_user_id_by_email": ["email"],
    "find_user_id_by_name_zip": ["first_name", "last_name", "zip"],
    "get_user_details": ["user_id"],
    "get_order_details": ["order_id"],
    "get_product_details": ["product_id"],
    "get_item_details": ["item_id"],
    "list_all_product_types": [],
    "cancel_pending_order": ["order_id", "reason"],
    "modify_pending_order_address": ["order_id", "address1", "address2", "city", "state", "country", "zip"],
    "modify_pending_order_items": ["order_id", "item_ids", "new_item_ids", "payment_method_id"],
    "modify_pending_order_payment": ["order_id", "payment_method_id"],
    "modify_user_address": ["user_id", "address1", "address2", "city", "state", "country", "zip"],
    "return_delivered_order_items": ["order_id", "item_ids", "payment_method_id"],
    "exchange_delivered_order_items": ["order_id", "item_ids", "new_item_ids", "payment_method_id"],
    "transfer_to_human_agents": ["summary"],
    "calculate": ["expression"],
    "think": ["thought"],
    "search_policies": ["query"],
}


def test_names_and_arguments_match_the_interface() -> None:
    assert {s["function"]["name"] for s in TOOL_SPECS} == set(EXPECTED)
    for name, args in EXPECTED.items():
        assert tool_arguments(name) == args


def test_every_schema_is_valid_json_schema() -> None:
    for spec in TOOL_SPECS:
        jsonschema.Draft202012Validator.check_schema(spec["function"]["parameters"])
    assert WRITE_TOOLS.issubset(EXPECTED)


def test_system_prompt_is_short() -> None:
    assert 0 < len(system_prompt()) < 800
