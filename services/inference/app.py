"""inference worker: ``events.enriched.v1`` (and its retry and replay topics) to ``events.inferred.v1``.

Exactly-once on the shared runtime. The model loads in the loop thread before consuming starts, while
``/readyz`` already answers 503 (``model: not loaded yet``); a primary model that cannot load leaves the
fallback answering, with the breaker open.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future

import redis
import torch
from confluent_kafka.schema_registry import SchemaRegistryClient

from services.inference.backends import (
    Backend,
    BackendOptions,
    load_backend,
    measure_minilm,
    resolve_device,
    resolve_dtype,
)
from services.inference.evaluation import load_tickets
from services.inference.predictor import Breaker, Predictor
from services.inference.serving import InferenceHandler
from services.inference.settings import InferenceSettings
from services.inference.training.generate import HERE as TRAINING
from shared.codec import EventCodec
from shared.events import EventEnriched
from shared.health import ReadinessCheck
from shared.runtime import PartitionBatch, RecordResult, Runtime
from shared.schemas import SchemaCatalog
from shared.serde import AvroSerde
from shared.service import run_consumer, standard_checks

log = logging.getLogger(__name__)


class InferenceService:
    """The pieces of one inference process; ``load`` builds the model side."""

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
        settings = self.settings
        torch.set_num_threads(settings.torch_threads(os.cpu_count() or 1))
        measure = None
        if settings.model == "minilm" and settings.dtype == "auto" and self.device == "cpu":
            texts = [t["text"] for t in load_tickets(TRAINING / "train.jsonl")[:64]]
            measure = measure_minilm(texts, 32)
        dtype = resolve_dtype(settings.dtype, self.device, measure)
        options = BackendOptions(self.device, dtype, self.model_batch_size)
        primary: Backend | None
        try:
            primary = load_backend(settings.model, options)
        except Exception:
            log.exception("primary model did not load; the fallback answers", extra={"model": settings.model})
            primary = None
        fallback = load_backend(settings.fallback_model, options)
        predictor = Predictor(
            primary, fallback, Breaker(settings.name, settings.breaker_failures, settings.breaker_reset_s)
        )
        self.handler = InferenceHandler(
            settings.name,
            predictor,
            self.codec,
            self.redis,
            settings.output_topic,
            settings.review_threshold,
            settings.cache_enabled,
            settings.cache_ttl_s,
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
    codec = EventCodec(
        AvroSerde(SchemaRegistryClient({"url": pipeline.schema_registry_url}), SchemaCatalog(pipeline.schemas_dir))
    )
    client = redis.Redis.from_url(pipeline.redis_url, socket_timeout=5, socket_connect_timeout=2)
    service = InferenceService(settings, codec, client)
    checks = {**standard_checks("inference", pipeline, redis=True, registry=True), "model": service.model_check()}
    code = run_consumer(settings, service.runtime, checks, warmup=service.load)
    if service.handler is not None:
        service.handler.close()
    sys.exit(code)


if __name__ == "__main__":
    main()
