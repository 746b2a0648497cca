"""Auth, roles on every route, limits and error responses."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve.app import create_app
from serve.auth import Role
from tests.serve.conftest import Service, make_settings

SPECIALIST = str(Path(sys.executable).with_name("specialist"))

# (method, path, JSON body, roles admitted). Unknown ids are fine: a role check comes before the lookup.
ROUTES: list[tuple[str, str, Any, set[str]]] = [
    ("POST", "/api/conversations", None, {"alice"}),
    ("GET", "/api/conversations", None, {"alice", "engineer"}),
    ("GET", "/api/conversations/c_x", None, {"alice", "engineer"}),
    ("POST", "/api/conversations/c_x/messages", {"text": "hi"}, {"alice"}),
    ("GET", "/api/policies/returns", None, {"alice", "owner", "engineer"}),
    ("GET", "/api/documents", None, {"owner", "engineer"}),
    ("GET", "/api/documents/returns", None, {"owner", "engineer"}),
    ("PUT", "/api/documents/x", {"title": "t", "content": "c"}, {"owner"}),
    ("POST", "/api/documents", {"documents": [{"id": "x", "title": "t", "content": "c"}]}, {"owner"}),
    ("POST", "/api/documents/upload", None, {"owner"}),
    ("DELETE", "/api/documents/nope", None, {"owner"}),
    ("POST", "/api/kb/rebuild", None, {"owner"}),
    ("POST", "/api/kb/rollback", None, {"owner"}),
    ("GET", "/api/kb/status", None, {"owner", "engineer"}),
    ("GET", "/api/kb/search?q=returns", None, {"owner", "engineer"}),
    ("GET", "/api/models/runs", None, {"engineer"}),
    ("POST", "/api/models/promote", {"run_id": "nope"}, {"engineer"}),
    ("POST", "/api/models/rollback", None, {"engineer"}),
    ("GET", "/api/models/runs/x/files/gate.png", None, {"engineer"}),
    ("GET", "/api/approvals", None, {"engineer"}),
    ("POST", "/api/approvals/nope", {"approved": True}, {"engineer"}),
    ("GET", "/api/tickets", None, {"engineer"}),
    ("POST", "/api/conversations/c_x/ratings", {"value": "up"}, {"alice"}),
    ("GET", "/api/review", None, {"engineer"}),
    ("GET", "/api/review/export", None, {"engineer"}),
    ("GET", "/api/review/c_x", None, {"engineer"}),
    ("POST", "/api/review/c_x/steps/1", {"verdict": "good"}, {"engineer"}),
    ("DELETE", "/api/customers/x/data", None, {"engineer"}),
]


def test_every_api_route_is_in_the_role_table(service: Service) -> None:
    paths = service.client.get("/openapi.json").json()["paths"]
    documented = {
        (method.upper(), path) for path, ops in paths.items() for method in ops if path.startswith("/api/")
    }
    tabled = {
        (m, p.split("?")[0].replace("c_x", "{conversation_id}").replace("steps/1", "steps/{step}"))
        for m, p, _, _ in ROUTES
    }
    normalise = {
        "/api/policies/returns": "/api/policies/{doc_id}",
        "/api/documents/returns": "/api/documents/{doc_id}",
        "/api/documents/x": "/api/documents/{doc_id}",
        "/api/documents/nope": "/api/documents/{doc_id}",
        "/api/models/runs/x/files/gate.png": "/api/models/runs/{run_id}/files/{name}",
        "/api/approvals/nope": "/api/approvals/{approval_id}",
        "/api/customers/x/data": "/api/customers/{customer_id}/data",
    }
    tabled = {(m, normalise.get(p, p)) for m, p in tabled}
    assert documented == tabled


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES]
)
def test_roles(service: Service, method: str, path: str, body: Any, allowed: set[str]) -> None:
    r = service.client.request(method, path, json=body)
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    r = service.client.request(method, path, json=body, headers={"Authorization": "Bearer spk_forged"})
    assert r.status_code == 401
    for who in ("alice", "owner", "engineer"):
        r = service.client.request(method, path, json=body, headers=service.auth(who))
        if who in allowed:
            assert r.status_code not in (401, 403), (who, r.text)
        else:
            assert r.status_code == 403, (who, r.status_code, r.text)
            assert "this route is for" in r.json()["error"]["message"]


def test_docs_and_pages_are_served(service: Service) -> None:
    docs = service.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    pages = (("/chat", "chat.js"), ("/kb", "kb.js"), ("/models", "models.js"), ("/review", "review.js"))
    for page, script in pages:
        r = service.client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and script in r.text
        assert service.client.get(f"/static/{script}").status_code == 200
    assert service.client.get("/", follow_redirects=False).headers["location"] == "/chat"


def test_errors_are_json_with_a_request_id(service: Service) -> None:
    r = service.client.get("/api/nowhere", headers={"X-Request-ID": "trace-123"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "trace-123"
    assert r.json()["request_id"] == "trace-123" and "/docs" in r.json()["error"]["message"]
    r = service.client.delete("/api/tickets", headers=service.auth("engineer"))
    assert r.status_code == 405
    r = service.client.post("/api/models/promote", json={"run_id": 7}, headers=service.auth("engineer"))
    assert r.status_code == 422 and "run_id" in r.json()["error"]["message"]


@pytest.fixture()
def limited(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    settings = make_settings(
        tmp_path, serve={"rate_limit_per_minute": 60, "rate_limit_burst": 3, "max_body_bytes": 2_000}
    )
    app = create_app(settings)

    @app.get("/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("secret detail of the failure")

    key = app.state.services.keys.create(role=Role.engineer).secret
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, key


def test_rate_limit_body_limit_and_internal_errors(limited: tuple[TestClient, str]) -> None:
    client, key = limited
    headers = {"Authorization": f"Bearer {key}"}
    codes = [client.get("/api/tickets", headers=headers).status_code for _ in range(4)]
    assert codes[:3] != [429] * 3 and codes[3] == 429
    r = client.get("/api/tickets", headers=headers)
    assert (
        r.status_code == 429
        and int(r.headers["retry-after"]) >= 1
        and "retry" in r.json()["error"]["message"]
    )

    r = client.post("/api/models/promote", content=b"x" * 5_000, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "2000 bytes" in r.json()["error"]["message"]

    r = client.get("/boom")
    assert r.status_code == 500
    body = r.json()
    assert body["request_id"] == r.headers["x-request-id"]
    assert "secret detail" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text


def test_knowledge_base_down_gives_503_with_retry_after(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, retrieval={"backend": "server", "qdrant_url": "http://127.0.0.1:9"})
    app = create_app(settings)
    keys = app.state.services.keys
    owner = {"Authorization": f"Bearer {keys.create(role=Role.content_owner).secret}"}
    alice = {"Authorization": f"Bearer {keys.create(role=Role.customer, customer_id='ada').secret}"}
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        r = client.get("/readyz")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["checks"]["knowledge_base"]["ok"] is False
        r = client.get("/api/kb/status", headers=owner)
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert "Qdrant" in r.json()["error"]["message"]
        conversation = client.post("/api/conversations", headers=alice).json()["id"]
        r = client.post(f"/api/conversations/{conversation}/messages", json={"text": "hi"}, headers=alice)
        assert r.status_code == 503 and "retry-after" in r.headers


def test_keys_cli_prints_a_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    env = {"SPECIALIST_SERVE__STATE_PATH": str(tmp_path / "s.sqlite"), "PATH": "/usr/bin:/bin"}
    bad = subprocess.run(
        [SPECIALIST, "keys", "create", "--role", "customer"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--customer-id" in bad.stderr
    bad = subprocess.run(
        [SPECIALIST, "keys", "create", "--role", "boss"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown role" in bad.stderr
    out = subprocess.run(
        [SPECIALIST, "keys", "create", "--role", "customer", "--customer-id", "ada_1"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    secret = out.stdout.strip()
    assert secret.startswith("spk_") and len(secret) > 40 and "not shown again" in out.stderr
    with sqlite3.connect(tmp_path / "s.sqlite") as conn:
        rows = conn.execute("SELECT key_hash, role, customer_id FROM api_keys").fetchall()
    assert rows and rows[0][1:] == ("customer", "ada_1") and secret not in str(rows)
    assert secret.encode() not in (tmp_path / "s.sqlite").read_bytes()
    listed = subprocess.run([SPECIALIST, "keys", "list"], env=env, capture_output=True, text=True, check=True)
    assert "ada_1" in listed.stdout and secret not in listed.stdout
    key_id = listed.stdout.split()[0]
    subprocess.run([SPECIALIST, "keys", "revoke", key_id], env=env, check=True, capture_output=True)

    settings = make_settings(tmp_path)
    app = create_app(
        settings.model_copy(
            update={"serve": settings.serve.model_copy(update={"state_path": tmp_path / "s.sqlite"})}
        )
    )
    with TestClient(app) as client:
        r = client.get("/api/conversations", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
