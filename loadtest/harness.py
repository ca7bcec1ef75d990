"""What the benchmarks share: run a runtime in a thread until a group has committed every input."""

from __future__ import annotations

import threading
import time

from shared.kafka import GroupProgress, KafkaConnection
from shared.runtime import Runtime
from shared.topics import service_topics


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
