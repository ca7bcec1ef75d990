"""Reading a DLQ (or the ledger) without joining a group: assign partitions, read committed records up to
where the topic ends now, and stop."""

from __future__ import annotations

import time
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, TopicPartition

from shared.kafka import KafkaConnection
from shared.replay.records import DeadLetter


def watermarks(kafka: KafkaConnection, topic: str, partition: int, timeout_s: float = 10.0) -> tuple[int, int]:
    consumer = Consumer(kafka.consumer_config("pipeline-dlq-reader"))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
        return int(low), int(high)
    finally:
        consumer.close()


def partitions_of(kafka: KafkaConnection, topic: str, timeout_s: float = 10.0) -> list[int]:
    consumer = Consumer(kafka.consumer_config("pipeline-dlq-reader"))
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise LookupError(f"topic {topic} does not exist")
        return sorted(found.partitions)
    finally:
        consumer.close()


def read_records(
    kafka: KafkaConnection,
    topic: str,
    start: dict[int, int] | None = None,
    partitions: list[int] | None = None,
    timeout_s: float = 30.0,
    fetch_max_kbytes: int = 8192,
    stop: dict[int, int] | None = None,
) -> Iterator[DeadLetter]:
    """Every committed record of ``topic`` from ``start`` (per partition; default: the beginning) to the end
    as it is now (or up to ``stop``, exclusive), partition by partition in order, each in offset order."""
    consumer = Consumer(
        kafka.consumer_config(
            "pipeline-dlq-reader",
            **{
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.max.bytes": fetch_max_kbytes * 1024,
                "queued.max.messages.kbytes": fetch_max_kbytes,
            },
        )
    )
    try:
        for partition in partitions if partitions is not None else partitions_of(kafka, topic):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
            high = min(high, (stop or {}).get(partition, high))
            first = max(low, (start or {}).get(partition, low))
            if first >= high:
                continue
            consumer.assign([TopicPartition(topic, partition, first)])
            deadline = time.monotonic() + timeout_s
            while True:
                batch = consumer.consume(500, 1.0)
                if not batch:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{topic}[{partition}]: no record or end of partition in {timeout_s}s")
                    continue
                deadline = time.monotonic() + timeout_s
                done = False
                for msg in batch:
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            done = True
                            break
                        raise RuntimeError(f"reading {topic}[{partition}]: {error}")
                    if (msg.offset() or 0) >= high:
                        done = True
                        break
                    yield DeadLetter.of(msg)
                    if (msg.offset() or 0) >= high - 1:
                        done = True
                        break
                if done:
                    break
            consumer.unassign()
    finally:
        consumer.close()
