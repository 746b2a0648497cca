"""Hermes tool-call rendering/parsing and the compact prompt shared by training and inference."""

from __future__ import annotations

import itertools
import json

from agent.chat_model import ChatMessage, ToolCall
from agent.tool_format import (
    HISTORY_CHARS,
    chat_messages,
    chatml,
    compact_tool_result,
    compact_tools,
    parse_reply,
    render_assistant,
    render_tool_call,
)
from agent.tool_specs import TOOL_SPECS


def test_tool_call_round_trip() -> None:
    call = ToolCall("get_order_details", {"order_id": "#W1234567"})
    text = render_tool_call(call)
    assert (
        text == '<tool_call>{"name": "get_order_details", "arguments": {"order_id": "#W1234567"}}</tool_call>'
    )
    parsed = parse_reply(text + "<|im_end|>")
    assert parsed.valid and parsed.text == ""
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [
        ("get_order_details", {"order_id": "#W1234567"})
    ]


def test_malformed_calls_are_reported_not_raised() -> None:
    bad = parse_reply('<tool_call>{"name": "x", "arguments": {"a": </tool_call>')
    assert not bad.valid and not bad.tool_calls and "not JSON" in bad.errors[0]
    nameless = parse_reply('<tool_call>{"arguments": {}}</tool_call>')
    assert not nameless.valid
    text_only = parse_reply("Sure, what is your email?")
    assert text_only.valid and text_only.text == "Sure, what is your email?" and not text_only.tool_calls
    string_args = parse_reply(
        '<tool_call>{"name": "think", "arguments": "{\\"thought\\": \\"hm\\"}"}</tool_call>'
    )
    assert string_args.tool_calls[0].arguments == {"thought": "hm"}


def test_compact_prompt_is_short_and_keeps_recent_history() -> None:
    assert compact_tools(TOOL_SPECS).startswith("find_user_id_by_email, find_user_id_by_name_zip")
    assert "get_order_details(order_id)" in compact_tools(TOOL_SPECS, with_arguments=True)
    messages = [ChatMessage("system", "SYS")]
    for i in range(60):
        messages += [
            ChatMessage("user", f"question {i} " + "x" * 80),
            ChatMessage("assistant", f"answer {i}"),
        ]
    chat = chat_messages(messages, TOOL_SPECS)
    assert chat[0]["role"] == "system" and chat[0]["content"].startswith("SYS\nTools: ")
    assert chat[-1]["content"] == "answer 59" and len(chat) < 60
    assert sum(len(m["content"]) for m in chat[1:]) <= HISTORY_CHARS


def test_tool_results_are_compacted() -> None:
    order = {
        "order_id": "#W1",
        "user_id": "u",
        "address": {"zip": "1"},
        "status": "delivered",
        "items": [
            {"name": "Lamp", "product_id": "p", "item_id": "i", "price": 9.5, "options": {"a": "x", "b": "y"}}
        ],
        "fulfillments": [{"tracking_id": ["1"]}],
        "payment_history": [{"transaction_type": "payment", "amount": 9.5, "payment_method_id": "paypal_1"}],
    }
    out = json.loads(compact_tool_result(json.dumps(order)))
    assert out == {
        "order_id": "#W1",
        "status": "delivered",
        "items": [{"name": "Lamp", "product_id": "p", "item_id": "i", "price": 9.5, "options": "x/y"}],
        "paid_with": "paypal_1",
    }
    assert compact_tool_result("plain text") == "plain text"
    assert compact_tool_result("y" * 2000).endswith("...")


def test_a_products_listing_shows_only_the_variants_that_can_be_ordered() -> None:
    product = {
        "name": "Lamp",
        "product_id": "p",
        "variants": {
            "1": {"item_id": "1", "options": {"colour": "red"}, "available": True, "price": 9.5},
            "2": {"item_id": "2", "options": {"colour": "blue"}, "available": False, "price": 9.5},
            "3": {"item_id": "3", "options": {"colour": "green"}, "price": 9.5},  # a CRM without the flag
        },
    }
    out = json.loads(compact_tool_result(json.dumps(product)))
    assert out["variants"] == [
        {"item_id": "1", "options": "red", "available": True},
        {"item_id": "3", "options": "green", "available": None},
    ]


def test_assistant_rendering_and_chatml() -> None:
    msg = ChatMessage("assistant", "", tool_calls=[ToolCall("think", {"thought": "t"})])
    assert render_assistant(msg).startswith("<tool_call>")
    text = chatml([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"


def test_chatml_matches_the_base_models_template() -> None:
    from transformers import AutoTokenizer

    from finetune.base_model import cached_base_dir, smollm2_ref

    tok = AutoTokenizer.from_pretrained(str(cached_base_dir(smollm2_ref())))
    chat = chat_messages([ChatMessage("system", "S"), ChatMessage("user", "hi")], TOOL_SPECS)
    assert tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == chatml(chat)


def _conversation(turns: int) -> list[ChatMessage]:
    messages = [ChatMessage("system", "SYS")]
    for i in range(turns):
        messages += [
            ChatMessage("user", f"question {i} " + "x" * (40 + 13 * i)),
            ChatMessage("assistant", "", tool_calls=[ToolCall("get_order_details", {"order_id": f"#W{i}"})]),
            ChatMessage("tool", json.dumps({"order_id": f"#W{i}", "status": "pending", "note": "y" * 150})),
            ChatMessage("assistant", f"answer {i}"),
        ]
    return messages


def test_paged_history_keeps_the_prompt_start_while_the_conversation_grows() -> None:
    limit, page = 2000, 600
    starts, sizes = [], []
    for n in range(1, 81):
        messages = _conversation(n // 4 + 1)[: n + 1]
        chat = chat_messages(messages, TOOL_SPECS, history_chars=limit, page_chars=page)
        body = chat[1:]
        assert (
            body[-1]["content"]
            == (chat_messages(messages, TOOL_SPECS, history_chars=10**6, page_chars=0)[-1]["content"])
        )  # the newest message is always there
        assert body[0]["role"] != "tool"
        sizes.append(sum(len(m["content"]) for m in body))
        starts.append(body[0]["content"])
    assert max(sizes) <= limit and min(sizes[40:]) >= limit - page - 300
    # newest-first truncation moves the start with almost every message; pages move it far less often
    moves = sum(a != b for a, b in itertools.pairwise(starts))
    newest = [
        chat_messages(_conversation(n // 4 + 1)[: n + 1], TOOL_SPECS, history_chars=limit, page_chars=0)[1][
            "content"
        ]
        for n in range(1, 81)
    ]
    newest_moves = sum(a != b for a, b in itertools.pairwise(newest))
    assert moves * 2 <= newest_moves, (moves, newest_moves)
