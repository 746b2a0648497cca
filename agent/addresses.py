"""Addresses in the customer's words and in the records: which ones an address change may write.

A 135M model copies a street address badly (a digit dropped, a suite number invented), so an address change
offers whole addresses to choose from: the ones the customer wrote out ("445 Maple Drive, Suite 394, Fort
Worth, Texas, 76165") and the ones on their records (the profile's, each order's), ranked by what the
customer's words point to ("my NYC address", "the one in Charlotte", "same as order #W8277957", "to my
default address"), never the address the target already has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

FIELDS = ("address1", "address2", "city", "state", "country", "zip")
Address = dict[str, str]

_STATES = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
    "colorado": "CO", "connecticut": "CT", "delaware": "DE", "florida": "FL", "georgia": "GA",
    "hawaii": "HI", "idaho": "ID", "illinois": "IL", "indiana": "IN", "iowa": "IA", "kansas": "KS",
    "kentucky": "KY", "louisiana": "LA", "maine": "ME", "maryland": "MD", "massachusetts": "MA",
    "michigan": "MI", "minnesota": "MN", "mississippi": "MS", "missouri": "MO", "montana": "MT",
    "nebraska": "NE", "nevada": "NV", "new hampshire": "NH", "new jersey": "NJ", "new mexico": "NM",
    "new york": "NY", "north carolina": "NC", "north dakota": "ND", "ohio": "OH", "oklahoma": "OK",
    "oregon": "OR", "pennsylvania": "PA", "rhode island": "RI", "south carolina": "SC",
    "south dakota": "SD", "tennessee": "TN", "texas": "TX", "utah": "UT", "vermont": "VT",
    "virginia": "VA", "washington": "WA", "west virginia": "WV", "wisconsin": "WI", "wyoming": "WY",
    "district of columbia": "DC",
}  # fmt: skip
_CITY_NICKNAMES = {"nyc": "new york", "la": "los angeles", "dc": "washington", "sf": "san francisco"}
_STATE_NAME = "|".join(sorted(_STATES, key=len, reverse=True))
_STREET = r"\d{1,6}(?:\s+[A-Z][A-Za-z]*\.?)+"
_UNIT = r"(?:Suite|Ste\.?|Apt\.?|Apartment|Unit|#)\s*[\w-]+"
_ADDRESS = re.compile(
    rf"(?P<address1>{_STREET})"
    rf"(?:,?\s+(?P<address2>{_UNIT}))?"
    r",\s*(?P<city>[A-Z][A-Za-z.]*(?:\s+[A-Z][A-Za-z.]*)*)"
    rf",?\s+(?P<state>[A-Z]{{2}}|(?i:{_STATE_NAME}))"
    r",?\s+(?P<zip>\d{5})\b"
    r"(?:,?\s+(?P<country>USA|United States|US)\b)?"
)
_SAYS_STREET = re.compile(
    r"\b\d{1,6}\s+[A-Z][a-z]+\s+(?:[A-Z][a-z]+\s+)?"
    r"(?:St|Street|Ave|Avenue|Dr|Drive|Rd|Road|Ln|Lane|Blvd|Boulevard|Way|Ct|Court|Pl|Place|Highway|Hwy)\b"
)
_ORDER_ID = re.compile(r"#?W\d{7}\b")
# "to my default address", "the one on my profile": the profile's address is where it should go
_DEFAULT = re.compile(
    r"\b(?:to|as|at|use)\s+(?:my|the)\s+(?:\w+\s+)?(?:default|profile|usual)\b"
    r"|\b(?:address|one)\s+(?:on|in|from)\s+(?:my|the)\s+(?:profile|account|file)\b",
    re.I,
)
_WORD = re.compile(r"[a-z0-9]+")


def parse_addresses(text: str) -> list[Address]:
    """The street addresses written out in `text`, each with every field ("" for no second line)."""
    out = []
    for m in _ADDRESS.finditer(text):
        state = m["state"]
        out.append(
            {
                "address1": " ".join(m["address1"].split()),
                "address2": " ".join((m["address2"] or "").split()),
                "city": " ".join(m["city"].split()),
                "state": _STATES.get(state.lower(), state.upper()),
                "country": "USA",
                "zip": m["zip"],
            }
        )
    return out


def says_street_address(text: str) -> bool:
    """Whether `text` seems to write out a street address (parsed or not)."""
    return bool(_SAYS_STREET.search(text)) or bool(parse_addresses(text))


def normalized(address: Mapping[str, object]) -> Address:
    """An address record with every field as a string."""
    return {f: str(address.get(f) or "") for f in FIELDS}


def _key(address: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(address[f].lower() for f in FIELDS)


def unique(addresses: Sequence[Mapping[str, str]]) -> list[Address]:
    """The addresses once each, in order (one per first line: a first line names the address)."""
    seen: set[str] = set()
    out = []
    for a in addresses:
        first = a["address1"].lower()
        if first and first not in seen:
            seen.add(first)
            out.append(dict(a))
    return out


def _words(text: str) -> str:
    words = [_CITY_NICKNAMES.get(w, w) for w in _WORD.findall(text.lower())]
    return " " + " ".join(words) + " "


def _points_to(
    address: Mapping[str, str], said: str, *, stated: bool, on_profile: bool, orders: Sequence[str]
) -> int:
    """How strongly the customer's words point to this address."""
    if stated:
        return 4
    score = 0
    if _DEFAULT.search(said) and on_profile:
        score = 3
    if orders:
        score = max(score, 3)
    words = _words(said)
    street = " ".join(_WORD.findall(address["address1"].lower())[1:2])  # "maple" of "445 Maple Drive"
    city = " ".join(_WORD.findall(address["city"].lower()))
    if city and f" {city} " in words:  # not the zip: the customer's zip is said to identify them
        score = max(score, 2)
    elif street and f" {street} " in words:
        score = max(score, 1)
    return score


