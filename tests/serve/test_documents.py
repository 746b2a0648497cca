"""Content owners: documents in and out through the API, searchable as soon as the call returns."""

from __future__ import annotations

import io

from tests.serve.conftest import Service


def _search(service: Service, query: str) -> list[dict]:
    r = service.client.get("/api/kb/search", params={"q": query, "k": 5}, headers=service.auth("owner"))
    assert r.status_code == 200, r.text
    return r.json()["passages"]


def test_status_lists_the_demo_policies(service: Service) -> None:
    r = service.client.get("/api/kb/status", headers=service.auth("owner"))
    assert r.status_code == 200
    body = r.json()
    assert body["documents"] >= 8 and body["points"] > 0
    docs = service.client.get("/api/documents", headers=service.auth("owner")).json()["documents"]
    assert {"returns", "shipping"} <= {d["id"] for d in docs}
    one = service.client.get("/api/documents/returns", headers=service.auth("owner")).json()
    assert one["title"] and one["content"] and one["chunks"] >= 1


def test_put_replace_delete_is_visible_at_once(service: Service) -> None:
    owner = service.auth("owner")
    body = {
        "title": "Pet policy",
        "content": "# Pets\n\nWe deliver hamster wheels only on Tuesdays.",
        "tags": ["pets"],
    }
    r = service.client.put("/api/documents/pets", json=body, headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["added"] == ["pets"]
    assert any("Tuesdays" in p["text"] for p in _search(service, "when are hamster wheels delivered"))

    body["content"] = "# Pets\n\nHamster wheels ship every Friday."
    r = service.client.put("/api/documents/pets", json=body, headers=owner)
    assert r.json()["updated"] == ["pets"]
    texts = [p["text"] for p in _search(service, "when are hamster wheels delivered")]
    assert any("Friday" in t for t in texts) and not any("Tuesdays" in t for t in texts)

    r = service.client.delete("/api/documents/pets", headers=owner)
    assert r.status_code == 200 and r.json()["deleted"] == ["pets"]
    assert not any(p["citation"]["doc_id"] == "pets" for p in _search(service, "hamster wheels"))
    status = service.client.get("/api/kb/status", headers=owner).json()
    assert status["last_report"]["action"] == "delete" and status["last_report"]["deleted"] == ["pets"]


def test_batch_and_upload(service: Service) -> None:
    owner = service.auth("owner")
    batch = {
        "documents": [
            {"id": "warranty", "title": "Warranty", "content": "Blenders carry a two year warranty."},
            {"id": "bad", "title": "Bad", "content": " "},
        ]
    }
    r = service.client.post("/api/documents", json=batch, headers=owner)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["added"] == ["warranty"] and [f["ref"] for f in report["failed"]] == ["bad"]

    files = [
        (
            "files",
            ("loyalty.md", io.BytesIO(b"# Loyalty\n\nMembers earn one star per dollar."), "text/markdown"),
        )
    ]
    r = service.client.post("/api/documents/upload", files=files, headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["added"] == ["loyalty"]
    assert any(p["citation"]["doc_id"] == "loyalty" for p in _search(service, "how many stars per dollar"))

    files = [("files", ("evil.exe", io.BytesIO(b"MZ\x00\x01"), "application/octet-stream"))]
    r = service.client.post("/api/documents/upload", files=files, headers=owner)
    assert r.status_code == 422 and "unsupported type" in r.json()["error"]["message"]
    for doc_id in ("warranty", "loyalty"):
        assert service.client.delete(f"/api/documents/{doc_id}", headers=owner).status_code == 200


def test_bad_document_requests_are_clear(service: Service) -> None:
    owner = service.auth("owner")
    r = service.client.put("/api/documents/x", json={"title": "T"}, headers=owner)
    assert r.status_code == 422 and "content" in r.json()["error"]["message"]
    r = service.client.put(
        "/api/documents/x", json={"title": "T", "content": "c", "colour": 1}, headers=owner
    )
    assert r.status_code == 422 and "colour" in r.json()["error"]["message"]
    r = service.client.delete("/api/documents/no-such-doc", headers=owner)
    assert r.status_code == 404 and "no-such-doc" in r.json()["error"]["message"]
    r = service.client.post(
        "/api/documents", content=b"{not json", headers={**owner, "Content-Type": "application/json"}
    )
    assert r.status_code == 422 and "JSON" in r.json()["error"]["message"]


def test_rebuild_then_rollback(service: Service) -> None:
    owner = service.auth("owner")
    before = service.client.get("/api/kb/status", headers=owner).json()
    r = service.client.post("/api/kb/rebuild", headers=owner)
    assert r.status_code == 200, r.text
    after = service.client.get("/api/kb/status", headers=owner).json()
    assert after["version"] != before["version"] and after["documents"] == before["documents"]
    assert _search(service, "return window")
    r = service.client.post("/api/kb/rollback", headers=owner)
    assert r.status_code == 200 and r.json()["version"] == before["version"]
    assert _search(service, "return window")
