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


@pytest.fixture(scope="session")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real knowledge base (embedded Qdrant + real embedder) with the demo policies ingested."""
    from ingest import Ingestor, demo_policy_dir
    from retrieval import RetrievalSettings, open_knowledge_base

    base = open_knowledge_base(RetrievalSettings(data_dir=tmp_path_factory.mktemp("kb")))
    Ingestor(base).ingest_path(demo_policy_dir())
    return base


@pytest.fixture
def make_agent(tmp_path: Path, db: RetailDatabase, kb: Any) -> Callable[..., Any]:
    """Build a SupportAgent over the seeded store and real KB; keyword arguments override AgentSettings."""
    from agent.runtime import build_agent
    from agent.settings import AgentSettings

    def make(model: Any, **overrides: Any) -> Any:
        overrides.setdefault("refund_approval_threshold", 100_000.0)
        chosen_kb = overrides.pop("kb", kb)
        settings = AgentSettings(
            store_path=tmp_path / "store.sqlite", checkpoint_path=tmp_path / "checkpoints.sqlite", **overrides
        )
        return build_agent(settings=settings, model=model, kb=chosen_kb, store=db)

    return make
