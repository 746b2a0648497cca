"""Engineers: runs with gate reports, promote / roll back with a hot swap, and a model backend going down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serve.app import create_app
from serve.auth import Role
from tests.serve.conftest import ingest_demo, make_settings, seed_store
from tests.serve.live import free_port
from tests.serve.runs import make_run
from tests.serve.sse import parse_sse
from tests.serve.vllm_stub import VllmStub


class Site:
    def __init__(self, client: TestClient, stub: VllmStub, keys: dict[str, dict[str, str]]) -> None:
        self.client, self.stub, self.keys = client, stub, keys

    def turn(self, text: str) -> tuple[int, dict[str, str], list[dict]]:
        conversation = self.client.post("/api/conversations", headers=self.keys["alice"]).json()["id"]
        r = self.client.post(
            f"/api/conversations/{conversation}/messages", json={"text": text}, headers=self.keys["alice"]
        )
        return r.status_code, dict(r.headers), parse_sse(r.text) if r.status_code == 200 else r.json()


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[Site]:
    stub = VllmStub(free_port())
    settings = make_settings(
        tmp_path,
        model={"backend": "openai", "openai_base_url": stub.url, "openai_model": "base", "timeout_s": 5},
    )
    customers = seed_store(settings)
    ingest_demo(settings)
    for run_id, passed in (("run-good", True), ("run-bad", False), ("run-raw", None)):
        make_run(settings.finetune.runs_dir, run_id, passed=passed)
    stub.start()
    app = create_app(settings)
    keys = app.state.services.keys
    headers = {
        "alice": keys.create(role=Role.customer, customer_id=customers[0]).secret,
        "engineer": keys.create(role=Role.engineer, name="eng").secret,
    }
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Site(client, stub, {k: {"Authorization": f"Bearer {v}"} for k, v in headers.items()})
    stub.stop()


def test_runs_promote_hot_swap_and_rollback(site: Site) -> None:
    eng = site.keys["engineer"]
    status, headers, events = site.turn("Do gift cards expire?")
    assert status == 200 and headers["x-model"] == "openai:base" and set(site.stub.chat_models) == {"base"}

    runs = site.client.get("/api/models/runs", headers=eng).json()
    assert runs["live"]["kind"] == "default"
    by_id = {r["run_id"]: r for r in runs["runs"]}
    assert set(by_id) == {"run-good", "run-bad", "run-raw"}
    assert by_id["run-good"]["gate"]["passed"] is True and by_id["run-good"]["charts"] == ["gate.png"]
    assert by_id["run-good"]["gate"]["per_category"]["handoff"] == {"n": 20, "base": 0.3, "candidate": 0.7}
    png = site.client.get("/api/models/runs/run-good/files/gate.png", headers=eng)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert site.client.get("/api/models/runs/run-good/files/..%2Frun.json", headers=eng).status_code == 404

    r = site.client.post("/api/models/promote", json={"run_id": "run-bad"}, headers=eng)
    assert r.status_code == 409 and "failed its gate" in r.json()["error"]["message"]
    r = site.client.post("/api/models/promote", json={"run_id": "run-raw"}, headers=eng)
    assert r.status_code == 409 and "not been gated" in r.json()["error"]["message"]
    r = site.client.post("/api/models/promote", json={"run_id": "nope"}, headers=eng)
    assert r.status_code == 404

    r = site.client.post("/api/models/promote", json={"run_id": "run-good"}, headers=eng)
    assert r.status_code == 200, r.text
    assert r.json()["live"]["name"] == "run-good" and r.json()["model"] == "openai:run-good"
    assert site.stub.loaded[-1]["lora_name"] == "run-good"
    assert site.stub.loaded[-1]["lora_path"].endswith("run-good/export/adapter")
    # The next turn of the running service uses the promoted adapter: no restart.
    status, headers, events = site.turn("How long do I have to return an item?")
    assert status == 200 and headers["x-model"] == "openai:run-good"
    assert site.stub.chat_models[-1] == "run-good" and events[-1]["event"] == "done"
    r = site.client.post("/api/models/promote", json={"run_id": "run-good"}, headers=eng)
    assert r.status_code == 409 and "already live" in r.json()["error"]["message"]

    r = site.client.post("/api/models/rollback", headers=eng)
    assert r.status_code == 200 and r.json()["live"]["kind"] == "default"
    r = site.client.post("/api/models/rollback", headers=eng)
    assert r.status_code == 409 and "nothing to roll back" in r.json()["error"]["message"]


def test_model_backend_down_gives_503_then_recovers(site: Site) -> None:
    status, _, _ = site.turn("Do gift cards expire?")
    assert status == 200
    site.stub.stop()
    status, headers, body = site.turn("Do gift cards expire?")
    assert status == 503 and headers["retry-after"] == "5"
    assert "unreachable" in body["error"]["message"] and body["request_id"]
    r = site.client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["model"]["ok"] is False
    status, headers, body = site.turn("Do gift cards expire?")
    assert status == 503  # while it is down, the breaker answers at once

    site.stub.start()  # vLLM is back on the same port
    time.sleep(1.1)  # the breaker probes at most once a second
    status, headers, events = site.turn("Do gift cards expire?")
    assert status == 200 and events[-1]["event"] == "done"
    assert any(e["event"] == "citation" for e in events)
    assert site.client.get("/readyz").status_code == 200
    metrics = site.client.get("/metrics").text
    assert 'specialist_errors_total{kind="model_unavailable"}' in metrics


def test_a_promotion_the_backend_cannot_serve_changes_nothing(site: Site) -> None:
    eng = site.keys["engineer"]
    site.stub.refuse_loads = True
    r = site.client.post("/api/models/promote", json={"run_id": "run-good"}, headers=eng)
    assert r.status_code == 503 and "did not load adapter run-good" in r.json()["error"]["message"]
    assert site.client.get("/api/models/runs", headers=eng).json()["live"]["kind"] == "default"
    status, headers, _ = site.turn("Do gift cards expire?")
    assert status == 200 and headers["x-model"] == "openai:base"
    site.stub.refuse_loads = False
    r = site.client.post("/api/models/promote", json={"run_id": "run-good"}, headers=eng)
    assert r.status_code == 200 and r.json()["model"] == "openai:run-good"
