"""The JSON mirror of results: the webhook body's document beside each Avro result, under the same key and
CloudEvents headers, valid against the JSON Schema that tools/json_schema.py generates from the Avro schema."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from services.inference.adapters.predictor import Breaker, Predictor
from services.inference.adapters.store import ResultStore
from services.inference.domain import KeywordModel
from services.inference.handlers import InferenceHandler
from services.inference.settings import InferenceSettings
from services.notifier.domain import body_of
from shared.codec import EventCodec
from shared.events import EventInferred
from shared.headers import CONTENT_TYPE, TRACEPARENT
from shared.runtime import Output
from shared.settings import REPO_ROOT
from shared.topics import BY_NAME, EVENTS_INFERRED, EVENTS_INFERRED_JSON
from shared.tracing import TraceContext
from tests.unit.test_inference_handlers import batch
from tools import json_schema
from tools.gpu_check import MemoryRedis

CODEC = EventCodec.connect("mock://json-mirror", REPO_ROOT / "schemas")


def outputs_of(*texts: str, mirror_topic: str | None = EVENTS_INFERRED_JSON) -> list[Sequence[Output]]:
    predictor = Predictor(KeywordModel(), KeywordModel(), Breaker("unit", 3, 30.0))
    client: Any = MemoryRedis()
    handler = InferenceHandler(
        "unit", predictor, CODEC, ResultStore(client), EVENTS_INFERRED, 0.5, mirror_topic=mirror_topic
    )
    try:
        results = handler(batch(*texts)).result(30)
    finally:
        handler.close()
    answered: list[Sequence[Output]] = []
    for result in results:
        assert not isinstance(result, BaseException), result
        answered.append(result)
    return answered


def mirror_and_result() -> tuple[Output, Output, EventInferred]:
    [[avro, mirror]] = outputs_of("I was charged twice for March, please refund")
    event = CODEC.decode(avro.topic, avro.value, avro.headers).event
    assert isinstance(event, EventInferred)
    return avro, mirror, event


def trace_id_of(output: Output) -> str:
    trace = TraceContext.parse(dict(output.headers)[TRACEPARENT])
    assert trace is not None
    return trace.trace_id


def test_each_result_gets_a_mirror_record_on_the_json_topic_beside_the_avro_one() -> None:
    avro, mirror, _ = mirror_and_result()
    assert (avro.topic, mirror.topic) == (EVENTS_INFERRED, EVENTS_INFERRED_JSON)


def test_the_mirror_value_is_the_webhook_body_of_the_same_result() -> None:
    avro, mirror, event = mirror_and_result()
    assert mirror.value == body_of(event, trace_id_of(avro))


def test_the_mirror_has_the_avro_records_key_and_headers_but_a_json_content_type() -> None:
    avro, mirror, _ = mirror_and_result()
    assert mirror.key == avro.key
    assert dict(avro.headers)[CONTENT_TYPE] == b"application/vnd.confluent.avro"
    assert dict(mirror.headers) == {**dict(avro.headers), CONTENT_TYPE: b"application/json"}


def test_without_a_mirror_topic_only_the_avro_result_is_written() -> None:
    assert [[o.topic for o in outputs] for outputs in outputs_of("refund please", mirror_topic=None)] == [
        [EVENTS_INFERRED]
    ]


def test_the_mirror_is_on_by_default_and_a_setting_turns_it_off() -> None:
    assert InferenceSettings().json_mirror is True
    assert InferenceSettings().json_mirror_topic == EVENTS_INFERRED_JSON
    assert InferenceSettings(json_mirror=False).json_mirror is False


def test_the_mirror_topic_is_keyed_and_partitioned_like_the_avro_results() -> None:
    avro, mirror = BY_NAME[EVENTS_INFERRED], BY_NAME[EVENTS_INFERRED_JSON]
    assert (mirror.partitions, mirror.key, mirror.value_schema) == (avro.partitions, avro.key, None)


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json_schema.SCHEMA_PATH.read_text())
    return loaded


def test_the_mirror_document_validates_against_the_generated_json_schema() -> None:
    _, mirror, _ = mirror_and_result()
    assert mirror.value is not None
    validator = Draft202012Validator(schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(orjson.loads(mirror.value))]
    assert errors == []


def test_the_json_schema_rejects_a_document_with_a_field_it_does_not_know() -> None:
    _, mirror, _ = mirror_and_result()
    assert mirror.value is not None
    document = orjson.loads(mirror.value)
    document["result"]["surprise"] = 1
    assert not Draft202012Validator(schema()).is_valid(document)


def test_the_checked_in_json_schema_is_what_the_tool_writes() -> None:
    Draft202012Validator.check_schema(schema())
    assert json_schema.SCHEMA_PATH.read_text() == json_schema.render(), "run python -m tools.json_schema"
    assert json_schema.main(["--check"]) == 0
