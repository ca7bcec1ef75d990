"""enrichment's handler: each record decoded, enriched and sent on, or routed to its retry level or the DLQ."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, TypeVar

from prometheus_client import Counter

from services.enrichment.domain import enrich, profile_entry, record_activity
from services.enrichment.settings import EnrichmentSettings
from shared.codec import DecodedEvent, EventCodec
from shared.errors import DependencyUnavailable
from shared.events import AvroRecord, CustomerProfile, EventReceived
from shared.logging import payload_hash
from shared.runtime import InputRecord
from shared.runtime.routing import Failure, FailureRouter, due_at
from shared.topics import RETRY_LEVELS

log = logging.getLogger(__name__)
T = TypeVar("T")

ENRICHED = Counter("enrichment_events_total", "Events by outcome: enriched, duplicate, retried, dead", ["outcome"])
PII = Counter("enrichment_pii_redactions_total", "PII placeholders written, by kind", ["kind"])
OUTAGE_WAITS = Counter("enrichment_dependency_waits_total", "Backoff waits for an unavailable dependency")

# Sends one record: topic, key, value, headers.
Send = Callable[[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]]], Awaitable[None]]


class Enricher:
    """The per-record work of the agents, over the profiles and activity tables and a way to send records."""

    def __init__(
        self,
        settings: EnrichmentSettings,
        codec: EventCodec,
        profiles: MutableMapping[str, Any],
        activity: MutableMapping[str, Any],
        send: Send,
    ) -> None:
        runtime = settings.runtime
        self.settings = settings
        self.codec = codec
        self.router = FailureRouter(
            settings.name, runtime.retry_delays_ms, RETRY_LEVELS, runtime.stacktrace_max_bytes, runtime.max_deferral_ms
        )
        # Keys are the record keys as text (``tenant:subject``); values JSON (faust's default for tables).
        self.profiles = profiles
        self.activity = activity
        self.send = send
        self.waiting_on: str | None = None

    async def patiently(self, record: InputRecord, work: Callable[[], T], network: bool) -> T:
        """Run ``work``; while a dependency (the registry) is unavailable, wait with backoff and try again,
        routing nothing. Work that may go to the network runs in a thread: the registry client blocks."""
        delay = self.settings.outage_backoff_initial_s
        while True:
            try:
                result = await asyncio.to_thread(work) if network or self.waiting_on else work()
            except DependencyUnavailable as exc:
                self.waiting_on = str(exc)
                OUTAGE_WAITS.inc()
                log.warning(
                    "dependency unavailable; waiting",
                    extra={"position": record.position, "error": str(exc), "delay_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.outage_backoff_max_s)
            else:
                self.waiting_on = None
                return result

    async def decode(self, record: InputRecord, event_type: type[AvroRecord]) -> DecodedEvent:
        """Decode with the shared serde (a bad value raises, to be routed; an outage waits)."""
        return await self.patiently(
            record,
            lambda: self.codec.decode(
                record.topic, record.value, record.headers, record.partition, record.offset, event_type
            ),
            self.codec.serde.needs_registry(record.topic, record.value),
        )

    async def on_profile(self, record: InputRecord) -> None:
        key = (record.key or b"").decode(errors="replace")
        if record.value is None:
            self.profiles.pop(key, None)  # a tombstone deletes the profile
            return
        try:
            decoded = await self.decode(record, CustomerProfile)
        except Exception as exc:
            await self.fail(record, exc)
            return
        self.profiles[key] = profile_entry(decoded.event.model_dump())

    async def on_event(self, record: InputRecord) -> None:
        try:
            decoded = await self.decode(record, EventReceived)
            received = decoded.event
            assert isinstance(received, EventReceived)
            key = f"{received.tenant}:{received.subject}"
            state, activity = record_activity(self.activity.get(key), received.event_id, received.received_at)
            if not activity.duplicate:
                # Stored at once: ``record_activity`` updated the entry in place, so what the table holds in
                # memory and what its changelog says stay the same even if this record fails below.
                self.activity[key] = state
            enriched = enrich(received, self.profiles.get(key), activity, self.settings.max_text_chars)
            topic = self.settings.output_topic
            output = await self.patiently(
                record,
                lambda: self.codec.encode(enriched, topic=topic, trace=decoded.context.trace),
                self.codec.serde.needs_registry(topic),
            )
        except Exception as exc:
            await self.fail(record, exc)
            return
        await self.send(topic, output.key, output.value, output.headers)
        ENRICHED.labels("duplicate" if activity.duplicate else "enriched").inc()
        for kind, count in enriched.pii_counts.items():
            PII.labels(kind).inc(count)
        if log.isEnabledFor(logging.DEBUG):
            self._log_enriched(record, received, enriched, decoded)

    def _log_enriched(self, record: InputRecord, received: EventReceived, enriched: Any, decoded: DecodedEvent) -> None:
        log.debug(
            "event enriched",
            extra={
                "event_id": received.event_id,
                "position": record.position,
                "trace_id": decoded.context.trace.trace_id if decoded.context.trace else None,
                "text": payload_hash(enriched.text),
            },
        )

    async def fail(self, record: InputRecord, exc: BaseException) -> None:
        """Route a failed record to its retry level or the DLQ, with the shared headers."""
        routed = self.router.route(record, Failure.of(exc))
        await self.send(routed.topic, routed.key, routed.value, routed.headers)
        ENRICHED.labels("dead" if routed.dead else "retried").inc()
        log.warning(
            "record dead-lettered" if routed.dead else "record sent to retry",
            extra={
                "position": record.position,
                "to": routed.topic,
                "error": f"{type(exc).__name__}: {exc}"[:300],
                "value": payload_hash(record.value),
            },
        )

    async def hold_until_due(self, record: InputRecord) -> None:
        due = due_at(record.headers, record.timestamp_ms, self.settings.runtime.max_retry_delay_ms)
        if due is not None:
            wait_s = due / 1000 - time.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
