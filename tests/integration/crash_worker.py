"""Subprocess for the crash-recovery test: a runtime that tags records, and can be told to die mid-commit.

SIGUSR1 arms a kill: at its next commit the (wrapped) producer flushes the open transaction's records to
the broker and then kills its own process with SIGKILL, so the kill lands inside an open transaction.
This wrapping is test-side code; the runtime gets the producer through its ordinary factory argument.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Producer

from shared.kafka import KafkaConnection
from shared.logging import configure_logging
from shared.runtime import Output, PartitionBatch, Runtime, RuntimeSettings

ARMED = threading.Event()


class KillingProducer(Producer):
    def commit_transaction(self, *args: Any) -> None:
        if ARMED.is_set():
            self.flush(10)
            os.kill(os.getpid(), signal.SIGKILL)
        super().commit_transaction(*args)


def main() -> None:
    bootstrap, service, source, out = sys.argv[1:5]
    configure_logging("crash-worker", "WARNING")
    signal.signal(signal.SIGUSR1, lambda *_: ARMED.set())

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        time.sleep(0.0005 * sum(len(b.records) for b in batches))  # stands in for model time
        return [
            [Output(out, b"%s|%s|%d|%d" % (r.value, r.topic.encode(), r.partition, r.offset), r.key)]
            for b in batches
            for r in b.records
        ]

    settings = RuntimeSettings(max_batch_size=100, max_wait_ms=20, commit_interval_ms=100, session_timeout_ms=6000)
    Runtime(
        service,
        KafkaConnection(bootstrap_servers=bootstrap),
        [source],
        handle,
        settings,
        producer_factory=KillingProducer,
    ).run()


if __name__ == "__main__":
    main()
