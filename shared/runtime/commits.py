"""Commits of consumed offsets: with the outputs in one transaction, or once the outputs are acknowledged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from shared.errors import RuntimeFatal
from shared.kafka import KafkaFailure
from shared.runtime import metrics
from shared.runtime.records import TP

log = logging.getLogger(__name__)

TXN_CALL_TIMEOUT_S = 30.0


def retry_call(call: Callable[[], object], attempts: int | None = 10, stopping: Callable[[], bool] = bool) -> None:
    """Call a transactional API; repeat it on a retriable error, as librdkafka's EOS guide says.

    ``attempts=None`` repeats for as long as the error stays retriable, unless the process is stopping: then
    the error is raised after the first retry, and the broker's transaction timeout (or the next instance's
    fencing) settles what was open.
    """
    attempt = 0
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            failure = KafkaFailure.of(exc)
            if failure is not None and failure.fatal:
                raise RuntimeFatal(f"fatal transactional error: {failure}") from exc
            exhausted = attempts is not None and attempt >= attempts - 1
            if failure is None or not failure.retriable or exhausted or (stopping() and attempt >= 1):
                raise
            time.sleep(min(0.1 * 2**attempt, 2.0))
            attempt += 1


class TransactionalCommits:
    """Exactly-once: outputs, retry and dead-letter records and offsets commit in one transaction.

    Both kinds remember what they committed (``committed``), so a rewind needs no broker round trip.
    """

    def __init__(self, service: str, producer: Producer, consumer: Consumer, stopping: Callable[[], bool]) -> None:
        self.service = service
        self.producer = producer
        self.consumer = consumer
        self.stopping = stopping
        self.pending: dict[TP, int] = {}
        self.committed: dict[TP, int] = {}
        self.open = False

    def begin(self) -> None:
        # Begun only when results are ready to produce: a transaction never spans a batch's model time.
        if not self.open:
            self.producer.begin_transaction()
            self.open = True

    def delivery(self, tp: TP, first_offset: int) -> None:
        """Exactly-once needs no per-record delivery tracking: the commit succeeds or the transaction aborts."""
        return None

    def done(self, tp: TP, next_offset: int) -> None:
        self.pending[tp] = next_offset

    def has_work(self) -> bool:
        return self.open

    def commit(self, synchronous: bool = False) -> dict[TP, int]:
        """Commit the open transaction; return partitions to rewind (never any here: a failure raises)."""
        if not self.open:
            return {}
        producer, consumer = self.producer, self.consumer
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.pending.items()]
        if offsets:
            # Fresh group metadata at every commit (KIP-447): the generation may have moved since the last one.
            retry_call(
                lambda: producer.send_offsets_to_transaction(
                    offsets, consumer.consumer_group_metadata(), TXN_CALL_TIMEOUT_S
                ),
                stopping=self.stopping,
            )
        # A commit that timed out may still land: retry the same call (for as long as it is retriable),
        # never abort after it.
        retry_call(lambda: producer.commit_transaction(TXN_CALL_TIMEOUT_S), attempts=None, stopping=self.stopping)
        self.open = False
        self.committed.update(self.pending)
        self.pending.clear()
        metrics.TRANSACTIONS.labels(self.service, "commit").inc()
        return {}

    def abort(self) -> None:
        self.pending.clear()
        if self.open:
            producer = self.producer
            retry_call(lambda: producer.abort_transaction(TXN_CALL_TIMEOUT_S), stopping=self.stopping)
            metrics.TRANSACTIONS.labels(self.service, "abort").inc()
        self.open = False

    def forget(self, tps: set[TP]) -> None:
        for tp in tps:
            self.pending.pop(tp, None)
            self.committed.pop(tp, None)


@dataclass
class Segment:
    """The outputs of one partition's records in one batch; a delivery failure marks it (only failures call)."""

    first: int
    end: int = -1
    failed: KafkaError | None = None

    def __call__(self, error: KafkaError | None, _msg: Message) -> None:
        if error is not None and self.failed is None:
            self.failed = error


class OffsetCommits:
    """At-least-once: commit a partition up to its contiguous acknowledged offset; rewind only the partition
    whose delivery failed."""

    def __init__(self, service: str, producer: Producer, consumer: Consumer, stopping: Callable[[], bool]) -> None:
        self.service = service
        self.producer = producer
        self.consumer = consumer
        self.segments: dict[TP, list[Segment]] = {}
        self.committed: dict[TP, int] = {}
        self.open = False

    def begin(self) -> None:
        return None

    def delivery(self, tp: TP, first_offset: int) -> Segment:
        segment = Segment(first_offset)
        self.segments.setdefault(tp, []).append(segment)
        return segment

    def done(self, tp: TP, next_offset: int) -> None:
        self.segments[tp][-1].end = next_offset

    def has_work(self) -> bool:
        return bool(self.segments)

    def commit(self, synchronous: bool = False) -> dict[TP, int]:
        """Wait for the acknowledgements, commit what is contiguous, and return ``{tp: offset}`` to rewind."""
        if not self.segments:
            self.producer.poll(0)
            return {}
        remaining = self.producer.flush(TXN_CALL_TIMEOUT_S)
        offsets: list[TopicPartition] = []
        rewind: dict[TP, int] = {}
        for tp, segments in self.segments.items():
            if remaining:
                # Unacknowledged outputs, and no way to tell whose: nothing of this batch is committed.
                rewind[tp] = segments[0].first
                continue
            bad = next((s for s in segments if s.failed is not None or s.end < 0), None)
            if bad is None:
                offsets.append(TopicPartition(tp[0], tp[1], segments[-1].end))
                continue
            rewind[tp] = bad.first
            log.warning(
                "delivery failed; rewinding the partition",
                extra={"partition": f"{tp[0]}[{tp[1]}]", "offset": bad.first, "error": str(bad.failed)},
            )
            if bad is not segments[0]:
                offsets.append(TopicPartition(tp[0], tp[1], bad.first))  # the acknowledged prefix
        self.segments.clear()
        if offsets:
            # Every output up to these offsets is acknowledged. An asynchronous commit that is lost only means
            # those records are read again, which at-least-once allows; a revoke commits synchronously.
            if synchronous:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            for position in offsets:
                self.committed[(position.topic, position.partition)] = position.offset
        return rewind

    def abort(self) -> None:
        self.segments.clear()

    def forget(self, tps: set[TP]) -> None:
        for tp in tps:
            self.segments.pop(tp, None)
            self.committed.pop(tp, None)


Commits = TransactionalCommits | OffsetCommits
