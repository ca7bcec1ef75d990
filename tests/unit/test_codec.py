"""The event codec: keys, CloudEvents binary-mode headers per stage, traceparent, and the way back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.codec import CloudEventContext, EventCodec, rfc3339
from shared.errors import DeserializationError
from shared.events import CustomerProfile, EventEnriched, EventInferred, EventReceived, NotificationDelivered
from shared.settings import PipelineSettings
from shared.topics import CUSTOMERS_PROFILE, EVENTS_ENRICHED, EVENTS_INFERRED, EVENTS_RECEIVED
from shared.tracing import TraceContext
from tests.support.factories import (
    make_customer_profile,
    make_event_enriched,
    make_event_inferred,
    make_event_received,
)


@pytest.fixture
def codec() -> EventCodec:
    # confluent-kafka's own in-memory registry client: this is pure encoding logic, no broker involved.
    return EventCodec.connect("mock://codec-tests", PipelineSettings().schemas_dir)


def headers_of(headers: list[tuple[str, bytes]] | object) -> dict[str, str]:
    assert isinstance(headers, list)
    return {k: v.decode() for k, v in headers}


def test_received_event_carries_every_binary_mode_header(codec: EventCodec) -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    event = EventReceived.model_validate(make_event_received(event_id="e-1", occurred_at=moment))
    record = codec.encode(event)
    assert record.topic == EVENTS_RECEIVED
    assert record.key == b"acme:customer-7"
    h = headers_of(record.headers)
    assert h["ce_specversion"] == "1.0"
    assert (h["ce_id"], h["ce_source"], h["ce_type"]) == ("e-1", "helpdesk", "ticket.created")
    assert h["ce_time"] == "2026-03-04T05:06:07.890Z"
    assert (h["ce_subject"], h["ce_tenant"]) == ("customer-7", "acme")
    assert h["content-type"] == "application/vnd.confluent.avro"
    assert TraceContext.parse(h["traceparent"]) is not None


@pytest.mark.parametrize(
    ("event", "topic", "ce_type", "ce_source"),
    [
        (
            EventEnriched.model_validate(make_event_enriched()),
            EVENTS_ENRICHED,
            "ticket.created.enriched",
            "/pipeline/enrichment",
        ),
        (
            EventInferred.model_validate(make_event_inferred()),
            EVENTS_INFERRED,
            "ticket.created.inferred",
            "/pipeline/inference",
        ),
    ],
    ids=["enriched", "inferred"],
)
def test_a_stage_derives_its_type_from_the_publishers(
    codec: EventCodec, event: EventEnriched | EventInferred, topic: str, ce_type: str, ce_source: str
) -> None:
    record = codec.encode(event)
    h = headers_of(record.headers)
    assert record.topic == topic
    assert (h["ce_type"], h["ce_source"], h["ce_id"]) == (ce_type, ce_source, event.event_id)
    assert record.key == f"{event.tenant}:{event.subject}".encode()


def test_a_profile_is_keyed_by_tenant_and_customer_id(codec: EventCodec) -> None:
    profile = CustomerProfile.model_validate(make_customer_profile(tenant="t1", customer_id="c-9"))
    record = codec.encode(profile)
    assert record.topic == CUSTOMERS_PROFILE
    assert record.key == b"t1:c-9"
    assert headers_of(record.headers)["ce_subject"] == "c-9"


def test_a_receipt_names_the_delivered_stage(codec: EventCodec) -> None:
    receipt = NotificationDelivered(
        event_id="e",
        tenant="t",
        subject="s",
        endpoint="https://x.test",
        status="delivered",
        delivered_at=datetime.now(UTC),
        type="ticket.created",
    )
    h = headers_of(codec.encode(receipt).headers)
    assert h["ce_type"] == "ticket.created.delivered"
    assert h["ce_id"] == "e"
    assert h["ce_source"] == "/pipeline/notifier/callback"
    other = headers_of(codec.encode(receipt.model_copy(update={"subscription_id": "sub-1"})).headers)
    assert other["ce_source"] == "/pipeline/notifier/sub-1"


def test_the_output_keeps_the_incoming_trace_id_under_a_new_span(codec: EventCodec) -> None:
    incoming = TraceContext.start()
    record = codec.encode(EventEnriched.model_validate(make_event_enriched()), trace=incoming)
    out = TraceContext.parse(headers_of(record.headers)["traceparent"])
    assert out is not None
    assert out.trace_id == incoming.trace_id and out.span_id != incoming.span_id


def test_without_an_incoming_trace_a_new_one_starts(codec: EventCodec) -> None:
    event = EventReceived.model_validate(make_event_received())
    first = headers_of(codec.encode(event).headers)["traceparent"]
    second = headers_of(codec.encode(event).headers)["traceparent"]
    assert first.split("-")[1] != second.split("-")[1]


def test_decode_inverts_encode(codec: EventCodec) -> None:
    event = EventInferred.model_validate(make_event_inferred(callback_url="https://hook.test/x"))
    record = codec.encode(event)
    decoded = codec.decode(record.topic, record.value, record.headers)
    assert decoded.event == event
    assert decoded.context.id == event.event_id
    assert decoded.context.type == "ticket.created.inferred"
    assert decoded.context.time == event.occurred_at
    assert decoded.context.headers() == list(record.headers)


def test_a_record_from_a_bare_producer_decodes_with_a_context_built_from_the_event(codec: EventCodec) -> None:
    event = EventReceived.model_validate(make_event_received())
    record = codec.encode(event)
    decoded = codec.decode(record.topic, record.value, [])
    assert decoded.context.id == event.event_id
    assert decoded.context.type == event.type
    assert decoded.context.trace is None


def test_undecodable_bytes_are_a_deserialization_error_naming_the_position(codec: EventCodec) -> None:
    with pytest.raises(DeserializationError, match=r"events.received.v1\[3\]@17"):
        codec.decode(EVENTS_RECEIVED, b"\x00\x00\x00\x00\x01garbage", [], partition=3, offset=17)


def test_a_topic_without_a_typed_event_is_refused(codec: EventCodec) -> None:
    with pytest.raises(DeserializationError, match="carries no typed event"):
        codec.decode("inference.dlq", b"x", [])


def test_headers_without_the_required_attributes_give_no_context() -> None:
    assert CloudEventContext.from_headers([("ce_id", b"x")]) is None


def test_rfc3339_times_with_lowercase_separators_are_read() -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"i"), ("ce_source", b"/s"), ("ce_type", b"t")]
    context = CloudEventContext.from_headers([*headers, ("ce_time", b"2026-01-02t03:04:05.000z")])
    assert context is not None and context.time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert context.subject == "" and ("ce_subject", b"") not in context.headers()


def test_rfc3339_treats_naive_times_as_utc() -> None:
    assert rfc3339(datetime(2026, 1, 1, 0, 0, 0)) == "2026-01-01T00:00:00.000Z"
