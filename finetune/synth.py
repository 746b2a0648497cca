"""Synthesize support transcripts (OpenAI chat format with tool calls) over a retail store.

Two recipes share one conversation engine:
- `demo`: scenarios drawn from the demo store (`agent.store.seed.generate_demo_data`) and our own
  templates; needs nothing from `../shared`.
- `tasks`: the task specs of `../shared/data/retail/tasks_train.json` over that folder's mock database,
  with out-of-scope turns drawn from `../shared/data/intents`.

Held-out rule: task specs with index % 5 == 0 are held out; demo held-out sets use another store seed
and phrasings that the training split never uses (every fifth variant of each template list).
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent import prompts
from agent.prompts import system_prompt
from agent.tool_specs import TOOL_SPECS
from finetune.dataset import GRAPH_STEP as GRAPH

Split = Literal["train", "heldout"]
INSTRUCTION_SHARE = 0.5  # share of requests worded like the task specs, the rest in everyday words
HELDOUT_STORE_SEED = 90_210
TRAIN_STORE_SEED = 7


# ---------------------------------------------------------------------------------------------------------
# Phrasings. Each list is split by index: training never uses every fifth entry (i % 5 == 4).


def pick(rng: random.Random, options: Sequence[str], split: Split) -> str:
    """One phrasing; the training split never sees every fifth variant."""
    allowed = [o for i, o in enumerate(options) if split == "heldout" or i % 5 != 4]
    return rng.choice(allowed)


GREETINGS = ["", "Hi! ", "Hello, ", "hey ", "Good morning. ", "Hi there, ", "hello! ", "Hey, ", "", "Yo, "]
THANKS = [
    "thanks, that's all",
    "Great, thank you!",
    "ok thx bye",
    "Perfect, that's everything.",
    "cool thanks",
    "Thank you so much, have a good day",
    "no that's it",
    "All good, bye!",
    "thanks for the help",
    "That's all I needed.",
]
YES = [
    "yes",
    "Yes, please go ahead.",
    "yep do it",
    "yes confirm",
    "Sure, proceed.",
    "yes that's right",
    "ok yes",
    "Yes please",
    "confirmed, go ahead",
    "yeah go for it",
]
NO = [
    "no wait, don't do that",
    "Actually no, leave it as is.",
    "hmm no, I changed my mind",
    "No, cancel that request.",
    "nope, keep it",
    "On second thought, never mind.",
    "no thanks, I'll keep it",
    "Wait no. Don't change anything.",
    "actually forget it",
    "I changed my mind, leave it",
]
EMAIL_GIVE = [
    "my email is {email}",
    "It's {email}",
    "{email}",
    "sure, {email}",
    "email: {email}",
    "You can find me under {email}",
    "it's {email} thanks",
    "I'm {email}",
    "my account email is {email}",
    "use {email}",
]
NAMEZIP_GIVE = [
    "I'm {first} {last}, zip {zip}",
    "{first} {last}, {zip}",
    "My name is {first} {last} and my zip code is {zip}",
    "name {first} {last} zip {zip}",
    "It's {first} {last}, postcode {zip}",
    "{first} {last} here, zip is {zip}",
    "sure: {first} {last} / {zip}",
    "{first} {last} in {zip}",
    "I am {first} {last}. Zip: {zip}",
    "first name {first}, last name {last}, zip {zip}",
]
ORDER_GIVE = [
    "it's order {order}",
    "{order}",
    "The one with id {order}",
    "order {order} please",
    "I mean {order}",
    "that would be {order}",
    "{order} is the one",
    "order number {order}",
    "it's {order}",
    "the order is {order}",
]

INTENT_PHRASES: dict[str, list[str]] = {
    "status": [
        "where is my order {order}?",
        "Can you tell me the status of order {order}",
        "has {order} shipped yet",
        "I want to check on my order {order}",
        "what's going on with {order}?",
        "is my order {order} delivered?",
        "any update on order {order}",
        "track {order} for me please",
        "When will {order} arrive?",
        "I'd like to know the status of {order}",
    ],
    "cancel": [
        "I want to cancel order {order}{reason}",
        "please cancel {order}{reason}",
        "Can you cancel my order {order}?{reason}",
        "cancel {order} pls{reason}",
        "I need to cancel the order {order}{reason}",
        "I'd like to cancel {order}{reason}",
        "could you cancel order {order} for me{reason}",
        "Cancel my order {order}.{reason}",
        "i wanna cancel {order}{reason}",
        "Please stop order {order}, I want it cancelled{reason}",
    ],
    "return": [
        "I want to return the {item} from order {order}{refund}",
        "Can I return my {item}? It's in {order}{refund}",
        "please return the {item} from {order}{refund}",
        "I'd like to send back the {item} in order {order}{refund}",
        "return {item} from {order}{refund}",
        "The {item} from {order} isn't what I wanted, I want to return it{refund}",
        "how do I return the {item}? order {order}{refund}",
        "I need a return for {item}, order {order}{refund}",
        "Want to return {item} ({order}){refund}",
        "I'd like a refund for the {item} in order {order}{refund}",
    ],
    "exchange": [
        "I want to exchange the {item} from {order} for {new_options}",
        "Can I swap my {item} in order {order} for one with {new_options}?",
        "please exchange {item} ({order}) to {new_options}",
        "The {item} from {order} is wrong, I'd like {new_options} instead",
        "exchange {item} in {order} -> {new_options}",
        "I'd like to exchange my {item}, order {order}, for the {new_options} version",
        "could I get the {item} from {order} in {new_options} instead",
        "swap {item} {order} for {new_options}",
        "I need an exchange: {item} in order {order}, want {new_options}",
        "Can the {item} in {order} be exchanged for {new_options}?",
    ],
    "modify_items": [
        "before order {order} ships, change the {item} to {new_options}",
        "Can I modify my pending order {order}? I want the {item} in {new_options}",
        "please change {item} in {order} to {new_options}",
        "I'd like to update the {item} on order {order} to {new_options}",
        "modify {order}: {item} should be {new_options}",
        "Can you switch the {item} in my order {order} to {new_options}?",
        "order {order} - I want the {item} with {new_options} instead",
        "change my {item} ({order}) to {new_options} please",
        "I ordered the wrong {item} in {order}, I need {new_options}",
        "for {order}, make the {item} {new_options}",
    ],
    "payment": [
        "I want to pay for order {order} with {payment} instead",
        "Can you change the payment of {order} to {payment}?",
        "please switch {order} to {payment}",
        "change payment method on {order} to {payment}",
        "I'd like to use {payment} for order {order}",
        "update payment for {order}: {payment}",
        "can order {order} be charged to {payment} instead",
        "switch my payment on {order} to {payment} please",
        "use {payment} for {order}",
        "I need to change how I pay for {order}, use {payment}",
    ],
    "address": [
        "please ship order {order} to {address}",
        "I need to change the shipping address of {order} to {address}",
        "Can you send {order} to {address} instead?",
        "update the address on order {order}: {address}",
        "I moved, order {order} should go to {address}",
        "change delivery address for {order} to {address}",
        "ship {order} to {address} please",
        "new address for order {order}: {address}",
        "Can {order} be delivered to {address}?",
        "redirect {order} to {address}",
    ],
}
ASK_IDENTITY = [
    "I can help with that. First, please tell me your email, or your first name, last name and zip code.",
    "Sure. To find your account, what's your email address (or your name and zip code)?",
    "Happy to help. Could you give me your email, or your full name and zip, so I can verify your account?",
    "Before I look into it, I need to identify you: email, or first name + last name + zip?",
    "Of course. Please share the email on your account, or your name and zip code.",
]
ASK_ORDER = [
    "I found your account. Your orders are {orders}. Which order is it about?",
    "Thanks, {first}. I see orders {orders}. Which one do you mean?",
    "Your account has orders {orders}. Which order should I look at?",
]
ASK_REASON = [
    "Order {order} is pending. Is the reason 'no longer needed' or 'ordered by mistake'?",
    "I can cancel {order}. What is the reason: no longer needed, or ordered by mistake?",
]
REASON_GIVE = {
    "no longer needed": ["I don't need it anymore", "no longer needed", "don't need it", "not needed now"],
    "ordered by mistake": [
        "I ordered it by mistake",
        "ordered by mistake",
        "it was a mistake",
        "oops, mistake",
    ],
}
REFUND_PHRASES = [
    " and refund to {payment}",
    ", refund it to {payment} please",
    ". Put the refund on {payment}",
    " - refund to {payment}",
    ", money back to {payment}",
]
POLICY_QUESTIONS = [
    ("returns", "what is your return policy?"),
    ("returns", "how many days do I have to return something"),
    ("shipping", "how long does shipping take?"),
    ("shipping", "Do you ship internationally"),
    ("exchange", "can I exchange an item for a different size?"),
    ("refunds", "how long until I get my refund"),
    ("payment", "which payment methods do you accept?"),
    ("cancel", "can I cancel an order after it shipped?"),
    ("warranty", "is there a warranty on electronics"),
    ("gift cards", "can i pay with a gift card?"),
    ("damaged items", "my package arrived damaged, what's the policy?"),
    ("price match", "do you offer price matching?"),
    ("shipping", "what does express shipping cost"),
    ("returns", "do I have to pay for return shipping?"),
    ("privacy", "what do you do with my personal data?"),
]
POLICY_ANSWERS = {
    "returns": "Delivered items can be returned within 30 days; the refund goes to the original payment "
    "method or a gift card.",
    "shipping": "Standard shipping takes 3-7 business days; we ship within the country only.",
    "exchange": "Delivered items can be exchanged once for another option of the same product.",
    "refunds": "Refunds reach the original payment method within 5-7 business days.",
    "payment": "We accept credit cards, PayPal and gift cards.",
    "cancel": "Only pending orders can be cancelled; shipped orders can be returned after delivery.",
    "warranty": "Electronics carry a one-year limited warranty.",
    "gift cards": "Gift cards can pay for any order and receive refunds.",
    "damaged items": "Damaged items are returned free of charge within 30 days of delivery.",
    "price match": "We do not price match; prices are as listed.",
    "privacy": "Personal data is used only to fulfil orders and is never sold.",
}
# Store questions our policies do not answer (none of them is in bench/agent.py's list).
UNANSWERED_QUESTIONS = [
    "Do you have a mobile app?",
    "what are your opening hours on sundays",
    "Do you offer free installation for furniture?",
    "can I get an invoice with my company's VAT number",
    "Do you sell refurbished products?",
    "is there a referral bonus if I bring a friend",
    "Can I pay in monthly installments?",
    "Can I reserve an item and pay later?",
    "are your products made in the USA?",
    "Do you plant a tree for every order?",
    "Can my order be delivered by drone?",
    "do you have a newsletter discount code",
    "Who designs your backpacks?",
    "Do you offer assembly services?",
    "Can I pick up my order at a locker?",
    "Is there a military discount?",
    "Do you run a summer sale?",
    "can I get same-day delivery in my city",
    "Do you have a loyalty card?",
    "What is your company's carbon footprint?",
]
OUT_OF_SCOPE = [
    "what's the weather like tomorrow?",
    "can you help me with my math homework",
    "Tell me a joke",
    "who won the football game last night",
    "write me a poem about cats",
    "What's the capital of Australia?",
    "how do I fix my car's brakes",
    "can you book me a flight to Paris",
    "What stocks should I buy?",
    "recommend a good movie",
    "translate 'hello' into Japanese",
    "what's your favourite color",
    "how do I reset my bank PIN",
    "Can you order me a pizza?",
    "explain quantum physics",
]
DECLINE = [
    "Sorry, I can only help with orders, returns, your account and our store policies.",
    "I'm the store's support agent, so I can't help with that. Is there anything about an order I can do?",
    "That's outside what I can help with here. I can help with your orders and our policies.",
]
OTHER_CUSTOMER = [
    "can you also check my friend's order {order}? her email is {email}",
    "My brother {first} {last} ordered {order}, can you cancel it for him?",
    "What's the address on my neighbour's account? Email {email}",
    "please look up the orders of {email}, she's my wife",
    "Can you tell me what {first} {last} bought? order {order}",
    "I want to return my colleague's order {order}, he said it's fine",
]
REFUSE = [
    "Sorry, I can only help with your own account. The account holder needs to contact us themselves.",
    "For privacy I can't access or change another customer's orders. They can reach us directly.",
    "I can only discuss orders on the account I verified, not someone else's.",
]
HANDOFF_REQUESTS = [
    ("human", "I want to talk to a real person"),
    ("human", "let me speak to a human agent please"),
    ("complaint", "This is unacceptable, I want to file a formal complaint about your delivery driver"),
    ("compensation", "my package was late, I want compensation of $50"),
    ("legal", "I'm going to take legal action about order {order}"),
    ("refund_bank", "refund {order} straight to my bank account, not the card"),
    ("human", "get me a manager"),
    ("price", "can you lower the price of {order}? I saw it cheaper elsewhere"),
    ("cancel_delivered", "cancel {order} even though it was delivered, I want my money back now"),
    ("human", "is there a person I can talk to?"),
]
HANDOFF_SUMMARY = {
    "human": "Customer asks for a human agent.",
    "complaint": "Customer wants to file a complaint about delivery.",
    "compensation": "Customer requests compensation for a late delivery.",
    "legal": "Customer threatens legal action about {order}.",
    "refund_bank": "Customer wants a refund of {order} to a bank account, not allowed by policy.",
    "price": "Customer asks for a price reduction on {order}.",
    "cancel_delivered": "Customer wants to cancel delivered order {order}.",
}
PRODUCT_QUESTIONS = [
    "do you sell {product}?",
    "What options does the {product} come in?",
    "is the {product} available in other colors",
    "how much is the {product}",
    "tell me about your {product}",
    "Do you have {product} in stock?",
]


# ---------------------------------------------------------------------------------------------------------
# A tiny in-memory tool layer over a store in the tau-bench JSON format (users / orders / products).


class StoreTools:
    """Executes the retail tools over a store dict, so synthesized tool results are real lookups."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.users: dict[str, Any] = data["users"]
        self.orders: dict[str, Any] = data["orders"]
        self.products: dict[str, Any] = data["products"]

    def call(self, name: str, args: dict[str, Any]) -> str:
        """Run one tool and return its result text (JSON for records)."""
        if name == "find_user_id_by_email":
            return next((uid for uid, u in self.users.items() if u.get("email") == args["email"]), "")
        if name == "find_user_id_by_name_zip":
            for uid, u in self.users.items():
                n = u["name"]
                if (n["first_name"], n["last_name"], u["address"]["zip"]) == (
                    args["first_name"],
                    args["last_name"],
                    args["zip"],
                ):
                    return str(uid)
            return "Error: user not found"
        if name == "get_user_details":
            return json.dumps(self.users[args["user_id"]])
        if name == "get_order_details":
            return json.dumps(self.orders[args["order_id"]])
        if name == "get_product_details":
            return json.dumps(self.products[args["product_id"]])
        if name == "list_all_product_types":
            return json.dumps({p["name"]: pid for pid, p in sorted(self.products.items())})
        if name == "transfer_to_human_agents":
            return "Transfer successful"
        if name in {"cancel_pending_order", "modify_pending_order_payment", "modify_pending_order_address"}:
            order = dict(self.orders[args["order_id"]])
            order["status"] = "cancelled" if name == "cancel_pending_order" else "pending"
            return json.dumps(order)
        if name in {
            "return_delivered_order_items",
            "exchange_delivered_order_items",
            "modify_pending_order_items",
        }:
            order = dict(self.orders[args["order_id"]])
            order["status"] = {
                "return_delivered_order_items": "return requested",
                "exchange_delivered_order_items": "exchange requested",
                "modify_pending_order_items": "pending (item modified)",
            }[name]
            return json.dumps(order)
        return "ok"


