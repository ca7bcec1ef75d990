"""Partition positions: which partitions this process holds, where each stands, and seeking them back."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from shared.errors import RuntimeFatal
from shared.kafka import KafkaFailure
from shared.runtime import metrics
from shared.runtime.batching import PartitionBuffers
from shared.runtime.flow import FlowControl
from shared.runtime.records import TP

log = logging.getLogger(__name__)

SEEK_ATTEMPTS = 5
LAG_EVERY_S = 1.0


class PartitionPositions:
    """The assigned partitions and where each stands, tracked here so a rewind needs no broker round trip: the
    first offset fetched since assignment, and the next offset not yet finalized (written or routed)."""

    def __init__(self, service: str, buffers: PartitionBuffers, flow: FlowControl) -> None:
        self.service = service
        self.buffers = buffers
        self.flow = flow
        self.consumer: Consumer | None = None
        self.assigned: set[TP] = set()
        self.first_fetched: dict[TP, int] = {}
        self.next_offset: dict[TP, int] = {}
        self.lag_updated = 0.0

    def attach(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def assign(self, partitions: Iterable[TP]) -> None:
        for tp in partitions:
            self.assigned.add(tp)
            # Someone else may have moved it on since we last held it: track it afresh.
            self.first_fetched.pop(tp, None)
            self.next_offset.pop(tp, None)

    def forget(self, partitions: Iterable[TP]) -> None:
        for tp in partitions:
            self.assigned.discard(tp)
            self.first_fetched.pop(tp, None)
            self.next_offset.pop(tp, None)
            with contextlib.suppress(KeyError):
                metrics.LAG.remove(self.service, tp[0], str(tp[1]))

    def advance(self, tp: TP, next_offset: int) -> None:
        """Everything of ``tp`` before ``next_offset`` is finalized."""
        self.next_offset[tp] = next_offset

    def rewind(self, committed: Mapping[TP, int], only: set[TP] | None = None) -> None:
        """After an abort: seek each partition we consumed (of ``only``, else all) back to the offset we last
        committed there, else the first one we fetched; drop what was buffered, release held retry records."""
        targets = {
            tp: committed.get(tp, first)
            for tp, first in self.first_fetched.items()
            if tp in self.assigned and (only is None or tp in only)
        }
        self.buffers.drop(set(targets) if only is not None else None)
        for tp, offset in targets.items():
            if self.seek(tp, offset):
                self.next_offset[tp] = offset
        self.flow.release_retry_holds(only)

    def put_back(self, discarded: Iterable[Mapping[TP, int]], targets: Mapping[TP, int]) -> None:
        """Seek the partitions of discarded in-flight batches (their first offsets, in submit order) back to the
        first record not yet finalized, and ``targets`` to their offsets; drop what was buffered behind."""
        seek: dict[TP, int] = {}
        for firsts in discarded:
            for tp, first in firsts.items():
                seek.setdefault(tp, self.next_offset.get(tp, first))
        seek.update(targets)
        self.buffers.drop(set(seek))
        for tp, offset in seek.items():
            if tp in self.assigned and self.seek(tp, offset):
                self.next_offset[tp] = offset

    def outage_targets(self, firsts: Mapping[TP, int]) -> dict[TP, int]:
        """Where every held partition goes back to in an outage: its first record not yet finalized, else the
        first offset of the batch that met the outage."""
        targets = {tp: offset for tp, offset in self.next_offset.items() if tp in self.assigned}
        for tp, first in firsts.items():
            targets.setdefault(tp, first)
        return targets

    def update_lag(self) -> None:
        """Export each assigned partition's lag (high watermark minus position), at most once a second."""
        now = time.monotonic()
        if now - self.lag_updated < LAG_EVERY_S or self.consumer is None:
            return
        self.lag_updated = now
        for topic, partition in list(self.assigned):
            tp = TopicPartition(topic, partition)
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                position = self.consumer.position([tp])[0].offset
            except KafkaException:
                continue
            if position >= 0 and high >= 0:
                metrics.LAG.labels(self.service, topic, str(partition)).set(max(0, high - position))

    def seek(self, tp: TP, offset: int) -> bool:
        """Seek, retrying retriable errors; False when the partition is not fetching yet (nothing to rewind)."""
        assert self.consumer is not None
        for attempt in range(SEEK_ATTEMPTS):
            try:
                self.consumer.seek(TopicPartition(tp[0], tp[1], offset))
                return True
            except KafkaException as exc:
                failure = KafkaFailure.of(exc)
                if failure is not None and failure.code == KafkaError._STATE:
                    # Still fetching its committed offset: nothing was read from it, so nothing to rewind.
                    log.info("partition not fetching yet; not rewound", extra={"partition": f"{tp[0]}[{tp[1]}]"})
                    self.next_offset.pop(tp, None)
                    self.first_fetched.pop(tp, None)
                    return False
                if failure is None or not failure.retriable or attempt == SEEK_ATTEMPTS - 1:
                    raise RuntimeFatal(f"cannot seek {tp[0]}[{tp[1]}] to {offset}: {exc}") from exc
                time.sleep(0.05 * 2**attempt)
        return False
