"""Addresses in the customer's words and on the records (`agent.addresses`)."""

from __future__ import annotations

from agent.addresses import candidates, parse_addresses, says_street_address

FIELDS = ("address1", "address2", "city", "state", "country", "zip")


def _address(*values: str) -> dict[str, str]:
    return dict(zip(FIELDS, values, strict=True))


HOME = _address("159 Hickory Lane", "Suite 995", "Charlotte", "NC", "USA", "28243")
SON = _address("12 Oak Street", "Suite 1", "Washington", "DC", "USA", "20001")
NYC = _address("476 Maple Drive", "Suite 432", "New York", "NY", "USA", "10093")


def test_written_out_addresses_are_parsed_with_every_field() -> None:
    assert parse_addresses("My new address is 1234 Elm St, Springfield, IL, 62701. I'm Yusuf") == [
        _address("1234 Elm St", "", "Springfield", "IL", "USA", "62701")
    ]
    [parsed] = parse_addresses("It is 445 Maple Drive, Suite 394, Fort Worth, Texas, 76165, USA.")
    assert (parsed["address2"], parsed["city"], parsed["state"]) == ("Suite 394", "Fort Worth", "TX")
    assert parse_addresses("my zip is 80280 and I ordered 2 items") == []
    assert says_street_address("send it to 12 Oak Street please")  # written out, but not whole
    assert not says_street_address("my zip is 80280")


def test_the_customers_words_pick_among_the_records_addresses() -> None:
    records = {"#W1000001": SON, "#W2000002": NYC}
    seen = [HOME, SON, NYC]

    def pick(text: str, current: dict[str, str] | None = SON) -> list[dict[str, str]]:
        return candidates(texts=[text], seen=seen, profile=HOME, on_orders=records, current=current)

    assert pick("please change it to my default address") == [HOME]
    assert pick("ship it to my NYC address") == [NYC]
    assert pick("same address as order #W2000002") == [NYC]
    assert pick("the order went to my son's place in Washington DC by mistake, fix it") == [HOME, NYC]
    assert pick("send it to 1234 Elm St, Springfield, IL 62701 instead")[0]["address1"] == "1234 Elm St"
    assert pick("ship it to my NYC address", current=NYC) == [HOME, SON]  # never where it goes already
    # written out, and it is where it goes already: nothing to change (not one of the others instead)
    assert pick("change it to 476 Maple Drive, Suite 432, New York, NY 10093", current=NYC) == []
