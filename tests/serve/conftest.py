"""Fixtures for the service: a real app (embedded Qdrant, real embedder, SQLite) in a temp folder."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve.app import create_app
from serve.auth import Role
from serve.settings import Settings


def make_settings(root: Path, **overrides: Any) -> Settings:
    """Settings with every path under `root` and the scripted model."""
    data: dict[str, Any] = {
        "retrieval": {"data_dir": str(root / "kb")},
        "agent": {
            "store_path": str(root / "store.sqlite"),
            "checkpoint_path": str(root / "checkpoints.sqlite"),
        },
        "finetune": {"runs_dir": str(root / "runs"), "registry_path": str(root / "registry.json")},
        "model": {"backend": "scripted"},
        "serve": {
            "state_path": str(root / "service.sqlite"),
            "discovery_path": str(root / "service.json"),
            "rate_limit_per_minute": 100_000,
            "rate_limit_burst": 100_000,
        },
    }
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return Settings.model_validate(data)


def seed_store(settings: Settings) -> list[str]:
    """Fill the demo store; returns two customer ids."""
    from agent.store.database import RetailDatabase
    from agent.store.seed import generate_demo_data

    db = RetailDatabase(settings.agent.store_path)
    db.replace_all(generate_demo_data(7, n_users=12, n_orders=30))
    users = [str(r[0]) for r in db.query("SELECT user_id FROM users ORDER BY user_id LIMIT 2")]
    db.close()
    return users


def ingest_demo(settings: Settings) -> None:
    """Index the demo policies into the knowledge base (before the service owns it)."""
    from ingest import Ingestor, demo_policy_dir
    from retrieval import open_knowledge_base

    with open_knowledge_base(settings.retrieval) as kb:
        ingestor = Ingestor(kb, settings.ingest)
        ingestor.ingest_path(demo_policy_dir())
        ingestor.close()


@dataclass
class Service:
    """A running app with one key per role (two customers)."""

    client: TestClient
    settings: Settings
    keys: dict[str, str]
    customers: list[str]

    def auth(self, who: str) -> dict[str, str]:
        """The Authorization header of one of the keys."""
        return {"Authorization": f"Bearer {self.keys[who]}"}


def start_service(settings: Settings, customers: list[str], **app_kwargs: Any) -> Iterator[Service]:
    """Run the app for the duration of the generator."""
    app = create_app(settings, **app_kwargs)
    keys_store = app.state.services.keys
    keys = {
        "alice": keys_store.create(role=Role.customer, customer_id=customers[0]).secret,
        "bob": keys_store.create(role=Role.customer, customer_id=customers[1]).secret,
        "owner": keys_store.create(role=Role.content_owner).secret,
        "engineer": keys_store.create(role=Role.engineer, name="eng").secret,
    }
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Service(client=client, settings=settings, keys=keys, customers=customers)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service per test module, with the demo store and policies."""
    settings = make_settings(tmp_path_factory.mktemp("service"))
    customers = seed_store(settings)
    ingest_demo(settings)
    yield from start_service(settings, customers)
