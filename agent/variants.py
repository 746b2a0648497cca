"""Which variants of a product fit the customer's words: the new item of an exchange or an item change.

`match_variants` ranks a product's available variants against what the customer said about that item (the
part of their messages that names it, else all of it):
- an option value named ("clicky switches", "a medium sized one", "two-piece", "Brand A"), bound to its own
  option ("medium sized" is a size, not a medium ventilation);
- a direction on an ordered option ("a bigger one", "less bright", "one size smaller" when "it is too big",
  "slightly lower resolution", "the maximum zoom", "the easiest one with fewest pieces", "1000 more pieces"):
  the nearest value that way, the extreme for a superlative, the exact one for a stated difference;
- an order of preference ("battery over USB over AC", "8 bar; if not, 9 bar"): the first one there is;
- an option to keep ("keep the capacity and type", "the same size");
then, where the customer asks for the cheapest or the most expensive, by price, else by how many of the old
item's values a variant keeps. Ties are all kept (the model chooses among them). A variant whose item id the
customer wrote ("change it to item 9844888101") is the match, whatever else they said.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_NUMBERS = {
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_SPELLING = {"colour": "color", "colours": "colors", "grey": "gray"}
_FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "with",
        "of",
        "in",
        "for",
        "to",
        "my",
        "me",
        "i",
        "it",
        "one",
        "same",
        "but",
    ]
)
# values also said in words
_SPOKEN = {"s": ("small",), "m": ("medium",), "l": ("large",), "xl": ("extra large",), "none": ("no",)}
_SCALES = (
    ("xs", "s", "m", "l", "xl", "xxl", "xxxl"),
    ("extra small", "small", "medium", "large", "extra large"),
    ("low", "medium", "high"),
    ("beginner", "intermediate", "advanced", "expert"),
)
_UNITS = {"tb": 1000.0, "l": 1000.0, "kg": 1000.0}  # against gb, ml, g
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z%]*)")

_UP = frozenset(
    [
        "bigger",
        "larger",
        "more",
        "higher",
        "longer",
        "brighter",
        "harder",
        "heavier",
        "greater",
        "faster",
        "increase",
    ]
)
_DOWN = frozenset(
    [
        "smaller",
        "less",
        "fewer",
        "lower",
        "shorter",
        "dimmer",
        "easier",
        "lighter",
        "slower",
        "reduce",
        "decrease",
    ]
)
_TOP = frozenset(
    [
        "biggest",
        "largest",
        "most",
        "highest",
        "longest",
        "brightest",
        "hardest",
        "heaviest",
        "fastest",
        "maximum",
        "max",
        "maximized",
    ]
)
_BOTTOM = frozenset(
    ["smallest", "least", "fewest", "lowest", "shortest", "dimmest", "easiest", "lightest", "minimum", "min"]
)
_TOO = {  # "it is too big": the other way
    "big": -1,
    "large": -1,
    "long": -1,
    "bright": -1,
    "hard": -1,
    "difficult": -1,
    "heavy": -1,
    "small": 1,
    "short": 1,
    "dim": 1,
    "easy": 1,
    "light": 1,
}
# what an adjective is about, when no option is named next to it
_SIZES = ("size", "capacity", "count", "piece", "diameter", "volume", "width")
_DIMENSIONS = {
    "big": _SIZES,
    "bigger": _SIZES,
    "biggest": _SIZES,
    "large": _SIZES,
    "larger": _SIZES,
    "largest": _SIZES,
    "small": _SIZES,
    "smaller": _SIZES,
    "smallest": _SIZES,
    "long": ("length",),
    "longer": ("length",),
    "longest": ("length",),
    "short": ("length",),
    "shorter": ("length",),
    "shortest": ("length",),
    "bright": ("bright",),
    "brighter": ("bright",),
    "brightest": ("bright",),
    "dimmer": ("bright",),
    "dimmest": ("bright",),
    "easier": ("difficult",),
    "easiest": ("difficult",),
    "harder": ("difficult",),
    "hardest": ("difficult",),
    "difficult": ("difficult",),
    "hard": ("difficult",),
    "easy": ("difficult",),
    "heavier": ("weight",),
    "lighter": ("weight",),
}
_KEEP = frozenset(["same", "keep", "keeping", "stay", "stays", "retain"])
_CHAIN = frozenset(["over", "then", "else", "otherwise"])
_CHEAPEST = re.compile(r"\b(cheapest|least expensive|lowest price|lowest[- ]priced|cheaper)\b", re.I)
_PRICIEST = re.compile(r"\b(most expensive|priciest|highest price|most premium)\b", re.I)
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")


# An item or product id as a customer writes it (ten digits).
ITEM_ID = re.compile(r"\b\d{10}\b")


def price(record: Mapping[str, Any]) -> float:
    """An item's or a variant's price, 0 when it has none."""
    try:
        return float(record.get("price") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def words(text: str) -> list[str]:
    """Lower-cased words, number words as digits, hyphens split ("two-piece": 2, piece)."""
    return [_NUMBERS.get(w, _SPELLING.get(w, w)) for w in _WORD.findall(text.lower().replace("-", " "))]


def stem(word: str) -> str:
    """A word without a plural's final "s" (the agent's one stemmer of item and option words)."""
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def _same_root(a: str, b: str) -> bool:
    """'sized' and 'size', 'bright' and 'brightness', 'pieces' and 'piece'."""
    a, b = stem(a), stem(b)
    short, long = sorted((a, b), key=len)
    return (len(short) >= 4 and long.startswith(short[:-1] if short.endswith("e") else short)) or a == b


def _phrases(value: str, alike: Sequence[str]) -> list[list[str]]:
    """The ways a value is said: its words; spoken forms ("M": medium); the words that set it apart from
    the option's other values ("1TB SSD": 1tb)."""
    own = words(value)
    common = set(own).intersection(*(words(v) for v in alike if v != value)) if len(alike) > 1 else set()
    apart = [w for w in own if w not in common and w not in _FILLER]
    out = [own, *(words(s) for s in _SPOKEN.get(value.lower(), ()))]
    if apart and apart != own:
        out.append(apart)
    others = {w for v in alike if v != value for w in words(v)}
    # a word no other value has ("Google" of Google Assistant, said as "Google Home")
    out += [[w] for w in apart if w not in others and len(w) > 2 and not w.isdigit() and [w] != apart]
    return out


