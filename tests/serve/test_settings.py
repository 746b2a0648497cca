"""One typed settings tree, nested with __ under the SPECIALIST_ prefix."""

from __future__ import annotations

import pytest

from serve.settings import Settings


def test_nested_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECIALIST_RETRIEVAL__BACKEND", "server")
    monkeypatch.setenv("SPECIALIST_RETRIEVAL__QDRANT_URL", "http://127.0.0.1:6333")
    settings = Settings()
    assert settings.retrieval.backend == "server"
    assert settings.retrieval.qdrant_url == "http://127.0.0.1:6333"


def test_invalid_value_is_rejected() -> None:
    with pytest.raises(ValueError, match="backend"):
        Settings.model_validate({"retrieval": {"backend": "nosuch"}})
