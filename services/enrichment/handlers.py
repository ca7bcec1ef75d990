"""enrichment's handler, on the runtime: each received event cleaned, redacted, joined with its subject's profile
and activity (tables of the runtime), and encoded; the runtime routes failures and commits exactly once."""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter

from services.enrichment.domain import Activity, enrich, profile_entry, record_activity
from services.enrichment.settings import EnrichmentSettings
from shared.codec import EventCodec
from shared.errors import PipelineError
from shared.events import CustomerProfile, EventEnriched, EventReceived
from shared.headers import TRACEPARENT
from shared.logging import payload_hash
from shared.runtime import InputRecord, PartitionBatch, RecordResult
from shared.runtime.state import Table
from shared.runtime.stateful import SourceTable
from shared.tracing import TraceContext

log = logging.getLogger(__name__)

ENRICHED = Counter("enrichment_events_total", "Events by outcome: enriched, duplicate", ["outcome"])
PII = Counter("enrichment_pii_redactions_total", "PII placeholders written, by kind", ["kind"])

HOUR_MS = 3_600_000
# A subject's per-minute counts over 24 h (``record_activity``), keyed ``tenant:subject``. A subject not seen for a
# day has nothing left to count: the entry expires then (with a tombstone in its changelog), so the table is bounded
# by the subjects of the last day.
ACTIVITY: Table[dict[str, Any]] = Table("activity", retention_ms=25 * HOUR_MS)
# The events counted in the last day, keyed ``tenant:subject:event_id``, each with what it reported
# (``Activity.seen``): a redelivered or replayed event reports the same again and counts nothing. A table of its
# own, so a busy subject's entry stays a few bytes, not a list of every event of its day.
SEEN: Table[list[Any]] = Table("seen", retention_ms=25 * HOUR_MS)
# What the join adds (``profile_entry``), keyed ``tenant:customer_id``: a source table over the profiles topic.
PROFILES: Table[dict[str, str]] = Table("profiles")


class EnrichmentHandler:
    """Called by the runtime with partition batches of ``EventReceived`` (decoded by ``decode``); answers one
    ``EventEnriched`` record per event, or the failure that routes it. Plain and synchronous: the work is CPU."""

    def __init__(self, settings: EnrichmentSettings, codec: EventCodec) -> None:
        self.settings = settings
        self.codec = codec
        self._outcomes = {name: ENRICHED.labels(name) for name in ("enriched", "duplicate")}

    def decode(self, topic: str, value: bytes | None, partition: int, offset: int) -> EventReceived:
        """The input, its retry levels and its replay topic all carry ``EventReceived``."""
        event = self.codec.decode_value(topic, value, partition, offset, EventReceived)
        assert isinstance(event, EventReceived)
        return event

    def profiles(self) -> SourceTable:
        """The profiles table, fed by the profiles topic (a profile that does not decode is dead-lettered)."""

        def decode(key: bytes | None, value: bytes | None, partition: int, offset: int) -> dict[str, str]:
            topic = self.settings.profiles_topic
            profile = self.codec.decode_value(topic, value, partition, offset, CustomerProfile)
            return profile_entry(profile.model_dump())

        return SourceTable(PROFILES, self.settings.profiles_topic, decode)

    def __call__(self, batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        answers: list[RecordResult] = []
        tally = _Tally(log.isEnabledFor(logging.DEBUG))
        for batch in batches:
            activity, seen, profiles = batch.table(ACTIVITY), batch.table(SEEN), batch.table(PROFILES)
            for record in batch.records:
                answers.append(self._one(record, activity, seen, profiles, tally))
        tally.publish(self._outcomes)
        return answers

    def _one(self, record: InputRecord, activity: Any, seen: Any, profiles: Any, tally: _Tally) -> RecordResult:
        received: EventReceived = record.payload
        key = f"{received.tenant}:{received.subject}"
        try:
            event_key = f"{key}:{received.event_id}"
            before = seen.get(event_key)
            if before is not None:
                counted = Activity.repeat(before)
            else:
                # Stored before the text is checked: an event counts for its subject even if its text is empty
                # (it was received), as it always did.
                state, counted = record_activity(activity.get(key), received.received_at)
                activity.put(key, state)
                seen.put(event_key, counted.seen())
            enriched = enrich(received, profiles.get(key), counted, self.settings.max_text_chars)
            output = self.codec.encode(
                enriched, topic=self.settings.output_topic, trace=TraceContext.parse(record.header(TRACEPARENT))
            )
        except PipelineError as exc:
            return exc  # routed by the runtime: validation (empty text), or a dependency (the registry) down
        tally.outcomes["duplicate" if counted.duplicate else "enriched"] += 1
        tally.pii.update(enriched.pii_counts)
        if tally.debug:
            self._log_enriched(record, enriched)
        return [output]

    @staticmethod
    def _log_enriched(record: InputRecord, enriched: EventEnriched) -> None:
        traceparent = record.header(TRACEPARENT)
        trace = TraceContext.parse(traceparent)
        log.debug(
            "event enriched",
            extra={
                "event_id": enriched.event_id,
                "position": record.position,
                "trace_id": trace.trace_id if trace is not None else None,
                "text": payload_hash(enriched.text),
            },
        )


class _Tally:
    """A call's counts, added to the counters once per call rather than once per event."""

    __slots__ = ("debug", "outcomes", "pii")

    def __init__(self, debug: bool) -> None:
        self.debug = debug
        self.outcomes: Tally[str] = Tally()
        self.pii: Tally[str] = Tally()

    def publish(self, outcomes: dict[str, Any]) -> None:
        for name, count in self.outcomes.items():
            outcomes[name].inc(count)
        for kind, count in self.pii.items():
            PII.labels(kind).inc(count)
