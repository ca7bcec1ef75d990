"""Flow control: which partitions are paused, why and until when, and the backoff of a dependency outage."""

from __future__ import annotations

import logging
import math
import time

from confluent_kafka import Consumer, TopicPartition

from shared.runtime import metrics
from shared.runtime.records import TP
from shared.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

BACKPRESSURE = "backpressure"
RETRY = "retry"
DEPENDENCY = "dependency"
MISSING_TOPIC = "missing-topic"
RESTORE = "restore"


class FlowControl:
    """The runtime's own record of paused partitions (librdkafka keeps a pause across rebalances; we do not)."""

    def __init__(self, service: str, settings: RuntimeSettings) -> None:
        self.service = service
        self.settings = settings
        self.consumer: Consumer | None = None
        self.paused: dict[TP, tuple[float, str]] = {}
        self.backoff_ms = settings.dependency_backoff_ms
        # Partitions whose tables are restoring: paused until ``restored``, whatever else pauses or resumes them.
        self.restoring: set[TP] = set()

    def attach(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def pause(self, tp: TP, until: float, reason: str) -> None:
        assert self.consumer is not None
        if tp in self.restoring:
            return  # stays paused for the restore, which outlasts any other reason
        self.consumer.pause([TopicPartition(*tp)])
        self.paused[tp] = (until, reason)
        metrics.PAUSED.labels(self.service).set(len(self.paused))

    def resume(self, tp: TP) -> None:
        assert self.consumer is not None
        if tp in self.restoring:
            return
        self.paused.pop(tp, None)
        self.consumer.resume([TopicPartition(*tp)])
        metrics.PAUSED.labels(self.service).set(len(self.paused))

    def restoring_pause(self, tps: set[TP]) -> None:
        """Pause these partitions until their tables are restored (``restored``)."""
        for tp in tps:
            self.pause(tp, math.inf, RESTORE)
        self.restoring |= tps

    def restored(self, tps: set[TP]) -> None:
        """Their tables are restored: they resume (unless paused for a reason of their own since)."""
        self.restoring -= tps
        for tp in tps:
            if self.paused.get(tp, (0.0, ""))[1] == RESTORE:
                self.resume(tp)

    def held(self, tp: TP) -> bool:
        """Paused for a reason that sought the partition back: records fetched before the pause are read again."""
        entry = self.paused.get(tp)
        return entry is not None and entry[1] != BACKPRESSURE

    def resume_due(self, now: float) -> None:
        for tp, (until, _reason) in list(self.paused.items()):
            if until <= now:
                self.resume(tp)

    def next_resume(self) -> float | None:
        return min((until for until, _ in self.paused.values()), default=None)

    def backpressure(self, assigned: set[TP], buffered: int, inflight_outputs: int) -> None:
        """Pause every partition while too much is buffered or the producer is behind; resume at half."""
        s = self.settings
        if buffered > s.max_buffered_records or inflight_outputs > s.max_inflight_outputs:
            to_pause = assigned - set(self.paused)
            for tp in to_pause:
                self.pause(tp, math.inf, BACKPRESSURE)
            if to_pause:
                metrics.BACKPRESSURE_PAUSES.labels(self.service).inc()
        elif buffered <= s.max_buffered_records // 2 and inflight_outputs <= s.max_inflight_outputs // 2:
            for tp, (_until, reason) in list(self.paused.items()):
                if reason == BACKPRESSURE:
                    self.resume(tp)

    def outage(self, assigned: set[TP], cause: BaseException) -> None:
        """A shared dependency is down: pause everything for the backoff, which doubles each time."""
        until = time.monotonic() + self.backoff_ms / 1000
        for tp in assigned:
            self.pause(tp, until, DEPENDENCY)
        metrics.DEPENDENCY_PAUSES.labels(self.service).inc()
        log.warning("dependency unavailable; pausing", extra={"error": str(cause), "backoff_ms": self.backoff_ms})
        self.backoff_ms = min(self.backoff_ms * 2, self.settings.dependency_backoff_max_ms)

    def hold(self, tp: TP, seconds: float, reason: str) -> None:
        self.pause(tp, time.monotonic() + seconds, reason)

    def recovered(self) -> None:
        self.backoff_ms = self.settings.dependency_backoff_ms

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        assert self.consumer is not None
        outage = [until for until, reason in self.paused.values() if reason == DEPENDENCY]
        if outage:
            # A dependency is down: new partitions wait out the same backoff as the others.
            for tp in partitions:
                self.pause((tp.topic, tp.partition), max(outage), DEPENDENCY)
            return
        # A pause outlives a rebalance in librdkafka: clear any pause we do not hold ourselves.
        fresh = [tp for tp in partitions if (tp.topic, tp.partition) not in self.paused]
        if fresh:
            self.consumer.resume(fresh)

    def release_retry_holds(self, only: set[TP] | None = None) -> None:
        """Held retry records are read again (and held again if still not due)."""
        for tp, (_until, reason) in list(self.paused.items()):
            if reason == RETRY and (only is None or tp in only):
                self.resume(tp)

    def forget(self, tps: set[TP]) -> None:
        self.restoring -= tps
        for tp in tps:
            self.paused.pop(tp, None)
        metrics.PAUSED.labels(self.service).set(len(self.paused))
