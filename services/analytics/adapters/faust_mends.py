"""Mends to faust-streaming 0.15.3 where a ``kill -9`` and restart lost records or table writes, and a worker
without a spinner."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

import faust
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from faust.types.transports import TransportT


class SeekFirstRecovery(Recovery):
    """faust's recovery, with the flow stopped while it seeks the stream partitions back."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        # faust seeks the stream partitions to their committed offsets while the flow still runs from the changelog
        # read: records fetched from before the seek were emptied from the queues unprocessed, their refetched
        # copies dropped as already read, and the commit stuck below them (faust-streaming #596). faust's own
        # ``resume_flow`` at the end starts the flow again.
        self.app.consumer.stop_flow()
        await super().on_recovery_completed(generation_id)


class AnalyticsTableManager(TableManager):
    """faust's table manager, recovering with :class:`SeekFirstRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class ResettingConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka consumer whose seek to the committed offsets also moves never-committed partitions back to
    where the reset policy starts them."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
        # faust drops a fetched batch (the flow stopped, the generation changed) and relies on this seek to fetch it
        # again; a partition never committed stayed where the batch left it, its records lost until a restart.
        committed: Mapping[Any, int | None] = await super().seek_to_committed()
        # aiokafka seeks only offsets > 0; a partition with none (or 0) stays wherever its last fetch left it.
        unset = [tp for tp, offset in committed.items() if offset is None or offset <= 0]
        if unset:
            consumer = self._thread._ensure_consumer()
            latest = self.app.conf.consumer_auto_offset_reset == "latest"
            await self._thread.call_thread(consumer.seek_to_end if latest else consumer.seek_to_beginning, *unset)
        return committed  # type: ignore[return-value]


class DrainingBuffer(ProducerBuffer):
    """faust's producer buffer (where table writes wait for the producer), whose flush waits until every message
    in it has reached the Kafka client."""

    handing = 0  # messages taken off the queue and not yet in the client

    async def _send_pending(self, fut: Any) -> None:
        self.handing += 1
        try:
            await super()._send_pending(fut)
        finally:
            self.handing -= 1

    async def flush(self) -> None:
        # faust's flush gives up once no message has left the buffer for 0.1 s, and a message taken off the queue
        # no longer counts while it is on its way to the client. The commit flushes, then commits the offsets: a
        # changelog write still in the buffer could miss the flush, the offsets pass its record, and a kill -9 left
        # a table that lacks what the committed offset says was done.
        while self.size or self.handing:
            if self.state != "running":
                raise RuntimeError("Cannot flush: Producer not Running")
            self.message_sent.clear()
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)


class DrainingProducer(aiokafka_driver.Producer):
    """faust's aiokafka producer on a :class:`DrainingBuffer`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Not started yet: the producer starts its buffer (``on_start``), this one.
        self.buffer = DrainingBuffer(loop=self.loop, beacon=self.beacon)
        self.buffer.app = self.app


class AnalyticsTransport(aiokafka_driver.Transport):
    Consumer = ResettingConsumer
    Producer = DrainingProducer


class AnalyticsWorker(faust.Worker):
    """faust's worker without the terminal spinner, so the root logger keeps the configured level."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        # faust's spinner set the root logger to DEBUG, so every debug call in faust and aiokafka built a record.
        self.spinner = None


class AnalyticsApp(faust.App):
    """A faust app on :class:`AnalyticsTransport`, its tables managed by :class:`AnalyticsTableManager`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, TableManager=AnalyticsTableManager, **kwargs)

    def _new_transport(self) -> TransportT:
        return AnalyticsTransport(self.conf.broker_consumer, self)