# ---------------------------------------------------------------------------------------------------------
# The conversation engine.


@dataclass
class Builder:
    """Accumulates one conversation's messages and the category of each assistant step."""

    rng: random.Random
    split: Split
    tools: StoreTools
    messages: list[dict[str, Any]] = field(default_factory=list)
    categories: dict[str, str] = field(default_factory=dict)
    _calls: int = 0

    def user(self, text: str) -> None:
        """Append a customer turn, sometimes with a typo or in lower case."""
        self.messages.append({"role": "user", "content": self._noise(text)})

    def say(self, text: str, category: str) -> None:
        """Append an assistant reply."""
        self.categories[str(len(self.messages))] = category
        self.messages.append({"role": "assistant", "content": text})

    def call(self, name: str, args: dict[str, Any], category: str, result: str | None = None) -> str:
        """Append an assistant tool call and its real result (or the given one); return the result."""
        self._calls += 1
        call_id = f"call_{self._calls}"
        self.categories[str(len(self.messages))] = category
        self.messages.append(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(args)},
                    }
                ],
            }
        )
        if result is None:
            result = self.tools.call(name, args)
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
        return result

    def _noise(self, text: str) -> str:
        roll = self.rng.random()
        if roll < 0.15:
            return text.lower()
        if roll < 0.3 and len(text) > 12:
            i = self.rng.randrange(3, len(text) - 3)
            if text[i].isalpha() and text[i + 1].isalpha():
                return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        return text


