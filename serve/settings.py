"""The one typed settings tree: SPECIALIST_ prefix, nested with __ (SPECIALIST_RETRIEVAL__BACKEND=server)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.settings import AgentSettings, ModelSettings
from finetune.settings import FinetuneSettings
from ingest.settings import IngestSettings
from retrieval.settings import RetrievalSettings


class ServeSettings(BaseModel):
    """The HTTP service."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    state_path: Path = Path("var/service.sqlite")
    token_secret: str | None = None
    max_body_bytes: int = Field(default=10_000_000, ge=1)
    rate_limit_per_minute: int = Field(default=600, ge=1)
    rate_limit_burst: int = Field(default=60, ge=1)
    retry_after_s: int = Field(default=5, ge=1)
    turn_workers: int = Field(default=64, ge=1)
    log_json: bool = True
    log_level: str = "INFO"
    # Where the running service leaves its address and a local write key, so CLI writes go through it.
    discovery_path: Path = Path("var/service.json")
    demo_customer_id: str | None = None


class Settings(BaseSettings):
    """Everything configurable, one tree."""

    model_config = SettingsConfigDict(
        env_prefix="SPECIALIST_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    retrieval: RetrievalSettings = RetrievalSettings()
    ingest: IngestSettings = IngestSettings()
    model: ModelSettings = ModelSettings()
    agent: AgentSettings = AgentSettings()
    finetune: FinetuneSettings = FinetuneSettings()
    serve: ServeSettings = ServeSettings()
