"""Fixtures of the agent tests: a real SQLite store filled by the seeded generator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.store.database import RetailDatabase
from agent.store.seed import generate_demo_data


@pytest.fixture
def db(tmp_path: Path) -> RetailDatabase:
    """A seeded demo store on disk."""
    store = RetailDatabase(tmp_path / "store.sqlite")
    store.replace_all(generate_demo_data(7, n_users=30, n_orders=90))
    return store


@pytest.fixture
def find_order(db: RetailDatabase) -> Callable[..., dict[str, Any]]:
    """The first order with a status (and optionally a predicate)."""

    def find(status: str, where: Callable[[dict[str, Any]], bool] = lambda o: True) -> dict[str, Any]:
        for order in db.export()["orders"].values():
            if order["status"] == status and where(order):
                return dict(order)
        raise LookupError(status)

    return find
