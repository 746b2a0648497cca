"""Content owners' side: parse, chunk, embed and incrementally index policy documents."""

from __future__ import annotations

from pathlib import Path

from ingest.pipeline import Failure, Ingestor, RunReport
from ingest.settings import IngestSettings


def demo_policy_dir() -> Path:
    """The demo store's policy documents shipped with the package."""
    return Path(__file__).resolve().parent / "demo_policies"


__all__ = ["Failure", "IngestSettings", "Ingestor", "RunReport", "demo_policy_dir"]