def _options_text(options: dict[str, str]) -> str:
    return ", ".join(f"{v} {k}" if k not in v else v for k, v in options.items())


def _full_name(user: dict[str, Any]) -> tuple[str, str]:
    return user["name"]["first_name"], user["name"]["last_name"]


def _identify(b: Builder, user_id: str, user: dict[str, Any], *, first_text: str) -> None:
    """Customer states a request without identifying; agent asks; customer identifies; agent finds the id."""
    b.user(first_text)
    b.say(pick(b.rng, ASK_IDENTITY, "heldout"), "ask_identity")
    _give_identity(b, user_id, user)


def _give_identity(b: Builder, user_id: str, user: dict[str, Any]) -> None:
    first, last = _full_name(user)
    if b.rng.random() < 0.5:
        b.user(pick(b.rng, EMAIL_GIVE, b.split).format(email=user["email"]))
        b.call("find_user_id_by_email", {"email": user["email"]}, "identify")
    else:
        zip_code = user["address"]["zip"]
        b.user(pick(b.rng, NAMEZIP_GIVE, b.split).format(first=first, last=last, zip=zip_code))
        b.call(
            "find_user_id_by_name_zip", {"first_name": first, "last_name": last, "zip": zip_code}, "identify"
        )


def _open(b: Builder, user_id: str, user: dict[str, Any], request: str) -> None:
    """The opening: identity given up front, or asked for; always ends with the user id found."""
    greeting = pick(b.rng, GREETINGS, b.split)
    if b.rng.random() < 0.6:
        first, last = _full_name(user)
        if b.rng.random() < 0.5:
            ident = pick(b.rng, EMAIL_GIVE, b.split).format(email=user["email"])
            b.user(f"{greeting}{request}. {ident}")
            b.call("find_user_id_by_email", {"email": user["email"]}, "identify")
        else:
            zip_code = user["address"]["zip"]
            ident = pick(b.rng, NAMEZIP_GIVE, b.split).format(first=first, last=last, zip=zip_code)
            b.user(f"{greeting}{ident}. {request}")
            b.call(
                "find_user_id_by_name_zip",
                {"first_name": first, "last_name": last, "zip": zip_code},
                "identify",
            )
    else:
        _identify(b, user_id, user, first_text=f"{greeting}{request}")


