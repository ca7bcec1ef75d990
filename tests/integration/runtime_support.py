"""Helpers for runtime tests: topics per test service, a runtime in a thread, and topic readers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, Message, Producer

from shared.kafka import KafkaConnection, bootstrap_topics
from shared.runtime import Runtime
from shared.topics import TopicSpec, service_topics


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


def read(
    kafka: KafkaConnection, topic: str, count: int, timeout: float = 60.0, isolation: str = "read_committed"
) -> list[Message]:
    """Read ``count`` records from the start of ``topic`` (fails on timeout), then until 1 s passes without more."""
    consumer = Consumer(kafka.consumer_config(f"reader-{time.monotonic_ns()}", **{"isolation.level": isolation}))
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    grace_until: float | None = None
    try:
        while True:
            now = time.monotonic()
            if len(messages) >= count:
                grace_until = grace_until or now + 1.0
                if now > grace_until:
                    break
            elif now > deadline:
                raise AssertionError(f"{topic}: read {len(messages)} of {count} records in {timeout}s")
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                messages.append(msg)
                if grace_until is not None:
                    grace_until = time.monotonic() + 1.0  # still arriving: keep reading
    finally:
        consumer.close()
    return messages


def headers(msg: Message) -> dict[str, bytes]:
    raw = msg.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    return {k: v for k, v in items if isinstance(v, bytes)}
