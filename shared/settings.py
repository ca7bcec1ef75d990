"""Settings shared by every service (prefix ``PIPELINE_``) and the base for per-service settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

# The documented local default. Anything else is required in production.
DEFAULT_DEV_API_KEY = "dev-key-change-me"


class PipelineSettings(BaseSettings):
    """What every process of the pipeline needs to find the others."""

    model_config = SettingsConfigDict(env_prefix="PIPELINE_", extra="ignore")

    env: Literal["development", "production"] = "development"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_controller_port: int = 9093
    redis_url: str = "redis://127.0.0.1:6379/0"
    schema_registry_url: str = "http://127.0.0.1:8081"
    dev_api_key: str = DEFAULT_DEV_API_KEY
    state_dir: Path = Path(".pipeline")
    kafka_cache_dir: Path = Path.home() / ".cache" / "pipeline" / "kafka"
    schemas_dir: Path = REPO_ROOT / "schemas"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> PipelineSettings:
        if self.env == "production" and self.dev_api_key == DEFAULT_DEV_API_KEY:
            raise ValueError(
                "PIPELINE_DEV_API_KEY still has the placeholder development value; "
                "set a real key (or an empty one) when PIPELINE_ENV=production"
            )
        return self

    @property
    def kafka_port(self) -> int:
        first = self.kafka_bootstrap_servers.split(",")[0]
        return int(first.rsplit(":", 1)[1])

    @property
    def redis_port(self) -> int:
        return urlparse(self.redis_url).port or 6379

    @property
    def registry_port(self) -> int:
        return urlparse(self.schema_registry_url).port or 80

    def state_path(self) -> Path:
        return self.state_dir.resolve()


class ServiceSettings(BaseSettings):
    """Base for one service's settings: its own prefix, plus the shared ``pipeline`` block."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = "127.0.0.1"
    port: int = 0
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
