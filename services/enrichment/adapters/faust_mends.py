"""Mends to faust-streaming 0.15.3 where a ``kill -9`` and restart lost records, and a worker without a spinner."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import faust
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as aiokafka_driver
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


class EnrichmentTableManager(TableManager):
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


class EnrichmentTransport(aiokafka_driver.Transport):
    Consumer = ResettingConsumer


class EnrichmentWorker(faust.Worker):
    """faust's worker without the terminal spinner, so the root logger keeps the configured level."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        # faust's spinner set the root logger to DEBUG, so every debug call in faust and aiokafka built a record.
        self.spinner = None


class EnrichmentApp(faust.App):
    """A faust app on :class:`EnrichmentTransport`, its tables managed by :class:`EnrichmentTableManager`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, TableManager=EnrichmentTableManager, **kwargs)

    def _new_transport(self) -> TransportT:
        return EnrichmentTransport(self.conf.broker_consumer, self)
