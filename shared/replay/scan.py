"""Reading a DLQ (or the ledger, or the audit) without joining a group: up to where each partition ends now."""

from __future__ import annotations

import time
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from shared.kafka import KafkaConnection
from shared.kafka.admin import partitions_of as partitions_of
from shared.replay.records import DeadLetter


def bounds(
    kafka: KafkaConnection, topic: str, partitions: list[int], timeout_s: float = 10.0
) -> dict[int, tuple[int, int]]:
    """Low and high watermark of each partition, in two requests for all of them."""
    admin = kafka.admin(quiet=True)
    found: dict[int, list[int]] = {p: [0, 0] for p in partitions}
    specs = (OffsetSpec.earliest(), OffsetSpec.latest())  # type: ignore[no-untyped-call]
    for i, spec in enumerate(specs):
        futures = admin.list_offsets({TopicPartition(topic, p): spec for p in partitions}, request_timeout=timeout_s)
        for tp, future in futures.items():
            found[tp.partition][i] = future.result(timeout_s).offset
    return {p: (low, high) for p, (low, high) in found.items()}


def watermarks(kafka: KafkaConnection, topic: str, partition: int, timeout_s: float = 10.0) -> tuple[int, int]:
    return bounds(kafka, topic, [partition], timeout_s)[partition]


def read_records(
    kafka: KafkaConnection,
    topic: str,
    start: dict[int, int] | None = None,
    partitions: list[int] | None = None,
    timeout_s: float = 30.0,
    stop: dict[int, int] | None = None,
    ordered: bool = False,
) -> Iterator[DeadLetter]:
    """Every committed record of ``topic`` from ``start`` (per partition; default: the beginning) to its end as
    it is now (or up to ``stop``, exclusive). All partitions are read at once, each in offset order; with
    ``ordered``, partition after partition (a page that stops early reads no further than it must)."""
    chosen = partitions if partitions is not None else partitions_of(kafka, topic)
    ranges = {}
    for partition, (low, high) in bounds(kafka, topic, chosen).items():
        high = min(high, (stop or {}).get(partition, high))
        first = max(low, (start or {}).get(partition, low))
        if first < high:
            ranges[partition] = (first, high)
    if not ranges:
        return
    consumer = Consumer(
        kafka.consumer_config(
            "pipeline-dlq-reader",
            **{"enable.auto.commit": False, "enable.partition.eof": True, "fetch.wait.max.ms": 50},
        )
    )
    try:
        groups = [[p] for p in sorted(ranges)] if ordered else [sorted(ranges)]
        for group in groups:
            yield from _read(consumer, topic, {p: ranges[p] for p in group}, timeout_s)
    finally:
        consumer.close()


def record_at(kafka: KafkaConnection, topic: str, partition: int, offset: int) -> DeadLetter | None:
    """The committed record at ``topic/partition/offset``, or None where there is none (any more)."""
    for record in read_records(kafka, topic, start={partition: offset}, partitions=[partition]):
        return record if record.offset == offset else None
    return None


def _read(consumer: Consumer, topic: str, ranges: dict[int, tuple[int, int]], timeout_s: float) -> Iterator[DeadLetter]:
    consumer.assign([TopicPartition(topic, p, first) for p, (first, _high) in ranges.items()])
    open_partitions = set(ranges)
    deadline = time.monotonic() + timeout_s
    while open_partitions:
        batch = consumer.consume(1000, 0.5)
        if not batch:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}{sorted(open_partitions)}: no record or end of partition in {timeout_s}s")
            continue
        deadline = time.monotonic() + timeout_s
        for msg in batch:
            partition = msg.partition() or 0
            if partition not in open_partitions:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(partition)
                    continue
                raise RuntimeError(f"reading {topic}[{partition}]: {error}")
            offset, high = msg.offset() or 0, ranges[partition][1]
            if offset >= high:
                open_partitions.discard(partition)
                continue
            yield DeadLetter.of(msg)
            if offset >= high - 1:
                open_partitions.discard(partition)
    consumer.unassign()