def _close(b: Builder) -> None:
    if b.rng.random() < 0.35:
        b.user(pick(b.rng, THANKS, b.split))
        b.say(
            b.rng.choice(["You're welcome, goodbye!", "Glad I could help. Bye!", "Have a great day!"]),
            "close",
        )


def order_summary(order: dict[str, Any]) -> str:
    """One line on an order from its record: id, status and item names."""
    items = ", ".join(i["name"] for i in order["items"])
    return f"Order {order['order_id']} is {order['status']}: {items}."


@dataclass
class Action:
    """One write action the customer wants, with its gold arguments."""

    name: str
    args: dict[str, Any]


INTENT_OF = {
    "cancel_pending_order": "cancel",
    "return_delivered_order_items": "return",
    "exchange_delivered_order_items": "exchange",
    "modify_pending_order_items": "modify_items",
    "modify_pending_order_payment": "payment",
    "modify_pending_order_address": "address",
}


def _instruction_text(b: Builder, action: Action) -> str:
    """The terse task-spec wording of a write action ("Cancel order #W1 because ordered by mistake.")."""
    a = action.args
    oid = a["order_id"]
    by_id = {i["item_id"]: i for i in b.tools.orders[oid]["items"]}
    if action.name == "cancel_pending_order":
        return f"Cancel order {oid} because {a['reason']}."
    if action.name == "return_delivered_order_items":
        names = "".join(f"{by_id[i]['name']}; " for i in a["item_ids"] if i in by_id)
        return f"Return {oid} via {a['payment_method_id']}: {names}".strip()
    if action.name == "modify_pending_order_payment":
        return f"For {oid}, change payment to {a['payment_method_id']}."
    if action.name == "modify_pending_order_address":
        fields = ("address1", "address2", "city", "country", "state", "zip")
        address = {"order_id": oid, **{k: a[k] for k in fields if k in a}}
        return f"For {oid}, change address to {address}."
    verb = "exchange" if action.name == "exchange_delivered_order_items" else "modify"
    parts = []
    for old, new in zip(a.get("item_ids") or [], a.get("new_item_ids") or [], strict=False):
        if old not in by_id:
            continue
        before = dict(by_id[old].get("options") or {})
        product = b.tools.products[by_id[old]["product_id"]]
        after = dict(product["variants"].get(new, {}).get("options") or {})
        changed = {k: v for k, v in after.items() if before.get(k) != v}
        parts.append(f"{by_id[old]['name']} {before} to {changed}")
    return f"For {oid}, {verb} {'; '.join(parts)}; via {a['payment_method_id']}."


