"""Contract: every typed event matches its schemas/*.avsc, field for field, and round-trips through Avro."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any, get_args

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from shared.events import EVENT_TYPES, AvroRecord, EventInferred, EventReceived
from shared.schemas import SchemaCatalog
from shared.settings import PipelineSettings
from tests.support.factories import make_event_received

CATALOG = SchemaCatalog(PipelineSettings().schemas_dir)


def _nullable(avro_type: Any) -> bool:
    return isinstance(avro_type, list) and "null" in avro_type


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_event_fields_match_the_avsc(event_type: type[AvroRecord]) -> None:
    schema = CATALOG.raw[event_type.schema_name]
    avro_fields = {f["name"]: f for f in schema["fields"]}
    assert list(avro_fields) == list(event_type.model_fields)
    for name, field in event_type.model_fields.items():
        optional = type(None) in get_args(field.annotation)
        assert optional == _nullable(avro_fields[name]["type"]), name


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_every_field_and_schema_has_a_doc(event_type: type[AvroRecord]) -> None:
    schema = CATALOG.raw[event_type.schema_name]
    assert schema.get("doc")
    assert all(f.get("doc") for f in schema["fields"])


def test_schema_files_cover_every_typed_event() -> None:
    assert {t.schema_name for t in EVENT_TYPES} == set(CATALOG.raw)


def _round_trip(schema_name: str, record: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_schema(CATALOG.raw[schema_name])
    buf = io.BytesIO()
    schemaless_writer(buf, parsed, record)
    buf.seek(0)
    result: dict[str, Any] = schemaless_reader(buf, parsed, parsed)  # type: ignore[assignment]
    return result


def test_event_received_round_trips_through_avro() -> None:
    event = EventReceived.model_validate(make_event_received(callback_url="https://example.test/hook"))
    back = EventReceived.from_avro(_round_trip("EventReceived", event.to_avro()))
    assert back == event


def test_event_inferred_round_trips_with_nested_records() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = EventInferred.model_validate(
        {
            "event_id": "e1",
            "tenant": "t",
            "type": "ticket.created",
            "subject": "c1",
            "occurred_at": now,
            "category": {"label": "billing", "confidence": 0.9, "scores": {"billing": 0.9, "bug": 0.1}},
            "priority": {"label": "high", "confidence": 0.7, "scores": {}},
            "model": {"name": "minilm", "version": "1"},
            "inferred_at": now,
        }
    )
    assert EventInferred.from_avro(_round_trip("EventInferred", event.to_avro())) == event
