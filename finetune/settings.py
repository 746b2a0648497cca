"""Settings of the finetune room (composed into serve.settings.Settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel


class FinetuneSettings(BaseModel):
    """Where training runs and the model registry live, and which base GGUF llama.cpp serves."""

    runs_dir: Path = Path("var/runs")
    registry_path: Path = Path("var/registry.json")
    # the shipped Q4_1 base converted once for llama.cpp (training keeps the original): F16 processes prompts
    # ~1.7x faster on CPU and agrees with transformers more often; "source" serves the Q4_1 as shipped
    base_gguf_type: Literal["f16", "q8_0", "f32", "source"] = "f16"
