"""Runtime settings; each consuming service nests them in its own settings (e.g. ``INFERENCE_RUNTIME__...``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RuntimeSettings(BaseModel):
    """Batching, commit, retry and membership knobs of one consumer process."""

    exactly_once: bool = True
    instance: int = Field(default=0, description="Ordinal of this process; transactional.id is <service>-<instance>.")
    max_batch_size: int = 64
    max_wait_ms: int = 50
    commit_interval_ms: int = Field(default=200, description="How often the transaction (or offsets) commits.")
    retry_delays_ms: list[int] = Field(default_factory=lambda: [1_000, 10_000, 60_000])
    max_buffered_records: int = Field(default=5_000, description="Above this, partitions are paused (backpressure).")
    max_inflight_outputs: int = Field(default=50_000, description="Above this many unacknowledged outputs, pause.")
    max_prefetch_kbytes: int = Field(default=16_384, description="librdkafka's per-consumer prefetch bound.")
    poll_timeout_ms: int = 50
    session_timeout_ms: int = 10_000
    static_membership: bool = True
    transaction_timeout_ms: int = 60_000
    dependency_backoff_ms: int = 500
    dependency_backoff_max_ms: int = 30_000
    stacktrace_max_bytes: int = 4096
    extra_consumer_config: dict[str, str] = Field(default_factory=dict)
    extra_producer_config: dict[str, str] = Field(default_factory=dict)
