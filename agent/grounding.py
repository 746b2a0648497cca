"""The groundedness guard: every factual statement of a drafted reply must be backed by a tool result,
a knowledge-base passage or the customer's own words; what is not is replaced by an honest line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.prompts import DONE_MARK, NO_INFORMATION

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[#$])|\n+")
_AMOUNT = re.compile(r"\$\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*\.\d{1,2}\b")
_ORDER = re.compile(r"#\w+", re.IGNORECASE)
_ID = re.compile(r"\b(?:credit_card|paypal|gift_card)_\d+\b|\b\d{6,}\b")
_DATE = re.compile(
    r"\b\d{4}-\d{2}-\d{2}\b|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2}\b",
    re.IGNORECASE,
)
_QUANTITY = re.compile(
    r"\b\d+(?:\.\d+)?\s*(?:%|(?:percent|business days?|days?|hours?|weeks?|months?|years?)\b)", re.IGNORECASE
)
_BARE_NUMBER = re.compile(r"(?<![\w#.$])\d+(?:\.\d+)?(?![\w.]\d)")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_LABEL = re.compile(r"\[([A-Za-z0-9_.-]{1,60})\]")
# "Order #W123 is now cancelled": an order's status, checked against what the systems returned for it.
_STATUS_CLAIM = re.compile(
    r"(#W\d+)\b[^.!?]*?\b(?:is|was|has been|have been|got|are)\s+(?:now\s+|already\s+|been\s+)?"
    r"(pending|processed|delivered|shipped|cancell?ed|returned|exchanged|refunded|modified|updated|changed)\b",
    re.IGNORECASE,
)
_ORDER_STATUS = re.compile(r'"order_id":\s*"(#W\d+)".*?"status":\s*"([^"]+)"', re.DOTALL)
_STATUS_OF_WORD = {
    "pending": ("pending",),
    "processed": ("processed",),
    "shipped": ("processed", "delivered"),
    "delivered": ("delivered",),
    "cancelled": ("cancelled",),
    "canceled": ("cancelled",),
    "returned": ("return requested",),
    "refunded": ("cancelled", "return requested"),
    "exchanged": ("exchange requested",),
}
_WORD = re.compile(r"[a-z]{4,}")
_POLICY_WORDS = frozenset(
    [
        "policy",
        "policies",
        "refund",
        "refunds",
        "refunded",
        "return",
        "returns",
        "returned",
        "exchange",
        "exchanges",
        "warranty",
        "shipping",
        "ship",
        "ships",
        "delivery",
        "fee",
        "fees",
        "charge",
        "charged",
        "eligible",
        "allowed",
        "guarantee",
        "guaranteed",
        "window",
        "deadline",
        "free",
        "international",
        "restocking",
        "cancel",
        "cancellation",
        "price",
        "match",
        "insurance",
        "points",
        "loyalty",
        "membership",
    ]
)
_NOT_CLAIMS = (
    "i will",
    "i'll",
    "i can",
    "i could",
    "shall i",
    "should i",
    "would you",
    "do you",
    "please",
    "let me",
    "can you",
    "could you",
    "if you",
    "to confirm",
    "okay",
    "ok,",
    "sorry",
    "i'm sorry",
    "i am sorry",
)
# Conversational openers that state nothing about the store, an order or a policy.
_CHATTER = (
    "thanks",
    "thank you",
    "hello",
    "hi",
    "hey",
    "welcome",
    "you're welcome",
    "glad",
    "great",
    "sure",
    "of course",
    "got it",
    "goodbye",
    "bye",
    "have a",
    "how can i",
    "what can i",
    "i'd be happy",
    "i found",
    "i've found",
    "i have found",
    "one moment",
    "no problem",
    "certainly",
    "understood",
    "happy to help",
)
_STOP = frozenset(
    [
        "that",
        "this",
        "with",
        "from",
        "your",
        "have",
        "will",
        "been",
        "they",
        "them",
        "their",
        "there",
        "what",
        "when",
        "which",
        "would",
        "could",
        "should",
        "about",
        "into",
        "also",
        "only",
        "just",
        "than",
        "then",
        "were",
        "while",
        "does",
        "here",
        "more",
        "most",
        "other",
        "some",
        "such",
        "very",
        "each",
        "make",
        "made",
        "can't",
        "don't",
        "within",
        "after",
        "before",
        "please",
        "thank",
        "thanks",
        "sure",
        "happy",
        "help",
        "glad",
    ]
)


@dataclass
class Source:
    """A text the reply may rely on; `label` is the citation label of a knowledge-base passage."""

    text: str
    label: str | None = None
    from_customer: bool = False


@dataclass
class GuardResult:
    """The reply the customer sees, the passage labels it cites and the statements that were removed."""

    text: str
    citations: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _numbers(text: str) -> set[float]:
    out = set()
    for raw in _NUMBER.findall(text):
        try:
            out.add(round(float(raw.replace(",", "")), 2))
        except ValueError:
            continue
    return out


def _facts(sentence: str) -> list[str]:
    found: list[str] = []
    for pattern in (_AMOUNT, _ORDER, _ID, _DATE, _QUANTITY):
        found.extend(m.group(0) for m in pattern.finditer(sentence))
    # Any other number is a claim too ("2 items", "step 3"): it must appear in a source.
    found.extend(m.group(0) for m in _BARE_NUMBER.finditer(sentence))
    return found


def _supported_fact(fact: str, sources: list[Source], numbers: set[float]) -> str | bool | None:
    """The label of the passage backing a fact (None for a non-passage source), or False."""
    low = fact.lower()
    for source in sources:
        if low in source.text.lower():
            return source.label
    values = _numbers(fact)
    if values and values <= numbers:
        pooled: set[float] = set()
        for source in sources:
            found = _numbers(source.text)
            if values <= found:
                return source.label
            pooled |= found
        if values <= pooled:
            return None
    return False


def _status_supported(sentence: str, sources: list[Source]) -> bool:
    """Whether each order status the sentence states matches the systems' records of that order.

    A status stated for an order with no record (a lookup that failed or was refused) is unsupported.
    "Updated", "changed" and "modified" need the order's record to have changed between two results
    (a write happened) or its status to say so; the other words must match the latest status.
    """
    for order_id, word in _STATUS_CLAIM.findall(sentence):
        records = [
            (found.group(0), found.group(2).lower())
            for source in sources
            if not source.from_customer
            for found in _ORDER_STATUS.finditer(source.text)
            if found.group(1) == order_id
        ]
        if not records:
            return False  # no record of that order's status (e.g. a lookup that was refused)
        word = word.lower()
        if word in {"updated", "changed", "modified"}:
            if "modified" not in records[-1][1] and len({text for text, _ in records}) < 2:
                return False
        elif records[-1][1] not in _STATUS_OF_WORD[word]:
            return False
    return True


def _is_policy_claim(sentence: str) -> bool:
    """A general statement about the store's rules (not a question, an offer, or a fact about one order)."""
    words = set(_WORD.findall(sentence.lower()))
    if not words & _POLICY_WORDS or "?" in sentence or _ORDER.search(sentence):
        return False
    opening = sentence.strip().lower()
    return not opening.startswith(_NOT_CLAIMS)


