"""Hermes tool-call rendering/parsing and the compact prompt shared by training and inference."""

from __future__ import annotations

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
