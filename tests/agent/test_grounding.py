"""The groundedness guard keeps what the sources back and replaces the rest honestly."""

from __future__ import annotations

from agent.grounding import Source, check_reply
from agent.prompts import NO_INFORMATION

POLICY = Source(text="You can request a return within 30 days of the delivery date.", label="returns-1")
ORDER = Source(text='{"order_id":"#W1234567","status":"delivered","payment_history":[{"amount":120.5}]}')


def test_supported_facts_are_kept_and_cited() -> None:
    result = check_reply(
        "Order #W1234567 is delivered and cost $120.50. Returns are accepted within 30 days.", [POLICY, ORDER]
    )
    assert result.removed == []
    assert "#W1234567" in result.text and "120.50" in result.text
    assert result.citations == ["returns-1"] and "[returns-1]" in result.text


def test_unsupported_amount_date_id_and_policy_are_replaced() -> None:
    for claim in [
        "You were refunded $45.00.",
        "It shipped on 2024-03-01.",
        "Your other order #W7654321 is pending.",
        "Returns are free for international shipping.",
        "We refund 80% of the price.",
    ]:
        result = check_reply(claim, [POLICY, ORDER])
        assert result.removed == [claim], claim
        assert result.text == NO_INFORMATION


def test_customer_words_do_not_back_a_policy_but_questions_pass() -> None:
    customer = Source(text="Is there a restocking fee for returns?", from_customer=True)
    result = check_reply("There is no restocking fee for returns.", [customer])
    assert result.removed
    asked = check_reply("Which order would you like to return?", [customer])
    assert asked.removed == [] and asked.text == "Which order would you like to return?"


def test_unknown_labels_are_dropped() -> None:
    result = check_reply("Returns are accepted within 30 days [made-up-9].", [POLICY])
    assert "[made-up-9]" not in result.text and "[returns-1]" in result.text


def test_unsupported_statements_about_the_store_are_replaced() -> None:
    for claim in [
        "Our CEO is John Smith.",
        "Yes, we have a store in Lisbon.",
        "We accept bitcoin for all orders.",
    ]:
        result = check_reply(claim, [POLICY, ORDER])
        assert result.removed == [claim], claim
    kept = check_reply("We'll sort this out together. Yes, I can help with that.", [POLICY])
    assert kept.removed == []


def test_any_unbacked_statement_is_replaced_but_chatter_stays() -> None:
    for claim in ["The CEO of the company is Maria Lopez.", "You can pay with Bitcoin through our partner."]:
        assert check_reply(claim, [POLICY, ORDER]).removed == [claim], claim
    chatter = "Thanks, I found your account. How can I help you today?"
    assert check_reply(chatter, [ORDER]).removed == []
    assert check_reply("Order #W1234567 is delivered.", [ORDER]).removed == []


def test_dangling_fragments_are_dropped() -> None:
    assert check_reply("Thanks for waiting.\nI'm", [ORDER]).text == "Thanks for waiting."
    assert check_reply("You can pay with\nThanks for waiting.", [ORDER]).text == "Thanks for waiting."


def test_statements_about_an_order_need_it_in_a_tool_result() -> None:
    asked = Source(text="what is the status of order #W7654321?", from_customer=True)
    claim = "Order #W7654321 is delivered."
    assert check_reply(claim, [asked, ORDER]).removed == [claim]
    assert check_reply("Which items of order #W7654321 do you mean?", [asked]).removed == []
    assert check_reply("To confirm: modify order #1: cancel order #2:", [ORDER]).text == NO_INFORMATION
    assert check_reply("Order ID:", [ORDER]).text == NO_INFORMATION
    assert check_reply("**Order ID:**", [ORDER]).text == NO_INFORMATION


def test_degenerate_repetition_is_dropped() -> None:
    text = 'Thanks for waiting.\n"order_id"\n"order_id"\n[labels]\nThanks for waiting.'
    assert check_reply(text, [ORDER]).text == "Thanks for waiting."


def test_an_order_status_must_match_the_systems_record() -> None:
    pending = Source(text='{"order_id":"#W7425646","items":[{"name":"Yoga Mat"}],"status":"pending"}')
    for claim in [
        "Order #W7425646 is updated: Yoga Mat.",
        "Order #W7425646 is delivered.",
        "Your order #W7425646 has been cancelled.",
        "Order #W7425646 was returned.",
    ]:
        result = check_reply(claim, [pending])
        assert result.removed == [claim], claim
    for claim in ["Order #W7425646 is pending: Yoga Mat.", "Shall I check whether #W7425646 was shipped?"]:
        assert check_reply(claim, [pending]).removed == [], claim
    # after a write the record changed: "updated" holds, and the latest status is the one that counts
    paid = Source(text='{"order_id":"#W7425646","status":"pending","payment_history":[{"amount":5}]}')
    assert check_reply("Order #W7425646 is updated.", [pending, paid]).removed == []
    cancelled = Source(text='{"order_id":"#W7425646","status":"cancelled"}')
    assert check_reply("Order #W7425646 is now cancelled.", [pending, cancelled]).removed == []
    assert check_reply("Order #W7425646 is pending.", [pending, cancelled]).removed
    refused = Source(text="Error: Order #W2611340 not found.")
    assert check_reply("Order #W2611340 is delivered: Tablet.", [pending, refused]).removed
    exchanged = Source(text='{"order_id":"#W5564375","status":"exchange requested"}')
    assert check_reply("Order #W5564375 is exchanged.", [exchanged]).removed == []


def test_a_drafted_done_line_is_removed_unless_the_graph_ran_that_write() -> None:
    order = '{"order_id":"#W5565470","status":"delivered"}'
    claim = "Done: order #W5565470 is now 'return requested'."
    result = check_reply(f"{claim} Anything else I can help with?", [Source(order)])
    assert claim in result.removed and NO_INFORMATION in result.text
    done = '{"order_id":"#W5565470","status":"return requested"}'
    kept = check_reply(f"{claim} Anything else I can help with?", [Source(done)], fixed_lines=(claim,))
    assert kept.removed == [] and kept.text.startswith(claim)
