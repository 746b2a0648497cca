"""What may happen next: the one place that answers it.

From the conversation so far (the customer's words and the systems' results) this module lists the actions
the agent may take now and the values each argument may take: the identified customer's user id, order ids
from the profile or the customer's words, item ids from orders looked up, variant ids of products looked up
(available ones), payment methods of the profile, enums. Writes only on orders looked up in this
conversation, in the status the write needs; no account read or write before identification; no read
repeated with the same arguments since the last write. On top of these safety rules, `derive(guided=True)`
(the agent's own steps) orders the work as a support agent does it: one order lookup at a time, writes and
product lookups only on what the customer's words point to, a policy search first in a turn, a hand-off
when asked for or once the records were looked into. The model chooses within that set (`agent.decoding`
constrains every backend to it); `Choices.admits` is the graph's own check of what came back.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from agent import addresses, prompts
from agent.chat_model import ChatMessage, ToolCall
from agent.confirmation import is_explicit_yes
from agent.tool_specs import IDENTIFY_TOOLS, WRITE_TOOLS
from agent.variants import ITEM_ID, match_variants, price, stem

SlotKind = Literal["one", "many", "text"]
Groups = dict[str, tuple[frozenset[str], ...]]  # per order: groups of item ids a list covers
NOT_POSSIBLE_MARK = "Error: not possible now:"  # the start of prompts.not_possible

CANCEL_REASONS = ("no longer needed", "ordered by mistake")
ADDRESS_FIELDS = ("address1", "address2", "city", "state", "country", "zip")
READ_ONCE = frozenset(
    {
        "get_user_details",
        "get_order_details",
        "get_product_details",
        "get_item_details",
        "list_all_product_types",
    }
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]*\w")
_ZIP = re.compile(r"\b\d{5}\b")
_ORDER_ID = re.compile(r"#?W\d{7}\b|\border(?: number| no\.?| id)?:? #?(\d{7})\b", re.I)
_PRODUCT_ID = ITEM_ID
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_NAME_CUE = re.compile(r"(?:name is|name's|i'm|i am|this is|it's)\s+([A-Za-z'-]+)(?:\s+([A-Za-z'-]+))?", re.I)
_NOT_NAMES = frozenset(
    [
        "i",
        "hi",
        "hello",
        "hey",
        "dear",
        "good",
        "morning",
        "afternoon",
        "evening",
        "thanks",
        "thank",
        "yes",
        "no",
        "ok",
        "okay",
        "please",
        "my",
        "the",
        "a",
        "an",
        "and",
        "but",
        "so",
        "also",
        "can",
        "could",
        "would",
        "you",
        "your",
        "we",
        "our",
        "it",
        "its",
        "this",
        "that",
        "there",
        "here",
        "what",
        "when",
        "where",
        "why",
        "how",
        "actually",
        "sorry",
        "sure",
        "great",
        "order",
        "orders",
        "item",
        "items",
        "return",
        "exchange",
        "cancel",
        "refund",
        "want",
        "need",
    ]
)


@dataclass(frozen=True)
class Slot:
    """One argument: a value from a set (`one`), a list of values (`many`), or free text (`text`).

    A slot's values may depend on an earlier slot: `depends_on` names it and `table` maps its value to this
    slot's values; for the values of it in `whole`, a list is all of those (the items the customer named).
    A `paired` list has one value per element of the list it depends on, in order (the new item for each
    old item of an exchange). For the values of it in `cover`, a list holds at least one value of each of
    those groups (one item of each product the customer named, where the order holds two of one product).
    """

    name: str
    kind: SlotKind = "one"
    values: tuple[str, ...] = ()
    depends_on: str | None = None
    table: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    paired: bool = False
    max_tokens: int = 40
    whole: frozenset[str] = frozenset()  # a `many` list that is all of its domain for these keys
    cover: Mapping[str, tuple[frozenset[str], ...]] = field(default_factory=dict)

    def domain(self, chosen: Mapping[str, Any], key: str | None = None) -> tuple[str, ...]:
        """The values allowed given the arguments chosen so far (`key`: the paired element)."""
        if self.depends_on is None:
            return self.values
        if self.paired:
            return self.table.get(key or "", ())
        return self.table.get(str(chosen.get(self.depends_on, "")), ())

    def admits(self, value: Any, chosen: Mapping[str, Any]) -> bool:
        """Whether a value of this argument is allowed."""
        if self.kind == "text":
            return isinstance(value, str)  # an empty address line is a value too
        if self.kind == "one":
            return isinstance(value, str) and value in self.domain(chosen)
        if not isinstance(value, list) or not value or len(set(value)) != len(value):
            return False
        if self.paired:
            keys = chosen.get(self.depends_on or "") or []
            return len(keys) == len(value) and all(
                v in self.domain(chosen, str(k)) for k, v in zip(keys, value, strict=True)
            )
        if self.is_whole(chosen):
            return set(value) == set(self.domain(chosen))
        return all(isinstance(v, str) and v in self.domain(chosen) for v in value) and self.covered(
            value, chosen
        )

    def covered(self, values: Sequence[str], chosen: Mapping[str, Any]) -> bool:
        """Whether a `many` list holds a value of each group it must cover (given the arguments so far)."""
        groups = self.cover.get(str(chosen.get(self.depends_on or "", "")), ())
        return all(group & set(values) for group in groups)

    def is_whole(self, chosen: Mapping[str, Any]) -> bool:
        """Whether this list is all of its domain (no value to choose) given the arguments chosen so far."""
        return self.depends_on is not None and str(chosen.get(self.depends_on, "")) in self.whole


@dataclass(frozen=True)
class Action:
    """One tool the agent may call now, with its arguments' slots in schema order."""

    name: str
    slots: tuple[Slot, ...] = ()

    def admits(self, arguments: Mapping[str, Any]) -> bool:
        """Whether these arguments are allowed (every slot filled with an allowed value, nothing else)."""
        if set(arguments) != {s.name for s in self.slots}:
            return False
        return all(slot.admits(arguments[slot.name], arguments) for slot in self.slots)


@dataclass(frozen=True)
class Choices:
    """The actions possible now; `reply` says a text reply is possible too, `reply_text` whether the model's
    own words are wanted (else the graph says it: asking for identification, reporting a write)."""

    actions: tuple[Action, ...]
    reply: bool = True
    reply_text: bool = True
    status_of: tuple[str, ...] = ()  # a status question's orders, all looked up: the graph says the reply
    excluded: frozenset[str] = frozenset()  # calls not to make again (`call_key`): see `Facts.excluded`

    def action(self, name: str) -> Action | None:
        """The action of that tool, if it is possible now."""
        return next((a for a in self.actions if a.name == name), None)

    def names(self) -> list[str]:
        """The tools possible now."""
        return [a.name for a in self.actions]

    def admits(self, call: ToolCall) -> bool:
        """Whether this tool call is one of the possible actions with allowed arguments."""
        action = self.action(call.name)
        return (
            action is not None
            and action.admits(call.arguments)
            and call_key(call.name, call.arguments) not in self.excluded
        )

    def sole_call(self) -> ToolCall | None:
        """The call the graph makes with nothing left to choose (no reply possible, one action, each argument
        with one possible value), or None when a model decides the step. Such a step says nothing about a
        model: scores of models leave it out (`finetune.evaluate.evaluate_constrained`)."""
        if self.reply or len(self.actions) != 1:
            return None
        action = self.actions[0]
        args: dict[str, Any] = {}
        for slot in action.slots:
            if slot.kind == "text":
                return None
            if slot.kind == "one":
                domain = slot.domain(args)
                if len(domain) != 1:
                    return None
                args[slot.name] = domain[0]
                continue
            if slot.paired:
                domains = [slot.domain(args, str(k)) for k in args.get(slot.depends_on or "") or []]
                if not domains or any(len(d) != 1 for d in domains):
                    return None
                args[slot.name] = [d[0] for d in domains]
            elif slot.is_whole(args) or len(slot.domain(args)) == 1:
                args[slot.name] = list(slot.domain(args))
            else:
                return None
            if not args[slot.name]:
                return None
        call = ToolCall(action.name, args)
        return call if self.admits(call) else None


@dataclass
class Facts:
    """What the conversation has established, read from its messages."""

    customer_texts: list[str] = field(default_factory=list)
    user_id: str | None = None
    profile: dict[str, Any] | None = None
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # looked up, latest record
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    product_list: dict[str, str] = field(default_factory=dict)  # name -> product id
    reads: set[str] = field(default_factory=set)  # reads made since the last write (name + arguments)
    last_tool: str | None = None
    last_write_done: bool = False
    turn_tools: list[str] = field(default_factory=list)  # tools run since the customer's last message
    turn_failed: bool = False  # a write refused or a customer not found since the customer's last message
    addresses: list[dict[str, str]] = field(default_factory=list)  # every address the records showed
    declined: list[str] = field(default_factory=list)  # writes listed and turned down (`call_key`)
    declined_calls: list[ToolCall] = field(default_factory=list)  # the same writes, as calls
    calculated: list[str] = field(default_factory=list)  # calculations made (`call_key`), right or wrong
    refused_payments: set[str] = field(default_factory=set)  # of writes billing refused (a low balance...)
    done: list[ToolCall] = field(default_factory=list)  # the writes the systems carried out
    turn_done: list[ToolCall] = field(default_factory=list)  # the same, since the customer's last message
    answered: set[int] = field(default_factory=set)  # customer messages (`customer_texts` index) replied to
    # after a policy search and no lookup of their records: questions, answered

    @property
    def moved(self) -> set[str]:
        """The orders and users whose address a write of this conversation changed."""
        return _targets(self.done, _ADDRESS_WRITES)

    @property
    def turn_moved(self) -> set[str]:
        """The same, since the customer's last message (not changed again before they say more)."""
        return _targets(self.turn_done, _ADDRESS_WRITES)

    def labels(self) -> dict[str, str]:
        """What the customer calls the ids of the records looked up: an item by its name and options
        ("Ceramic Mug, capacity: 450ml, glaze: speckled"), a payment method by its kind ("PayPal")."""
        out: dict[str, str] = {}
        for product in self.products.values():
            for variant in _variants(product):
                out[str(variant["item_id"])] = _item_words(str(product.get("name") or ""), variant)
        for order in self.orders.values():
            for item in _items(order):
                out[str(item["item_id"])] = _item_words(str(item.get("name") or ""), item)
        methods = (self.profile or {}).get("payment_methods") or {}
        for pid, method in methods.items() if isinstance(methods, Mapping) else ():
            out[str(pid)] = _payment_words(method)
        return {k: v for k, v in out.items() if v}

    def saw_address(self, record: Mapping[str, Any]) -> None:
        """Keep the address of a profile or order record (old ones stay: "change it back")."""
        if isinstance(record.get("address"), Mapping):
            self.addresses = addresses.unique([*self.addresses, addresses.normalized(record["address"])])


