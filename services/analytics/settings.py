"""analytics settings: prefix ``ANALYTICS_``, nested with ``__`` (``ANALYTICS_RUNTIME__COMMIT_INTERVAL_MS``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.runtime.settings import RuntimeSettings
from shared.settings import ConsumerServiceSettings
from shared.topics import EVENT_PARTITIONS, EVENTS_INFERRED, NOTIFICATIONS_DELIVERED


# faust runs the consumer here, so of the ``runtime`` block only ``commit_interval_ms`` applies.
class AnalyticsSettings(ConsumerServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ANALYTICS_", extra="ignore", env_nested_delimiter="__")
    service: ClassVar[str] = "analytics"

    port: int = 9106
    name: str = Field(
        default="analytics",
        description="faust app id: the consumer group, and the prefix of its changelog and repartition topics.",
    )
    inferred_topic: str = EVENTS_INFERRED
    delivered_topic: str = NOTIFICATIONS_DELIVERED
    partitions: int = Field(
        default=EVENT_PARTITIONS,
        description="faust topic_partitions: the inputs', the repartition topic's and the tables' partition count.",
    )
    fallback_model: str = Field(
        default="keywords", description="The model name of inference's fallback: its results count as fallbacks."
    )
    join_ttl_s: float = Field(
        default=30 * 3600,
        gt=0,
        description="How long (stream time) an event waits for its result or first delivery to count it "
        "auto-resolved: longer than the notifier's retry schedule (about 28 h).",
    )
    session_timeout_s: float = Field(
        default=10.0, description="A worker that dies (kill -9) loses its partitions after this, not faust's 60 s."
    )
    stream_buffer_maxsize: int = Field(default=4096, description="faust's per-partition buffer before it pauses.")
    store_backoff_initial_s: float = Field(default=0.5, gt=0, description="First wait while Redis is down.")
    store_backoff_max_s: float = Field(default=10.0, gt=0, description="Longest wait between Redis tries.")
    # At-least-once (faust): a record processed again after a crash is recognised by its offset and adds nothing.
    # Each commit first waits for the producer (table writes, snapshots): once a second, not faust's 2.8 s, bounds
    # what a crash makes it read again.
    runtime: RuntimeSettings = Field(
        default_factory=lambda: RuntimeSettings(exactly_once=False, commit_interval_ms=1000)
    )
