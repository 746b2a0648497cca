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
    # an adapter is folded into that base once and served as one GGUF of this type: decoding skips the
    # LoRA's extra graph nodes (2.2x faster end to end with Q8_0 here); "off" applies the LoRA at run time
    merged_gguf_type: Literal["q8_0", "f16", "f32", "off"] = "q8_0"