def _request_text(b: Builder, action: Action) -> str:
    """The customer's wording of a write action, with the facts it needs."""
    if b.rng.random() < INSTRUCTION_SHARE:
        return _instruction_text(b, action)
    order = b.tools.orders[action.args["order_id"]]
    intent = INTENT_OF[action.name]
    by_id = {i["item_id"]: i for i in order["items"]}
    item_ids = action.args.get("item_ids") or []
    item = " and ".join(by_id[i]["name"] for i in item_ids if i in by_id) or "item"
    new_options = ""
    if action.args.get("new_item_ids"):
        new_id = action.args["new_item_ids"][0]
        for p in b.tools.products.values():
            if new_id in p["variants"]:
                new_options = _options_text(p["variants"][new_id]["options"])
    reason = ""
    if action.name == "cancel_pending_order" and b.rng.random() < 0.6:
        reason = ", " + b.rng.choice(REASON_GIVE[action.args["reason"]])
    refund = ""
    if action.name == "return_delivered_order_items":
        refund = b.rng.choice(REFUND_PHRASES).format(payment=action.args["payment_method_id"])
    addr = ""
    if action.name == "modify_pending_order_address":
        a = action.args
        addr = f"{a['address1']}, {a['address2']}, {a['city']}, {a['state']} {a['zip']}, {a['country']}"
    template = pick(b.rng, INTENT_PHRASES[intent], b.split)
    return template.format(
        order=order["order_id"],
        item=item,
        new_options=new_options,
        reason=reason,
        refund=refund,
        payment=action.args.get("payment_method_id", ""),
        address=addr,
    ).replace(",,", ",")


def _product_id_of_item(b: Builder, item_id: str) -> str:
    for pid, p in b.tools.products.items():
        if item_id in p["variants"]:
            return str(pid)
    raise KeyError(item_id)


def propose_write(b: Builder, action: Action) -> None:
    """The model proposes the write; the graph keeps it pending and lists the details itself.

    This is exactly the history the agent graph builds (agent/graph.py `gate`): the proposed call, a
    "not done yet" tool message and the graph's own listing. Only the proposal is a training target.
    """
    b.call(action.name, action.args, "write", result=prompts.PENDING_CONFIRMATION)
    b.say(prompts.write_details(action.name, action.args), GRAPH)


def _write_flow(b: Builder, action: Action, request: str) -> None:
    """After identification: look the order up, propose the write, then the customer's yes (or no)."""
    order_id = action.args["order_id"]
    b.call("get_order_details", {"order_id": order_id}, "lookup")
    if action.args.get("new_item_ids"):
        b.call(
            "get_product_details",
            {"product_id": _product_id_of_item(b, action.args["item_ids"][0])},
            "lookup",
        )
    if action.name == "cancel_pending_order" and not _has_reason(request):
        b.say(b.rng.choice(ASK_REASON).format(order=order_id), "ask")
        b.user(b.rng.choice(REASON_GIVE[action.args["reason"]]))
    propose_write(b, action)
    if b.rng.random() < 0.15:
        b.user(pick(b.rng, NO, b.split))
        b.say(prompts.NOT_CONFIRMED + " Anything else I can help with?", "acknowledge")
        return
    b.user(pick(b.rng, YES, b.split))
    # The graph executes the confirmed write and reports it (no model step).
    result = b.call(action.name, action.args, GRAPH)
    b.say(prompts.write_done(action.name, json.loads(result)), GRAPH)


