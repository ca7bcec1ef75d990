"""Writes records to Kafka from asyncio and answers once the broker has acknowledged each one."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from shared.kafka import KafkaConnection, KafkaFailure, RecordPosition
from shared.runtime import Output

log = logging.getLogger(__name__)
_Report = tuple["asyncio.Future[RecordPosition]", KafkaError | None, Message]


class Backpressure(Exception):
    """The producer's local queue is full: answer 503, never queue without bound."""


class WriteFailed(Exception):
    """The broker did not acknowledge a record (unreachable, timed out, refused)."""

    def __init__(self, failure: KafkaFailure | None, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure


class EventWriter:
    """One idempotent producer per process; a thread serves its delivery reports into asyncio futures."""

    def __init__(self, kafka: KafkaConnection, delivery_timeout_ms: int, queue_max_messages: int) -> None:
        conf = kafka.producer_config(
            **{
                "compression.type": "lz4",
                "linger.ms": 2,
                # Kafka unreachable: the delivery report fails after this, and the request gets a 503.
                "message.timeout.ms": delivery_timeout_ms,
                "queue.buffering.max.messages": queue_max_messages,
            }
        )
        self.producer = Producer(conf)
        # Filled by delivery callbacks, which run inside poll()/flush() on the thread that calls them.
        self._reports: list[_Report] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="intake-deliveries", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            self.producer.poll(0.05)
            self._hand_over()

    def _hand_over(self) -> None:
        """Settle the reports one poll served with one wake-up of the event loop, not one per record."""
        if not self._reports:
            return
        reports, self._reports = self._reports, []
        by_loop: dict[asyncio.AbstractEventLoop, list[_Report]] = {}
        for report in reports:
            by_loop.setdefault(report[0].get_loop(), []).append(report)
        for loop, settled in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle_all, settled)

    async def write(self, records: Sequence[Output]) -> list[RecordPosition | Exception]:
        """Produce every record; wait for all their delivery reports together; one result per record."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[RecordPosition]] = []
        results: list[RecordPosition | Exception | None] = [None] * len(records)
        for index, record in enumerate(records):
            future: asyncio.Future[RecordPosition] = loop.create_future()

            def report(error: KafkaError | None, msg: Message, future: Any = future) -> None:
                self._reports.append((future, error, msg))

            try:
                self.producer.produce(
                    record.topic, record.value, record.key, headers=list(record.headers), on_delivery=report
                )
            except BufferError:
                results[index] = Backpressure("the producer's local queue is full")
                future.cancel()
                continue
            futures.append(future)
        answers = iter(await asyncio.gather(*futures, return_exceptions=True))
        return [result if result is not None else _as_result(next(answers)) for result in results]

    def flush(self, timeout_s: float = 10.0) -> int:
        self.stopping.set()
        self.thread.join(5)
        remaining = self.producer.flush(timeout_s)
        self._hand_over()
        return int(remaining)


def _settle_all(reports: list[_Report]) -> None:
    for future, error, msg in reports:
        _settle(future, error, msg)


def _settle(future: asyncio.Future[RecordPosition], error: KafkaError | None, msg: Message) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(RecordPosition(msg.topic() or "", msg.partition() or 0, msg.offset() or 0))
    else:
        failure = KafkaFailure.of(error)
        future.set_exception(WriteFailed(failure, f"Kafka did not acknowledge the event: {failure}"))


def _as_result(answer: Any) -> RecordPosition | Exception:
    return answer if isinstance(answer, RecordPosition | Exception) else RuntimeError(repr(answer))
