"""PII scrubbing with typed placeholders that stay consistent within one conversation.

The same email becomes the same `[EMAIL_1]` in the customer's text, in tool arguments and in tool
results, so the logic "copy the email into find_user_id_by_email" stays learnable.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
CARD_RE = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
PHONE_RE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?!\d)")
STREET_RE = re.compile(
    r"\b\d{1,5}(?: [A-Z][a-z]+){1,3} (?:Street|St|Avenue|Ave|Road|Rd|Drive|Dr|Lane|Ln|Boulevard|Blvd|Way|"
    r"Court|Ct|Place|Pl|Terrace|Parkway|Circle)\b\.?"
)
ZIP_RE = re.compile(r"(?<![\w#.-])\d{5}(?:-\d{4})?(?![\w-]|\.\d)")


def luhn_ok(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum (real card numbers do)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass
class ScrubReport:
    """Counts of replaced values per type, over all scrubbed conversations."""

    counts: Counter[str] = field(default_factory=Counter)
    conversations: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"conversations": self.conversations, "replaced": dict(sorted(self.counts.items()))}


_FAKE_FIRST = [
    "Alex",
    "Sam",
    "Robin",
    "Jamie",
    "Morgan",
    "Casey",
    "Taylor",
    "Jordan",
    "Riley",
    "Avery",
    "Kai",
    "Noel",
]
_FAKE_LAST = [
    "Smith",
    "Novak",
    "Lund",
    "Moreau",
    "Okafor",
    "Tanaka",
    "Silva",
    "Kowal",
    "Reyes",
    "Holm",
    "Park",
    "Adler",
]
_FAKE_STREETS = ["Elm Street", "Oak Avenue", "Pine Road", "Maple Drive", "Cedar Lane", "Birch Way"]


class ConversationScrubber:
    """Replaces PII in one conversation; the replacement of a value never changes within it.

    mode `placeholder` writes typed placeholders (`[EMAIL_1]`); mode `surrogate` writes consistent fake
    values of the same type (`robin.holm42@example.com`), which keeps raw-looking input for a small model
    that must learn to copy values into tool arguments.
    """

    def __init__(
        self, report: ScrubReport | None = None, *, mode: str = "placeholder", seed: str = ""
    ) -> None:
        if mode not in {"placeholder", "surrogate"}:
            raise ValueError(f"unknown scrub mode {mode!r}")
        self.mode = mode
        self._rng = random.Random(seed)
        self.report = report if report is not None else ScrubReport()
        self._values: dict[tuple[str, str], str] = {}
        self._per_type: Counter[str] = Counter()
        self._names: set[str] = set()
        self._user_id_re: re.Pattern[str] | None = None

    def learn_names(self, messages: list[dict[str, Any]]) -> None:
        """Collect person names from tool results and from name+zip lookups."""
        pairs: list[tuple[str, str]] = []
        for msg in messages:
            if msg.get("role") == "tool":
                try:
                    data = json.loads(msg.get("content") or "")
                except (json.JSONDecodeError, ValueError):
                    continue
                pairs += _names_in(data)
            for call in msg.get("tool_calls") or []:
                fn = call.get("function", {})
                if fn.get("name") == "find_user_id_by_name_zip":
                    args = _args(fn.get("arguments"))
                    pairs.append((str(args.get("first_name", "")), str(args.get("last_name", ""))))
        for first, last in pairs:
            self._names.update(n for n in (first, last) if len(n) >= 2)
        ids = [rf"{re.escape(f)}_{re.escape(last)}_\d+" for f, last in pairs if f and last]
        self._user_id_re = re.compile(r"\b(?:" + "|".join(ids) + r")\b", re.IGNORECASE) if ids else None

    def _placeholder(self, kind: str, key: str) -> str:
        slot = (kind, key)
        if slot not in self._values:
            self._per_type[kind] += 1
            n = self._per_type[kind]
            self._values[slot] = f"[{kind}_{n}]" if self.mode == "placeholder" else self._fake(kind, key)
        self.report.counts[kind] += 1
        return self._values[slot]

    def _fake(self, kind: str, key: str) -> str:
        rng = self._rng
        if kind == "EMAIL":
            first, last = rng.choice(_FAKE_FIRST).lower(), rng.choice(_FAKE_LAST).lower()
            return f"{first}.{last}{rng.randint(10, 9999)}@example.com"
        if kind == "NAME":
            fake = rng.choice(_FAKE_FIRST + _FAKE_LAST)
            return fake
        if kind == "ZIP":
            return f"{rng.randint(10000, 99999)}"
        if kind == "PHONE":
            return f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
        if kind == "ADDRESS":
            return f"{rng.randint(1, 999)} {rng.choice(_FAKE_STREETS)}"
        if kind == "USER_ID":
            first, last = rng.choice(_FAKE_FIRST).lower(), rng.choice(_FAKE_LAST).lower()
            return f"{first}_{last}_{rng.randint(1000, 9999)}"
        return f"[{kind}_{self._per_type[kind]}]"

    def text(self, value: str) -> str:
        """Scrub one string."""
        out = EMAIL_RE.sub(lambda m: self._placeholder("EMAIL", m.group(0).lower()), value)
        out = CARD_RE.sub(self._card, out)
        out = PHONE_RE.sub(lambda m: self._placeholder("PHONE", re.sub(r"\D", "", m.group(0))[-10:]), out)
        out = STREET_RE.sub(lambda m: self._placeholder("ADDRESS", m.group(0).lower().rstrip(".")), out)
        if self._user_id_re is not None:
            out = self._user_id_re.sub(lambda m: self._placeholder("USER_ID", m.group(0).lower()), out)
        for name in sorted(self._names, key=len, reverse=True):
            pattern = re.compile(rf"(?<![\w\[]){re.escape(name)}(?![\w\]])", re.IGNORECASE)
            out = pattern.sub(lambda m: self._placeholder("NAME", m.group(0).lower()), out)
        return ZIP_RE.sub(lambda m: self._placeholder("ZIP", m.group(0)), out)

    def _card(self, match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            return self._placeholder("CARD", digits)
        return match.group(0)

    def value(self, value: Any) -> Any:
        """Scrub every string inside a JSON value."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value

    def message(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Scrub one OpenAI-format message: content (JSON-aware for tool results) and tool arguments."""
        out = dict(msg)
        content = msg.get("content")
        if isinstance(content, str):
            out["content"] = self._content(content)
        if msg.get("tool_calls"):
            calls = []
            for call in msg["tool_calls"]:
                fn = dict(call.get("function", {}))
                fn["arguments"] = json.dumps(self.value(_args(fn.get("arguments"))))
                calls.append({**call, "function": fn})
            out["tool_calls"] = calls
        return out

    def _content(self, content: str) -> str:
        stripped = content.strip()
        if stripped[:1] in "[{":
            try:
                return json.dumps(self.value(json.loads(stripped)))
            except (json.JSONDecodeError, ValueError):
                pass
        return self.text(content)


def _args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw or "{}")
    except (json.JSONDecodeError, TypeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _names_in(data: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(data, dict):
        if isinstance(data.get("first_name"), str) and isinstance(data.get("last_name"), str):
            found.append((data["first_name"], data["last_name"]))
        for v in data.values():
            found += _names_in(v)
    elif isinstance(data, list):
        for v in data:
            found += _names_in(v)
    return found


def scrub_conversation(
    record: dict[str, Any], report: ScrubReport, *, mode: str = "placeholder"
) -> dict[str, Any]:
    """A copy of one transcript record with PII replaced in messages and corrections."""
    scrubber = ConversationScrubber(report, mode=mode, seed=str(record.get("id", "")))
    scrubber.learn_names(record["messages"])
    out = dict(record)
    out["messages"] = [scrubber.message(m) for m in record["messages"]]
    if record.get("corrections"):
        out["corrections"] = [{**c, "message": scrubber.message(c["message"])} for c in record["corrections"]]
    report.conversations += 1
    return out
