"""Output writing: a settled batch's outputs, retry and dead-letter records, checked for type, size and topic."""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from confluent_kafka import KafkaException, Producer

from shared import headers as h
from shared.errors import PermanentError, RuntimeFatal
from shared.kafka import KafkaConnection, KafkaFailure, topic_max_bytes, topic_names
from shared.logging import payload_hash
from shared.runtime import metrics
from shared.runtime.commits import Commits, Segment
from shared.runtime.flow import DEPENDENCY, MISSING_TOPIC
from shared.runtime.positions import PartitionPositions
from shared.runtime.processing import SettledRecord
from shared.runtime.records import TP, InputRecord, Output, PartitionBatch, RecordKey
from shared.runtime.routing import Failure, FailureRouter, Routed, fit, record_size
from shared.runtime.settings import RuntimeSettings
from shared.runtime.state import ChangelogRecord
from shared.runtime.strikes import DependencyStrikes, is_dependency
from shared.topics import dlq_topic, retry_topic

log = logging.getLogger(__name__)

PRODUCER_MAX_BYTES = 1_000_000
SIZE_CHECK_FROM = PRODUCER_MAX_BYTES // 2
# The fast path skips the exact size check for outputs this far below their topic's limit (room for headers).
FAST_PATH_HEADROOM = 64 * 1024
TOPICS_REFRESH_S = 5.0


class OutputRejected(PermanentError):
    """An output that can never be written (not bytes, too large): the input record is dead-lettered."""


class Hold(NamedTuple):
    """A partition to seek back to ``offset`` (its first record not written) and pause, and why."""

    offset: int
    reason: str


