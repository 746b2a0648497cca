"""A small HTTP client of the running service, for CLI writes while the service owns the knowledge base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from serve.discovery import ServiceAddress, find_service
from specialist.errors import BackendUnavailable, SpecialistError


class ServiceError(SpecialistError):
    """The service answered with an error; the message is its own."""


class ServiceClient:
    """Calls the content-owner routes of a running service with its local key."""

    def __init__(self, address: ServiceAddress, *, timeout_s: float = 600.0) -> None:
        self.address = address
        self._http = httpx.Client(
            base_url=address.url, headers={"Authorization": f"Bearer {address.key}"}, timeout=timeout_s
        )

    @classmethod
    def running(cls, discovery_path: Path) -> ServiceClient | None:
        """A client of the service advertised at `discovery_path`, if one is running."""
        address = find_service(discovery_path)
        return cls(address) if address is not None else None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(
                f"the running service at {self.address.url} did not answer: {exc}"
            ) from exc
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            raise ServiceError(f"service error {response.status_code}: {message}")
        return response.json()

    def ingest_path(self, path: Path) -> dict[str, Any]:
        """Upload a file or every supported file of a folder."""
        path = Path(path)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        handles = [("files", (p.name, p.read_bytes())) for p in files]
        result: dict[str, Any] = self._call("POST", "/api/documents/upload", files=handles)
        return result

    def upsert_documents(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Create or replace JSON documents `{id, title, content, ...}`."""
        result: dict[str, Any] = self._call("POST", "/api/documents", json={"documents": records})
        return result

    def delete(self, doc_id: str) -> dict[str, Any]:
        """Delete a document."""
        result: dict[str, Any] = self._call("DELETE", f"/api/documents/{doc_id}")
        return result

    def rebuild(self) -> dict[str, Any]:
        """Full rebuild with an atomic switch."""
        result: dict[str, Any] = self._call("POST", "/api/kb/rebuild")
        return result

    def rollback(self) -> dict[str, Any]:
        """Back to the previous knowledge-base version."""
        result: dict[str, Any] = self._call("POST", "/api/kb/rollback")
        return result

    def status(self) -> dict[str, Any]:
        """Status with the last run's report."""
        result: dict[str, Any] = self._call("GET", "/api/kb/status")
        return result

    def search(self, query: str, *, k: int = 5) -> dict[str, Any]:
        """Passages for a query."""
        result: dict[str, Any] = self._call("GET", "/api/kb/search", params={"q": query, "k": k})
        return result

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
