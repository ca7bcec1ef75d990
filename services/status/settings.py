"""status settings: prefix ``STATUS_``, nested blocks with ``__`` (``STATUS_RUNTIME__MAX_BATCH_SIZE``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.runtime.settings import RuntimeSettings
from shared.settings import ConsumerServiceSettings
from shared.status import STAGE_OF_SERVICE, Stage
from shared.topics import EVENTS_ENRICHED, EVENTS_INFERRED, EVENTS_RECEIVED, NOTIFICATIONS_DELIVERED


class StatusSettings(ConsumerServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STATUS_", extra="ignore")
    service: ClassVar[str] = "status"

    port: int = 9105
    name: str = Field(default="status", description="Consumer group, and the prefix of its own retry/DLQ topics.")
    received_topic: str = EVENTS_RECEIVED
    enriched_topic: str = EVENTS_ENRICHED
    inferred_topic: str = EVENTS_INFERRED
    delivered_topic: str = NOTIFICATIONS_DELIVERED
    stages: dict[str, Stage] = Field(
        default_factory=lambda: dict(STAGE_OF_SERVICE),
        description="Each watched service and the stage it produces; its retry topics and DLQ are read.",
    )
    ttl_s: int = Field(default=7 * 24 * 3600, description="How long a status record is kept.")
    # Status writes are idempotent, so at-least-once is enough; they go to Redis, not Kafka.
    runtime: RuntimeSettings = Field(default_factory=lambda: RuntimeSettings(exactly_once=False, max_wait_ms=20))