def _find(tokens: Sequence[str], phrase: Sequence[str]) -> list[int]:
    """Where the phrase is said, a plural for its singular ("animal theme": animals)."""
    n = len(phrase)
    want = [stem(w) for w in phrase]
    return [i for i in range(len(tokens) - n + 1) if n and [stem(w) for w in tokens[i : i + n]] == want]


def _a_difference(tokens: Sequence[str], at: int) -> bool:
    """Whether the number at `at` is a difference, not a value: "1000 more pieces", "500 pieces less"."""
    ahead = [*tokens[at + 1 : at + 3], "", ""]
    way = _UP | _DOWN
    return tokens[at].isdigit() and (ahead[0] in way or (ahead[1] in way and ahead[0] not in _NOT_A_UNIT))


_NOT_A_UNIT = frozenset(["or", "and", "to", "but", "if"])  # "size 10 or bigger": 10 is a value


def _yes_no(tokens: Sequence[str], value: str, name: Sequence[str]) -> list[int]:
    """Where an option said as present or absent fits this value: "with a visor" (yes), "no backlight",
    "without a visor", "not waterproof", "a non-waterproof one", "one that isn't waterproof" (no, none)."""
    if not name:
        return []
    if value.lower() == "yes":
        cues = [["with", *name], ["with", "a", *name], ["with", "an", *name]]
    elif value.lower() in ("no", "none"):
        cues = [["no", *name], ["without", *name], ["without", "a", *name], ["without", "an", *name]]
        cues += [["not", *name], ["non", *name], ["isn", "t", *name], ["not", "a", *name]]
    else:
        return []
    return [i for cue in cues for i in _find(tokens, cue)]


def _order(values: Sequence[str]) -> dict[str, float] | None:
    """A rank for each value of an ordered option (sizes, levels, numbers with units), else None."""
    lowered = [v.lower() for v in values]
    for scale in _SCALES:
        if all(v in scale for v in lowered):
            return {v: float(scale.index(v.lower())) for v in values}
    ranks: dict[str, float] = {}
    percent = any("%" in v for v in lowered)
    for value, low in zip(values, lowered, strict=True):
        if percent and low == "full size":
            ranks[value] = 100.0
            continue
        match = _NUMBER.search(low)
        if match is None:
            return None
        ranks[value] = float(match.group(1)) * _UNITS.get(match.group(2), 1.0)
    return ranks


_CHANGE_CUE = re.compile(r"(?:exchang|swap|replac|switch|trade|chang|modif|upgrad|return|cancel)")


