"""Delivery reports in one place: acknowledgements and failures, logged as ``topic[partition]@offset``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from shared.kafka.failure import KafkaFailure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordPosition:
    """Where a record sits in Kafka."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


class DeliveryFailed(Exception):
    """The broker did not acknowledge a record."""

    def __init__(self, failure: KafkaFailure, position: str) -> None:
        super().__init__(f"delivery to {position} failed: {failure}")
        self.failure = failure
        self.position = position


class DeliveryReports:
    """A producer's ``on_delivery`` callback: keeps acknowledged positions (optionally) and failures.

    Called on the thread that polls or flushes the producer; read it from that thread.
    """

    def __init__(self, keep_acked: bool = True) -> None:
        self.keep_acked = keep_acked
        self.acked: list[RecordPosition] = []
        self.failures: list[DeliveryFailed] = []

    def __call__(self, error: KafkaError | None, msg: Message) -> None:
        position = RecordPosition(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
        if error is None:
            if self.keep_acked:
                self.acked.append(position)
            return
        failure = KafkaFailure.of(error)
        assert failure is not None
        where = f"{position.topic}[{position.partition}]"
        self.failures.append(DeliveryFailed(failure, where))
        if len(self.failures) == 1:
            # Only the first: with the broker gone, every record in flight fails at once. clear() sums up.
            log.warning("delivery failed", extra={"position": where, "error": str(failure)})

    def clear(self) -> None:
        if len(self.failures) > 1:
            log.warning("deliveries failed", extra={"count": len(self.failures), "first": str(self.failures[0])})
        self.acked.clear()
        self.failures.clear()

    def raise_first(self) -> None:
        if self.failures:
            raise self.failures[0]


def produce_and_wait(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    headers: Sequence[tuple[str, bytes]] = (),
    timeout_s: float = 30.0,
) -> RecordPosition:
    """Produce one record and return its position once the broker acknowledged it; raise otherwise."""
    reports = DeliveryReports()
    producer.produce(topic, value=value, key=key, headers=list(headers), on_delivery=reports)
    if producer.flush(timeout_s):
        raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, f"no acknowledgement from {topic} in {timeout_s}s"))
    reports.raise_first()
    return reports.acked[0]
