"""The confirmation gate's checks: is a message an explicit yes, and were a write's details listed."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_YES = frozenset({"yes", "y", "yep", "yeah", "yup", "confirm", "confirmed", "proceed"})
_NO = frozenset(
    {"no", "not", "don't", "dont", "wait", "but", "stop", "nope", "never", "instead", "actually", "change"}
)


def is_explicit_yes(text: str) -> bool:
    """True when a short message confirms plainly ("yes", "Sure, proceed.", "go ahead") and hedges nothing."""
    low = text.lower()
    words = re.findall(r"[a-z']+", low)
    if not words or len(words) > 12 or "?" in low:
        return False
    if any(w in _NO for w in words):
        return False
    return any(w in _YES for w in words) or "go ahead" in low or "go for it" in low or "do it" in low


def listed_values(name: str, arguments: dict[str, Any]) -> list[str]:
    """The argument values a details listing must show for this write."""
    values: list[str] = []
    for key in ("order_id", "reason", "payment_method_id", "address1", "zip"):
        if arguments.get(key):
            values.append(str(arguments[key]))
    for key in ("item_ids", "new_item_ids"):
        values.extend(str(v) for v in arguments.get(key) or [])
    return values


def details_listed(text: str, name: str, arguments: dict[str, Any]) -> bool:
    """True when an assistant message named every detail of this write."""
    low = text.lower()
    return all(v.lower() in low for v in listed_values(name, arguments))


def action_key(conversation_id: str, name: str, arguments: dict[str, Any]) -> str:
    """The idempotency key of one write in one conversation: the same action never happens twice."""
    canonical = json.dumps({"c": conversation_id, "t": name, "a": arguments}, sort_keys=True)
    return "act-" + hashlib.sha256(canonical.encode()).hexdigest()[:24]
