"""enrichment worker: ``events.received.v1`` (and its retry and replay topics) joined with the profiles and activity
tables to ``events.enriched.v1``, exactly once, on the shared runtime; wiring."""

from __future__ import annotations

import sys

from services.enrichment.handlers import ACTIVITY, SEEN, EnrichmentHandler
from services.enrichment.settings import EnrichmentSettings
from shared.codec import EventCodec
from shared.runtime import Runtime
from shared.service import run_consumer, standard_checks


class EnrichmentService:
    """The pieces of one enrichment process."""

    def __init__(self, settings: EnrichmentSettings, codec: EventCodec) -> None:
        self.settings = settings
        self.handler = EnrichmentHandler(settings, codec)
        self.runtime = Runtime(
            settings.name,
            settings.pipeline.kafka,
            [settings.input_topic, settings.profiles_topic],
            self.handler,
            settings.runtime,
            decode=self.handler.decode,
            tables=[ACTIVITY, SEEN],
            sources=[self.handler.profiles()],
        )


def main() -> None:
    settings = EnrichmentSettings()
    pipeline = settings.pipeline
    service = EnrichmentService(settings, EventCodec.from_settings(pipeline))
    checks = standard_checks("enrichment", pipeline, redis=False, registry=True)
    sys.exit(run_consumer(settings, service.runtime, checks))


if __name__ == "__main__":
    main()
