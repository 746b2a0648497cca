"""The seeded generator writes the retail format; the SQLite store round-trips it; import refuses bad data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.store.database import RetailDatabase, load_json_dir, validate_data, write_json_dir
from agent.store.seed import generate_demo_data
from serve.cli import app
from specialist.errors import InvalidInput


def test_generator_is_deterministic_and_in_the_retail_format() -> None:
    data = generate_demo_data(3, n_users=10, n_orders=30)
    assert data == generate_demo_data(3, n_users=10, n_orders=30)
    assert data != generate_demo_data(4, n_users=10, n_orders=30)
    validate_data(data)
    order = next(iter(data["orders"].values()))
    assert set(order) == {
        "order_id",
        "user_id",
        "address",
        "items",
        "fulfillments",
        "status",
        "payment_history",
    }
    assert order["order_id"].startswith("#W") and len(order["order_id"]) == 9
    user = data["users"][order["user_id"]]
    assert set(user) == {"name", "address", "email", "payment_methods", "orders"}
    assert order["order_id"] in user["orders"]
    assert order["payment_history"][0]["payment_method_id"] in user["payment_methods"]
    product = data["products"][order["items"][0]["product_id"]]
    assert order["items"][0]["item_id"] in product["variants"]
    statuses = {o["status"] for o in data["orders"].values()}
    assert {"pending", "delivered"} <= statuses


def test_store_round_trips_gz_and_plain_json(tmp_path: Path) -> None:
    data = generate_demo_data(n_users=8, n_orders=20)
    write_json_dir(data, tmp_path / "gz", compress=True)
    write_json_dir(data, tmp_path / "plain")
    assert load_json_dir(tmp_path / "gz") == load_json_dir(tmp_path / "plain") == data
    db = RetailDatabase(tmp_path / "store.sqlite")
    assert db.replace_all(data) == {"users": 8, "orders": 20, "products": len(data["products"])}
    assert db.export() == data
    user_id, user = next(iter(data["users"].items()))
    assert db.find_user_ids(email=user["email"].upper()) == [user_id]
    name = user["name"]
    assert user_id in db.find_user_ids(
        name_zip=(name["first_name"], name["last_name"], user["address"]["zip"])
    )


def test_bad_data_is_refused_and_the_store_keeps_what_it_had(tmp_path: Path) -> None:
    db = RetailDatabase(tmp_path / "store.sqlite")
    data = generate_demo_data(n_users=5, n_orders=10)
    db.replace_all(data)
    broken = json.loads(json.dumps(data))
    next(iter(broken["orders"].values()))["user_id"] = "nobody_1"
    with pytest.raises(InvalidInput, match="unknown user"):
        db.replace_all(broken)
    assert db.export() == data
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "users.json").write_text("{not json")
    with pytest.raises(InvalidInput):
        load_json_dir(tmp_path / "bad")


def test_store_commands_seed_and_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECIALIST_AGENT__STORE_PATH", str(tmp_path / "s.sqlite"))
    runner = CliRunner()
    result = runner.invoke(
        app, ["store", "seed", "--users", "4", "--orders", "9", "--export", str(tmp_path / "x")]
    )
    assert result.exit_code == 0, result.output
    assert "'orders': 9" in result.output
    with gzip.open(tmp_path / "users.json.gz", "wt") as fh:
        json.dump(load_json_dir(tmp_path / "x")["users"], fh)
    for kind in ("orders", "products"):
        (tmp_path / f"{kind}.json").write_text((tmp_path / "x" / f"{kind}.json").read_text())
    result = runner.invoke(app, ["store", "import", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert RetailDatabase(tmp_path / "s.sqlite").counts()["users"] == 4
    result = runner.invoke(app, ["store", "import", str(tmp_path / "missing")])
    assert result.exit_code == 2


def test_copy_is_consistent_and_independent(tmp_path: Path) -> None:
    db = RetailDatabase(tmp_path / "a.sqlite")
    data = generate_demo_data(n_users=5, n_orders=10)
    db.replace_all(data)
    copy = db.copy_to(tmp_path / "b.sqlite")
    assert copy.export() == data
    with copy.transaction() as conn:
        conn.execute("DELETE FROM orders")
    assert db.export() == data and copy.counts()["orders"] == 0
