"""Per-partition buffers: one queue per topic-partition, batches close on size or on the oldest record's wait."""

from __future__ import annotations

import time
from collections import deque

from confluent_kafka import Message

from shared.runtime.records import TP


class PartitionBuffers:
    """Fetched records waiting for a batch, per partition; a revoked partition's queue is dropped whole."""

    def __init__(self, max_batch_size: int, max_wait_ms: int) -> None:
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.queues: dict[TP, deque[Message]] = {}
        self.count = 0
        self.oldest_at: float | None = None

    def add(self, tp: TP, msg: Message) -> None:
        queue = self.queues.get(tp)
        if queue is None:
            queue = self.queues[tp] = deque()
        queue.append(msg)
        self.count += 1
        if self.oldest_at is None:
            self.oldest_at = time.monotonic()

    def ready(self, now: float | None = None) -> bool:
        if self.count == 0:
            return False
        if self.count >= self.max_batch_size:
            return True
        assert self.oldest_at is not None
        return (now if now is not None else time.monotonic()) - self.oldest_at >= self.max_wait_s

    def seconds_to_ready(self, now: float) -> float | None:
        """How long until a batch is ready by time; 0 when it is ready now; None when nothing is buffered."""
        if self.count == 0:
            return None
        if self.count >= self.max_batch_size:
            return 0.0
        assert self.oldest_at is not None
        return max(0.0, self.oldest_at + self.max_wait_s - now)

    def take(self) -> list[tuple[TP, list[Message]]]:
        """Up to ``max_batch_size`` records, partition by partition; served partitions go to the back."""
        taken: list[tuple[TP, list[Message]]] = []
        budget = self.max_batch_size
        for tp in list(self.queues):
            queue = self.queues.pop(tp)
            n = min(len(queue), budget)
            if n == len(queue):
                taken.append((tp, list(queue)))
            else:
                taken.append((tp, [queue.popleft() for _ in range(n)]))
                self.queues[tp] = queue  # partitions served this time go to the back: none starves the others
            budget -= n
            self.count -= n
            if budget == 0:
                break
        self.oldest_at = time.monotonic() if self.count else None
        return taken

    def drop(self, tps: set[TP] | None = None) -> None:
        """Forget what is buffered for ``tps`` (all partitions when None)."""
        for tp in list(self.queues) if tps is None else [tp for tp in tps if tp in self.queues]:
            self.count -= len(self.queues.pop(tp))
        self.oldest_at = (self.oldest_at or time.monotonic()) if self.count else None