# "Change it back (to the original)": the words point to where the target was, not to where it is now.
_BACK = re.compile(r"\b(?:back|original|previous|old)\b", re.I)


def candidates(
    *,
    texts: Sequence[str],
    seen: Sequence[Mapping[str, str]],
    profile: Mapping[str, str] | None,
    on_orders: Mapping[str, Mapping[str, str]],
    current: Mapping[str, str] | None,
    moved: bool = False,
) -> list[Address]:
    """The addresses an address change may write, best first: written out by the customer, else the
    records' ones (`seen`: every address the records showed in this conversation, old ones too) their words
    point to (a city, a zip, "to my default address", an order named), never the target's `current` one;
    all the others when the words point to none; none when the target was `moved` in this conversation
    and they point to the `current` one at least as strongly (the change was made: offering the rest would
    undo it), unless they ask for it "back". `profile` and `on_orders` are the records' addresses now."""
    said = " ".join(texts)
    stated = [a for t in texts for a in parse_addresses(t)]
    named_orders = {("#" + o.lstrip("#")) for o in _ORDER_ID.findall(said)}
    pool = unique([*stated, *seen])
    if current is not None:
        pool = [a for a in pool if _key(a) != _key(current)]
    stated_keys = {_key(a) for a in stated}

    def score(a: Address) -> int:
        orders = [o for o, addr in on_orders.items() if o in named_orders and _key(addr) == _key(a)]
        on_profile = profile is not None and _key(profile) == _key(a)
        return _points_to(a, said, stated=_key(a) in stated_keys, on_profile=on_profile, orders=orders)

    if (
        current is not None
        and stated
        and all(_key(a) == _key(current) for a in stated)
        and not _BACK.search(said)
    ):
        return []  # the address the customer wrote out is the one it has: nothing to change
    scores = {_key(a): score(a) for a in pool}
    best = max(scores.values(), default=0)
    if moved and current is not None and not _BACK.search(said):
        here = _points_to(current, said, stated=_key(current) in stated_keys, on_profile=False, orders=[])
        if here and here >= best:  # already where the words point ("to the Washington DC address"): no change
            return []
    if best == 0:
        return pool
    return [a for a in pool if scores[_key(a)] == best]
