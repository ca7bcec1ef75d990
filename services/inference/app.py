"""inference worker: ``events.enriched.v1`` (and its retry and replay topics) to ``events.inferred.v1``; wiring."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future

import redis
import torch

from services.inference.adapters.backends import load_predictor, resolve_device
from services.inference.adapters.store import ResultStore
from services.inference.handlers import InferenceHandler
from services.inference.settings import InferenceSettings
from shared.codec import EventCodec
from shared.events import EventEnriched
from shared.health import ReadinessCheck
from shared.runtime import PartitionBatch, RecordResult, Runtime
from shared.service import run_consumer, standard_checks

log = logging.getLogger(__name__)


class InferenceService:
    """The pieces of one inference process; ``load`` builds the model side (``/readyz`` answers 503 until then)."""

    def __init__(self, settings: InferenceSettings, codec: EventCodec, client: redis.Redis) -> None:
        self.settings = settings
        self.codec = codec
        self.redis = client
        self.device = resolve_device(settings.device)
        self.runtime_settings, self.model_batch_size = settings.batching_for(self.device)
        self.loaded = threading.Event()
        self.handler: InferenceHandler | None = None
        self.runtime = Runtime(
            settings.name,
            settings.pipeline.kafka,
            [settings.input_topic],
            self.handle,
            self.runtime_settings,
            decode=self.decode,
        )

    def decode(self, topic: str, value: bytes | None, partition: int, offset: int) -> EventEnriched:
        # The input, its retry levels and its replay topic all carry EventEnriched bytes.
        event = self.codec.decode_value(topic, value, partition, offset, EventEnriched)
        assert isinstance(event, EventEnriched)
        return event

    def handle(self, batches: Sequence[PartitionBatch]) -> Future[Sequence[RecordResult]]:
        assert self.handler is not None, "the runtime starts only after load()"
        return self.handler(batches)

    def load(self) -> None:
        """Runs in the loop thread before consuming starts."""
        settings = self.settings
        torch.set_num_threads(settings.torch_threads(os.cpu_count() or 1))
        predictor, dtype = load_predictor(settings, self.device, self.model_batch_size)
        self.handler = InferenceHandler(
            settings.name,
            predictor,
            self.codec,
            ResultStore(self.redis, settings.cache_ttl_s),
            settings.output_topic,
            settings.review_threshold,
            settings.cache_enabled,
            settings.json_mirror_topic if settings.json_mirror else None,
        )
        answering = predictor.answering()
        log.info(
            "model loaded",
            extra={
                "model": answering.name,
                "version": answering.version,
                "device": self.device,
                "dtype": str(dtype).removeprefix("torch."),
                "threads": torch.get_num_threads(),
                "max_batch_size": self.runtime_settings.max_batch_size,
                "model_batch_size": self.model_batch_size,
            },
        )
        self.loaded.set()

    def model_check(self) -> ReadinessCheck:
        async def check() -> None:
            if not self.loaded.is_set():
                raise RuntimeError("model not loaded yet")

        return check


def main() -> None:
    settings = InferenceSettings()
    pipeline = settings.pipeline
    client = redis.Redis.from_url(pipeline.redis_url, socket_timeout=5, socket_connect_timeout=2)
    service = InferenceService(settings, EventCodec.from_settings(pipeline), client)
    checks = {**standard_checks("inference", pipeline, redis=True, registry=True), "model": service.model_check()}
    code = run_consumer(settings, service.runtime, checks, warmup=service.load)
    if service.handler is not None:
        service.handler.close()
    sys.exit(code)


if __name__ == "__main__":
    main()
