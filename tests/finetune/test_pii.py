"""PII scrubbing: every type, Luhn-checked cards, and consistency between text and tool arguments."""

from __future__ import annotations

import json

from finetune.pii import ConversationScrubber, ScrubReport, luhn_ok, scrub_conversation


def _call(name: str, args: dict[str, object], call_id: str = "c1") -> dict[str, object]:
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        ],
    }


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")


def test_text_types_are_replaced_with_typed_placeholders() -> None:
    s = ConversationScrubber()
    out = s.text(
        "Mail ada.berg@example.com or call (415) 555-0134; card 4111 1111 1111 1111, "
        "not 1234 5678 9012 3456; I live at 12 Sunset Drive, zip 94110. Order #W1234567, item 1234567890."
    )
    assert "[EMAIL_1]" in out and "[PHONE_1]" in out and "[CARD_1]" in out and "[ADDRESS_1]" in out
    assert "[ZIP_1]" in out
    assert "1234 5678 9012 3456" in out  # fails Luhn: not a card number
    assert "#W1234567" in out and "1234567890" in out  # ids stay learnable
    assert "ada.berg" not in out and "94110" not in out


def test_same_value_same_placeholder_in_text_tool_arguments_and_results() -> None:
    record = {
        "id": "c",
        "messages": [
            {"role": "user", "content": "I'm Ada Berg, my email is Ada.Berg@example.com"},
            _call("find_user_id_by_email", {"email": "ada.berg@example.com"}),
            {"role": "tool", "tool_call_id": "c1", "content": "ada_berg_1234"},
            _call("get_user_details", {"user_id": "ada_berg_1234"}, "c2"),
            {
                "role": "tool",
                "tool_call_id": "c2",
                "content": json.dumps(
                    {
                        "name": {"first_name": "Ada", "last_name": "Berg"},
                        "email": "ada.berg@example.com",
                        "address": {"address1": "12 Sunset Drive", "zip": "94110"},
                    }
                ),
            },
            {"role": "assistant", "content": "Thanks Ada, your account ada_berg_1234 is at 94110."},
        ],
    }
    report = ScrubReport()
    out = scrub_conversation(record, report)
    text = json.dumps(out)
    assert "ada" not in text.lower() and "berg" not in text.lower() and "94110" not in text
    args = json.loads(out["messages"][1]["tool_calls"][0]["function"]["arguments"])
    assert args["email"] == "[EMAIL_1]"
    assert "[EMAIL_1]" in out["messages"][0]["content"]
    uid_arg = json.loads(out["messages"][3]["tool_calls"][0]["function"]["arguments"])["user_id"]
    assert uid_arg == out["messages"][2]["content"] == "[USER_ID_1]"
    assert "[USER_ID_1]" in out["messages"][5]["content"] and "[ZIP_1]" in out["messages"][5]["content"]
    result = json.loads(out["messages"][4]["content"])
    assert sorted(result["name"].values()) == ["[NAME_1]", "[NAME_2]"]
    assert result["address"]["zip"] == "[ZIP_1]"
    assert report.counts["EMAIL"] == 3 and report.counts["USER_ID"] == 3 and report.counts["NAME"] >= 4
    assert report.to_json()["conversations"] == 1


def test_surrogates_are_consistent_and_realistic() -> None:
    record = {
        "id": "s",
        "messages": [
            {"role": "user", "content": "email ada.berg@example.com"},
            _call("find_user_id_by_email", {"email": "ada.berg@example.com"}),
            {"role": "tool", "tool_call_id": "c1", "content": "x"},
        ],
    }
    out = scrub_conversation(record, ScrubReport(), mode="surrogate")
    fake = json.loads(out["messages"][1]["tool_calls"][0]["function"]["arguments"])["email"]
    assert fake != "ada.berg@example.com" and fake.endswith("@example.com")
    assert out["messages"][0]["content"] == f"email {fake}"
