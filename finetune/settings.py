"""Settings of the finetune room (composed into serve.settings.Settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel


class FinetuneSettings(BaseModel):
    """Where training runs and the model registry live."""

    runs_dir: Path = Path("var/runs")
    registry_path: Path = Path("var/registry.json")