def _item_words(name: str, record: Mapping[str, Any]) -> str:
    options = record.get("options")
    values = ", ".join(f"{k}: {v}" for k, v in options.items()) if isinstance(options, Mapping) else ""
    return ", ".join(w for w in (name, values) if w)


def _payment_words(method: Any) -> str:
    if not isinstance(method, Mapping):
        return ""
    source = str(method.get("source") or "")
    if source == "credit_card":
        brand = str(method.get("brand") or "credit card").title()
        return f"{brand} ending {method.get('last_four', '')}".strip()
    if source == "gift_card" and method.get("balance") is not None:
        return f"gift card, balance ${float(method['balance']):.2f}"
    return {"paypal": "PayPal", "gift_card": "gift card"}.get(source, source.replace("_", " "))


def _targets(calls: Sequence[ToolCall], names: Collection[str]) -> set[str]:
    """The orders or users that these calls of these tools were made on."""
    return {str(c.arguments.get("order_id") or c.arguments.get("user_id")) for c in calls if c.name in names}


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def call_key(name: str, arguments: Mapping[str, Any]) -> str:
    """One call as a string: its tool and arguments (a read made, a write declined)."""
    return name + json.dumps(dict(arguments), sort_keys=True)


_read_key = call_key


_ADDRESS_WRITES = frozenset(["modify_pending_order_address", "modify_user_address"])
# The writes on an order (the profile's address is not one): "all my orders" asks for each of them.
_ORDER_WRITES = WRITE_TOOLS - {"modify_user_address"}
_NOT_NOW = re.compile(r"\b(?:not yet|wait|hold on|hang on|later|a (?:moment|minute|second))\b", re.I)


# A turn of only these, then a reply, answered a question (identification may come first)
_ANSWERING_TOOLS = frozenset({"search_policies", "get_user_details", *IDENTIFY_TOOLS})


def read_facts(messages: Sequence[dict[str, Any]], *, user_id: str | None = None) -> Facts:
    """The facts of a conversation in OpenAI chat format (tool results matched to their calls)."""
    facts = Facts(user_id=user_id)
    calls: dict[str, ToolCall] = {}
    listed: ToolCall | None = None  # the write listed for confirmation, until the customer's next message
    for raw in messages:
        message = ChatMessage.from_openai(raw)
        if message.role == "user":
            if (
                listed is not None
                and not is_explicit_yes(message.content)
                and not _NOT_NOW.search(message.content)
            ):
                # "no, that's not it": not what they want ("not yet" is no "no")
                facts.declined.append(call_key(listed.name, listed.arguments))
                facts.declined_calls.append(listed)
            listed = None
            facts.customer_texts.append(message.content)
            facts.last_tool = None
            facts.last_write_done = False  # a new message: what was done is reported already
            facts.turn_tools = []
            facts.turn_done = []
            facts.turn_failed = False
        replied = (
            message.role == "assistant"
            and not message.tool_calls
            and bool(message.content and facts.customer_texts)
        )
        if replied and "search_policies" in facts.turn_tools and set(facts.turn_tools) <= _ANSWERING_TOOLS:
            facts.answered.add(len(facts.customer_texts) - 1)
        for made in message.tool_calls:
            calls[made.id] = made
        if message.role != "tool":
            continue
        call = calls.get(message.tool_call_id or "")
        name = message.name or (call.name if call else "")
        if call is not None and name in WRITE_TOOLS and message.content == prompts.PENDING_CONFIRMATION:
            listed = ToolCall(name, call.arguments)
        facts.last_tool = name
        facts.last_write_done = False
        if call is not None and name == "calculate":
            facts.calculated.append(call_key(name, call.arguments))
        refused = message.content.startswith(NOT_POSSIBLE_MARK)  # never ran: no reason not to run it later
        if not refused:
            facts.turn_tools.append(name)
        # a write the systems refused, or a customer not found: what a person may sort out
        failed = message.content.startswith("Error") and (name in WRITE_TOOLS or name in IDENTIFY_TOOLS)
        facts.turn_failed = facts.turn_failed or failed
        # a payment billing refused (a call outside the choices never reached billing)
        if failed and not refused and call is not None and call.arguments.get("payment_method_id"):
            facts.refused_payments.add(str(call.arguments["payment_method_id"]))
        if call is not None and not refused and (name in READ_ONCE or name in IDENTIFY_TOOLS):
            facts.reads.add(_read_key(name, call.arguments))  # a failed read is not worth repeating either
        data = _json(message.content)
        if message.content.startswith("Error") or (data is None and name not in IDENTIFY_TOOLS):
            continue
        if name in WRITE_TOOLS:
            if isinstance(data, dict):
                facts.reads.clear()  # the records changed: reading them again makes sense
                facts.last_write_done = True
                made = ToolCall(name, call.arguments if call is not None else {})
                facts.done.append(made)
                facts.turn_done.append(made)
                facts.saw_address(data)
                if "order_id" in data:
                    facts.orders[str(data["order_id"])] = data
                elif name == "modify_user_address" or "user_id" in data:
                    facts.profile = data  # an address change returns the updated profile
            continue
        if name in IDENTIFY_TOOLS and isinstance(data, str | type(None)):
            found = message.content.strip().strip('"')
            if found and not found.startswith("Error"):
                facts.user_id = found
        elif name == "get_user_details" and isinstance(data, dict):
            facts.saw_address(data)
            facts.profile = data
            facts.user_id = facts.user_id or str(data.get("user_id") or "") or None
        elif name == "get_order_details" and isinstance(data, dict) and "order_id" in data:
            facts.saw_address(data)
            facts.orders[str(data["order_id"])] = data
        elif name == "get_product_details" and isinstance(data, dict) and "product_id" in data:
            facts.products[str(data["product_id"])] = data
        elif name == "list_all_product_types" and isinstance(data, dict):
            facts.product_list = {str(k): str(v) for k, v in data.items()}
    return facts


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _name_candidates(texts: Sequence[str]) -> tuple[str, ...]:
    """Words that may be the customer's first or last name: after "my name is", then capitalised words."""
    cued: list[str] = []
    capitalised: list[str] = []
    for text in texts:
        for match in _NAME_CUE.finditer(text):
            cued += [w for w in match.groups() if w and w.lower() not in _NOT_NAMES]
        capitalised += [
            w for w in _WORD.findall(text) if w[0].isupper() and w.lower() not in _NOT_NAMES and len(w) > 1
        ]
    names = [w[0].upper() + w[1:] for w in cued] + capitalised
    return _unique(names)[:12]


def _order_id(raw: str) -> str:
    return raw if raw.startswith("#") else "#" + raw


def named_orders(text: str) -> list[str]:
    """The order ids the text names: "#W1234567", "W1234567", or the digits alone ("order 1234567")."""
    return [
        _order_id(m.group(0).upper()) if m.group(1) is None else "#W" + m.group(1)
        for m in _ORDER_ID.finditer(text)
    ]


def _items(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [i for i in order.get("items") or [] if isinstance(i, dict) and i.get("item_id")]


def _variants(product: Mapping[str, Any]) -> list[dict[str, Any]]:
    variants = product.get("variants") or {}
    listed = variants.values() if isinstance(variants, dict) else variants
    return [v for v in listed if isinstance(v, dict) and v.get("item_id") and v.get("available", True)]


def _distinct_names(order: Mapping[str, Any], ids: set[str], said: str) -> bool:
    """Whether the order's items among `ids` are of different products, or the customer's words speak of
    several of those alike ("the two skateboards"); with two vacuum cleaners and "a vacuum cleaner", which
    one is the customer's to say, not the list's."""
    names = [str(i.get("name", "")) for i in _items(order) if str(i["item_id"]) in ids]
    twice = {n for n in names if names.count(n) > 1}
    lowered = said.lower()
    return all(re.search(rf"\b{re.escape(n.lower().split()[-1])}e?s\b|\bboth\b", lowered) for n in twice)


def _order_items(facts: Facts) -> dict[str, tuple[str, ...]]:
    """Each looked-up order's item ids."""
    return {oid: _unique([str(i["item_id"]) for i in _items(o)]) for oid, o in facts.orders.items()}


def _payment_ids(facts: Facts) -> tuple[str, ...]:
    methods = (facts.profile or {}).get("payment_methods") or {}
    if isinstance(methods, dict):
        return _unique([str(k) for k in methods])
    return _unique(
        [str(m.get("id") or m.get("payment_method_id") or "") for m in methods if isinstance(m, dict)]
    )


def _paid_with(order: Mapping[str, Any]) -> list[str]:
    return [
        str(p.get("payment_method_id"))
        for p in order.get("payment_history") or []
        if isinstance(p, dict)
        and p.get("payment_method_id")
        and p.get("transaction_type", "payment") == "payment"
    ]


def _status(order: Mapping[str, Any]) -> str:
    return str(order.get("status", "")).lower()


# What the customer's request must say for a write (or a product lookup) to be possible in a guided step:
# a "cancel" request never becomes a return. Measured on the dev replays: every gold write's request
# carries its tool's cue, and every gold product lookup's request a swap or product cue.
# "a different colour" asks for another item; "in different orders" says where items are
_SWAP = r"exchang|swap|replac|switch|trade|instead|differen(?!t orders?\b)|change|modif|upgrade|update"
WRITE_CUES: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern, re.I)
    for name, pattern in {
        # "my cancelled order" names an order, it asks for nothing
        "cancel_pending_order": r"cancel(?!l?ed (?:orders?|ones?|items?)\b)"
        r"|don't need|do not need|no longer need|remove"
        r"|\b(?:ordered|ordering|bought|buying|purchased|placed|got)\b[^.!?]{0,40}\bby mistake",
        "return_delivered_order_items": r"return|send (?:\w+ )?back|refund|money back",
        "exchange_delivered_order_items": _SWAP,
        "modify_pending_order_items": _SWAP,
        "modify_pending_order_address": r"address|(?:ship|send|sent|deliver)\w*(?: [\w#]+){0,3} to\b|moved",
        "modify_pending_order_payment": r"pay|card|paypal|charge",
        "modify_user_address": r"address|moved",
    }.items()
}
PRODUCT_CUE = re.compile(
    _SWAP + r"|option|availab|variant|colou?r|size|version|price|cost|cheap|expensive|kind|type|in stock",
    re.I,
)
# A request about the customer's own orders, not a policy question: no search for it in a guided step.
_ACCOUNT_REQUEST = re.compile(
    r"\b(?:i want|i'd like|i would like|i need|i wish|please|help me)\b.*"
    r"\b(?:cancel|return|exchange|swap|change|modify|update|send\b.*\bback)"
    r"|\b(?:status|where|track\w*)\b.*\bmy (?:orders?|package|purchase|delivery)\b"
    r"|\b(?:show|list|see)\b.*\bmy (?:orders?|purchases)\b",
    re.I,
)
_ABOUT_POLICY = re.compile(r"\bpolic(?:y|ies)\b", re.I)