def _segment(text: str, own: set[str], others: set[str]) -> list[str] | None:
    """The words of the text about one item: from where it is named (its sentence's start or the last change
    asked for before it in that sentence, or just before it when another item was named earlier in that
    sentence) up to where another item is named."""
    tokens: list[str] = []
    starts: list[int] = []  # each token's sentence start
    for sentence in _SENTENCE.split(text):
        start = len(tokens)
        tokens += words(sentence)
        starts += [start] * (len(tokens) - start)
    mine = [i for i, w in enumerate(tokens) if stem(w) in own]
    theirs = [i for i, w in enumerate(tokens) if stem(w) in others]
    if not mine:
        return None
    cues = [i for i, w in enumerate(tokens) if _CHANGE_CUE.match(w)]
    keep: set[int] = set()
    for at in mine:
        before = [i for i in theirs if starts[at] <= i < at]
        # else from the last change asked for before it in its sentence ("exchange the helmet for a red one,
        # and exchange the luggage set to a black one": the helmet's words are not the luggage's)
        asked = [i for i in cues if starts[at] <= i < at]
        start = max(before[-1] + 1, at - 2) if before else max([starts[at], *asked])
        end = min((i for i in theirs if i > at), default=len(tokens))
        keep.update(range(start, end))
    return [tokens[i] for i in sorted(keep)]


_NOT_KEPT = frozenset(["except", "but", "other", "apart", "besides", "as", "than"])


def _kept(tokens: Sequence[str], names: Sequence[str]) -> bool:
    """Whether the words ask to keep this option: "keep the capacity and type", "the same size"; not "the
    same except for the zoom", nor "the same type as the one I received" (another item's)."""
    for i, word in enumerate(tokens):
        if word not in _KEEP:
            continue
        for j in range(i + 1, min(i + 4, len(tokens))):
            if tokens[j] in _NOT_KEPT:
                break
            if any(_same_root(tokens[j], n) for n in names):
                if tokens[j + 1 : j + 2] != ["as"]:
                    return True
                break
    return False


def _directions(tokens: Sequence[str], key_words: Mapping[str, list[str]]) -> dict[str, tuple[int, str, int]]:
    """Per option: (direction +1/-1, "nearest" / "extreme" / "exact", a stated difference or 0)."""
    found: dict[str, tuple[int, str, int]] = {}

    def option_near(i: int, cue: str) -> str | None:
        window = [*tokens[i + 1 : i + 4], *reversed(tokens[max(0, i - 3) : i])]
        for word in window:
            for key, names in key_words.items():
                if any(_same_root(word, n) for n in names):
                    return key
        for root in _DIMENSIONS.get(cue, ()):
            for key, names in key_words.items():
                if any(_same_root(root, n) or n.startswith(root) for n in names):
                    return key
        return None

    for i, word in enumerate(tokens):
        if word in _UP or word in _DOWN:
            sign, how = (1 if word in _UP else -1), "nearest"
        elif word in _TOP or word in _BOTTOM:
            sign, how = (1 if word in _TOP else -1), "extreme"
        elif word == "too" and i + 1 < len(tokens) and tokens[i + 1] in _TOO:
            sign, how, word = _TOO[tokens[i + 1]], "nearest", tokens[i + 1]
        else:
            continue
        if word in ("more", "less") and i + 1 < len(tokens) and tokens[i + 1] in _DIMENSIONS:
            word = tokens[i + 1]  # "less bright": brightness, down
        key = option_near(i, word)
        if key is None or key in found:
            continue
        diff = 0
        for j in (i - 1, i - 2):  # "1000 more pieces", "500 pieces less"
            if 0 <= j < len(tokens) and tokens[j].isdigit():
                diff = int(tokens[j])
                break
        found[key] = (sign, "exact" if diff else how, diff)
    return found


