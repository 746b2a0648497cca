"""Every prompt of the agent room: the behaviour model's system prompt and the fixed customer-facing lines."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.variants import ITEM_ID

SYSTEM_PROMPT = (
    "You are the support agent of an online store. Help one customer with their own orders, "
    "profile and our policies.\n"
    "- First identify the customer: email, or first name + last name + zip.\n"
    "- Look things up with tools; never invent facts. Policy questions: call search_policies and "
    "cite the [labels].\n"
    "- Before cancel, modify, return or exchange: list the details and ask the customer to reply yes.\n"
    "- One tool call at a time, or one short reply.\n"
    "- Off-topic or impossible requests: decline or call transfer_to_human_agents."
)


def system_prompt() -> str:
    """The behaviour model's system prompt (short: a 135M model reads it every step)."""
    return SYSTEM_PROMPT


# --- fixed lines the graph says itself (the model never writes these) -------------------------------------

NO_INFORMATION = "I don't have that information; I can transfer you to a human agent if you like."
IDENTIFY_FIRST = "To help with your account I need your email, or your first name, last name and zip code."
OFF_TOPIC = "Sorry, I can only help with your orders, your account and our store's policies."
EMPTY_MESSAGE = "I didn't get a message. How can I help with your order or account?"
CONFIRM_SUFFIX = "Please reply 'yes' to confirm, or tell me what to change."
NOT_CONFIRMED = "Okay, I haven't changed anything."
PENDING_CONFIRMATION = "Not done yet: waiting for the customer to reply yes to the details listed."
HANDED_OFF = (
    "I've passed your conversation to a human agent (ticket {ticket_id}); they will get back to you here."
)
STILL_HANDED_OFF = "A human agent has your case (ticket {ticket_id}) and will reply here."
AWAITING_APPROVAL = (
    "Your refund of {amount} needs a quick review by our team; I'll continue as soon as it is approved."
)
APPROVAL_REJECTED = (
    "Our team did not approve this refund, so nothing was changed. I can transfer you to a human agent."
)
TOOL_FAILED = "Sorry, something went wrong on our side and nothing was changed. Please try again in a moment."
WRITE_MALFORMED = (
    "I couldn't put that request together correctly, so nothing was changed. Could you tell me again "
    "which order and which items it is about, and what you would like done?"
)
TOO_MANY_STEPS = "I couldn't finish that; I can transfer you to a human agent if you like."


def orders_not_found(order_ids: list[str]) -> str:
    """The answer when none of the orders a customer names is theirs (or exists): the same either way."""
    named = " and ".join(order_ids)
    noun = "order" if len(order_ids) == 1 else "orders"
    return (
        f"I can't find {noun} {named} among your orders. Please check the order number; "
        "I can only help with orders on your own account."
    )


def not_possible(tool: str) -> str:
    """The tool message for a call outside what is possible now (a backend that ignored the choices)."""
    return f"Error: not possible now: {tool} with these arguments; nothing was done."


def too_long(limit: int) -> str:
    """The reply to a message over the size limit."""
    return f"Your message is too long (over {limit} characters); please shorten it."


