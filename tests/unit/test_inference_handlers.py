"""The handler's bad-input paths without Kafka: an empty text is a validation failure for that record alone,
and Redis down is a dependency outage for the whole call (the runtime waits; nothing is routed)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from services.inference.adapters.predictor import Breaker, Predictor
from services.inference.adapters.store import ResultStore
from services.inference.domain import InvalidTicket, KeywordModel
from services.inference.handlers import InferenceHandler
from shared.codec import EventCodec
from shared.errors import DependencyUnavailable
from shared.events import EventEnriched
from shared.runtime import InputRecord, PartitionBatch
from shared.settings import REPO_ROOT
from tests.support.factories import make_event_enriched
from tools.gpu_check import MemoryRedis


class DownRedis(MemoryRedis):
    def execute(self) -> list[Any]:
        raise redis.ConnectionError("Connection refused")


def handler_with(client: Any) -> InferenceHandler:
    codec = EventCodec.connect("mock://serving", REPO_ROOT / "schemas")
    predictor = Predictor(KeywordModel(), KeywordModel(), Breaker("unit", 3, 30.0))
    return InferenceHandler("unit", predictor, codec, ResultStore(client), "events.inferred.v1", 0.5)


def batch(*texts: str) -> list[PartitionBatch]:
    records = [
        InputRecord(
            "events.enriched.v1",
            0,
            n,
            b"k",
            b"",
            [],
            1,
            EventEnriched.model_validate(make_event_enriched(event_id=f"e-{n}", text=text)),
        )
        for n, text in enumerate(texts)
    ]
    return [PartitionBatch("events.enriched.v1", 0, records)]


def test_an_empty_text_fails_alone_as_validation_and_the_rest_is_answered() -> None:
    handler = handler_with(MemoryRedis())
    try:
        results = handler(batch("I was charged twice", "   ")).result(30)
    finally:
        handler.close()
    assert isinstance(results[1], InvalidTicket) and results[1].category == "validation"
    assert isinstance(results[0], list) and len(results[0]) == 1


def test_redis_down_fails_the_whole_call_as_a_dependency_outage() -> None:
    handler = handler_with(DownRedis())
    try:
        with pytest.raises(DependencyUnavailable, match="redis"):
            handler(batch("I was charged twice")).result(30)
    finally:
        handler.close()