def asks_for_changes(text: str) -> bool:
    """Whether the customer's message asks for something done on their account ("I'd like to return...",
    "I wonder if I can change it", "correct my address")."""
    asks = _ACCOUNT_REQUEST.search(text) or _INDIRECT_REQUEST.search(text)
    return bool(asks) and not _policy_only(text)


# Requests put as a thought ("I wonder if I can change it to ...", "potentially correct my address").
_INDIRECT_REQUEST = re.compile(
    r"\bi(?:'m| am)? wonder(?:ing)? if\b[^.?!]*\b(?:cancel|return|exchange|swap|change|modify|update|switch)"
    r"|\b(?:correct|fix)\b[^.?!]*\baddress",
    re.I,
)


def _policy_only(text: str) -> bool:
    """A question about a policy that asks nothing of the customer's own ("what is your return policy?")."""
    return bool(_ABOUT_POLICY.search(text)) and not _ACCOUNT_REQUEST.search(text)


def _impersonal_question(text: str) -> bool:
    """A question about how the store works that says nothing of the customer's own ("Do gift cards
    expire?", "How long do refunds take?"): its search is the step."""
    return (
        "?" in text
        and bool(_STORE_TOPIC.search(text))
        and not _FIRST_PERSON.search(text)
        and not PRODUCT_CUE.search(text)  # "what colors does the lamp come in?": the product's
        and not named_orders(text)
    )


def _timing_question(text: str) -> bool:
    """When something happens by the store's rules ("When will I see my refund?", "How soon is an exchange
    shipped?"): the policies say it, not the customer's records (unless it asks where their order is)."""
    return (
        bool(_TIMING.search(text))
        and bool(_STORE_TOPIC.search(text))
        and not _STATUS_QUESTION.search(text)
        and not asks_for_changes(text)
        and not named_orders(text)
    )


_TIMING = re.compile(
    r"\b(?:when (?:will|do|does|can|would|should|is|are)|how (?:long|soon|quickly|fast))\b", re.I
)
# What the store's policies speak of ("and the water bottle?" is a product, not a policy)
_STORE_TOPIC = re.compile(
    r"refund|return|exchang|gift ?cards?|ship|deliver|warrant|expir|fees?\b|cancel|polic|payment|points",
    re.I,
)
# The customer's own (or their item: "does it come in black?")
_FIRST_PERSON = re.compile(
    r"\b(?:i|i'm|i'd|i've|i'll|me|my|mine|we|our|us|it|its|this|these|those|they|them)\b", re.I
)


_POLICY_QUESTION = re.compile(
    r"\b(?:how long|how do i|how does|do i|can i|is it|are there|what happens|how many|should i|what if)\b",
    re.I,
)
AMOUNT_CUE = re.compile(r"total|how much|sum|amount|difference|balance|add up|altogether|in all", re.I)
_ANY_CUE = re.compile(
    "|".join([*(c.pattern for c in WRITE_CUES.values()), PRODUCT_CUE.pattern, AMOUNT_CUE.pattern]), re.I
)


def request_text(texts: Sequence[str], answered: Collection[int] = ()) -> str:
    """The customer's current request: their last two messages that say more than a yes or a no. A question
    answered by a policy search alone (`Facts.answered`) is no part of a later message asking for a change
    ("how long do I have to return something?", answered, then "please cancel my pending order")."""
    said = [i for i, t in enumerate(texts) if not _bare(t)][-2:]
    if len(said) == 2 and said[0] in answered and _ANY_WRITE_CUE.search(texts[said[1]]):
        said = said[1:]
    return " ".join(texts[i] for i in said)


def _bare(text: str) -> bool:
    return is_explicit_yes(text) or (len(_WORD.findall(text)) <= 3 and not _ANY_CUE.search(text))


