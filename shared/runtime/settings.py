"""Runtime settings; each consuming service nests them in its own settings (e.g. ``INFERENCE_RUNTIME__...``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from shared.runtime.state.stores import StateSettings


class RuntimeSettings(BaseModel):
    """Batching, commit, retry and membership knobs of one consumer process."""

    exactly_once: bool = True
    instance: int = Field(default=0, description="Ordinal of this process; transactional.id is <service>-<instance>.")
    max_batch_size: int = 64
    max_wait_ms: int = 50
    commit_interval_ms: int = Field(default=200, description="How often the transaction (or offsets) commits.")
    retry_delays_ms: list[int] = Field(default_factory=lambda: [1_000, 10_000, 60_000])
    max_buffered_records: int = Field(
        default=20_000,
        description="Buffered plus in-flight records above which partitions pause (backpressure). A pause drops "
        "librdkafka's prefetched records for the partition and costs a refetch, so keep it well above one fetch.",
    )
    max_inflight_outputs: int = Field(default=50_000, description="Above this many unacknowledged outputs, pause.")
    max_prefetch_kbytes: int = Field(default=16_384, description="librdkafka's per-consumer prefetch bound.")
    poll_timeout_ms: int = 50
    session_timeout_ms: int = 10_000
    static_membership: bool = True
    transaction_timeout_ms: int = Field(
        default=120_000, description="Above the worst handler time plus a commit interval (a validator checks it)."
    )
    dependency_backoff_ms: int = 500
    dependency_backoff_max_ms: int = 30_000
    stacktrace_max_bytes: int = 4096
    extra_consumer_config: dict[str, str] = Field(default_factory=dict)
    extra_producer_config: dict[str, str] = Field(default_factory=dict)
    max_inflight_batches: int = Field(
        default=1, ge=1, description="Batches handed to an async or Future-returning handler before the first is done."
    )
    handler_timeout_s: float = Field(default=60.0, description="An in-flight handler call older than this fails.")
    bisect_max_calls: int = Field(default=64, ge=2, description="Handler calls one failing batch may cost to bisect.")
    bisect_max_seconds: float = Field(default=20.0, description="Time one failing batch may spend in bisection.")
    max_poll_interval_ms: int = Field(
        default=300_000, description="librdkafka's max.poll.interval.ms; above the worst handler time."
    )
    max_deferral_ms: int = Field(
        default=3_600_000, description="How long a record may be deferred without attempts before the DLQ."
    )
    dependency_strikes: int = Field(
        default=5, ge=1, description="Times one head record may fail alone on a dependency before it is routed."
    )
    missing_topic_backoff_ms: int = Field(default=5_000, description="Pause when an output topic does not exist.")
    revoke_wait_ms: int = Field(default=5_000, description="How long a revoke waits for in-flight batches.")
    state: StateSettings = Field(
        default_factory=StateSettings, description="Where a service's tables keep their state (memory or disk)."
    )
    gc_gen0_threshold: int = Field(
        default=50_000,
        ge=0,
        description="Python's generation-0 collection threshold for the consuming process (the default 700 runs a "
        "collection every few records of a busy loop, ~20% of enrichment's time); 0 leaves Python's settings. What "
        "exists when the loop starts is frozen out of collections.",
    )
    restore_timeout_s: float = Field(
        default=60.0, description="A table restore with no progress for this long starts the partition again."
    )

    @model_validator(mode="after")
    def _poll_interval_above_handler_time(self) -> RuntimeSettings:
        worst_ms = (self.handler_timeout_s + self.bisect_max_seconds) * 1000
        if self.max_poll_interval_ms <= worst_ms:
            raise ValueError(
                f"max_poll_interval_ms ({self.max_poll_interval_ms}) must exceed the worst handler time "
                f"(handler_timeout_s + bisect_max_seconds = {worst_ms:.0f} ms), or the group evicts a busy member"
            )
        # A transaction opened by one batch may stay open across the next (plain) handler call.
        if self.exactly_once and self.transaction_timeout_ms <= worst_ms + self.commit_interval_ms:
            raise ValueError(
                f"transaction_timeout_ms ({self.transaction_timeout_ms}) must exceed the worst handler time plus "
                f"one commit interval ({worst_ms + self.commit_interval_ms:.0f} ms), or the broker aborts it"
            )
        return self

    @property
    def max_retry_delay_ms(self) -> int:
        return max(self.retry_delays_ms, default=0)
