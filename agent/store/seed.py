"""A seeded generator of the demo company's data, in the JSON format of the tau-bench retail database."""

from __future__ import annotations

import itertools
import random
from typing import Any

# Our own catalogue: product name -> option name -> values. Every variant is a combination of options.
CATALOGUE: dict[str, dict[str, list[str]]] = {
    "Trail Backpack": {"capacity": ["20L", "30L", "45L"], "color": ["green", "black", "orange"]},
    "Rain Jacket": {"size": ["S", "M", "L", "XL"], "color": ["yellow", "navy", "red"]},
    "Desk Lamp": {"finish": ["brass", "matte black", "white"], "bulb": ["LED", "halogen"]},
    "Coffee Grinder": {"type": ["burr", "blade"], "color": ["silver", "black"], "capacity": ["100g", "250g"]},
    "Wool Socks": {"size": ["S", "M", "L"], "pattern": ["plain", "striped", "argyle"]},
    "Yoga Block": {"material": ["cork", "foam", "bamboo"], "color": ["blue", "grey", "natural"]},
    "Bluetooth Speaker": {
        "color": ["black", "red", "teal"],
        "battery": ["10h", "20h"],
        "waterproof": ["yes", "no"],
    },
    "Ceramic Mug": {"capacity": ["300ml", "450ml"], "glaze": ["speckled", "gloss white", "sage"]},
    "Running Shoes": {"size": ["7", "8", "9", "10", "11"], "color": ["white", "black", "neon"]},
    "Cast Iron Pan": {"diameter": ["20cm", "26cm", "30cm"], "handle": ["short", "long"]},
    "Notebook": {"paper": ["dotted", "lined", "blank"], "size": ["A5", "A4"], "cover": ["hard", "soft"]},
    "Electric Toothbrush": {"color": ["white", "pink", "black"], "heads": ["2", "4"]},
    "Camping Stove": {"fuel": ["gas", "multi-fuel"], "burners": ["1", "2"]},
    "Throw Blanket": {"material": ["fleece", "wool", "cotton"], "color": ["cream", "charcoal", "rust"]},
    "Smart Plug": {"pack": ["1", "2", "4"], "protocol": ["wifi", "zigbee"]},
    "Bike Helmet": {
        "size": ["S", "M", "L"],
        "color": ["matte black", "white", "blue"],
        "visor": ["yes", "no"],
    },
    "Water Filter Jug": {"capacity": ["1.5L", "2.5L"], "color": ["clear", "blue"]},
    "Wireless Mouse": {
        "color": ["black", "white"],
        "grip": ["ambidextrous", "right-handed"],
        "dpi": ["1600", "4000"],
    },
    "Plant Pot": {"size": ["small", "medium", "large"], "material": ["terracotta", "ceramic", "concrete"]},
    "Chef Knife": {"blade": ["18cm", "21cm"], "steel": ["stainless", "carbon"], "handle": ["wood", "resin"]},
}

FIRST_NAMES = [
    "Ada",
    "Bruno",
    "Chiara",
    "Dmitri",
    "Esi",
    "Farah",
    "Goran",
    "Hana",
    "Ines",
    "Jonas",
    "Kemal",
    "Lena",
    "Malik",
    "Noor",
    "Oskar",
    "Priya",
    "Quinn",
    "Rosa",
    "Samir",
    "Tove",
    "Umar",
    "Vera",
    "Wen",
    "Yara",
]
LAST_NAMES = [
    "Abara",
    "Berg",
    "Costa",
    "Dubois",
    "Eze",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Rossi",
    "Silva",
    "Tanaka",
    "Varga",
    "Weber",
    "Zhou",
]
STREETS = [
    "Maple Street",
    "Harbor Road",
    "Elm Avenue",
    "Mill Lane",
    "Cedar Court",
    "Lake View Drive",
    "Pine Way",
]
CITIES = [
    ("Portland", "OR", "972"),
    ("Austin", "TX", "787"),
    ("Columbus", "OH", "432"),
    ("Raleigh", "NC", "276"),
    ("Madison", "WI", "537"),
    ("Tucson", "AZ", "857"),
    ("Albany", "NY", "122"),
    ("Boise", "ID", "837"),
]
BRANDS = ["visa", "mastercard", "amex", "discover"]
STATUSES = ["pending"] * 42 + ["delivered"] * 37 + ["processed"] * 11 + ["cancelled"] * 10


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n)).replace("0", "1", 1)


