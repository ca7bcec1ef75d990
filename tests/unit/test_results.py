"""Contract: the status API's result, the webhook body's result and the Avro record agree, field for field."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from services.intake.domain import EventStatus
from services.notifier.domain import body_of
from services.status.domain import Topics, update_for
from shared.events import EventInferred
from shared.results import json_time, result_view
from shared.schemas import SchemaCatalog
from shared.settings import PipelineSettings
from shared.status import StatusRecord
from tests.support.factories import make_event_inferred

VIEW_FIELDS = {"category", "priority", "needs_review", "model", "cached", "inferred_at", "latency_ms"}
TOPICS = Topics(stages={"events.inferred.v1": "inferred"}, services={})


def inferred() -> EventInferred:
    return EventInferred.model_validate(
        make_event_inferred(
            event_id="e1",
            tenant="acme",
            needs_review=True,
            cached=True,
            inferred_at=datetime(2026, 12, 2, 11, 24, 17, 230000, tzinfo=UTC),
            latency_ms=12.25,
        )
    )


def avro_record(event: EventInferred) -> dict[str, Any]:
    """The record as a consumer of ``events.inferred.v1`` decodes it."""
    parsed = parse_schema(SchemaCatalog(PipelineSettings().schemas_dir).raw["EventInferred"])
    buf = io.BytesIO()
    schemaless_writer(buf, parsed, event.to_avro())
    buf.seek(0)
    record: dict[str, Any] = schemaless_reader(buf, parsed, parsed)  # type: ignore[assignment]
    return record


def status_api_result(event: EventInferred) -> Any:
    """What ``GET /v1/events/{id}`` answers as ``result``: the status consumer's write, read back by intake."""
    update = update_for(TOPICS, "events.inferred.v1", 0, 1, [], 1_000, event)
    assert update is not None
    record = StatusRecord.read({"status": "inferred", **update.extra})
    assert record is not None
    answer = EventStatus(event_id="e1", status="inferred", stages=record.stages, result=record.result)
    return json.loads(answer.model_dump_json())["result"]


def webhook_result(event: EventInferred) -> Any:
    return orjson.loads(body_of(event, "abc"))["result"]


def test_the_status_api_and_the_webhook_carry_the_same_result_view() -> None:
    event = inferred()
    view = json.loads(json.dumps(result_view(event)))
    assert set(view) == VIEW_FIELDS
    assert status_api_result(event) == view
    assert webhook_result(event) == view


def test_the_result_view_holds_what_the_avro_record_holds() -> None:
    event = inferred()
    record = avro_record(event)
    view = result_view(event)
    assert set(record) >= VIEW_FIELDS  # every field of the view is one of the record's
    for head in ("category", "priority"):
        assert view[head] == {k: record[head][k] for k in ("label", "confidence", "scores")}
        assert view[head]["scores"]
    assert view["model"] == record["model"]
    assert (view["needs_review"], view["cached"]) == (record["needs_review"], record["cached"]) == (True, True)
    assert view["latency_ms"] == record["latency_ms"] == 12.25
    assert view["inferred_at"] == json_time(record["inferred_at"]) == "2026-12-02T11:24:17.230+00:00"


def test_the_view_writes_times_in_utc_to_the_millisecond() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert json_time(datetime(2026, 1, 1, 2, 0, 0, 123456, tzinfo=plus_two)) == "2026-01-01T00:00:00.123+00:00"
    assert json_time(datetime(2026, 1, 1)) == "2026-01-01T00:00:00.000+00:00"  # naive times are UTC