def _has_reason(request: str) -> bool:
    low = request.lower()
    return any(p.lower() in low for ps in REASON_GIVE.values() for p in ps)


def converse_actions(
    b: Builder, user_id: str, actions: Sequence[Action], requests: Sequence[str] | None = None
) -> None:
    """One or more write actions for one customer (the shape of a task spec), in the given words or ours."""
    user = b.tools.users[user_id]
    words = list(requests) if requests and len(requests) == len(actions) else None
    first_request = words[0] if words else _request_text(b, actions[0])
    _open(b, user_id, user, first_request)
    _write_flow(b, actions[0], first_request)
    for i, action in enumerate(actions[1:], start=1):
        request = words[i] if words else _request_text(b, action)
        b.user(b.rng.choice(["Also, ", "One more thing: ", "And ", ""]) + request)
        _write_flow(b, action, request)
    _close(b)


def converse_status(b: Builder, user_id: str) -> None:
    """Order status, with the order id given up front or chosen from the account's orders."""
    user = b.tools.users[user_id]
    order_id = b.rng.choice(user["orders"])
    if b.rng.random() < 0.65:
        _open(b, user_id, user, pick(b.rng, INTENT_PHRASES["status"], b.split).format(order=order_id))
    else:
        _open(
            b, user_id, user, b.rng.choice(["I have a question about one of my orders", "where's my stuff"])
        )
        b.call("get_user_details", {"user_id": user_id}, "lookup")
        b.say(
            b.rng.choice(ASK_ORDER).format(
                orders=", ".join(user["orders"]), first=user["name"]["first_name"]
            ),
            "ask",
        )
        b.user(pick(b.rng, ORDER_GIVE, b.split).format(order=order_id))
    b.call("get_order_details", {"order_id": order_id}, "lookup")
    b.say(order_summary(b.tools.orders[order_id]), "answer")
    _close(b)


def _search(b: Builder, topic: str, question: str) -> None:
    label = topic.replace(" ", "-")
    passage = json.dumps([{"label": f"{label}-1", "title": topic.title(), "text": POLICY_ANSWERS[topic]}])
    b.call("search_policies", {"query": question.rstrip("?").lower()}, "policy", result=passage)


def converse_policy(b: Builder, user_id: str | None) -> None:
    """A policy question answered from the knowledge base, sometimes after an order lookup."""
    topic, question = b.rng.choice(POLICY_QUESTIONS)
    greeting = pick(b.rng, GREETINGS, b.split)
    b.user(f"{greeting}{question}")
    _search(b, topic, question)
    b.say(f"{POLICY_ANSWERS[topic]} [{topic.replace(' ', '-')}-1]", "answer")
    _close(b)


def converse_unanswered(b: Builder) -> None:
    """A store question the knowledge base does not answer: search, then say so honestly (no invention)."""
    question = pick(b.rng, UNANSWERED_QUESTIONS, b.split)
    b.user(pick(b.rng, GREETINGS, b.split) + question)
    topics = b.rng.sample(sorted(POLICY_ANSWERS), k=2)
    passages = [
        {"label": f"{t.replace(' ', '-')}-{i + 1}", "title": t.title(), "text": POLICY_ANSWERS[t]}
        for i, t in enumerate(topics)
    ]
    b.call(
        "search_policies",
        {"query": question.rstrip("?").lower()},
        "policy",
        result=json.dumps(passages),
    )
    b.say(prompts.NO_INFORMATION, "no_information")
    _close(b)


def converse_other_customer(b: Builder, user_id: str, other_id: str) -> None:
    """After identifying, the customer asks about someone else's account: refuse."""
    user, other = b.tools.users[user_id], b.tools.users[other_id]
    order_id = b.rng.choice(user["orders"])
    _open(b, user_id, user, pick(b.rng, INTENT_PHRASES["status"], b.split).format(order=order_id))
    b.call("get_order_details", {"order_id": order_id}, "lookup")
    b.say(order_summary(b.tools.orders[order_id]), "answer")
    first, last = _full_name(other)
    b.user(
        b.rng.choice(OTHER_CUSTOMER).format(
            order=b.rng.choice(other["orders"]), email=other["email"], first=first, last=last
        )
    )
    b.say(b.rng.choice(REFUSE), "refuse")
    _close(b)


def converse_out_of_scope(b: Builder, utterances: Sequence[str]) -> None:
    """An off-topic request: decline, then maybe a real question."""
    b.user(pick(b.rng, GREETINGS, b.split) + b.rng.choice(utterances))
    b.say(b.rng.choice(DECLINE), "decline")
    if b.rng.random() < 0.4:
        topic, question = b.rng.choice(POLICY_QUESTIONS)
        b.user(f"ok then, {question}")
        _search(b, topic, question)
        b.say(f"{POLICY_ANSWERS[topic]} [{topic.replace(' ', '-')}-1]", "answer")


