"""status consumer: reads the committed event, retry and dead-letter topics and keeps each event's status."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import redis
from confluent_kafka.schema_registry import SchemaRegistryClient

from services.status.domain import Topics, update_for
from services.status.settings import StatusSettings
from services.status.store import StatusStore
from shared.codec import EventCodec
from shared.errors import DependencyUnavailable
from shared.events import AvroRecord, EventEnriched, EventInferred, EventReceived, NotificationDelivered
from shared.runtime import PartitionBatch, RecordResult, Runtime
from shared.schemas import SchemaCatalog
from shared.serde import AvroSerde
from shared.service import run_consumer, standard_checks
from shared.topics import RETRY_LEVELS, dlq_topic, retry_topic


def topics_of(settings: StatusSettings) -> Topics:
    stages = {
        settings.received_topic: "accepted",
        settings.enriched_topic: "enriched",
        settings.inferred_topic: "inferred",
        settings.delivered_topic: "delivered",
    }
    return Topics(stages=stages, services=dict(settings.stages))


def build_runtime(settings: StatusSettings, codec: EventCodec, store: StatusStore) -> Runtime:
    topics = topics_of(settings)
    types: dict[str, type[AvroRecord]] = {
        settings.received_topic: EventReceived,
        settings.enriched_topic: EventEnriched,
        settings.inferred_topic: EventInferred,
        settings.delivered_topic: NotificationDelivered,
    }

    def decode(topic: str, value: bytes | None, partition: int, offset: int) -> Any:
        # Stage topics carry typed events; retry and dead-letter topics keep other services' bytes.
        event_type = types.get(topic)
        return codec.decode_value(topic, value, partition, offset, event_type) if event_type else None

    def handle(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        updates = [
            update_for(topics, r.topic, r.partition, r.offset, r.headers, r.timestamp_ms, r.payload)
            for b in batches
            for r in b.records
        ]
        try:
            store.apply([u for u in updates if u is not None])
        except redis.RedisError as exc:
            raise DependencyUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return [[] for _ in updates]

    watched = [
        topic
        for service in settings.stages
        for topic in (*(retry_topic(service, n) for n in range(1, RETRY_LEVELS + 1)), dlq_topic(service))
    ]
    inputs = [*topics.stages, *watched]
    # Writes to Redis are idempotent: at-least-once, whatever the runtime block says.
    runtime_settings = settings.runtime.model_copy(update={"exactly_once": False})
    return Runtime(settings.name, settings.pipeline.kafka, inputs, handle, runtime_settings, decode=decode)


def main() -> None:
    settings = StatusSettings()
    pipeline = settings.pipeline
    codec = EventCodec(
        AvroSerde(SchemaRegistryClient({"url": pipeline.schema_registry_url}), SchemaCatalog(pipeline.schemas_dir))
    )
    store = StatusStore(
        redis.Redis.from_url(pipeline.redis_url, socket_timeout=5, socket_connect_timeout=2), settings.ttl_s
    )
    runtime = build_runtime(settings, codec, store)
    checks = standard_checks("status", pipeline, redis=True, registry=True)
    sys.exit(run_consumer(settings, runtime, checks))


if __name__ == "__main__":
    main()
