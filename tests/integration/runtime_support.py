"""Helpers for runtime tests: topics per test service, records in, and a runtime in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import Producer

from shared.kafka import KafkaConnection, bootstrap_topics
from shared.runtime import Runtime
from shared.topics import TopicSpec, service_topics
from tests.support.kafka import headers as headers
from tests.support.kafka import read as read


def make_topics(kafka: KafkaConnection, service: str, topics: dict[str, int]) -> None:
    """Create ``topics`` (name to partitions) and the service's retry, dlq and replay topics."""
    specs = [TopicSpec(name, n, "k", None) for name, n in topics.items()] + service_topics(service, 2)
    bootstrap_topics(kafka, specs)


def produce(
    kafka: KafkaConnection, topic: str, records: list[tuple[bytes | None, bytes | None]], partition: int = -1
) -> None:
    producer = Producer(kafka.producer_config())
    for key, value in records:
        if partition >= 0:
            producer.produce(topic, value=value, key=key, partition=partition)
        else:
            producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0


@contextmanager
def running(runtime: Runtime) -> Iterator[threading.Thread]:
    stop = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            runtime.run(stop)
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(60)
    if failure:
        raise failure[0]