_BUSINESS = re.compile(
    r"^(?:yes|no|our|we)\b|\b(?:we (?:offer|have|accept|ship|sell|provide|do|don't|can't|support|give)|"
    r"our (?:store|company|ceo|shop|stores|team|office|warehouse)|(?:is|are) (?:available|included|free))\b",
    re.IGNORECASE,
)
_HELPING = re.compile(
    r"^(?:we(?:'ll| will| can| are happy| would be happy)|no problem|yes,? (?:I|of course))\b", re.I
)


def _is_business_claim(sentence: str) -> bool:
    """A statement about what the store is or does ("We ship to Mars", "Our CEO is ...")."""
    text = sentence.strip()
    if "?" in text or _HELPING.search(text) or text.lower().startswith(_NOT_CLAIMS):
        return False
    return bool(_BUSINESS.search(text))


def _is_general_claim(sentence: str) -> bool:
    """Any other statement with something to say (two or more content words) that is not chatter."""
    text = sentence.strip().lower()
    if "?" in text or text.startswith(_NOT_CLAIMS) or text.startswith(_CHATTER) or _HELPING.search(text):
        return False
    return len(_stems(text)) >= 2


def _stems(text: str) -> set[str]:
    # A five-letter prefix is a crude stem: "returns"/"returned" match "return".
    return {w[:5] for w in _WORD.findall(text.lower()) if w not in _STOP}


