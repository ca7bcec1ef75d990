"""enrichment settings: prefix ``ENRICHMENT_``, nested with ``__`` (``ENRICHMENT_RUNTIME__COMMIT_INTERVAL_MS``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ConsumerServiceSettings
from shared.topics import CUSTOMERS_PROFILE, EVENT_PARTITIONS, EVENTS_ENRICHED, EVENTS_RECEIVED


# faust runs the consumer here, so of the ``runtime`` block only ``commit_interval_ms``, ``retry_delays_ms``,
# ``stacktrace_max_bytes`` and ``max_deferral_ms`` apply.
class EnrichmentSettings(ConsumerServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ENRICHMENT_", extra="ignore", env_nested_delimiter="__")
    service: ClassVar[str] = "enrichment"

    port: int = 9102
    name: str = Field(
        default="enrichment",
        description="faust app id: the consumer group, the changelog prefix and the retry/dlq/replay topic prefix.",
    )
    input_topic: str = EVENTS_RECEIVED
    output_topic: str = EVENTS_ENRICHED
    profiles_topic: str = CUSTOMERS_PROFILE
    partitions: int = Field(default=EVENT_PARTITIONS, description="faust topic_partitions: its Tables co-partition.")
    exactly_once: bool = Field(
        default=False,
        description="faust's exactly_once. Off: against Kafka 4.1 a read_committed reader still saw event ids twice, "
        "with different counts, after a kill -9; at-least-once with output idempotent by event id instead.",
    )
    max_text_chars: int = Field(default=4000, ge=16, description="Texts are cut to this after redaction.")
    outage_backoff_initial_s: float = Field(default=0.5, gt=0, description="First wait while a dependency is down.")
    outage_backoff_max_s: float = Field(default=10.0, gt=0, description="Longest wait between dependency tries.")
    session_timeout_s: float = Field(
        default=10.0, description="A worker that dies (kill -9) loses its partitions after this, not faust's 60 s."
    )
    stream_buffer_maxsize: int = Field(default=4096, description="faust's per-partition buffer before it pauses.")
