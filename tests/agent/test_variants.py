"""The new item of a swap, matched to the customer's words over the demo catalogue (`agent.variants`)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from agent.store.seed import CATALOGUE
from agent.variants import match_variants


def _variants(product: str, unavailable: tuple[dict[str, str], ...] = ()) -> list[dict[str, Any]]:
    options = CATALOGUE[product]
    out = []
    for n, combo in enumerate(itertools.product(*options.values())):
        chosen = dict(zip(options, combo, strict=True))
        if chosen not in unavailable:
            out.append({"item_id": f"{n:010d}", "options": chosen, "price": 10.0 + n})
    return out


def _match(product: str, old: dict[str, str], said: str, **kw: Any) -> list[dict[str, str]]:
    variants = [v for v in _variants(product, kw.pop("unavailable", ())) if v["options"] != old]
    item = {"name": product, "item_id": "old", "options": old}
    return [v["options"] for v in match_variants(item, variants, [said], **kw)]


def test_a_bigger_one_is_the_next_size_up_keeping_the_rest() -> None:
    got = _match("Trail Backpack", {"capacity": "20L", "color": "green"}, "I'd like a bigger trail backpack.")
    assert got == [{"capacity": "30L", "color": "green"}]


def test_too_big_means_one_size_smaller() -> None:
    old = {"size": "L", "color": "navy"}
    got = _match("Rain Jacket", old, "The rain jacket is too big, can I swap it?")
    assert got == [{"size": "M", "color": "navy"}]


def test_a_superlative_is_the_extreme_value() -> None:
    old = {"diameter": "20cm", "handle": "short"}
    assert _match("Cast Iron Pan", old, "Exchange my cast iron pan for the largest one.") == [
        {"diameter": "30cm", "handle": "short"}
    ]
    old = {"capacity": "45L", "color": "black"}
    assert _match("Trail Backpack", old, "the backpack with the smallest capacity please") == [
        {"capacity": "20L", "color": "black"}
    ]


def test_a_value_is_bound_to_the_option_named_next_to_it() -> None:
    # "medium sized": the size M, not any other option's "medium"; British spelling of the option too
    old = {"size": "S", "color": "blue", "visor": "no"}
    got = _match("Bike Helmet", old, "I need a medium sized bike helmet, white colour, with a visor.")
    assert {"size": "M", "color": "white", "visor": "yes"} in got and all(g["size"] == "M" for g in got)


def test_an_option_said_as_absent_is_its_no() -> None:
    # tried as a customer: "one that's not waterproof" was listed as another waterproof speaker
    old = {"color": "black", "battery": "20h", "waterproof": "yes"}
    for said in (
        "I'd like to exchange my bluetooth speaker for one that's not waterproof",
        "Swap the speaker for a non-waterproof one.",
        "I want a speaker that isn't waterproof instead",
    ):
        got = _match("Bluetooth Speaker", old, said)
        assert got and all(g["waterproof"] == "no" for g in got), said
        assert got[0]["color"] == "black", said  # what they did not speak of stays as it was


def test_an_order_of_preference_takes_the_first_there_is() -> None:
    old = {"color": "black", "battery": "10h", "waterproof": "yes"}
    said = "Swap the speaker for another color (teal over red over black)."
    assert _match("Bluetooth Speaker", old, said) == [
        {"color": "teal", "battery": "10h", "waterproof": "yes"}
    ]
    # gone in the old battery and waterproofing: still teal (the first choice), whatever else changes
    gone = tuple({"color": "teal", "battery": "10h", "waterproof": w} for w in ("yes", "no"))
    got = _match("Bluetooth Speaker", old, said, unavailable=gone)
    assert got and all(g["color"] == "teal" for g in got)
    gone = tuple(
        {"color": "teal", "battery": b, "waterproof": w} for b in ("10h", "20h") for w in ("yes", "no")
    )
    got = _match("Bluetooth Speaker", old, said, unavailable=gone)
    assert got == [{"color": "red", "battery": "10h", "waterproof": "yes"}]  # none teal: red


def test_an_option_to_keep_is_kept_even_by_the_most_expensive() -> None:
    old = {"size": "9", "color": "white"}
    said = "Upgrade my running shoes to the most expensive variant, but keep the size."
    got = _match("Running Shoes", old, said)
    assert len(got) == 1 and got[0]["size"] == "9"


def test_another_items_words_are_not_this_ones() -> None:
    old = {"capacity": "300ml", "glaze": "speckled"}
    said = "Please exchange the desk lamp for a white one and the ceramic mug for a bigger one."
    got = _match("Ceramic Mug", old, said, other_names=["Desk Lamp"])
    assert got == [{"capacity": "450ml", "glaze": "speckled"}]  # "white" was the lamp's


def test_an_unnamed_items_change_asked_for_before_in_the_sentence_is_not_this_ones() -> None:
    # the helmet's order was not looked up: its name is no other item's the matcher knows of
    old = {"capacity": "300ml", "glaze": "speckled"}
    said = "I'd exchange the helmet for a red, sage one, and exchange the ceramic mug to a gloss white."
    got = _match("Ceramic Mug", old, said)
    assert got == [{"capacity": "300ml", "glaze": "gloss white"}]  # "sage" was the helmet's


@pytest.mark.parametrize(
    ("said", "want"),
    [
        ("I want 2 more burners on the camping stove", "2"),  # a stated difference: 1 + ... (only 2 exists)
        ("the camping stove with the maximum burners", "2"),
    ],
)
def test_a_stated_difference_or_maximum_on_a_count(said: str, want: str) -> None:
    got = _match("Camping Stove", {"fuel": "gas", "burners": "1"}, said)
    assert got == [{"fuel": "gas", "burners": want}]


def test_a_variant_written_by_its_item_id_is_the_match_whatever_else_is_said() -> None:
    old = {"capacity": "20L", "color": "green"}
    variants = [v for v in _variants("Trail Backpack") if v["options"] != old]
    wanted = variants[-1]  # not what "a bigger one" would pick
    item = {"name": "Trail Backpack", "item_id": "old", "options": old}
    said = f"I'd like a bigger trail backpack, item number {wanted['item_id']}."
    assert match_variants(item, variants, [said]) == [wanted]
    # ten digits that are no variant's id (the old item's, an order's) change nothing
    assert match_variants(item, variants, ["I'd like a bigger trail backpack, not 9999999999."]) == [
        v for v in variants if v["options"] == {"capacity": "30L", "color": "green"}
    ]


def test_a_stated_difference_is_no_value_and_a_plural_names_its_singular() -> None:
    variants = [
        {"item_id": f"{n:010d}", "options": {"pieces": p, "theme": t}, "price": 20.0}
        for n, (p, t) in enumerate(itertools.product(["500", "1000", "1500"], ["art", "animals"]))
    ]
    item = {"name": "Jigsaw Puzzle", "item_id": "old", "options": {"pieces": "500", "theme": "art"}}
    others = [v for v in variants if v["options"] != item["options"]]
    for said, want in (
        ("the jigsaw with 1000 more pieces, animal theme over art", {"pieces": "1500", "theme": "animals"}),
        ("the jigsaw with 1000 more pieces, art theme over animal", {"pieces": "1500", "theme": "art"}),
        ("the jigsaw with 1000 pieces or more, art theme", {"pieces": "1000", "theme": "art"}),
    ):
        assert [v["options"] for v in match_variants(item, others, [said])] == [want], said
