"""Settings of the RAG core, read from the environment (no prefix; docs/architecture.md, "Settings")."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("~/.cache/ragload")


class RagSettings(BaseSettings):
    """Where the LLM and the vector index are, and how long to wait for them.

    Frozen, so that one settings value can key the per-process pipeline cache.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    openai_base_url: str = "http://127.0.0.1:8100/v1"
    openai_api_key: str = "mock-key"
    chat_model: str = "mock-chat"
    embed_model: str = "mock-embed"
    embed_dim: int = Field(default=256, ge=1)
    llm_timeout_s: float = Field(default=30.0, gt=0)
    # The SDK's own default; it backs off and honours Retry-After. 0 shows every upstream error as it is.
    llm_max_retries: int = Field(default=2, ge=0)
    max_answer_tokens: int = Field(default=256, ge=1)
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    qdrant_collection: str = Field(default="ragload", pattern=r"^[A-Za-z0-9_.-]+$")
    ragload_data_dir: Path = DEFAULT_DATA_DIR

    @field_validator("qdrant_url", "qdrant_api_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("ragload_data_dir", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def edge_shard_path(self) -> Path:
        """The edge shard's stable path (a symlink to the current build, swapped atomically by ingest)."""
        return self.ragload_data_dir / "index" / self.qdrant_collection
