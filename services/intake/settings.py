"""intake settings (prefix ``INTAKE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings
from shared.topics import EVENTS_RECEIVED


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    port: int = 8000
    workers: int = Field(default=1, ge=1, description="Server processes; above 1, /metrics adds them all up.")
    topic: str = EVENTS_RECEIVED
    max_body_bytes: int = Field(default=1 << 20, description="Largest body of POST /v1/events (413 above).")
    max_batch_body_bytes: int = Field(default=16 << 20, description="Largest body of POST /v1/events:batch.")
    dedup_window_s: int = Field(default=24 * 3600, description="An event id accepted within this is a duplicate.")
    inflight_ttl_s: int = Field(default=30, description="How long a claim on an event id lasts while it is written.")
    status_ttl_s: int = Field(default=7 * 24 * 3600, description="How long an event's status record is kept.")
    delivery_timeout_ms: int = Field(default=10_000, description="Kafka must acknowledge within this, or 503.")
    queue_max_messages: int = Field(default=100_000, description="The producer's local queue bound (503 above).")
    retry_after_s: int = Field(default=1, description="Retry-After on 409 and 503.")
    key_cache_s: float = Field(
        default=5.0, ge=0, description="A found API key is remembered this long; a revocation takes up to this."
    )
    redis_max_connections: int = Field(default=64, description="Redis pool size; requests wait for a connection.")