def match_variants(
    item: Mapping[str, Any],
    variants: Sequence[dict[str, Any]],
    texts: Sequence[str],
    *,
    other_names: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The variants (of `item`'s product) that best fit what the customer said about the item, ranked as
    the module says; `other_names` are the conversation's other items (their words are not this one's)."""
    if not variants:
        return []
    written = {m.group() for t in texts for m in ITEM_ID.finditer(t)}
    by_id = [v for v in variants if str(v.get("item_id")) in written]
    if by_id:  # "change the laptop to item number 9844888101": the one they wrote
        return by_id
    old = {str(k): str(v) for k, v in (item.get("options") or {}).items()}
    own = {stem(w) for w in words(str(item.get("name") or "")) if len(w) > 2}
    others = {stem(w) for n in other_names for w in words(n) if len(w) > 2}
    shared = own & others
    joined = " ".join(texts)
    about = _segment(joined, own - shared, others - own) if own - shared else None
    tokens = about if about is not None else words(joined)
    keys = sorted({str(k) for v in variants for k in (v.get("options") or {})} | set(old))
    key_words = {k: [w for w in words(k) if w not in _FILLER] for k in keys}
    values = {
        k: sorted({str((v.get("options") or {}).get(k, "")) for v in variants} | {old.get(k, "")})
        for k in keys
    }
    values = {k: [x for x in vs if x] for k, vs in values.items()}

    def names(word: str, key: str) -> bool:
        return any(_same_root(word, n) for n in key_words[key])

    def bound_elsewhere(key: str, at: int, length: int) -> bool:
        # "medium sized": the word after a value names another option, so the value is that option's
        # (unless its own option comes just before it: "size: medium, color: red")
        before = tokens[at - 1] if at > 0 else ""
        after = tokens[at + length] if at + length < len(tokens) else ""
        if before and names(before, key):
            return False
        return bool(after) and any(k != key and names(after, k) for k in key_words)

    # where each option value is said (earliest), bound to its option
    said_at: dict[tuple[str, str], int] = {}
    for key in keys:
        for value in values[key]:
            spots = [
                i
                for phrase in _phrases(value, values[key])
                for i in _find(tokens, phrase)
                if not bound_elsewhere(key, i, len(phrase)) and not _a_difference(tokens, i)
            ]
            spots += _yes_no(tokens, value, key_words[key][:1])
            if spots:
                said_at[(key, value)] = min(spots)

    def preference(key: str) -> dict[str, float]:
        """Named values of an option: the first said counts most; "A over B over C" counts the old too."""
        named = sorted((at, v) for (k, v), at in said_at.items() if k == key)
        chained = len(named) > 1 and all(
            set(tokens[a + 1 : b]) & _CHAIN for (a, _), (b, _) in itertools.pairwise(named)
        )
        if not chained:
            named = [(at, v) for at, v in named if v != old.get(key)]  # the old value: "instead of ..."
        return {v: 1.0 - (0.3 if chained else 0.1) * rank for rank, (_, v) in enumerate(named)}

    prefs = {k: preference(k) for k in keys}
    ways = _directions(tokens, key_words)
    kept_keys = {k for k in keys if _kept(tokens, key_words[k])}

    def direction(key: str, value: str) -> float:
        if key not in ways or key not in old:
            return 0.0
        ranks = _order(values[key])
        if ranks is None or old[key] not in ranks or value not in ranks:
            return 0.0
        sign, how, diff = ways[key]
        start = ranks[old[key]]
        offered = sorted(
            {
                ranks[str((v.get("options") or {}).get(key))]
                for v in variants
                if (v.get("options") or {}).get(key) in ranks
            }
        )
        ahead = [r for r in offered if (r - start) * sign > 0]
        if (ranks[value] - start) * sign <= 0:
            return 0.0
        if how == "exact":
            return 1.0 if ranks[value] == start + sign * diff else 0.5
        if how == "extreme":
            return 1.0 if ranks[value] == (max(ahead) if sign > 0 else min(ahead)) else 0.5
        nearest = min(ahead, key=lambda r: abs(r - start))
        return 1.0 if ranks[value] == nearest else 0.75

    def fit(variant: Mapping[str, Any]) -> float:
        options = {str(k): str(v) for k, v in (variant.get("options") or {}).items()}
        total = 0.0
        for key, value in options.items():
            total += prefs[key].get(value, 0.0) + direction(key, value)
            if key in kept_keys and old.get(key) == value:
                total += 1.0
        return round(total, 6)

    def kept(variant: Mapping[str, Any]) -> float:
        return float(sum(old.get(str(k)) == str(v) for k, v in (variant.get("options") or {}).items()))

    scope = " ".join(tokens)
    second: Callable[[Mapping[str, Any]], float] = kept
    if _PRICIEST.search(scope):
        second = price
    elif _CHEAPEST.search(scope):

        def second(variant: Mapping[str, Any]) -> float:
            return -price(variant)

    best = max((fit(v), second(v)) for v in variants)
    return [v for v in variants if (fit(v), second(v)) == best]
