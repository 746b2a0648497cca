"""The reviewer's and the export's view of a conversation (`serve.review`)."""

from __future__ import annotations

from agent import prompts
from serve.review import transcript_messages


def test_a_transcript_holds_a_listing_as_the_model_saw_it() -> None:
    arguments = {
        "order_id": "#W5723856",
        "item_ids": ["1125328714"],
        "payment_method_id": "gift_card_3691228",
    }
    labels = {"1125328714": "Ceramic Mug, capacity: 450ml", "gift_card_3691228": "gift card, balance $130.00"}
    shown = prompts.write_details("return_delivered_order_items", arguments, labels=labels)
    assert "(Ceramic Mug" in shown  # the customer saw the labels
    history = [
        {"role": "user", "content": "I'd like to return the mug"},
        {"role": "assistant", "content": shown, "citations": []},
    ]
    messages = transcript_messages(history)
    assert messages[0]["role"] == "system" and "citations" not in messages[-1]
    assert messages[-1]["content"] == prompts.write_details("return_delivered_order_items", arguments)
    assert messages[1]["content"] == "I'd like to return the mug"  # the customer's words stay as they were
