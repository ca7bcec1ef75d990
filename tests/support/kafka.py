"""Reading topics in tests: records until a count is reached and every partition is read to its end offset."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from shared.kafka import KafkaConnection


def _partitions(consumer: Consumer, topic: str, deadline: float) -> list[int]:
    while True:
        found = consumer.list_topics(topic, timeout=5).topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return sorted(found.partitions)
        if time.monotonic() > deadline:
            raise AssertionError(f"{topic}: no such topic")
        time.sleep(0.05)


def read(
    kafka: KafkaConnection,
    topic: str,
    count: int = 0,
    timeout: float = 60.0,
    isolation: str = "read_committed",
    until: Callable[[list[Message]], bool] | None = None,
) -> list[Message]:
    """Every record of ``topic`` from the start, once ``count`` of them (and ``until``, when given) came in and
    every partition is read to its end offset (the last stable offset when reading committed data): what a
    later record would add is not there yet, so no grace period is needed to see duplicates. Fails at ``timeout``."""
    consumer = Consumer(
        kafka.consumer_config(
            f"reader-{uuid.uuid4().hex}",
            **{"isolation.level": isolation, "enable.partition.eof": True, "enable.auto.commit": False},
        )
    )
    deadline = time.monotonic() + timeout
    messages: list[Message] = []
    try:
        partitions = _partitions(consumer, topic, deadline)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        at_end: set[int] = set()
        while True:
            if len(messages) >= count and len(at_end) == len(partitions) and (until is None or until(messages)):
                return messages
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: read {len(messages)} of {count} records in {timeout}s")
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                continue
            at_end.discard(msg.partition() or 0)
            messages.append(msg)
    finally:
        consumer.close()


def headers(msg: Message) -> dict[str, bytes]:
    """A record's headers by name (the last value of a repeated name)."""
    raw = msg.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    return {k: v for k, v in items if isinstance(v, bytes)}


def wait_consumed(kafka: KafkaConnection, group: str, topics: list[str], timeout: float = 60.0) -> None:
    """Until ``group`` has committed past the last committed record now in every partition of ``topics``:
    whatever it would do with what was written so far (calls, outputs, retries) is done."""
    ends: dict[tuple[str, int], int] = {}
    for topic in topics:
        for msg in read(kafka, topic, timeout=timeout):
            position = (topic, msg.partition() or 0)
            ends[position] = max(ends.get(position, 0), (msg.offset() or 0) + 1)
    if not ends:
        return
    consumer = Consumer(kafka.consumer_config(group))  # never subscribes: it only reads the group's offsets
    deadline = time.monotonic() + timeout
    try:
        while True:
            committed = consumer.committed([TopicPartition(t, p) for t, p in ends], timeout=10)
            behind = {
                (c.topic, c.partition): end for c in committed if c.offset < (end := ends[(c.topic, c.partition)])
            }
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"group {group} has not consumed {sorted(behind)} in {timeout}s")
            time.sleep(0.05)
    finally:
        consumer.close()