def derive(
    messages: Sequence[dict[str, Any]],
    *,
    user_id: str | None = None,
    variant_matcher: bool = False,
    guided: bool = True,
) -> Choices:
    """The actions possible after these messages (the graph's state) and each argument's values.

    Always: identification first, reads of the customer's own records, writes only on orders looked up in the
    status they need. `guided` (the agent's decisions; off for a reviewer, who may pick any safe step) also
    orders the work as an agent does it, so the model cannot skip ahead:
    - identification with what the customer wrote, while a lookup not tried yet is possible, then the
      profile (where they named no order by its id) come before any other step (`_first_reads`);
    - orders are looked up one at a time: the ones the customer named (before the profile, too), then the
      profile's, in its order (an order looked up before the last write may be read again);
    - a write needs its order named by the customer, or holding an item the customer's words name
      ("the keyboard"), or every order of the profile looked up; a request about all of something ("all
      my pending orders", "every t-shirt"), no order named, has every order looked up before its first
      write; on an order holding named items, the items of a return or swap are among those (unless the
      customer speaks of all items);
    - a product lookup is of a named item's product, or of any item once every order was looked up, or of
      a product of the product list that the customer's words name;
    - a write only of a kind the customer's current request asks for (`WRITE_CUES`: "cancel" is never a
      return), a product lookup only for a swap or a product question (not for "change the address");
    - a policy search only as the first step after the customer's message (besides identification), of
      that message's words, and not for a request about their own orders ("I want to cancel my order",
      "what is the status of my orders?") unless it also asks a policy question ("how long do I have?");
    - a hand-off only when the customer asks for a person, once their records were looked into (profile
      and an order), the question searched and no write it asks for possible (nor, for a change, an order
      left to look up), or after a refused write or
      a failed identification since their message; and only a hand-off when their message asks to be put
      through to a person ("can I talk to a human?");
    - no write for a question about a policy ("what is your return policy?") that asks for nothing;
    - an item's details only of an item id the customer wrote;
    - the product list only for a swap or a product question, `calculate` only when the request asks for
      an amount (a total, a difference, a balance);
    - a write listed to the customer and turned down (anything but a yes, unless it only asks to wait: "not
      yet", "hold on") is not proposed again with the same arguments, nor a calculation made again
      (`Choices.excluded`): the next proposal differs, or the step is another one.

    With `variant_matcher`, the new item of an exchange or item change is proposed by `match_variants`
    (the variants whose option values best fit the customer's words); else any available variant."""
    facts = read_facts(messages, user_id=user_id)
    texts = facts.customer_texts
    said = " ".join(texts)
    request = request_text(texts, facts.answered)
    named = named_orders(said)  # orders named by their ids
    actions: list[Action] = []

    def read(name: str, slot: str, values: Sequence[str]) -> None:
        fresh = tuple(v for v in _unique(values) if _read_key(name, {slot: v}) not in facts.reads)
        if fresh:
            actions.append(Action(name, (Slot(slot, values=fresh),)))

    if facts.user_id is None:
        emails = tuple(
            e
            for e in _unique(_EMAIL.findall(said))
            if _read_key("find_user_id_by_email", {"email": e}) not in facts.reads
        )
        if emails:
            actions.append(Action("find_user_id_by_email", (Slot("email", values=emails),)))
        names, zips = _name_candidates(texts), _unique(_ZIP.findall(said))
        if names and zips:
            slots = (
                Slot("first_name", values=names),
                Slot("last_name", values=names),
                Slot("zip", values=zips),
            )
            actions.append(Action("find_user_id_by_name_zip", slots))
    else:
        profile_orders = [str(o) for o in (facts.profile or {}).get("orders") or []]
        tried = [
            o
            for o in named
            if o in facts.orders or _read_key("get_order_details", {"order_id": o}) in facts.reads
        ]
        if not guided or facts.profile is not None or len(tried) == len(named):
            read("get_user_details", "user_id", [facts.user_id])  # guided: an order they named comes first
        to_read = _unique([*named, *profile_orders])
        if guided:  # the next order never looked up, and those looked up before the last write (to re-read)
            fresh = [
                o
                for o in to_read
                if o not in facts.orders
                and _read_key("get_order_details", {"order_id": o}) not in facts.reads
            ]
            to_read = (*fresh[:1], *(o for o in to_read if o in facts.orders))
        read("get_order_details", "order_id", to_read)
        item_products = [str(i.get("product_id")) for o in facts.orders.values() for i in _items(o)]
        every_item = bool(_ALL_ITEMS.search(said))  # "all my items": no item is singled out
        mentioned = mentioned_items(facts)
        wanted = [] if every_item else mentioned
        by_status = status_pointed(facts) if guided else set()  # "my pending order", the only one pending
        if guided and not every_item:  # a named item's product; any once every order was looked up
            item_products = [str(i.get("product_id")) for i in wanted] or (
                item_products if _every_order_read(facts) else []
            )
            # and those of the order they point at by its status ("my pending order's item changed to red")
            item_products += [
                str(i.get("product_id")) for o in sorted(by_status) for i in _items(facts.orders[o])
            ]
        catalogue = list(facts.product_list.values())
        if guided:  # from the product list, the products the customer's words name ("a mechanical keyboard")
            words = _name_tokens(said)
            catalogue = [pid for name, pid in facts.product_list.items() if _head_tokens(name) & words]
        if not guided or _product_asked(request):  # a swap or a product question
            read(
                "get_product_details", "product_id", [*item_products, *catalogue, *_PRODUCT_ID.findall(said)]
            )
        item_ids = [str(i["item_id"]) for o in facts.orders.values() for i in _items(o)]
        item_ids += [str(v["item_id"]) for p in facts.products.values() for v in _variants(p)]
        if guided:  # an item the customer names by its id ("item 4107812777"): the rest are in the records
            item_ids = _PRODUCT_ID.findall(said)
        read("get_item_details", "item_id", item_ids)
        listed = facts.product_list or _read_key("list_all_product_types", {}) in facts.reads
        if not listed and (not guided or _product_asked(request)):
            actions.append(Action("list_all_product_types"))
        if not guided or AMOUNT_CUE.search(request):  # a total, a difference, a balance asked for
            actions.append(Action("calculate", (Slot("expression", kind="text", max_tokens=40),)))
        if guided:  # the writes the request asks for, on the items the customer names (or all of them)
            focus = {kind: item_focus(facts, kind) for kind in ("return", "swap")}
            every = _every_item_but(facts, said) if every_item else None
            if every is not None:  # all of them ("everything except the mug": but that one)
                focus = {kind: every for kind in focus}
            writable = writable_orders(facts, named=named, mentioned=mentioned, by_status=by_status)
            writes = _writes(
                facts,
                matcher=variant_matcher,
                orders=writable,
                focus=focus,
                held={kind: held_items(facts, kind) for kind in ("return", "swap")},
                every_focus=bool(every),
                guided=True,
            )
            if _ALL_OF.search(request) and not named and not _every_order_read(facts, tried=True):
                writes = []  # "cancel all my pending orders": each order is looked up before the first write
            if _policy_only(request):
                writes = []  # "what is your return policy?" asks what the policy says, not for a return
            actions += _items_changed_last(
                [w for w in writes if WRITE_CUES[w.name].search(request) and _asked_for(w.name, request)],
                facts,
            )
        else:
            actions += _writes(facts, matcher=variant_matcher)
    queries = _unique(list(reversed(texts)))
    if guided:  # the question just asked (the last message that says more than yes or no)
        queries = _unique([t for t in reversed(texts) if not _bare(t)][:1] or queries[:1])
    first_step = all(t in IDENTIFY_TOOLS or t == "get_user_details" for t in facts.turn_tools)
    asks_account = bool(queries) and bool(
        _ACCOUNT_REQUEST.search(queries[0]) and not _POLICY_QUESTION.search(queries[0])
    )
    searchable = bool(queries) and (not guided or (first_step and not asks_account))
    if searchable:
        search = Action("search_policies", (Slot("query", values=queries[:3]),))
        if guided and (
            _policy_only(queries[0]) or _impersonal_question(queries[0]) or _timing_question(queries[0])
        ):
            actions = []  # "what is your return policy?": its search is the step, not the customer's records
        actions.append(search)
    looked_into = facts.profile is not None and bool(facts.orders)
    hand_off = Action("transfer_to_human_agents", (Slot("summary", kind="text", max_tokens=32),))
    if (
        guided
        and queries
        and _WANTS_PERSON.search(queries[0])
        and "transfer_to_human_agents" not in facts.turn_tools
    ):
        # "can I talk to a human?": the customer's explicit ask is done, not searched or argued with
        return Choices(actions=(hand_off,), reply=False, reply_text=False)
    first_reads = _first_reads(facts, actions, named=bool(named)) if guided else []
    if first_reads:  # who they are, then their profile: before any other step
        return Choices(actions=tuple(first_reads), reply=False, reply_text=False, excluded=_tried_ids(facts))
    # "What is the status of my orders?" as the customer's latest words is the request, whatever came before
    # ("how long do refunds take?" is no ask for a refund): no write now
    latest = next((t for t in reversed(texts) if not _bare(t)), "")
    if guided and _STATUS_QUESTION.search(latest) and not _ANY_WRITE_CUE.search(latest):
        request = latest
        actions = [a for a in actions if a.name not in WRITE_CUES]
    status_only = guided and _STATUS_QUESTION.search(request) and not _ANY_WRITE_CUE.search(request)
    asked_for_person = bool(_ASKS_PERSON.search(said))
    can_write = any(a.name in WRITE_CUES for a in actions)
    # a change asked for, and an order of theirs not looked up yet: it may be there (no hand-off before)
    can_look = (
        bool(_ANY_WRITE_CUE.search(request))
        and not _policy_only(request)
        and any(
            a.name == "get_order_details" and any(o not in facts.orders for o in a.slots[0].values)
            for a in actions
        )
    )
    # "upgrade all my items to ...": a swap of every item of an order waits on each of their products
    swap_waits = guided and not can_write and _all_items_wait_on_products(facts, actions, request)
    if (
        not guided
        or (
            looked_into
            and not status_only
            and not searchable
            and not can_write
            and not can_look
            and not swap_waits
        )
        or facts.turn_failed
        or asked_for_person
    ):
        # a status question once looked up is answered, not handed off; a question is searched first; a
        # change the request asks for and the records allow is proposed, not passed on
        actions.append(hand_off)
    # The graph says the reply itself before identification ("I need your email...") and after a write
    # (the write's outcome); elsewhere the model's short reply is checked by the groundedness guard.
    reply_text = facts.user_id is not None and not facts.last_write_done
    # "Where is my order?": no answer before the order (each of them, if none is named) was looked up
    reply = not (guided and _unread_asked_about(facts, request, actions))
    # A change asked for in the customer's latest words, none of it possible on the orders looked up, nothing
    # proposed or done this turn, and an order of theirs not looked up yet: the next step looks there. A
    # reply now would leave the request undone ("I don't have that information" to a repeated request).
    proposed = any(t in WRITE_CUES for t in facts.turn_tools)
    if guided and can_look and not can_write and not proposed and _ANY_WRITE_CUE.search(latest):
        reply = False
    if swap_waits and not proposed:  # the products first, then the swap: a reply now would leave it undone
        reply = False
    # A write done in this turn and the request asks for a kind of change not made yet ("return the tablet
    # and cancel the charger") or for all items: while such a write is possible now, or an order of theirs
    # is still to look up, the next step goes on with the rest of it (a reply now would leave it to the
    # customer to ask again).
    if guided and facts.turn_done:
        left = _kinds_left(facts, request)
        if (
            (can_look and (left or _ALL_ITEMS.search(request)))
            or any(_KINDS.get(a.name) in left for a in actions)
            or ("items" in left and _swap_needs_product(facts, actions))
        ):
            reply = False
    # "Change the address of all my pending orders": one such write done, the same write possible now on
    # another order (a changed order is no longer among its values) is the rest of the request, not a reply.
    if guided and facts.done and _ALL_OF.search(request):
        made = {c.name for c in facts.done}
        if any(a.name in made and a.name in _ORDER_WRITES for a in actions):
            reply = False
    if status_only and reply and reply_text and not _POLICY_QUESTION.search(request):
        asked = _status_asked(facts, request)
        if asked:  # then the answer is the records' status, said by the graph (nothing else to do)
            return Choices(actions=(), reply=True, reply_text=False, status_of=asked)
    # a write the customer turned down, a calculation already made (the same expression gives the same)
    excluded = frozenset([*facts.declined, *facts.calculated]) if guided else frozenset()
    return Choices(actions=tuple(actions), reply=reply, reply_text=reply_text, excluded=excluded)


def _swap_asked(request: str) -> bool:
    """Whether the request asks for an item to be exchanged or changed."""
    return any(WRITE_CUES[name].search(request) and _asked_for(name, request) for name in _ITEM_WRITES)


def _product_asked(request: str) -> bool:
    """Whether the request asks for an item swap or about products ("which colours does it come in?"): a
    swap word beside an address change ("change the address of all my orders") asks neither."""
    return _swap_asked(request) or _product_words(request)


def _product_words(request: str) -> bool:
    """Whether the request speaks of products ("a bigger size", "the red one") besides its swap words."""
    return bool(PRODUCT_CUE.search(_SWAP_WORDS.sub("", request)))


def _tried_ids(facts: Facts) -> frozenset[str]:
    """The identification lookups made already (found or not: the same one gives the same)."""
    return frozenset(k for k in facts.reads if k.split("{", 1)[0] in IDENTIFY_TOOLS)


def _first_reads(facts: Facts, actions: Sequence[Action], *, named: bool) -> list[Action]:
    """The step that comes before any other where one is possible: identification with what the customer
    wrote (one not tried yet, if a lookup failed: their email after their name and zip), then, once
    identified, the profile, where they `named` no order by its id (that order is looked up first, and may be
    all the request needs) and ask nothing to search ("how long do I have?" may be answered at once).
    Empty: no such step now."""
    if facts.user_id is None:
        tried = {k.split("{", 1)[0] for k in _tried_ids(facts)}  # the emails offered are those not tried
        return [
            a
            for a in actions
            if a.name == "find_user_id_by_email" or (a.name in IDENTIFY_TOOLS and a.name not in tried)
        ]
    searchable = any(a.name == "search_policies" for a in actions)  # a question to search comes first
    if facts.profile is not None or searchable or named:
        return []
    return [a for a in actions if a.name == "get_user_details"]


