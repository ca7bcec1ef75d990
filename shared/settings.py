"""Settings shared by every service (prefix ``PIPELINE_``) and the base for per-service settings."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import urlparse

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.kafka.connection import KafkaConnection
from shared.runtime.settings import RuntimeSettings

REPO_ROOT = Path(__file__).resolve().parent.parent

# The documented local default. Anything else is required in production.
DEFAULT_DEV_API_KEY = "dev-key-change-me"


class PipelineSettings(BaseSettings):
    """What every process of the pipeline needs to find the others."""

    model_config = SettingsConfigDict(env_prefix="PIPELINE_", extra="ignore")

    env: Literal["development", "production"] = "development"
    # PIPELINE_KAFKA_BOOTSTRAP_SERVERS, _SECURITY_PROTOCOL, _SASL_*, _SSL_*: see KafkaConnection.
    kafka: KafkaConnection = Field(default_factory=KafkaConnection)
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
        return self.kafka.first_port

    @property
    def redis_port(self) -> int:
        return urlparse(self.redis_url).port or 6379

    @property
    def registry_port(self) -> int:
        return urlparse(self.schema_registry_url).port or 80

    def state_path(self) -> Path:
        return self.state_dir.resolve()


class ServiceSettings(BaseSettings):
    """Base for one service's settings: its own prefix, plus the shared ``pipeline`` block.

    Nested blocks take ``__``: ``INFERENCE_RUNTIME__MAX_BATCH_SIZE=512``.
    """

    model_config = SettingsConfigDict(extra="ignore", env_nested_delimiter="__")

    host: str = "127.0.0.1"
    port: int = 0
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)


def instance_from_hostname(hostname: str, service: str) -> int | None:
    """A StatefulSet-style ordinal: ``inference-3`` or ``pipeline-inference-3`` -> 3.

    Only a name that ends in ``<service>-<n>`` counts: ``ip-10-0-1-17`` must not make two hosts instance 17.
    """
    match = re.search(rf"(?:^|-){re.escape(service)}-(\d+)$", hostname)
    return int(match.group(1)) if match else None


class ConsumerServiceSettings(ServiceSettings):
    """A service that consumes with the runtime: its instance, runtime knobs and shutdown deadline.

    The instance names ``client.id``, ``transactional.id`` and ``group.instance.id`` (``<service>-<n>``), so
    two replicas must never share one: it comes from ``<SERVICE>_INSTANCE``, else from a ``name-N`` hostname,
    else it is 0 in development and a refusal to start in production.
    """

    service: ClassVar[str] = ""

    instance: int | None = None
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    shutdown_timeout_s: float = Field(
        default=30.0, description="On SIGTERM: how long the loop may take to finish its batch and commit."
    )

    def stack_environment(self) -> dict[str, str]:
        """Extra environment ``make up`` gives this service's processes (none by default)."""
        return {}

    @model_validator(mode="after")
    def _resolve_instance(self) -> ConsumerServiceSettings:
        instance = self.instance
        if instance is None and "instance" in self.runtime.model_fields_set:
            instance = self.runtime.instance  # <SERVICE>_RUNTIME__INSTANCE, said explicitly
        if instance is None and self.service:
            instance = instance_from_hostname(socket.gethostname(), self.service)
        if instance is None:
            if self.pipeline.env == "production":
                prefix = str(self.model_config.get("env_prefix", "")).upper()
                raise ValueError(
                    f"{prefix}INSTANCE is not set and the hostname {socket.gethostname()!r} has no -N ordinal; "
                    "two replicas would share one transactional.id. Set it when PIPELINE_ENV=production"
                )
            instance = 0
        self.instance = instance
        update: dict[str, object] = {"instance": instance}
        if "dir" not in self.runtime.state.model_fields_set:
            # Tables' disk stores live under the stack's state directory unless <SERVICE>_RUNTIME__STATE__DIR says.
            update["state"] = self.runtime.state.model_copy(update={"dir": self.pipeline.state_dir / "tables"})
        self.runtime = self.runtime.model_copy(update=update)
        return self
