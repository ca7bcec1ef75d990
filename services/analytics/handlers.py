"""analytics' handlers: each result or receipt decoded and applied to the first stage's table, its partials sent
on as snapshots; each snapshot merged into the second stage's window and the window's figures served."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol, TypeVar

import redis
from prometheus_client import Counter, Histogram

from services.analytics.domain import (
    RECEIPT_STATUSES,
    Snapshot,
    Stage,
    Step,
    epoch_ms,
    expired_keys,
    merge,
    total,
)
from services.analytics.settings import AnalyticsSettings
from shared.analytics import CategoryFigures, DeliveryFigures
from shared.codec import EventCodec
from shared.errors import DependencyUnavailable, DeserializationError
from shared.events import AvroRecord, EventInferred, NotificationDelivered
from shared.logging import payload_hash

log = logging.getLogger(__name__)
T = TypeVar("T")

EVENTS = Counter("analytics_events_total", "Results counted, by tenant and category", ["tenant", "category"])
NEEDS_REVIEW = Counter(
    "analytics_needs_review_total", "Results that needed review (escalations)", ["tenant", "category"]
)
CONFIDENCE = Histogram(
    "analytics_confidence",
    "Category confidence of the results, by tenant and category (drift)",
    ["tenant", "category"],
    buckets=[round(0.1 * n, 1) for n in range(1, 11)],
)
FALLBACK = Counter("analytics_fallback_total", "Results answered by the fallback model", ["tenant", "category"])
CACHE_HITS = Counter("analytics_cache_hits_total", "Results answered from inference's cache", ["tenant", "category"])
AUTO_RESOLVED = Counter(
    "analytics_auto_resolved_total",
    "Events answered with no review and delivered (counted once, at the record that completed them)",
    ["tenant", "category"],
)
DELIVERIES = Counter("analytics_deliveries_total", "Webhook receipts by status", ["tenant", "status"])
DELIVERY_LATENCY = Histogram(
    "analytics_delivery_latency_seconds",
    "Latency of delivered webhooks, by tenant",
    ["tenant"],
    buckets=[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
)
UNDECODABLE = Counter("analytics_undecodable_total", "Records skipped because they did not decode", ["topic"])
LATE = Counter("analytics_late_records_total", "Records older than their windows' horizon, counted nowhere", ["topic"])
DEPENDENCY_WAITS = Counter(
    "analytics_dependency_waits_total", "Backoff waits for an unavailable dependency", ["dependency"]
)

# Sends one snapshot to the second stage.
SendSnapshot = Callable[[Snapshot], Awaitable[None]]
# How often (stream time) a partition's expired keys are swept from the first stage's table.
SWEEP_EVERY_MS = 10 * 60 * 1000


class Patience:
    """Runs work that needs a dependency; while the dependency is out, waits with backoff and tries again (the
    records wait with it: nothing is skipped for an outage)."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.waiting_on: str | None = None

    async def run(self, dependency: str, work: Callable[[], Awaitable[T]], is_outage: Callable[[Exception], bool]) -> T:
        delay = self.initial_s
        while True:
            try:
                result = await work()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self.waiting_on = f"{dependency}: {exc}"[:300]
                DEPENDENCY_WAITS.labels(dependency).inc()
                log.warning("dependency unavailable; waiting", extra={"dependency": dependency, "delay_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_s)
            else:
                self.waiting_on = None
                return result


class Results:
    """The first stage: results and receipts into the partition's join entries and partials, snapshots out."""

    def __init__(
        self,
        settings: AnalyticsSettings,
        codec: EventCodec,
        state: MutableMapping[str, Any],
        send: SendSnapshot,
        patience: Patience,
        epoch: Callable[[], int] = lambda: 0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.stage = Stage(settings.fallback_model)
        self.types: dict[str, type[AvroRecord]] = {
            settings.inferred_topic: EventInferred,
            settings.delivered_topic: NotificationDelivered,
        }
        self.codec = codec
        self.state = state
        self.send = send
        self.patience = patience
        self.epoch = epoch
        self.clock = clock
        self.join_ttl_s = settings.join_ttl_s
        # Per input partition: the generation of its snapshots (the time this process took it on, in the group's
        # current epoch: a later owner's snapshots win), the epoch it was taken in, the last sequence number, its
        # stream time and its last sweep.
        self.generations: dict[int, int] = {}
        self.epochs: dict[int, int] = {}
        self.sequences: dict[int, int] = {}
        self.stream_ms: dict[int, int] = {}
        self.swept_ms: dict[int, int] = {}

    async def decode(self, topic: str, value: bytes | None, partition: int, offset: int) -> AvroRecord | None:
        """The record's event, or None when it does not decode (logged with a hash of its bytes, counted)."""
        serde = self.codec.serde
        event_type = self.types[topic]

        def work() -> AvroRecord:
            return self.codec.decode_value(topic, value, partition, offset, event_type)

        async def attempt() -> AvroRecord:
            # The registry client blocks (and retries) on the network: such a decode runs in a thread.
            return await asyncio.to_thread(work) if serde.needs_registry(topic, value) else work()

        try:
            return await self.patience.run("registry", attempt, lambda e: isinstance(e, DependencyUnavailable))
        except DeserializationError as exc:
            UNDECODABLE.labels(topic).inc()
            log.warning(
                "record does not decode; skipped",
                extra={
                    "position": f"{topic}[{partition}]@{offset}",
                    "error": str(exc)[:300],
                    "value": payload_hash(value),
                },
            )
            return None

    async def on_record(self, topic: str, partition: int, offset: int, value: bytes | None) -> Step | None:
        event = await self.decode(topic, value, partition, offset)
        if event is None:
            return None
        now_ms = self.stream_ms.get(partition, 0)
        if isinstance(event, EventInferred):
            step = self.stage.on_result(self.state, partition, offset, event, now_ms)
            moment = epoch_ms(event.inferred_at)
        else:
            assert isinstance(event, NotificationDelivered)
            step = self.stage.on_receipt(self.state, partition, offset, event, now_ms)
            moment = epoch_ms(event.delivered_at)
        # One table, one changelog partition per input partition: a crash keeps a prefix of its writes across
        # records, so a record processed again finds what it did before (domain.py).
        for key, entry in step.writes:
            self.state[key] = entry
        self._observe(topic, event, step)
        await self._send(partition, step)
        self._advance(partition, moment)
        return step

    def _observe(self, topic: str, event: AvroRecord, step: Step) -> None:
        # Only a record this table had not seen: one processed again after a crash was counted before.
        if step.late:
            LATE.labels(topic).inc()
        if not step.fresh:
            return
        if isinstance(event, EventInferred):
            labels = (event.tenant, event.category.label)
            EVENTS.labels(*labels).inc()
            CONFIDENCE.labels(*labels).observe(event.category.confidence)
            if event.needs_review:
                NEEDS_REVIEW.labels(*labels).inc()
            if event.model.name == self.stage.fallback_model:
                FALLBACK.labels(*labels).inc()
            if event.cached:
                CACHE_HITS.labels(*labels).inc()
        elif isinstance(event, NotificationDelivered) and event.status in RECEIPT_STATUSES:
            DELIVERIES.labels(event.tenant, event.status).inc()
            if event.status == "delivered":
                DELIVERY_LATENCY.labels(event.tenant).observe(event.latency_ms / 1000)
        if step.resolved is not None:
            AUTO_RESOLVED.labels(getattr(event, "tenant", ""), step.resolved).inc()

    async def _send(self, partition: int, step: Step) -> None:
        epoch = self.epoch()
        if self.epochs.get(partition) != epoch:
            # After a rebalance the partition may have had another owner meanwhile: start a generation after its.
            self.epochs[partition] = epoch
            self.generations[partition] = max(self.clock(), self.generations.get(partition, 0) + 1)
            self.sequences[partition] = 0
        for snapshot in step.snapshots:
            self.sequences[partition] += 1
            snapshot.generation = self.generations[partition]
            snapshot.sequence = self.sequences[partition]
            await self.send(snapshot)

    def _advance(self, partition: int, moment_ms: int) -> None:
        now = max(self.stream_ms.get(partition, 0), moment_ms)
        self.stream_ms[partition] = now
        last = self.swept_ms.setdefault(partition, now)
        if now - last >= SWEEP_EVERY_MS:
            self.swept_ms[partition] = now
            for key in expired_keys(list(self.state.items()), partition, now, self.join_ttl_s):
                del self.state[key]


class WindowTable(Protocol):
    """One window length's table of the second stage: a key's value in the window starting at ``start``."""

    def get(self, key: str, start: int) -> dict[str, Any]: ...

    def put(self, key: str, start: int, value: dict[str, Any]) -> None: ...


class ServingStore(Protocol):
    async def write(self, snapshot: Snapshot, figures: CategoryFigures | DeliveryFigures) -> None: ...


class Figures:
    """The second stage: each snapshot merged into its window, and the window's figures written to the store."""

    def __init__(self, tables: dict[str, WindowTable], store: ServingStore, patience: Patience) -> None:
        self.tables = tables
        self.store = store
        self.patience = patience

    async def on_snapshot(self, value: bytes | None) -> CategoryFigures | DeliveryFigures | None:
        try:
            snapshot = Snapshot.model_validate_json(value or b"")
        except ValueError as exc:
            UNDECODABLE.labels("snapshots").inc()
            log.warning("snapshot does not decode; skipped", extra={"error": str(exc)[:300]})
            return None
        table = self.tables.get(snapshot.window)
        if table is None:
            return None
        merged = merge(table.get(snapshot.key, snapshot.start), snapshot)
        table.put(snapshot.key, snapshot.start, merged)
        figures = total(snapshot.kind, merged)
        # Written every time, a repeat too: the table may hold what a crash kept from reaching the store.
        await self.patience.run("redis", lambda: self.store.write(snapshot, figures), _redis_outage)
        return figures


def _redis_outage(exc: Exception) -> bool:
    return isinstance(exc, redis.RedisError | OSError)