class RoutingLog:
    """The failed records one batch routed, per destination and category: one log line each, so a systemic
    failure does not flood the log."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[bool, str, str]] = Counter()
        self.first: dict[tuple[bool, str, str], tuple[InputRecord, Failure, Routed]] = {}

    def add(self, record: InputRecord, failure: Failure, routed: Routed) -> None:
        key = (routed.dead, failure.category, routed.topic)
        self.counts[key] += 1
        self.first.setdefault(key, (record, failure, routed))

    def write(self) -> None:
        for key, count in self.counts.items():
            dead, category, topic = key
            record, failure, routed = self.first[key]
            event_id = record.header(h.CE_ID)
            traceparent = record.header(h.TRACEPARENT)
            log.warning(
                "records dead-lettered" if dead else "records sent to retry",
                extra={
                    "count": count,
                    "event_id": event_id.decode(errors="replace") if event_id else None,
                    "trace_id": traceparent.decode(errors="replace").split("-")[1]
                    if traceparent and b"-" in traceparent
                    else None,
                    "position": record.position,
                    "to": topic,
                    "attempt": routed.attempt,
                    "category": category,
                    "error_type": failure.type_name,
                    "payload": payload_hash(record.value),
                },
            )


class OutputWriter:
    """Writes settled batches into the open transaction (or the acknowledged segments) and advances their
    partitions past what went out.

    An output that can never be written (not bytes, over its topic's size, refused by the client) dead-letters
    its record; one to a topic that does not exist yet, or a record failing on a dependency with strikes left,
    stops its partition there: ``write`` answers a ``Hold`` for it.
    """

    def __init__(
        self,
        service: str,
        kafka: KafkaConnection,
        settings: RuntimeSettings,
        positions: PartitionPositions,
        strikes: DependencyStrikes,
    ) -> None:
        self.service = service
        self.kafka = kafka
        self.settings = s = settings
        # No retry level until ``load_topics`` has seen which retry topics exist.
        self.router = FailureRouter(service, s.retry_delays_ms, 0, s.stacktrace_max_bytes, s.max_deferral_ms)
        self.positions = positions
        self.strikes = strikes
        self.producer: Producer | None = None
        self.commits: Commits | None = None
        self.known_topics: set[str] = set()
        self.topics_refreshed = 0.0
        # Topics the fast path may write without an exact size check, and the size up to which it may.
        self.fast_limits: dict[str, int] = {}
        self.max_bytes: dict[str, int] = {}

    def attach(self, producer: Producer, commits: Commits) -> None:
        self.producer = producer
        self.commits = commits

    def load_topics(self) -> list[str]:
        """Learn which topics exist, which retry levels there are, and how large a record the dead-letter and
        retry topics take, before consuming; return every existing retry topic of the service."""
        present = topic_names(self.kafka, timeout_s=30)
        self.known_topics = present
        self.topics_refreshed = time.monotonic()
        dlq = dlq_topic(self.service)
        if dlq not in present:
            raise RuntimeFatal(f"dead-letter topic {dlq} does not exist; run `pipeline topics bootstrap`")
        # All of them, whatever the configured ladder: a shorter ladder must never strand records already
        # written to a higher level.
        pattern = re.compile(rf"^{re.escape(self.service)}\.retry\.(\d+)$")
        existing = sorted((int(m.group(1)), t) for t in present if (m := pattern.match(t)))
        retry_topics = [t for _, t in existing]
        s = self.settings
        levels = 0
        while levels < len(s.retry_delays_ms) and retry_topic(self.service, levels + 1) in present:
            levels += 1
        if levels < len(s.retry_delays_ms):
            log.warning("missing retry topics; failures past the last one go to the DLQ", extra={"levels": levels})
        self.router = FailureRouter(self.service, s.retry_delays_ms, levels, s.stacktrace_max_bytes, s.max_deferral_ms)
        for topic in [dlq, *retry_topics]:
            self.limit(topic)
        return retry_topics

    def limit(self, topic: str) -> int:
        """The largest record ``topic`` takes: its ``max.message.bytes`` or the producer's, looked up once."""
        limit = self.max_bytes.get(topic)
        if limit is None:
            limit = min(topic_max_bytes(self.kafka, topic, PRODUCER_MAX_BYTES), PRODUCER_MAX_BYTES)
            self.max_bytes[topic] = limit
        return limit

    def topic_exists(self, topic: str) -> bool:
        if topic in self.known_topics:
            return True
        if time.monotonic() - self.topics_refreshed > TOPICS_REFRESH_S:
            self.topics_refreshed = time.monotonic()
            try:
                self.known_topics = topic_names(self.kafka)
            except KafkaException as exc:
                log.warning("cannot list topics", extra={"error": str(KafkaFailure.of(exc) or exc)})
        return topic in self.known_topics

    # ------------------------------------------------------------------ the fast path

    def fits_fast_path(self, answers: Sequence[Sequence[Output]]) -> bool:
        """Every output is bytes, to a topic known to exist, and far enough below that topic's size limit
        that no exact size check is needed (checked per distinct topic, not per record)."""
        try:
            return self._all_fit(answers)
        except (TypeError, ValueError):
            return False  # not a list of Output tuples: the slow path routes the record

    def _all_fit(self, answers: Sequence[Sequence[Output]]) -> bool:
        limits = self.fast_limits
        last_topic, limit = "", -1
        for outs in answers:
            for topic, value, key, _headers in outs:
                if topic is not last_topic:
                    found = limits.get(topic)
                    if found is None:
                        return False
                    last_topic, limit = topic, found
                size = 0
                if value is not None:
                    if type(value) is not bytes:
                        return False
                    size = len(value)
                if key is not None:
                    if type(key) is not bytes:
                        return False
                    size += len(key)
                if size > limit:
                    return False
        return True

    def write_clean(
        self,
        batches: Sequence[PartitionBatch],
        answers: Sequence[Sequence[Output]],
        changelog: Mapping[TP, Sequence[ChangelogRecord]] | None = None,
    ) -> None:
        """The fast path: no failures, every output fits (``fits_fast_path``); ``answers`` align with the records
        of ``batches``."""
        assert self.commits is not None
        commits = self.commits
        commits.begin()
        produced: dict[str, int] = {}
        routed = RoutingLog()
        i = 0
        for batch in batches:
            tp = (batch.topic, batch.partition)
            n = len(batch.records)
            segment = commits.delivery(tp, batch.records[0].offset)
            if changelog and tp in changelog:
                self._produce_changelog(changelog[tp], segment)
            for record, outs in zip(batch.records, answers[i : i + n], strict=True):
                self._produce_outputs(record, outs, segment, produced, routed)
            i += n
            last = batch.records[-1].offset + 1
            commits.done(tp, last)
            self.positions.advance(tp, last)
        self._count(produced)
        routed.write()

    # ------------------------------------------------------------------ the checked path

    def write(
        self,
        records: list[tuple[TP, list[InputRecord]]],
        results: dict[RecordKey, SettledRecord],
        changelog: Mapping[TP, Sequence[ChangelogRecord]] | None = None,
    ) -> dict[TP, Hold]:
        """Write every record's result, partition by partition, up to the first record that must wait."""
        assert self.commits is not None
        self.commits.begin()
        holds: dict[TP, Hold] = {}
        produced: dict[str, int] = {}
        routed = RoutingLog()
        for tp, recs in records:
            if tp not in self.positions.assigned:
                continue
            segment = self.commits.delivery(tp, recs[0].offset)
            if changelog and tp in changelog:
                self._produce_changelog(changelog[tp], segment)
            last: int | None = None
            for record in recs:
                result = results[(tp, record.offset)]
                if isinstance(result, Failure):
                    if is_dependency(result) and not self.strikes.escalate(tp, record.offset):
                        holds[tp] = Hold(record.offset, DEPENDENCY)
                        break
                    self._send_failure(record, result, segment, routed)
                else:
                    missing = self._emit(record, result, produced, segment, routed)
                    if missing is not None:
                        holds[tp] = Hold(record.offset, MISSING_TOPIC)
                        metrics.MISSING_TOPIC_PAUSES.labels(self.service, missing).inc()
                        log.warning(
                            "output topic does not exist yet; pausing the partition",
                            extra={"topic": missing, "position": record.position},
                        )
                        break
                last = record.offset
            if last is not None:
                self.commits.done(tp, last + 1)
                self.positions.advance(tp, last + 1)
            elif isinstance(segment, Segment):
                segment.end = segment.first  # nothing of this partition went out: nothing to commit for it
        self._count(produced)
        routed.write()
        return holds

    def _emit(
        self,
        record: InputRecord,
        outs: list[Output],
        produced: dict[str, int],
        segment: Segment | None,
        routed: RoutingLog,
    ) -> str | None:
        """Produce one record's outputs; route it when one can never be written; name a missing topic."""
        if not all(isinstance(out, Output) for out in outs):
            self._reject(record, "handler result for the record is not a list of Output", segment, routed)
            return None
        for out in outs:
            value, key = out.value, out.key
            if not ((value is None or type(value) is bytes) and (key is None or type(key) is bytes)):
                self._reject(record, f"output for {out.topic} has a non-bytes key or value", segment, routed)
                return None
            if out.topic not in self.known_topics and not self.topic_exists(out.topic):
                return out.topic
            if out.topic not in self.fast_limits:
                limit = self.limit(out.topic)
                # Larger outputs take the slow path, whose exact size check counts the headers too.
                self.fast_limits[out.topic] = min(limit - FAST_PATH_HEADROOM, limit // 2)
            # Exact sizing only where it could matter: most outputs are far below the limit.
            if out.headers or len(value or b"") + len(key or b"") > SIZE_CHECK_FROM:
                size, limit = record_size(key, value, out.headers), self.limit(out.topic)
                if size > limit:
                    self._reject(record, f"output for {out.topic} is {size} bytes, over its {limit}", segment, routed)
                    return None
        self._produce_outputs(record, outs, segment, produced, routed)
        return None

    # ------------------------------------------------------------------ producing

    def _produce_outputs(
        self,
        record: InputRecord,
        outs: Sequence[Output],
        segment: Segment | None,
        produced: dict[str, int],
        routed: RoutingLog,
    ) -> None:
        """Produce one record's outputs; one the client refuses (bad headers, too large) dead-letters the record."""
        produce = self._produce
        for topic, value, key, headers in outs:
            try:
                produce(topic, key, value, headers, segment)
            except (KafkaException, TypeError, ValueError) as exc:
                self._reject(record, f"output for {topic} refused by the producer: {exc}", segment, routed)
                return
            produced[topic] = produced.get(topic, 0) + 1

    def _reject(self, record: InputRecord, reason: str, segment: Segment | None, routed: RoutingLog) -> None:
        self._send_failure(record, Failure.of(OutputRejected(reason)), segment, routed)

    def _send_failure(
        self, record: InputRecord, failure: Failure, segment: Segment | None, routed_log: RoutingLog
    ) -> None:
        """Produce the record's retry or dead-letter record, with the outputs its failure carries."""
        routed = self.router.route(record, failure)
        if not routed.dead and record_size(routed.key, routed.value, routed.headers) > self.limit(routed.topic):
            # Too large for the retry topic: it can never be retried, so it is dead-lettered now.
            routed = self.router.route(record, Failure(failure.error, failure.category, False))
        routed = fit(routed, self.limit(routed.topic))
        self._produce(routed.topic, routed.key, routed.value, routed.headers, segment)
        # What the record achieved before it failed, kept in the same transaction as its retry or dead letter.
        for output in getattr(failure.error, "outputs", ()):
            self._produce(output.topic, output.key, output.value, output.headers, segment)
            metrics.RECORDS_OUT.labels(self.service, output.topic).inc()
        counter = metrics.RECORDS_DEAD if routed.dead else metrics.RECORDS_RETRIED
        counter.labels(self.service, record.topic, failure.category).inc()
        routed_log.add(record, failure, routed)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        segment: Segment | None,
    ) -> None:
        producer = self.producer
        assert producer is not None
        while True:
            try:
                if segment is not None:
                    # At-least-once: a failed delivery calls back into the segment of the records it belongs to.
                    producer.produce(topic, value, key, headers=list(headers) or None, on_delivery=segment)
                elif headers:
                    producer.produce(topic, value, key, headers=headers if type(headers) is list else list(headers))
                else:
                    producer.produce(topic, value, key)
                return
            except BufferError:
                # The local queue is full: serve delivery reports until there is room (bounded memory).
                producer.poll(0.05)

    def _produce_changelog(self, records: Sequence[ChangelogRecord], segment: Segment | None) -> None:
        """A batch's table writes, to each table's changelog partition (the input partition's number), in the
        batch's transaction (at-least-once: tracked with its outputs)."""
        producer = self.producer
        assert producer is not None
        produced: dict[str, int] = {}
        for topic, partition, key, value in records:
            while True:
                try:
                    if segment is not None:
                        producer.produce(topic, value, key, partition=partition, on_delivery=segment)
                    else:
                        producer.produce(topic, value, key, partition=partition)
                    break
                except BufferError:
                    producer.poll(0.05)
            produced[topic] = produced.get(topic, 0) + 1
        self._count(produced)

    def _count(self, produced: dict[str, int]) -> None:
        for topic, count in produced.items():
            metrics.RECORDS_OUT.labels(self.service, topic).inc(count)
