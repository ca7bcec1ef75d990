"""status consumer: wiring and the process entry point."""

from __future__ import annotations

import sys

import redis

from services.status.adapters.store import StatusStore
from services.status.domain import Topics
from services.status.handlers import StatusHandler
from services.status.settings import StatusSettings
from shared.codec import EventCodec
from shared.events import AvroRecord, EventEnriched, EventInferred, EventReceived, NotificationDelivered
from shared.runtime import Runtime
from shared.service import run_consumer, standard_checks
from shared.status import Stage
from shared.topics import RETRY_LEVELS, dlq_topic, retry_topic


def topics_of(settings: StatusSettings) -> Topics:
    stages = {
        settings.received_topic: Stage.ACCEPTED,
        settings.enriched_topic: Stage.ENRICHED,
        settings.inferred_topic: Stage.INFERRED,
        settings.delivered_topic: Stage.DELIVERED,
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
    handler = StatusHandler(topics, types, codec, store)
    watched = [
        topic
        for service in settings.stages
        for topic in (*(retry_topic(service, n) for n in range(1, RETRY_LEVELS + 1)), dlq_topic(service))
    ]
    inputs = [*topics.stages, *watched]
    # Writes to Redis are idempotent: at-least-once, whatever the runtime block says.
    runtime_settings = settings.runtime.model_copy(update={"exactly_once": False})
    return Runtime(settings.name, settings.pipeline.kafka, inputs, handler, runtime_settings, decode=handler.decode)


def main() -> None:
    settings = StatusSettings()
    pipeline = settings.pipeline
    store = StatusStore(
        redis.Redis.from_url(pipeline.redis_url, socket_timeout=5, socket_connect_timeout=2), settings.ttl_s
    )
    runtime = build_runtime(settings, EventCodec.from_settings(pipeline), store)
    checks = standard_checks("status", pipeline, redis=True, registry=True)
    sys.exit(run_consumer(settings, runtime, checks))


if __name__ == "__main__":
    main()
