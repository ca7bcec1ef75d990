"""Subprocess for the crash-recovery test: a runtime that tags records, and can be told to die mid-commit.

SIGUSR1 arms a kill: at its next commit the (wrapped) producer flushes the open transaction's records to
the broker and then kills its own process with SIGKILL, so the kill lands inside an open transaction.
This wrapping is test-side code; the runtime gets the producer through its ordinary factory argument.
"""

from __future__ import annotations

import asyncio
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
from shared.runtime import Output, PartitionBatch, RecordResult, Runtime, RuntimeSettings

ARMED = threading.Event()


class KillingProducer(Producer):
    def commit_transaction(self, *args: Any) -> None:
        if ARMED.is_set():
            self.flush(10)
            os.kill(os.getpid(), signal.SIGKILL)
        super().commit_transaction(*args)


def main() -> None:
    bootstrap, service, source, out, mode = sys.argv[1:6]
    configure_logging("crash-worker", "WARNING")
    signal.signal(signal.SIGUSR1, lambda *_: ARMED.set())

    def tag(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        return [
            [Output(out, b"%s|%s|%d|%d" % (r.value, r.topic.encode(), r.partition, r.offset), r.key)]
            for b in batches
            for r in b.records
        ]

    def handle(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        time.sleep(0.0005 * sum(len(b.records) for b in batches))  # stands in for model time
        return tag(batches)

    async def handle_async(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        await asyncio.sleep(0.002 * sum(len(b.records) for b in batches))  # overlapping "model" time
        return tag(batches)

    pipelined = mode == "async-inflight-4"
    settings = RuntimeSettings(
        max_batch_size=100,
        max_wait_ms=20,
        commit_interval_ms=100,
        session_timeout_ms=6000,
        max_inflight_batches=4 if pipelined else 1,
    )
    kafka = KafkaConnection(bootstrap_servers=bootstrap)
    handler = handle_async if pipelined else handle
    Runtime(service, kafka, [source], handler, settings, producer_factory=KillingProducer).run()


if __name__ == "__main__":
    main()
