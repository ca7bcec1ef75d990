"""notifier worker: wiring and the process entry point."""

from __future__ import annotations

import sys

import redis.asyncio as aioredis

from services.notifier.adapters.http import WebhookClient, limits_of
from services.notifier.adapters.store import NotifierStore
from services.notifier.domain import parse_networks
from services.notifier.handlers import NotifierHandler
from services.notifier.settings import NotifierSettings
from shared.codec import EventCodec
from shared.events import EventInferred
from shared.runtime import Runtime
from shared.service import run_consumer, standard_checks


class NotifierService:
    """The pieces of one notifier process."""

    def __init__(self, settings: NotifierSettings, codec: EventCodec) -> None:
        self.settings = settings
        self.codec = codec
        # The Redis client and the HTTP session bind to the loop that first uses them: the runtime's handler loop.
        client = aioredis.Redis.from_url(settings.pipeline.redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.webhooks = WebhookClient(limits_of(settings), parse_networks(settings.allow_networks))
        self.handler = NotifierHandler(settings, codec, NotifierStore(client, settings.delivered_ttl_s), self.webhooks)
        self.runtime = Runtime(
            settings.name,
            settings.pipeline.kafka,
            [settings.input_topic],
            self.handler,
            settings.runtime,
            decode=self.decode,
        )

    def decode(self, topic: str, value: bytes | None, partition: int, offset: int) -> EventInferred:
        # The input, its retry levels and its replay topic all carry EventInferred bytes.
        event = self.codec.decode_value(topic, value, partition, offset, EventInferred)
        assert isinstance(event, EventInferred)
        return event


def main() -> None:
    settings = NotifierSettings()
    pipeline = settings.pipeline
    service = NotifierService(settings, EventCodec.from_settings(pipeline))
    checks = standard_checks("notifier", pipeline, redis=True, registry=True)
    sys.exit(run_consumer(settings, service.runtime, checks))


if __name__ == "__main__":
    main()