def _kinds_left(facts: Facts, request: str) -> set[str]:
    """The kinds of change the request asks for that no write of this conversation made yet (or the customer
    turned down). A payment cue is left out: "refunded to my card" asks for no payment change."""
    asked = {
        kind
        for name, kind in _KINDS.items()
        if WRITE_CUES[name].search(request) and _asked_for(name, request)
    }
    done_or_declined = [*facts.done, *facts.declined_calls]  # a "no" to it: not forced
    left = asked - {_KINDS[c.name] for c in done_or_declined if c.name in _KINDS}
    # an item the words single out for a swap or a return ("change the laptop ..., and my watch to ...") on an
    # order where no such write was made or turned down: that change is still to make
    for kind, focus, names in (("items", "swap", _ITEM_WRITES), ("return", "return", _RETURNS)):
        if kind not in asked or kind in left:
            continue
        touched = _targets([c for c in done_or_declined if c.name in names], names)
        if any(o not in touched for o in _orders_holding(facts, item_focus(facts, focus))):
            left.add(kind)
    return left


_RETURNS = frozenset(["return_delivered_order_items"])


def _swap_needs_product(facts: Facts, actions: Sequence[Action]) -> bool:
    """Whether an item named for a swap waits on its product's lookup, and that lookup is possible now (the
    swap itself then follows: "change the laptop ..., and my watch to one with a black dial")."""
    focus = item_focus(facts, "swap")
    wanted = {
        str(i.get("product_id"))
        for o in facts.orders.values()
        for i in _items(o)
        if str(i["item_id"]) in focus and str(i.get("product_id")) not in facts.products
    }
    return _product_lookup_offered(actions, wanted)


def _product_lookup_offered(actions: Sequence[Action], wanted: Collection[str]) -> bool:
    """Whether a product lookup possible now is of one of the `wanted` products."""
    lookup = next((a for a in actions if a.name == "get_product_details"), None)
    return lookup is not None and bool(lookup.slots) and bool(set(wanted) & set(lookup.slots[0].values))


def _all_items_wait_on_products(facts: Facts, actions: Sequence[Action], request: str) -> bool:
    """Whether the request asks to swap all items ("upgrade all my items", "exchange everything") and a
    product of an item on an order in a status that allows a swap is still to look up, its lookup possible
    now."""
    if not _ALL_ITEMS.search(request) or not any(
        WRITE_CUES[n].search(request) and _asked_for(n, request) for n in _ITEM_WRITES
    ):
        return False
    waiting = {
        str(i.get("product_id"))
        for o in facts.orders.values()
        if _status(o) in ("pending", "delivered")
        for i in _items(o)
        if str(i.get("product_id")) not in facts.products
    }
    return _product_lookup_offered(actions, waiting)


def _orders_holding(facts: Facts, item_ids: Collection[str]) -> set[str]:
    """The orders looked up that hold any of these items."""
    return {
        o for o, order in facts.orders.items() if any(str(i["item_id"]) in item_ids for i in _items(order))
    }


def _items_changed_last(writes: list[Action], facts: Facts) -> list[Action]:
    """A pending order's items are changed last: an item change ends what may be changed on it (its status
    becomes "pending (items modified)"), so while the request also asks for its address to change (that
    write possible now, and no address change of it turned down), its item change waits. (A payment named
    for an item change, "use my gift card for any charges", pays the difference: it is no change first.)"""
    name = "modify_pending_order_address"
    turned_down = {c.arguments.get("order_id") for c in facts.declined_calls if c.name == name}
    move = next((w for w in writes if w.name == name), None)
    held = {o for o in move.slots[0].values if o not in turned_down} if move is not None else set()
    out = []
    for w in writes:
        if w.name == "modify_pending_order_items" and held:
            keep = tuple(o for o in w.slots[0].values if o not in held)
            if not keep:
                continue
            w = Action(w.name, (replace(w.slots[0], values=keep), *w.slots[1:]))
        out.append(w)
    return out


_STATUS_WORD = r"\b(?:status|where|track\w*|shipped|arriv\w*|deliver\w*|show|list|see|view)\b"
_MY_ORDERS = r"\bmy (?:\w+ )?(?:orders?|package|parcel|purchases?|delivery)\b"
_STATUS_QUESTION = re.compile(
    rf"{_STATUS_WORD}.*(?:{_MY_ORDERS}|#?W\d{{7}})|{_MY_ORDERS}.*{_STATUS_WORD}", re.I
)


_ANY_WRITE_CUE = re.compile("|".join(c.pattern for c in WRITE_CUES.values()), re.I)


def _unread_asked_about(facts: Facts, request: str, actions: Sequence[Action]) -> bool:
    """Whether the request asks about orders' status and one it asks about can still be looked up."""
    lookup = next((a for a in actions if a.name == "get_order_details"), None)
    if lookup is None or not _STATUS_QUESTION.search(request):
        return False
    named = named_orders(request)
    asked = named or [str(o) for o in (facts.profile or {}).get("orders") or []]
    return any(o not in facts.orders for o in asked)


def _status_asked(facts: Facts, request: str) -> tuple[str, ...]:
    """The looked-up orders a status question asks about: those it names, else those holding the items it
    names ("where is my keyboard?"), else every order of the profile (empty while one is not looked up)."""
    named = named_orders(request)
    asked = named or [str(o) for o in (facts.profile or {}).get("orders") or []]
    if any(o not in facts.orders for o in asked):
        return ()
    if not named:
        mentioned = mentioned_items(facts)
        holding = {oid for oid in asked if any(i in mentioned for i in _items(facts.orders[oid]))}
        asked = [o for o in asked if o in holding] or asked
    return tuple(_unique(asked))


_ASKS_PERSON = re.compile(
    r"\b(humans?|person|people|representative|manager|supervisor|transfer|real agent|live agent)\b",
    re.I,
)
# The customer's message asks to be put through to a person (not merely mentions one).
_WANTS_PERSON = re.compile(
    r"\b(?:talk|speak|chat)\s+(?:to|with)\s+(?:a|an|some|your|the)?\s*(?:real\s+|live\s+)?"
    r"(?:human|person|representative|agent|manager|supervisor|someone)\b"
    r"|\b(?:transfer|connect|put)\s+me\s+(?:to|through|with)\b"
    r"|\b(?:human|live|real)\s+(?:agent|representative|person)\s+please\b",
    re.I,
)
_WHOLE_ORDER = re.compile(r"\b(?:entire|whole)\s+order\b", re.I)  # all of one order's items
_ALL_ITEMS = re.compile(
    r"\b(?:all|every|each)\s+(?:of\s+)?(?:my|the|its|their|these|those|this|that)?\s*"
    r"(?:\w+\s+)?(?:items?|things|products|orders?|pieces)\b|\beverything\b|" + _WHOLE_ORDER.pattern,
    re.I,
)
_EVERY_ITEM = re.compile(
    r"\b(?:all|every|each)\s+(?:of\s+)?(?:my|the|its|their|these|those|this|that)?\s*"
    r"(?:\w+\s+)?(?:items?|things|products|pieces)\b|\beverything\b|" + _WHOLE_ORDER.pattern,
    re.I,
)
_EXCEPT = re.compile(r"\b(?:except|other than|apart from|besides|excluding|but not|but the)\b", re.I)
_QUALIFIED = re.compile(r"\b(?:that|which|isn't|is not|aren't|are not|related|unless|if)\b", re.I)


def _every_item_but(facts: Facts, said: str) -> set[str] | None:
    """The items "all my items" / "everything" speaks of: every item looked up but those named after an
    "except"; none (the model picks) for "everything that isn't for gaming"; None if no such words ("all
    my orders")."""
    every = {i for ids in _order_items(facts).values() for i in ids}
    for sentence in re.split(r"(?<=[.!?;])\s+", said):
        found = _EVERY_ITEM.search(sentence)
        if found is None:
            continue
        rest = sentence[found.end() :]
        but = _EXCEPT.search(rest)
        if _QUALIFIED.search(rest[: but.start()] if but else rest):
            return set()
        if but is None:
            return every
        return every - {str(i["item_id"]) for i in mentioned_items(facts, [rest[but.end() :]])}
    return None


_NAME_TOKEN = re.compile(r"[a-z]+")
_GENERIC_NAMES = frozenset(["set", "kit", "pack", "pair", "and", "the", "for", "with"])
_WORD_RUN = re.compile(r"[a-z]+(?: [a-z]+)*")  # words separated by single spaces only (no punctuation)


def _singulars(word: str) -> set[str]:
    """A plural's singulars past the dropped "s" (`variants.stem`): "bookshelves" bookshelf, "knives" knife,
    "batteries" battery, "watches" watch, "boxes" box."""
    found = {stem(word)}
    if len(word) > 4 and word.endswith("ves"):
        found |= {word[:-3] + "f", word[:-3] + "fe"}
    elif len(word) > 4 and word.endswith("ies"):
        found.add(word[:-3] + "y")
    elif word.endswith(("ches", "shes", "sses", "xes")):
        found.add(word[:-2])
    return found


def _name_tokens(text: str) -> set[str]:
    """A product name's or the customer's words, stemmed; hyphenated ones also joined ("T-Shirt": tshirt), and
    each two adjacent words joined ("book shelf": bookshelf; "Smart Watch": smartwatch)."""
    lowered = text.lower()
    words = _NAME_TOKEN.findall(lowered) + _NAME_TOKEN.findall(lowered.replace("-", ""))
    runs = [run.split() for run in _WORD_RUN.findall(lowered)]
    words += [a + b for run in runs for a, b in itertools.pairwise(run)]
    return {form for w in words if len(w) > 2 and w not in _GENERIC_NAMES for form in _singulars(w)}


def _head_tokens(name: str) -> set[str]:
    """The tokens of a product name's last word that is not generic ("Luggage Set": luggage)."""
    words = [w for w in name.lower().split() if _name_tokens(w)]
    return _name_tokens(words[-1]) if words else set()