def _address(rng: random.Random) -> dict[str, str]:
    city, state, zip_prefix = rng.choice(CITIES)
    return {
        "address1": f"{rng.randint(10, 999)} {rng.choice(STREETS)}",
        "address2": f"Suite {rng.randint(100, 999)}",
        "city": city,
        "country": "USA",
        "state": state,
        "zip": f"{zip_prefix}{rng.randint(10, 99)}",
    }


def _products(rng: random.Random) -> dict[str, Any]:
    products: dict[str, Any] = {}
    used: set[str] = set()
    for name, options in CATALOGUE.items():
        product_id = _unique(rng, used, 10)
        base = rng.uniform(8, 400)
        variants: dict[str, Any] = {}
        for combo in itertools.product(*options.values()):
            item_id = _unique(rng, used, 10)
            variants[item_id] = {
                "item_id": item_id,
                "options": dict(zip(options, combo, strict=True)),
                "available": rng.random() < 0.8,
                "price": round(base * rng.uniform(0.9, 1.1), 2),
            }
        products[product_id] = {"name": name, "product_id": product_id, "variants": variants}
    return products


def _unique(rng: random.Random, used: set[str], n: int) -> str:
    while True:
        value = _digits(rng, n)
        if value not in used:
            used.add(value)
            return value


def _payment_methods(rng: random.Random, used: set[str]) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for source in rng.sample(["credit_card", "paypal", "gift_card"], rng.randint(1, 3)):
        pid = f"{source}_{_unique(rng, used, 7)}"
        method: dict[str, Any] = {"source": source, "id": pid}
        if source == "credit_card":
            method = {"source": source, "brand": rng.choice(BRANDS), "last_four": _digits(rng, 4), "id": pid}
        elif source == "gift_card":
            method = {"source": source, "balance": rng.randint(0, 150), "id": pid}
        methods[pid] = method
    return methods


def _order(
    rng: random.Random,
    *,
    order_id: str,
    user_id: str,
    user: dict[str, Any],
    products: dict[str, Any],
    used: set[str],
) -> dict[str, Any]:
    items = []
    for product in rng.sample(list(products.values()), rng.randint(1, 4)):
        variant = rng.choice(list(product["variants"].values()))
        items.append(
            {
                "name": product["name"],
                "product_id": product["product_id"],
                "item_id": variant["item_id"],
                "price": variant["price"],
                "options": dict(variant["options"]),
            }
        )
    status = rng.choice(STATUSES)
    total = round(sum(i["price"] for i in items), 2)
    method = rng.choice(list(user["payment_methods"]))
    history = [{"transaction_type": "payment", "amount": total, "payment_method_id": method}]
    if status == "cancelled":
        history.append({"transaction_type": "refund", "amount": total, "payment_method_id": method})
    fulfillments = []
    if status in ("processed", "delivered"):
        fulfillments = [{"tracking_id": [_unique(rng, used, 12)], "item_ids": [i["item_id"] for i in items]}]
    return {
        "order_id": order_id,
        "user_id": user_id,
        "address": dict(user["address"]),
        "items": items,
        "fulfillments": fulfillments,
        "status": status,
        "payment_history": history,
    }


def generate_demo_data(seed: int = 7, *, n_users: int = 60, n_orders: int = 150) -> dict[str, Any]:
    """Generate {"users", "orders", "products"} in the retail JSON format, deterministic for one seed."""
    rng = random.Random(seed)
    used: set[str] = set()
    products = _products(rng)
    users: dict[str, Any] = {}
    for _ in range(n_users):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        user_id = f"{first.lower()}_{last.lower()}_{_unique(rng, used, 4)}"
        users[user_id] = {
            "name": {"first_name": first, "last_name": last},
            "address": _address(rng),
            "email": f"{first.lower()}.{last.lower()}{_unique(rng, used, 4)}@example.com",
            "payment_methods": _payment_methods(rng, used),
            "orders": [],
        }
    orders: dict[str, Any] = {}
    user_ids = list(users)
    for index in range(n_orders):
        # Every user gets at least one order, the rest are spread at random.
        user_id = user_ids[index] if index < len(user_ids) else rng.choice(user_ids)
        order_id = f"#W{_unique(rng, used, 7)}"
        orders[order_id] = _order(
            rng, order_id=order_id, user_id=user_id, user=users[user_id], products=products, used=used
        )
        users[user_id]["orders"].append(order_id)
    return {"users": users, "orders": orders, "products": products}
