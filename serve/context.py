"""Building settings for CLI commands and the service (the composition root's entry)."""

from __future__ import annotations

from serve.settings import Settings


def load_settings() -> Settings:
    """Read settings from the environment (SPECIALIST_*) and .env."""
    return Settings()