def _overlap(sentence: str, source: str) -> float:
    words = _stems(sentence)
    if not words:
        return 1.0
    return len(words & _stems(source)) / len(words)


def check_reply(draft: str, sources: list[Source], *, fixed_lines: tuple[str, ...] = ()) -> GuardResult:
    """Keep the statements the sources support (with their passage labels); replace the rest honestly."""
    numbers: set[float] = set()
    for source in sources:
        numbers |= _numbers(source.text)
    labels = {s.label for s in sources if s.label is not None}
    kept: list[str] = []
    removed: list[str] = []
    cited: list[str] = []
    pieces = [p.strip() for p in _SENTENCE.split(draft.strip()) if p.strip()]
    for position, sentence in enumerate(pieces):
        core = sentence.strip("*_` ")  # markdown emphasis does not finish a line
        if not core or len(core.split()) < 2 or sentence in kept:
            continue  # a lone word or a repeated line (degenerate output) says nothing checkable
        unfinished = core[-1] not in ".!?:)\"'"
        last = position == len(pieces) - 1
        if (unfinished and (len(core.split()) < 2 or not last)) or (core.endswith(":") and last):
            continue  # a broken-off line ("You can pay with", "Order ID:") says nothing that can be checked
        if sentence in fixed_lines or sentence == NO_INFORMATION:
            kept.append(sentence)
            continue
        if core.startswith(
            DONE_MARK
        ):  # "Done: ..." is the graph's report of a write it just ran, never a draft's
            removed.append(sentence)
            continue
        body = _LABEL.sub("", sentence).strip()
        own = [n for n in _LABEL.findall(sentence) if n in labels]
        backing: set[str] = set(own)
        ok = True
        asking = "?" in body or body.lower().startswith(_NOT_CLAIMS)  # questions and offers claim nothing
        system_sources = [s for s in sources if not s.from_customer]
        for fact in _facts(body):
            # A statement about an order needs it in a tool result; the customer naming it is not enough.
            pool = system_sources if _ORDER.fullmatch(fact) and not asking else sources
            where = _supported_fact(fact, pool, numbers)
            if where is False:
                ok = False
                break
            if isinstance(where, str):
                backing.add(where)
        if ok and not asking and not _status_supported(body, sources):
            ok = False
        strict = _is_policy_claim(body) or _is_business_claim(body)
        if ok and (strict or _is_general_claim(body)):
            # The customer's own words never back a claim: only passages and tool results do.
            backers = [s for s in sources if not s.from_customer]
            best = max(backers, key=lambda s: _overlap(body, s.text), default=None)
            if best is None or _overlap(body, best.text) < (0.6 if strict else 0.5):
                ok = False
            elif best.label is not None:
                backing.add(best.label)
        if not ok:
            removed.append(sentence)
            continue
        marks = "".join(f" [{n}]" for n in sorted(backing) if n not in own)
        clean = _LABEL.sub(lambda m: m.group(0) if m.group(1) in labels else "", sentence).rstrip()
        kept.append(clean + marks if marks else clean)
        cited.extend(n for n in sorted(backing) if n not in cited)
    if removed or not kept:
        kept.append(NO_INFORMATION)
    return GuardResult(text=" ".join(kept), citations=cited, removed=removed)
