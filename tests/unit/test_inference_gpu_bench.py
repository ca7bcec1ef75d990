"""The GPU check's path runs here on the CPU: batcher, decode and both handler stages, without Kafka or Redis."""

from __future__ import annotations

from confluent_kafka.schema_registry import SchemaRegistryClient

from services.inference.encoder import Encoder
from services.inference.gpu_bench import MemoryRedis, messages, model_alone, through_handler, ticket_texts
from services.inference.keywords import KeywordModel
from services.inference.model import TriageModel
from services.inference.predictor import Breaker, Predictor
from services.inference.serving import InferenceHandler
from shared.codec import EventCodec
from shared.schemas import SchemaCatalog
from shared.serde import AvroSerde
from shared.settings import REPO_ROOT


def test_every_event_goes_through_the_batcher_and_both_stages() -> None:
    codec = EventCodec(
        AvroSerde(SchemaRegistryClient.new_client({"url": "mock://unit"}), SchemaCatalog(REPO_ROOT / "schemas"))
    )
    model = TriageModel(Encoder(), batch_size=8)
    redis = MemoryRedis()
    handler = InferenceHandler(
        "unit",
        Predictor(model, KeywordModel(), Breaker("unit", 3, 30.0)),
        codec,
        redis,  # type: ignore[arg-type]
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