def converse_handoff(b: Builder, user_id: str) -> None:
    """A request outside policy or for a person: hand off with a summary."""
    user = b.tools.users[user_id]
    order_id = b.rng.choice(user["orders"])
    kind, text = b.rng.choice(HANDOFF_REQUESTS)
    if "{order}" in text and b.rng.random() < 0.5:
        _open(b, user_id, user, pick(b.rng, INTENT_PHRASES["status"], b.split).format(order=order_id))
        b.call("get_order_details", {"order_id": order_id}, "lookup")
        b.say(order_summary(b.tools.orders[order_id]), "answer")
        b.user(text.format(order=order_id))
    else:
        b.user(pick(b.rng, GREETINGS, b.split) + text.format(order=order_id))
    b.call("transfer_to_human_agents", {"summary": HANDOFF_SUMMARY[kind].format(order=order_id)}, "handoff")
    b.say("I've passed your request to a human colleague; they will get back to you shortly.", "answer")


def converse_product(b: Builder) -> None:
    """A product question: list product types, then look the product up."""
    pid, product = b.rng.choice(sorted(b.tools.products.items()))
    b.user(pick(b.rng, GREETINGS, b.split) + b.rng.choice(PRODUCT_QUESTIONS).format(product=product["name"]))
    b.call("list_all_product_types", {}, "lookup")
    b.call("get_product_details", {"product_id": pid}, "lookup")
    variants = list(product["variants"].values())[:3]
    listing = "; ".join(f"{_options_text(v['options'])} ${v['price']}" for v in variants)
    b.say(f"Yes, the {product['name']} comes in several options, for example: {listing}.", "answer")
    _close(b)


# ---------------------------------------------------------------------------------------------------------
# Recipes.


def _record(b: Builder, conv_id: str, recipe: str) -> dict[str, Any]:
    return {
        "id": conv_id,
        "messages": [{"role": "system", "content": system_prompt()}, *b.messages],
        "tools": TOOL_SPECS,
        "outcome": "resolved",
        "rating": 5,
        # indices count the system message that leads every transcript
        "metadata": {
            "recipe": recipe,
            "step_categories": {str(int(k) + 1): v for k, v in b.categories.items()},
        },
    }


def _demo_actions(b: Builder, rng: random.Random, user_id: str) -> list[Action] | None:
    """A random valid write action on one of the user's orders."""
    user = b.tools.users[user_id]
    order = b.tools.orders[rng.choice(user["orders"])]
    oid, items = order["order_id"], order["items"]
    pms = list(user["payment_methods"])
    paid = order["payment_history"][0]["payment_method_id"] if order.get("payment_history") else pms[0]
    if order["status"] == "pending":
        kind = rng.choice(["cancel", "modify_items", "payment", "address"])
        if kind == "cancel":
            return [
                Action("cancel_pending_order", {"order_id": oid, "reason": rng.choice(list(REASON_GIVE))})
            ]
        if kind == "payment":
            others = [p for p in pms if p != paid]
            if not others:
                return None
            return [
                Action(
                    "modify_pending_order_payment", {"order_id": oid, "payment_method_id": rng.choice(others)}
                )
            ]
        if kind == "address":
            other = b.tools.users[rng.choice(list(b.tools.users))]["address"]
            return [Action("modify_pending_order_address", {"order_id": oid, **other})]
        return _swap("modify_pending_order_items", b, rng, oid, items, paid)
    if order["status"] == "delivered":
        if rng.random() < 0.5:
            chosen = rng.sample(items, k=min(len(items), rng.choice([1, 1, 2])))
            return [
                Action(
                    "return_delivered_order_items",
                    {"order_id": oid, "item_ids": [i["item_id"] for i in chosen], "payment_method_id": paid},
                )
            ]
        return _swap("exchange_delivered_order_items", b, rng, oid, items, paid)
    return None


def _swap(
    name: str, b: Builder, rng: random.Random, oid: str, items: list[dict[str, Any]], paid: str
) -> list[Action] | None:
    item = rng.choice(items)
    product = b.tools.products[item["product_id"]]
    others = [
        v["item_id"]
        for v in product["variants"].values()
        if v["item_id"] != item["item_id"] and v["available"]
    ]
    if not others:
        return None
    new = rng.choice(others)
    return [
        Action(
            name,
            {
                "order_id": oid,
                "item_ids": [item["item_id"]],
                "new_item_ids": [new],
                "payment_method_id": paid,
            },
        )
    ]


def _one_demo(b: Builder, rng: random.Random, user_ids: list[str]) -> bool:
    user_id = rng.choice(user_ids)
    kind = rng.choices(
        ["write", "status", "policy", "other", "oos", "handoff", "product", "unanswered"],
        weights=[40, 12, 12, 7, 8, 8, 5, 8],
    )[0]
    if kind == "write":
        actions = _demo_actions(b, rng, user_id)
        if not actions:
            return False
        converse_actions(b, user_id, actions)
    elif kind == "status":
        converse_status(b, user_id)
    elif kind == "policy":
        converse_policy(b, user_id)
    elif kind == "other":
        converse_other_customer(b, user_id, rng.choice([u for u in user_ids if u != user_id]))
    elif kind == "oos":
        converse_out_of_scope(b, OUT_OF_SCOPE)
    elif kind == "handoff":
        converse_handoff(b, user_id)
    elif kind == "unanswered":
        converse_unanswered(b)
    else:
        converse_product(b)
    return True


