"""What the benchmarks share: run a runtime in a thread until a group has committed every input."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from confluent_kafka import Producer

from shared.kafka import GroupProgress, KafkaConnection
from shared.runtime import Runtime
from shared.topics import service_topics


def fill(kafka: KafkaConnection, topic: str, count: int, value_of: Callable[[int], bytes]) -> None:
    """Write ``count`` records to ``topic`` (keys ``acme:c<i % 500>``), waiting out a full local queue."""
    producer = Producer(kafka.producer_config())
    for i in range(count):
        value = value_of(i)
        while True:
            try:
                producer.produce(topic, value=value, key=f"acme:c{i % 500}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def run_until_committed(runtime: Runtime, kafka: KafkaConnection, source: str, partitions: int, total: int) -> float:
    """Run ``runtime`` until its group has committed ``total`` records of ``source``; return that moment
    (``time.perf_counter``); then stop it and delete the service's retry, DLQ and replay topics."""
    stop = threading.Event()
    thread = threading.Thread(target=runtime.run, args=(stop,), daemon=True)
    thread.start()
    progress = GroupProgress(kafka, runtime.service, source, partitions)
    while progress.committed() < total:
        time.sleep(0.05)
    done = time.perf_counter()
    progress.close()
    stop.set()
    thread.join(60)
    kafka.admin().delete_topics([t.name for t in service_topics(runtime.service, 1)])
    return done
