"""The GPU check's path runs here on the CPU: batcher, decode and both handler stages, without Kafka or Redis."""

from __future__ import annotations

from services.inference.adapters.encoder import Encoder
from services.inference.adapters.minilm import TriageModel
from services.inference.adapters.predictor import Breaker, Predictor
from services.inference.adapters.store import ResultStore
from services.inference.domain import KeywordModel
from services.inference.handlers import InferenceHandler
from shared.codec import EventCodec
from shared.settings import REPO_ROOT
from tools.gpu_check import MemoryRedis, messages, model_alone, through_handler, ticket_texts


def test_every_event_goes_through_the_batcher_and_both_stages() -> None:
    codec = EventCodec.connect("mock://unit", REPO_ROOT / "schemas")
    model = TriageModel(Encoder(), batch_size=8)
    redis = MemoryRedis()
    handler = InferenceHandler(
        "unit",
        Predictor(model, KeywordModel(), Breaker("unit", 3, 30.0)),
        codec,
        ResultStore(redis),  # type: ignore[arg-type]
        "out",
        0.5,
    )
    texts = ticket_texts(40)
    assert len(set(texts)) == 40
    try:
        assert through_handler(handler, codec, messages(codec, texts), 16, 2) > 0
    finally:
        handler.close()
    assert redis.replies == []  # every pipelined lookup was answered and taken
    assert model_alone(model, texts, 16) > 0
