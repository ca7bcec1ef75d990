"""faust-streaming 0.15.3, mended where a ``kill -9`` and restart lost records (``tests/integration/
test_enrichment_recovery.py`` found both, each in about one run of three to ten).

1. **Recovery resumes the flow around its seek.** Once the changelogs are read, faust resumes the stream
   partitions, seeks them to their committed offsets, then resumes flow control, which empties the agents'
   queues. The flow is still running from the changelog read, so a fetch in flight hands the agents records from
   before the seek; the seek sets the read offset back while the fetcher is still walking that batch, the batch
   sets it forward again, and the queues are emptied. Those records were never processed, their refetched copies
   are dropped as already read, and the partition's commit sticks below them (faust-streaming issue #596).
   :class:`SeekFirstRecovery` stops the flow first; faust's own ``resume_flow`` at the end starts it again.
2. **A seek back skips partitions with no committed offset.** When faust drops a fetched batch (the flow stopped,
   the generation changed) it relies on a seek to the committed offsets to fetch the records again. aiokafka's
   ``seek_to_committed`` leaves a partition that has never committed where the dropped batch left it, so its
   records vanish until the next restart. :class:`ResettingConsumer` puts such partitions back where the reset
   policy (``consumer_auto_offset_reset``) says a new consumer starts.

And one cost: faust's worker draws a terminal spinner for every log record, and to feed it sets the root logger to
DEBUG, so every debug call in faust and aiokafka built a record even at ``WARNING``. :class:`EnrichmentWorker`
draws none.
"""

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
    """faust's recovery, with the flow stopped while it seeks the stream partitions back (mend 1)."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
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
    where the reset policy starts them (mend 2)."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
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
        self.spinner = None


class EnrichmentApp(faust.App):
    """A faust app on :class:`EnrichmentTransport`, its tables managed by :class:`EnrichmentTableManager`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, TableManager=EnrichmentTableManager, **kwargs)

    def _new_transport(self) -> TransportT:
        return EnrichmentTransport(self.conf.broker_consumer, self)
