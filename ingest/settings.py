"""Settings of the ingest room (composed into serve.settings.Settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class IngestSettings(BaseModel):
    """How documents are parsed and chunked."""

    chunk_tokens: int = Field(default=200, ge=32, le=256)
    chunk_overlap: int = Field(default=20, ge=0, le=128)
    max_document_bytes: int = Field(default=5_000_000, ge=1)
    watch_debounce_ms: int = Field(default=200, ge=0)
    # Document registry (id -> hash, version, chunk ids); default <retrieval.data_dir>/registry.sqlite.
    registry_path: Path | None = None
    embed_batch_size: int = Field(default=64, ge=1)
    # Optimise the index (build HNSW) after a run that wrote at least this many chunks.
    optimize_after_chunks: int = Field(default=2000, ge=1)
