"""The status consumer's handler: decode each committed record, and apply its status update to Redis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis

from services.status.adapters.store import StatusStore
from services.status.domain import Topics, update_for
from shared.codec import EventCodec
from shared.errors import DependencyUnavailable
from shared.events import AvroRecord
from shared.runtime import PartitionBatch, RecordResult


class StatusHandler:
    """Called by the runtime with partition batches: every record's update, applied in one Redis round trip."""

    def __init__(
        self, topics: Topics, types: Mapping[str, type[AvroRecord]], codec: EventCodec, store: StatusStore
    ) -> None:
        self.topics = topics
        self.types = dict(types)
        self.codec = codec
        self.store = store

    def decode(self, topic: str, value: bytes | None, partition: int, offset: int) -> Any:
        # Stage topics carry typed events; retry and dead-letter topics keep other services' bytes.
        event_type = self.types.get(topic)
        return self.codec.decode_value(topic, value, partition, offset, event_type) if event_type else None

    def __call__(self, batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        updates = [
            update_for(self.topics, r.topic, r.partition, r.offset, r.headers, r.timestamp_ms, r.payload)
            for b in batches
            for r in b.records
        ]
        try:
            self.store.apply([u for u in updates if u is not None])
        except redis.RedisError as exc:
            raise DependencyUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return [[] for _ in updates]