def synth_demo(
    n: int, *, split: Split = "train", seed: int = 0, store: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield `n` demo-store conversations (held-out: another store seed and unseen phrasings)."""
    if store is None:
        from agent.store.seed import generate_demo_data

        store = generate_demo_data(seed=TRAIN_STORE_SEED if split == "train" else HELDOUT_STORE_SEED)
    tools = StoreTools(store)
    rng = random.Random(f"demo-{split}-{seed}")
    user_ids = sorted(u for u, rec in tools.users.items() if rec.get("orders"))
    made = 0
    while made < n:
        b = Builder(rng=rng, split=split, tools=tools)
        if _one_demo(b, rng, user_ids):
            yield _record(b, f"demo-{split}-{seed}-{made:05d}", "demo")
            made += 1


def load_retail(folder: Path) -> dict[str, Any]:
    """The tau-bench retail mock database (users / orders / products, gzipped JSON)."""
    out = {}
    for kind in ("users", "orders", "products"):
        path = folder / f"{kind}.json.gz"
        with gzip.open(path, "rt") as fh:
            out[kind] = json.load(fh)
    return out


def intent_utterances(folder: Path, *, split: Split, limit: int = 400) -> list[str]:
    """Out-of-scope customer utterances for a retail store: CLINC150 out-of-scope and banking77 turns."""
    texts: list[str] = []
    clinc = folder / "clinc150" / "data_train_val.json.gz"
    if clinc.exists():
        with gzip.open(clinc, "rt") as fh:
            data = json.load(fh)
        texts += [t for t, _ in data["oos_train" if split == "train" else "oos_val"]]
    banking = folder / "banking77" / "train.csv.gz"
    if banking.exists():
        with gzip.open(banking, "rt") as fh:
            rows = list(csv.DictReader(fh))
        bank = [r["text"] for i, r in enumerate(rows) if (i % 5 == 0) == (split == "heldout")]
        texts += bank[: limit // 2]
    return texts[:limit] or OUT_OF_SCOPE


_IDENTITY_RE = re.compile(r"Your name is (\w+) (\w+) and your (zip code|email) is ([^\s.]+(?:\.[^\s.]+)*)")


def task_specs(folder: Path, *, split: Split) -> list[tuple[int, dict[str, Any]]]:
    """Task specs of this split: index % 5 == 0 are held out, the rest are for training."""
    with (folder / "tasks_train.json").open() as fh:
        tasks = json.load(fh)
    return [(i, t) for i, t in enumerate(tasks) if (i % 5 == 0) == (split == "heldout")]


_REQUEST_START = re.compile(r"(?<=[.;]) (?=(?:For|Cancel|Return|Exchange|Change|Modify|Update) )")


def task_requests(instruction: str) -> list[str]:
    """The request sentences of a task instruction (after the persona sentence)."""
    body = re.split(r"You are [^.]*\. ", instruction, maxsplit=1)[-1].strip()
    return [r.strip() for r in _REQUEST_START.split(body) if r.strip()]


def synth_tasks(
    folder: Path,
    *,
    split: Split = "train",
    seed: int = 0,
    limit: int | None = None,
    intents_dir: Path | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield conversations from the retail task specs (plus out-of-scope and policy turns between them)."""
    store = load_retail(folder)
    tools = StoreTools(store)
    rng = random.Random(f"tasks-{split}-{seed}")
    oos = intent_utterances(intents_dir or folder.parent / "intents", split=split)
    user_ids = sorted(u for u, rec in tools.users.items() if rec.get("orders"))
    specs = task_specs(folder, split=split)
    made = 0
    for index, task in specs:
        if limit is not None and made >= limit:
            return
        actions = [Action(a["name"], a["arguments"]) for a in task["actions"] if a["name"] in INTENT_OF]
        if not actions or any(a.args["order_id"] not in tools.orders for a in actions):
            continue
        b = Builder(rng=rng, split=split, tools=tools)
        requests = task_requests(task["instruction"]) if rng.random() < INSTRUCTION_SHARE else None
        converse_actions(b, task["user_id"], actions, requests)
        yield _record(b, f"task-{split}-{index:04d}", "tasks")
        made += 1
        b = Builder(rng=rng, split=split, tools=tools)
        extra = rng.choice(["oos", "policy", "handoff", "status", "unanswered"])
        if extra == "oos":
            converse_out_of_scope(b, oos)
        elif extra == "unanswered":
            converse_unanswered(b)
        elif extra == "policy":
            converse_policy(b, None)
        elif extra == "handoff":
            converse_handoff(b, rng.choice(user_ids))
        else:
            converse_status(b, rng.choice(user_ids))
        yield _record(b, f"task-{split}-{index:04d}-x", "tasks")
        made += 1


def write_jsonl(records: Iterator[dict[str, Any]] | Sequence[dict[str, Any]], path: Path) -> int:
    """Write conversations as JSONL; return how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
            n += 1
    return n