def _compound_head(name: str, said: set[str]) -> bool:
    """Whether a word of `said` (four letters or more) ends the name's one-word compound head after three
    letters or more ("watch": Wristwatch; "phone": Smartphone)."""
    return any(
        head.endswith(w) and len(head) - len(w) >= 3
        for head in _head_tokens(name)
        for w in said
        if len(w) >= 4
    )


def _named_in(said: set[str], items: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The items whose product `said` names: by the name's head word ("the watch"), or by another word of it
    that no item named by its head explains ("the jigsaw" names the Jigsaw Puzzle; "smart" in "the smart
    thermostat" does not name the Smart Watch)."""
    by_head = [i for i in items if _head_tokens(str(i.get("name", ""))) & said]
    # a word no head named explains (as itself or its part: "book" in "book shelf") may end another item's
    # compound head ("the watch": the Wristwatch)
    heads = set().union(*(_head_tokens(str(i.get("name", ""))) for i in by_head))
    rest = {w for w in said if not any(w in head for head in heads)}
    by_head += [i for i in items if i not in by_head and _compound_head(str(i.get("name", "")), rest)]
    explained = set().union(*(_name_tokens(str(i.get("name", ""))) for i in by_head))
    return [
        i
        for i in items
        if i in by_head or (_name_tokens(str(i.get("name", ""))) - explained) & said - explained
    ]


def mentioned_items(facts: Facts, texts: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The items of the orders looked up whose product the customer's words (or `texts`) name."""
    # "change the luggage set for a coat": what they would like instead names no item of theirs
    said = _name_tokens(_WANTED_INSTEAD.sub(" ", " ".join(facts.customer_texts if texts is None else texts)))
    items = [item for order in facts.orders.values() for item in _items(order)]
    named = _named_in(said, items)
    return [i for i in items if i in named]


# What the customer would like in place of an item: "(exchange the lamp) for a less bright one".
_WANTED_INSTEAD = re.compile(r"\bfor (?:a|an)\s+[^,.;:!?]*?(?=\s+(?:and|but|or)\b|[,.;:!?]|$)", re.I)


# A request's clauses start at a write's cue: "return (the bottle), and exchange (the lamp), cancel (...)".
_CLAUSE_CUE = re.compile(
    f"(?P<return>{WRITE_CUES['return_delivered_order_items'].pattern})|(?P<swap>{_SWAP})"
    f"|(?P<other>{WRITE_CUES['cancel_pending_order'].pattern}|address|pay)",
    re.I,
)
_ONLY = re.compile(r"\b(?:only|just the|nothing but)\b", re.I)
# A write's cue followed by a word pointing back ("return them"): the items were named before the cue.
_PRONOUN = re.compile(r"\w*\s+(?:them|it)\b", re.I)
_SENTENCE_END = re.compile(r"[.!?;]\s+")


def _segments(facts: Facts, kind: str) -> tuple[list[str], list[str]]:
    """The parts of the customer's messages about that kind of write, from its cue to the next cue: those
    that ask for it, and those whose sentence holds it back ("check whether I can return the vacuum, but
    don't process anything")."""
    asked: list[str] = []
    held: list[str] = []
    for text in facts.customer_texts:
        cues = list(_CLAUSE_CUE.finditer(text))
        for n, cue in enumerate(cues):
            if cue.lastgroup == kind:
                end = cues[n + 1].start() if n + 1 < len(cues) else len(text)
                start = cue.start()
                if _PRONOUN.match(text, cue.end()):  # "the two skateboards ... I want to return them"
                    before = max([0, *(m.end() for m in _SENTENCE_END.finditer(text, 0, start))])
                    start = max([before, *(c.end() for c in cues[:n])])
                (held if _held_back(text, cue.start()) else asked).append(text[start:end])
    return asked, held


_MORE_EXPENSIVE = re.compile(r"\b(?:more expensive|pricier|costlier|higher[- ]priced)\b", re.I)
_CHEAPER = re.compile(r"\b(?:cheaper|less expensive|lower[- ]priced)\b", re.I)


def _price_way(facts: Facts) -> int:
    """+1 where the customer's words about a return point to the pricier of two alike items ("the more
    expensive one"), -1 to the cheaper, else 0."""
    asked, _ = _segments(facts, "return")
    text = " ".join(asked)
    up, down = bool(_MORE_EXPENSIVE.search(text)), bool(_CHEAPER.search(text))
    return 1 if up and not down else -1 if down and not up else 0


def _held_back(text: str, at: int) -> bool:
    """Whether the sentence of the cue at `at` holds it back, or the next one does and asks nothing else
    ("... return the vacuum cleaner? I'm not sure yet, so don't process that one.")."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    start = max([0, *(e for e in ends if e <= at)])
    end = min([len(text), *(e for e in ends if e > at)])
    following = text[end : min([len(text), *(e for e in ends if e > end)])]
    return bool(_HOLD.search(text[start:end])) or bool(
        _HOLD.search(following) and not _CLAUSE_CUE.search(following)
    )


# The customer holds a write back: only a question, or not decided yet.
_HOLD = re.compile(
    r"\b(?:don'?t|do not) (?:process|do|submit|make|change|go ahead with) (?:anything|it|that|them|yet)\b"
    r"|\bnot sure yet\b|\bhaven'?t decided\b|\b(?:just|only) asking\b",
    re.I,
)


def held_items(facts: Facts, kind: str, segments: tuple[list[str], list[str]] | None = None) -> set[str]:
    """The items the customer names only where they hold that kind of write back (`_segments`, or those
    given)."""
    asked, held = segments if segments is not None else _segments(facts, kind)
    if not held:
        return set()
    named_held = {str(i["item_id"]) for i in mentioned_items(facts, held)}
    return named_held - {str(i["item_id"]) for i in mentioned_items(facts, asked)} if asked else named_held


def item_focus(facts: Facts, kind: str) -> set[str]:
    """The items a "return" (or a "swap") is about: those the customer names after asking for that kind of
    write ("return the bottle, and exchange the lamp": the bottle is returned), else every item they name;
    a later "only the lamp" narrows it; never one they hold back (`held_items`), nor, for a swap, one another
    item was swapped to be like ("the grill I just ordered to the same type as the one I received": the
    received one is the model, not changed). Empty: no item singled out."""
    parts = _segments(facts, kind)
    # "the backpack I received with the vacuum cleaner": the vacuum cleaner says which backpack
    segments = [_REFERENCE.sub(" ", segment) for segment in parts[0]]
    held = held_items(facts, kind, parts)
    if kind == "swap":
        held |= _models_of_swaps(facts)
    ids = {str(i["item_id"]) for i in mentioned_items(facts, segments)} if segments else set()
    ids = (ids or {str(i["item_id"]) for i in mentioned_items(facts)}) - held
    for text in reversed(facts.customer_texts):  # "actually, only the desk lamp"
        for sentence in re.split(r"(?<=[.!?;])\s+", text):
            if _ONLY.search(sentence):
                only = {str(i["item_id"]) for i in mentioned_items(facts, [sentence])} & ids
                if only:
                    return only
    return ids


# An item named to say which other one is meant: "(the backpack) I received with the vacuum cleaner".
_REFERENCE = re.compile(
    r"\b(?:received|got|bought|ordered|purchased|came|arrived|shipped|delivered)\s+(?:together\s+)?"
    r"(?:with|alongside)\s+(?:the|my|a|an|that)\s+(?:[\w-]+\s+){0,2}[\w-]+",
    re.I,
)


def _models_of_swaps(facts: Facts) -> set[str]:
    """The items of the orders looked up that a swap made on another order took as its new item."""
    taken = {
        (str(call.arguments.get("order_id")), str(new))
        for call in facts.done
        if call.name in _ITEM_WRITES
        for new in call.arguments.get("new_item_ids") or []
    }
    return {
        str(item["item_id"])
        for oid, order in facts.orders.items()
        for item in _items(order)
        if any(str(item["item_id"]) == new and oid != where for where, new in taken)
    }


# The swap cues that name new items (not the generic "change", "modify", "update").
_COLOURS = (
    r"(?:black|white|red|blue|green|grey|gray|silver|gold|pink|purple|yellow|orange|brown|beige|navy)\b"
)
# An item swap in words beside an address change: a swap word, "to a black one" / "to one with ...", an item
# id, "its item changed to red", "to a grey one".
_ITEM_SWAP = re.compile(
    r"exchang|swap|replac|switch|trade|instead|differen|upgrade"
    r"|\bto (?!(?:a |an |the )?(?:original|old|previous|same|first|other)\b)(?:[\w-]+ ){0,3}one\b"
    r"|\b(?:items?|it) (?:\w+ ){0,2}changed to\b|\bto (?:a |an |the )?" + _COLOURS + "|" + ITEM_ID.pattern,
    re.I,
)
_SWAP_WORDS = re.compile(_SWAP, re.I)
_ITEM_WRITES = frozenset(["exchange_delivered_order_items", "modify_pending_order_items"])
_KINDS = {  # writes of one kind of change (`_kinds_left`): one done, that change is made
    "cancel_pending_order": "cancel",
    "return_delivered_order_items": "return",
    **dict.fromkeys(_ITEM_WRITES, "items"),
    **dict.fromkeys(_ADDRESS_WRITES, "address"),
}


def _asked_for(name: str, request: str) -> bool:
    """Beyond its cue: "change the order to be shipped to 12 Elm Street" asks for a new address, not new
    items (a swap of items needs a word of its own when the request speaks of an address)."""
    if name in _ITEM_WRITES and WRITE_CUES["modify_pending_order_address"].search(request):
        return bool(_ITEM_SWAP.search(request)) or _product_words(request)
    if name == "modify_pending_order_address" and _PROFILE_ADDRESS.search(request):
        return bool(_ORDER_WORD.search(request))  # "change my default address to ...": the profile's
    if name == "modify_pending_order_payment":
        # "pay the difference with my gift card", "refunded to my credit card": how another change is
        # settled, not a new payment method for the order
        return bool(WRITE_CUES[name].search(_SETTLEMENT.sub(" ", request)))
    return True


# The customer's default address as what is changed (not as the new address of an order: "ship it to my
# default address"); an order's address change then needs an order word of its own.
_PROFILE_ADDRESS = re.compile(
    r"\b(?:change|update|modify|correct|set|fix)\s+(?:my\s+|the\s+)?(?:default|profile|account|user|home)"
    r"\s+(?:shipping\s+)?address\b",
    re.I,
)
_ORDER_WORD = re.compile(r"\border|\bship|\bpackage|\bparcel|\bdeliver", re.I)
# How a swap's price difference or a refund is settled: the rest of that sentence names its payment method.
_SETTLEMENT = re.compile(
    r"\b(?:(?:pay|charge|cover|settle)\w*\s+(?:for\s+)?(?:the\s+|any\s+)?)?(?:price\s+)?difference\b[^.!?]*"
    r"|\brefund\w*\b[^.!?]*",
    re.I,
)


def writable_orders(
    facts: Facts,
    *,
    named: Sequence[str],
    mentioned: Sequence[Mapping[str, Any]],
    by_status: set[str] | None = None,
) -> set[str]:
    """The looked-up orders a write may touch: `named` by the customer or holding an item they name
    (`mentioned_items`), and then also one they point at by its status (`status_pointed`, or `by_status`
    where the caller has it). Once the
    profile's orders were all looked up: those still, if there are any and the request is not about all
    orders or items; else every order looked up."""
    holding = _orders_holding(facts, {str(i["item_id"]) for i in mentioned})
    pointed = (set(named) | holding) & set(facts.orders)
    if pointed:  # an order pointed at by its status too ("return the lamp, and send my pending order to...")
        pointed |= status_pointed(facts) if by_status is None else by_status
    if _every_order_read(facts):
        said = " ".join(facts.customer_texts)
        # "cancel the entire order" is all of one order's items: no other order opens by it
        if not pointed or _ALL_OF.search(said) or _ALL_ITEMS.search(_WHOLE_ORDER.sub(" ", said)):
            return set(facts.orders)
    return pointed


# An order pointed at by its status: "my pending order", "the delivered order's item".
_BY_STATUS = re.compile(r"\b(?:my|the) (pending|delivered|processed) order\b", re.I)


def status_pointed(facts: Facts) -> set[str]:
    """The order the customer points at by its status ("send my pending order to ..."), once every order
    was looked up and it is the only one in that status."""
    statuses = {m.group(1).lower() for t in facts.customer_texts for m in _BY_STATUS.finditer(t)}
    if not statuses or not _every_order_read(facts):
        return set()
    found: set[str] = set()
    for status in statuses:
        orders = [o for o, order in facts.orders.items() if _status(order) == status]
        if len(orders) == 1:
            found.add(orders[0])
    return found


# A request about all of something ("all my pending orders", "every t-shirt", "everything gaming related").
_ALL_OF = re.compile(
    r"\b(?:all|every)\s+(?:of\s+)?(?:my|the|your|possible|pending|delivered)\b|\beverything\b"
    r"|\b(?:all|every|each)\s+(?:\w+\s+)?(?:orders?|items?|things|products|purchases)\b",
    re.I,
)


def _every_order_read(facts: Facts, *, tried: bool = False) -> bool:
    """Whether the profile was read and each of its orders looked up (`tried`: or its lookup failed)."""
    profile_orders = [str(o) for o in (facts.profile or {}).get("orders") or []]
    return facts.profile is not None and all(
        o in facts.orders or (tried and _read_key("get_order_details", {"order_id": o}) in facts.reads)
        for o in profile_orders
    )


def _writes(
    facts: Facts,
    *,
    matcher: bool = False,
    orders: set[str] | None = None,
    focus: Mapping[str, set[str]] | None = None,
    held: Mapping[str, set[str]] | None = None,
    every_focus: bool = False,
    guided: bool = False,
) -> list[Action]:
    """The writes possible on the orders looked up (those of `orders` if given) and the profile, each order
    in the status it needs. `focus` ("return", "swap": the items the customer's words single out for that
    kind of write, `item_focus`; `held`: those they hold back, never in it): on an order holding some, a
    return or swap is of exactly those (of
    one item of each product named where the order holds two alike, unless `every_focus`: the focus is every
    item but those excepted), and a swap waits until each one's product was looked up (an order's items are
    exchanged once, all together).
    `guided`: an address change picks a whole address the customer wrote or the records show, and a
    payment method is of the kind the customer's words name, if they name one (`_named_payments`)."""
    looked_up = [oid for oid in facts.orders if orders is None or oid in orders]
    pending = [oid for oid in looked_up if _status(facts.orders[oid]) == "pending"]
    delivered = [oid for oid in looked_up if _status(facts.orders[oid]) == "delivered"]
    # the profile's payment methods; before it is looked up, those the customer's orders were paid with (an
    # order looked up is the identified customer's, and so is its payment history)
    payments = _payment_ids(facts) or _unique([p for oid in looked_up for p in _paid_with(facts.orders[oid])])
    gift_cards = tuple(p for p in payments if p.startswith("gift_card"))
    said = " ".join(facts.customer_texts)

    methods = (facts.profile or {}).get("payment_methods") or {}

    def narrowed(
        values: tuple[str, ...], paid: Sequence[str] = (), *, default: bool = False
    ) -> tuple[str, ...]:
        if not guided:
            return values
        return _named_payments(values, said, paid, facts.refused_payments, methods=methods, default=default)

    def swap_payment(orders: Sequence[str]) -> Slot:
        """What pays or takes the price difference of a swap on each order: the method named, else the
        order's own (the next one once billing refused it)."""
        table = {o: narrowed(payments, _paid_with(facts.orders[o]), default=True) for o in orders}
        return Slot("payment_method_id", depends_on="order_id", table=table)

    every = _order_items(facts)

    def picked(kind: str) -> tuple[dict[str, tuple[str, ...]], frozenset[str], Groups]:
        """Each order's items for that kind of write, the orders where those are the whole list, and on the
        others the groups the list covers: one item of each product named ("an air purifier and a vacuum
        cleaner" of an order with two vacuum cleaners: the air purifier and one of them)."""
        chosen = (focus or {}).get(kind) or set()
        kept = (held or {}).get(kind) or set()
        table = {
            oid: tuple(i for i in ids if i in chosen) or tuple(i for i in ids if i not in kept)
            for oid, ids in every.items()
        }
        whole = frozenset(
            oid
            for oid, ids in every.items()
            if set(ids) & chosen
            and (every_focus or set(ids) <= chosen or _distinct_names(facts.orders[oid], chosen, said))
        )
        groups: Groups = {}
        for oid, ids in every.items():
            if oid in whole or not set(ids) & chosen:
                continue
            names: dict[str, set[str]] = {}
            for item in _items(facts.orders[oid]):
                if str(item["item_id"]) in chosen:
                    names.setdefault(str(item.get("name", "")), set()).add(str(item["item_id"]))
            alike = [g for g in names.values() if len(g) > 1]
            if guided and kind == "return" and alike and (way := _price_way(facts)):
                # "return the speaker that is more expensive": of two alike, the one its price points to
                prices = {str(i["item_id"]): price(i) for i in _items(facts.orders[oid])}
                for group in alike:
                    pick = (max if way > 0 else min)(sorted(group), key=lambda i: prices[i])
                    names = {n: ({pick} if g is group else g) for n, g in names.items()}
                    table[oid] = tuple(i for i in table[oid] if i not in group or i == pick)
            groups[oid] = tuple(frozenset(g) for g in names.values())
        return table, whole, groups

    items, whole_return, cover_return = picked("return")
    swap_items, whole_swap, cover_swap = picked("swap")
    swaps: dict[str, tuple[str, ...]] = {}
    for order in facts.orders.values():
        for item in _items(order):
            product = facts.products.get(str(item.get("product_id")))
            if product is not None:
                candidates = [v for v in _variants(product) if str(v["item_id"]) != str(item["item_id"])]
                # "for the type that's in my pending order": the same product's item on another order
                twins = {
                    str(i["item_id"])
                    for oid, o in facts.orders.items()
                    if oid != order.get("order_id")
                    for i in _items(o)
                    if i.get("product_id") == item.get("product_id") and i["item_id"] != item["item_id"]
                }
                like_twin = [v for v in candidates if str(v["item_id"]) in twins]
                if guided and like_twin and _OTHER_ORDER.search(said):
                    candidates = like_twin
                elif matcher:
                    names = [str(i.get("name") or "") for o in facts.orders.values() for i in _items(o)]
                    names = [n for n in names if n != item.get("name")]
                    candidates = match_variants(item, candidates, facts.customer_texts, other_names=names)
                swaps[str(item["item_id"])] = _unique([str(v["item_id"]) for v in candidates])
    swappable = {
        oid: tuple(i for i in ids if swaps.get(i))
        for oid, ids in swap_items.items()
        if (all if oid in whole_swap else any)(swaps.get(i) for i in ids)
    }
    actions: list[Action] = []

    def order_slot(orders: Sequence[str]) -> Slot:
        return Slot("order_id", values=tuple(orders))

    def items_slot(
        table: Mapping[str, tuple[str, ...]], orders: Sequence[str], whole: frozenset[str], cover: Groups
    ) -> Slot:
        possible = {o: (cover.get(o, ()), set(table[o])) for o in orders}
        return Slot(
            "item_ids",
            kind="many",
            depends_on="order_id",
            table={o: table[o] for o in orders},
            whole=whole & set(orders),
            cover={o: tuple(g & ids for g in groups if g & ids) for o, (groups, ids) in possible.items()},
        )

    new_items = Slot("new_item_ids", kind="many", depends_on="item_ids", table=swaps, paired=True)
    if pending:
        if guided:
            reasons = {o: _named_reasons(_about_order(facts, o), said) for o in pending}
            reason = Slot("reason", depends_on="order_id", table=reasons)
        else:
            reason = Slot("reason", values=CANCEL_REASONS)
        actions.append(Action("cancel_pending_order", (order_slot(pending), reason)))
        # an address changed since the customer's last message is not changed again before they say more
        moved_now = facts.turn_moved if guided else set()
        targets = {o: facts.orders[o].get("address") for o in pending if o not in moved_now}
        to_address = _address_slots(facts, "order_id", targets, whole=guided)
        if to_address is not None:
            actions.append(Action("modify_pending_order_address", to_address))
        swap_pending = [o for o in pending if o in swappable]
        if swap_pending and payments:
            slots = (
                order_slot(swap_pending),
                items_slot(swappable, swap_pending, whole_swap, cover_swap),
                new_items,
            )
            actions.append(Action("modify_pending_order_items", (*slots, swap_payment(swap_pending))))
        if payments:
            others = {
                o: narrowed(tuple(p for p in payments if p not in _paid_with(facts.orders[o])))
                for o in pending
            }
            movable = [o for o in pending if others[o]]
            if movable:
                pay = Slot("payment_method_id", depends_on="order_id", table=others)
                actions.append(Action("modify_pending_order_payment", (order_slot(movable), pay)))
    if delivered:
        refund_to = {
            o: narrowed(
                _unique([*_paid_with(facts.orders[o]), *gift_cards]),
                _paid_with(facts.orders[o]),
                default=True,
            )
            for o in delivered
        }
        returnable = [o for o in delivered if items[o] and refund_to[o]]
        if returnable:
            pay = Slot("payment_method_id", depends_on="order_id", table=refund_to)
            actions.append(
                Action(
                    "return_delivered_order_items",
                    (order_slot(returnable), items_slot(items, returnable, whole_return, cover_return), pay),
                )
            )
        swap_delivered = [o for o in delivered if o in swappable]
        if swap_delivered and payments:
            slots = (
                order_slot(swap_delivered),
                items_slot(swappable, swap_delivered, whole_swap, cover_swap),
                new_items,
            )
            actions.append(Action("exchange_delivered_order_items", (*slots, swap_payment(swap_delivered))))
    if facts.user_id and not (guided and facts.user_id in facts.turn_moved):
        current = (facts.profile or {}).get("address")
        to_address = _address_slots(facts, "user_id", {facts.user_id: current}, whole=guided)
        if to_address is not None:
            actions.append(Action("modify_user_address", to_address))
    return actions


# The customer points to an item of another order as the new one ("the type that's in my pending order").
_OTHER_ORDER = re.compile(
    r"\b(?:in|from|on) (?:my|the) (?:other|pending|previous|last|recent|new|second|first) order\b"
    r"|\bsame (?:\w+ )?as (?:the one |what )?(?:in|on|from) (?:my|the|another|an) (?:\w+ )?order\b"
    r"|\bsame (?:\w+ )?as (?:the one|what) i (?:already )?(?:received|got|have|bought|ordered)\b",
    re.I,
)


_PAYMENT_KINDS = {
    "gift_card": re.compile(r"gift ?cards?\b", re.I),
    "paypal": re.compile(r"pay ?pal", re.I),
    "credit_card": re.compile(r"credit ?cards?\b|\b(?:visa|mastercard|amex|american express)\b", re.I),
}
_ORIGINAL = re.compile(
    r"\b(?:original|same)\s+(?:payment\s+)?(?:method|card|way)|\bhow i paid\b|\bpaid with\b", re.I
)


def _named_payments(
    values: tuple[str, ...],
    said: str,
    paid: Sequence[str] = (),
    refused: Collection[str] = (),
    *,
    methods: Mapping[str, Any] | None = None,
    default: bool = False,
) -> tuple[str, ...]:
    """The payment methods among `values` of the one kind the customer's words name ("use my gift card"),
    or of the first kind they name with a fallback ("my gift card, or PayPal if that isn't possible"; the
    next once billing `refused` a write with the first), or those it was `paid` with if they ask for the
    original method; all of them otherwise. Of several cards, those whose brand or last four digits the
    words name ("my visa", "the card ending in 6791"), as the profile's `methods` record them. With
    `default`, words that name no method mean the one it was `paid` with, or once billing `refused` that,
    any other."""
    chosen = _kind_named(values, said, paid, refused)
    by_card = tuple(v for v in chosen if _card_named(dict((methods or {}).get(v) or {}), said))
    if default and not by_card and chosen == values:
        own = tuple(v for v in values if v in paid and v not in refused)
        return own or tuple(v for v in values if v not in refused) or values
    return by_card or chosen


def _card_named(method: Mapping[str, Any], said: str) -> bool:
    """Whether the customer's words name this card: its brand ("my Visa") or its last four digits, said as
    such ("ending in 6791", "last four digits 6791"; not any amount or number that happens to match)."""
    brand = str(method.get("brand") or "").strip()
    last_four = str(method.get("last_four") or "").strip()
    digits = r"(?:\b(?:ending|ends?) (?:in|with)|\blast (?:four|4)(?: digits)?(?: are| is| of)?|[*x]{2,}) ?"
    return bool(
        (brand and re.search(rf"\b{re.escape(brand)}\b", said, re.I))
        or (last_four and re.search(rf"{digits}{re.escape(last_four)}(?!\d)", said, re.I))
    )


# What a customer says a cancellation's reason is, for each reason billing takes.
_REASON_WORDS = {
    "no longer needed": re.compile(
        r"\b(?:no longer|don'?t|do not|won'?t|not) (?:need|want)|\bchanged? my mind\b|\bnot needed\b", re.I
    ),
    "ordered by mistake": re.compile(
        r"\bmistake|\bmistaken|\baccident|\bin error\b|\b(?:ordered|bought|picked|chose) the wrong\b", re.I
    ),
}


def _about_order(facts: Facts, order_id: str) -> str:
    """The customer's sentences that name this order or one of its items, each with the sentence after it
    ("I also want to modify the skateboard ... If that is not possible, cancel the order since I no longer
    need it"), or "" when none does."""
    items = [i for o in facts.orders.values() for i in _items(o)]
    own = {str(i["item_id"]) for i in _items(facts.orders.get(order_id, {}))}
    digits = order_id.lstrip("#W")
    picked: list[str] = []
    for text in facts.customer_texts:
        sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
        for n, sentence in enumerate(sentences):
            names = {str(i["item_id"]) for i in _named_in(_name_tokens(sentence), items)}
            if names & own or (digits and digits in sentence):
                picked += sentences[n : n + 2]
    return " ".join(_unique(picked))


def _named_reasons(about: str, said: str = "") -> tuple[str, ...]:
    """The cancellation reasons the customer's words about the order give ("I ordered it by mistake"), else
    those their words give at all; when they give none, the plain one ("no longer needed"), the listing
    shows it and they may say otherwise."""
    for text in (about, said):
        named = tuple(r for r in CANCEL_REASONS if _REASON_WORDS[r].search(text))
        if named:
            return named
    return CANCEL_REASONS[:1]


def _kind_named(
    values: tuple[str, ...], said: str, paid: Sequence[str], refused: Collection[str]
) -> tuple[str, ...]:
    """`_named_payments` by kind of method (gift card, PayPal, credit card) or the original one."""
    found = sorted((m.start(), k) for k, pattern in _PAYMENT_KINDS.items() if (m := pattern.search(said)))
    kinds = [k for _, k in found]
    if len(kinds) > 1 and _FALLBACK.search(said):
        for kind in kinds:  # in the customer's order of preference
            usable = tuple(v for v in values if v.startswith(kind) and v not in refused)
            if usable:
                return usable
    if len(kinds) == 1:
        chosen = tuple(v for v in values if v.startswith(kinds[0]))
    elif not kinds and _ORIGINAL.search(said):
        chosen = tuple(v for v in values if v in paid)
    else:
        chosen = ()
    return chosen or values


# "X, or Y if X isn't possible", "if that is not possible, Y", "prefer X; otherwise Y"
_FALLBACK = re.compile(
    r"\bif (?:\w+ ){0,4}(?:is ?n[o']t|not|isn't|can ?not|can't|cannot|doesn't|does not)\b|\botherwise\b"
    r"|\bprefer\b|\bor else\b|\bif not\b",
    re.I,
)


def _address_slots(
    facts: Facts, key: str, targets: Mapping[str, Any], *, whole: bool
) -> tuple[Slot, ...] | None:
    """The slots of an address change of these targets (`key`: order or user id -> current address).

    `whole`: the new address is one of `addresses.candidates` (the first line chosen, the other fields
    follow from it), unless the customer wrote out an address that does not parse (then free text)."""
    free = tuple(Slot(k, kind="text", max_tokens=16) for k in ADDRESS_FIELDS)
    texts = facts.customer_texts
    if not whole or any(addresses.says_street_address(t) and not addresses.parse_addresses(t) for t in texts):
        return (Slot(key, values=tuple(targets)), *free)
    profile = (facts.profile or {}).get("address")
    options: dict[str, list[dict[str, str]]] = {}
    for target, current in targets.items():
        found = addresses.candidates(
            texts=texts,
            seen=facts.addresses,
            profile=addresses.normalized(profile) if isinstance(profile, Mapping) else None,
            on_orders={
                o: addresses.normalized(r["address"])
                for o, r in facts.orders.items()
                if isinstance(r.get("address"), Mapping)
            },
            current=addresses.normalized(current) if isinstance(current, Mapping) else None,
            moved=target in facts.moved,
        )
        if found:
            options[target] = found
    if not options:
        return None
    every = addresses.unique([a for found in options.values() for a in found])
    first = Slot(
        "address1",
        depends_on=key,
        table={t: tuple(a["address1"] for a in found) for t, found in options.items()},
    )
    rest = tuple(
        Slot(f, depends_on="address1", table={a["address1"]: (a[f],) for a in every})
        for f in ADDRESS_FIELDS
        if f != "address1"
    )
    return (Slot(key, values=tuple(options)), first, *rest)