def write_details(
    name: str,
    arguments: dict[str, object],
    *,
    refund: float | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """The graph's own listing of a write's details, asking for an explicit yes; `labels` say what an id is
    in the customer's words ("1125328714 (Ceramic Mug, capacity: 450ml, ...)", "paypal_5727330 (PayPal)")."""
    labels = labels or {}

    def said(value: object) -> str:
        return f"{value} ({labels[str(value)]})" if str(value) in labels else str(value)

    what = {
        "cancel_pending_order": "cancel order {order_id} (reason: {reason})",
        "modify_pending_order_address": "change the shipping address of order {order_id} to {address}",
        "modify_pending_order_items": "change items {item_ids} of order {order_id} to {new_item_ids}, "
        "paying or refunding the difference with {payment_method_id}",
        "modify_pending_order_payment": "pay order {order_id} with {payment_method_id} instead",
        "modify_user_address": "change your default address to {address}",
        "return_delivered_order_items": "return items {item_ids} of order {order_id}, "
        "refunded to {payment_method_id}",
        "exchange_delivered_order_items": "exchange items {item_ids} of order {order_id} for {new_item_ids}, "
        "settling the difference with {payment_method_id}",
    }[name]
    address = ", ".join(
        str(arguments[k])
        for k in ("address1", "address2", "city", "state", "zip", "country")
        if arguments.get(k)
    )
    values = {
        k: (", ".join(map(said, v)) if isinstance(v, list) else said(v) if k == "payment_method_id" else v)
        for k, v in arguments.items()
    }
    text = "To confirm, I will " + what.format(address=address, **values) + "."
    if refund:
        text += f" Refund: ${refund:.2f}."
    if name in ("modify_pending_order_items", "exchange_delivered_order_items"):
        text += " This can be done only once, so make sure you listed every item."
    return f"{text} {CONFIRM_SUFFIX}"


# An id in a listing followed by the customer's words for it (`write_details` labels): "1125328714 (Ceramic
# Mug, ...)", "gift_card_3691228 (gift card, ...)"; an order id's "(reason: ...)" is no label
_LABELLED = re.compile(rf"({ITEM_ID.pattern}|\b[a-z]+(?:_[a-z]+)*_\d+) \([^()]*\)")


def for_model(text: str) -> str:
    """An assistant message as the behaviour model sees it: a listing without its labels, as the model was
    trained on it (the labels are for the customer; they lengthen the prompt and are not in the training
    data)."""
    return _LABELLED.sub(r"\1", text) if CONFIRM_SUFFIX in text else text


def for_model_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A history message (OpenAI form) as the model sees it: an assistant's listing through `for_model`,
    anything else (the customer's words, tool results) as it is. The graph's prompts and the transcripts
    that train the model both read history through this."""
    if message.get("role") != "assistant" or not message.get("content"):
        return dict(message)
    return {**message, "content": for_model(str(message["content"]))}


def phrasing_prompt(draft: str) -> str:
    """The optional phrasing model's instruction: reword, never add facts."""
    return (
        "Rewrite this customer-support reply to be friendly and clear. Keep every number, id and [label] "
        f"exactly; add no facts.\n\nReply: {draft}"
    )


# The graph's report of a write it ran starts so; a drafted reply's "Done: ..." is removed by the guard.
DONE_MARK = "Done:"
# The graph's report of a default address changed (the profile it returns has no status to say).
USER_ADDRESS_DONE = f"{DONE_MARK} your default address is updated."


def write_done_line(name: str, result: dict[str, object]) -> str:
    """The graph's one-line report of a completed write, from the system's result."""
    if name == "modify_user_address":
        return USER_ADDRESS_DONE
    status = result.get("status", "updated")
    return f"{DONE_MARK} order {result.get('order_id', '')} is now '{status}'."


def write_done(name: str, result: dict[str, object]) -> str:
    """The graph's own report of a completed write, then the offer of more help."""
    return f"{write_done_line(name, result)} Anything else I can help with?"


ORDER_STATUS_WORDS = {
    "pending": "is pending (not shipped yet)",
    "processed": "has been processed and shipped",
    "delivered": "is delivered",
    "cancelled": "is cancelled",
    "return requested": "has a return requested",
    "exchange requested": "has an exchange requested",
}


def order_status(orders: list[dict[str, Any]]) -> str:
    """The graph's own answer to a status question, from the orders' records (one line per order)."""
    lines = []
    for order in orders:
        names = ", ".join(dict.fromkeys(str(i["name"]) for i in order.get("items") or [] if i.get("name")))
        status = str(order.get("status", "")).lower()
        said = ORDER_STATUS_WORDS.get(status, f"has the status '{status}'")
        line = f"Order {order.get('order_id', '')}" + (f" ({names})" if names else "") + f" {said}"
        tracking = [str(t) for f in order.get("fulfillments") or [] for t in f.get("tracking_id") or []]
        if tracking and status in {"processed", "delivered"}:
            line += ", tracking number " + ", ".join(dict.fromkeys(tracking))
        lines.append(line + ".")
    return "\n".join([*lines, "Anything else I can help with?"])


def write_failed(error: str) -> str:
    """The graph's own report of a refused or failed write (nothing was changed)."""
    reason = error.removeprefix("Error: ").strip().rstrip(".")
    if "nothing was changed" in reason.lower():
        return f"I couldn't do that: {reason}."
    return f"I couldn't do that: {reason}. Nothing was changed."
