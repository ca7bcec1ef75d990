"""intake settings (prefix ``INTAKE_``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.netpolicy import LOOPBACK, Network, includes_loopback, parse_networks, split_networks
from shared.settings import ServiceSettings
from shared.topics import EVENTS_RECEIVED, NOTIFIER, replay_topic


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    port: int = 8000
    workers: int = Field(default=1, ge=1, description="Server processes; above 1, /metrics adds them all up.")
    topic: str = EVENTS_RECEIVED
    redelivery_topic: str = Field(
        default=replay_topic(NOTIFIER),
        description="Where POST /v1/events/{id}/redeliver writes the result to send again: the notifier's replay "
        "topic.",
    )
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
    max_subscriptions_per_tenant: int = Field(
        default=50, ge=1, description="Webhook subscriptions one tenant may hold (409 above)."
    )
    webhook_allow_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Networks a subscription URL may reach although not public, comma-separated or a JSON list; "
        "the notifier needs the same in NOTIFIER_ALLOW_NETWORKS. Empty in development means loopback (as make up "
        "gives the notifier); loopback is refused in production.",
    )

    def webhook_networks(self) -> list[Network]:
        """The non-public networks a subscription may name: the setting, else loopback in development."""
        if not self.webhook_allow_networks and self.pipeline.env == "development":
            return list(LOOPBACK)
        return parse_networks(self.webhook_allow_networks)

    @field_validator("webhook_allow_networks", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_networks(value)

    @model_validator(mode="after")
    def _networks(self) -> IntakeSettings:
        networks = parse_networks(self.webhook_allow_networks)  # raises on a malformed entry
        if self.pipeline.env == "production" and includes_loopback(networks):
            raise ValueError("INTAKE_WEBHOOK_ALLOW_NETWORKS may include loopback only in development")
        return self
