"""What each committed record means for an event's status (no Redis, no broker)."""

from __future__ import annotations

import json

from services.status.domain import Topics, endpoints_named, update_for
from shared.events import EventInferred, NotificationDelivered
from shared.status import ENDPOINT_RANKS, EndpointOutcome, StatusRecord
from tests.support.factories import make_event_inferred

TOPICS = Topics(
    stages={
        "events.received.v1": "accepted",
        "events.enriched.v1": "enriched",
        "events.inferred.v1": "inferred",
        "notifications.delivered.v1": "delivered",
    },
    services={"enrichment": "enriched", "inference": "inferred", "notifier": "delivered"},
)
CE = [("ce_id", b"e1"), ("ce_tenant", b"acme")]


def test_a_stage_topic_reaches_its_stage_and_the_inferred_one_carries_the_result() -> None:
    inferred = EventInferred.model_validate(make_event_inferred(event_id="e1", tenant="acme"))
    update = update_for(TOPICS, "events.inferred.v1", 0, 5, CE, 1_700_000_000_000, inferred)
    assert update is not None and (update.kind, update.stage, update.rank) == ("stage", "inferred", 3)
    result = json.loads(update.extra["result"])
    assert result["category"]["label"] == "technical" and result["category"]["confidence"] == 0.9
    assert result["model"]["name"] == "minilm-triage" and result["latency_ms"] == 3.5


def test_a_dead_letter_fails_the_stage_its_service_produces_and_names_the_coordinates() -> None:
    headers = [
        *CE,
        ("dlq.service", b"inference"),
        ("dlq.error.category", b"model"),
        ("dlq.error.type", b"X"),
        ("dlq.error.message", b"boom"),
    ]
    update = update_for(TOPICS, "inference.dlq", 4, 17, headers, 0, None)
    assert update is not None and (update.kind, update.rank) == ("failed", 3)
    error = json.loads(update.extra["error"])
    assert error == {
        "service": "inference",
        "category": "model",
        "type": "X",
        "message": "boom",
        "dlq": "inference.dlq/4/17",
    }


def test_a_retry_record_is_a_typed_retrying_detail_with_its_reason() -> None:
    headers = [
        *CE,
        ("retry.attempt", b"2"),
        ("retry.due", b"1796170793361"),
        ("retry.error.type", b"RetryableError"),
        ("retry.error.category", b"delivery"),
        ("retry.error.message", b"https://x answered 503"),
    ]
    update = update_for(TOPICS, "notifier.retry.2", 0, 1, headers, 0, None)
    assert update is not None and update.kind == "retrying" and update.rank == 4
    assert json.loads(update.extra["retrying"]) == {
        "service": "notifier",
        "attempt": 2,
        "due": "2026-12-02T00:19:53.361+00:00",
        "reason": "https://x answered 503",
        "error_type": "RetryableError",
        "category": "delivery",
        "topic": "notifier.retry.2",
    }


def test_a_retry_record_without_a_message_gives_its_error_type_as_the_reason() -> None:
    headers = [*CE, ("retry.attempt", b"1"), ("retry.due", b"garbage"), ("retry.error.type", b"TimeoutError")]
    update = update_for(TOPICS, "inference.retry.1", 0, 1, headers, 0, None)
    assert update is not None
    detail = json.loads(update.extra["retrying"])
    assert (detail["attempt"], detail["due"], detail["reason"]) == (1, None, "TimeoutError")


def test_a_stored_retrying_detail_of_the_old_string_shape_reads_as_the_typed_one() -> None:
    old = {
        "service": "notifier",
        "attempt": "1",
        "due": "1796170793361",
        "error_type": "X",
        "topic": "notifier.retry.1",
    }
    record = StatusRecord.read({"status": "inferred", "retrying": json.dumps(old)})
    assert record is not None and record.retrying == {
        "service": "notifier",
        "attempt": 1,
        "due": "2026-12-02T00:19:53.361+00:00",
        "reason": "X",
        "error_type": "X",
        "category": "",
        "topic": "notifier.retry.1",
    }


def test_a_stored_typed_retrying_detail_reads_back_unchanged() -> None:
    headers = [*CE, ("retry.attempt", b"3"), ("retry.due", b"1000"), ("retry.error.message", b"boom")]
    update = update_for(TOPICS, "enrichment.retry.3", 0, 1, headers, 0, None)
    assert update is not None
    record = StatusRecord.read({b"status": b"accepted", b"retrying": update.extra["retrying"].encode()})
    assert record is not None and record.retrying is not None
    assert record.retrying == json.loads(update.extra["retrying"])
    assert record.retrying["due"] == "1970-01-01T00:00:01.000+00:00" and record.retrying["attempt"] == 3


def test_records_without_an_event_id_or_of_other_topics_change_nothing() -> None:
    assert update_for(TOPICS, "events.enriched.v1", 0, 1, [], 0, None) is None
    assert update_for(TOPICS, "audit.replays.v1", 0, 1, CE, 0, None) is None


def receipt_of(status: str, **overrides: object) -> NotificationDelivered:
    fields = {
        "event_id": "e1",
        "tenant": "acme",
        "subject": "s",
        "endpoint": "https://x.example/hook",
        "status": status,
        "delivered_at": "2026-01-01T00:00:00Z",
    }
    return NotificationDelivered.model_validate({**fields, **overrides})


def test_a_failed_receipt_is_an_endpoint_outcome_and_not_the_delivered_stage() -> None:
    receipt = receipt_of("failed", http_status=400, attempts=1, error="HTTP 400: no")
    update = update_for(TOPICS, "notifications.delivered.v1", 0, 1, CE, 0, receipt)
    assert update is not None and (update.kind, update.stage) == ("endpoint", "delivered")
    assert set(update.extra) == {"endpoint:https://x.example/hook"}
    stored = json.loads(update.extra["endpoint:https://x.example/hook"])
    assert stored == {
        "status": "failed",
        "at": "2026-01-01T00:00:00.000+00:00",
        "attempts": 1,
        "http_status": 400,
        "reason": "HTTP 400: no",
        "rank": ENDPOINT_RANKS["failed"],
    }


def test_delivered_and_gone_receipts_reach_the_delivered_stage_with_their_endpoint() -> None:
    for status in ("delivered", "gone"):
        receipt = receipt_of(status, http_status=200 if status == "delivered" else 410, attempts=2)
        update = update_for(TOPICS, "notifications.delivered.v1", 0, 1, CE, 0, receipt)
        assert update is not None and (update.kind, update.stage) == ("stage", "delivered")
        stored = json.loads(update.extra["endpoint:https://x.example/hook"])
        assert (stored["status"], stored["attempts"], stored["rank"]) == (status, 2, ENDPOINT_RANKS[status])


def test_a_receipt_of_an_unknown_status_changes_nothing() -> None:
    assert update_for(TOPICS, "notifications.delivered.v1", 0, 1, CE, 0, receipt_of("bounced")) is None


def test_the_notifiers_message_names_each_endpoint_not_delivered_even_with_semicolons_in_a_reason() -> None:
    message = (
        "deferred for 700s, over the 600s allowed: 2 of 3 endpoints not delivered: "
        "http://127.0.0.1:9/a: HTTP 500: database; on fire; "
        "https://b.example/x?y=1: HTTP 503; call 3 due in 1.0s"
    )
    assert endpoints_named(message) == {
        "http://127.0.0.1:9/a": "HTTP 500: database; on fire",
        "https://b.example/x?y=1": "HTTP 503; call 3 due in 1.0s",
    }
    assert endpoints_named("input broke the model") == {}


def test_a_notifier_dead_letter_fails_the_endpoints_it_names_below_a_failed_receipts_rank() -> None:
    message = b"1 of 2 endpoints not delivered: https://a.example/h: HTTP 500: boom"
    headers = [*CE, ("dlq.service", b"notifier"), ("dlq.error.category", b"delivery"), ("dlq.error.message", message)]
    update = update_for(TOPICS, "notifier.dlq", 0, 9, headers, 1_700_000_000_000, None)
    assert update is not None and (update.kind, update.stage) == ("failed", "delivered")
    assert json.loads(update.extra["error"])["dlq"] == "notifier.dlq/0/9"
    stored = json.loads(update.extra["endpoint:https://a.example/h"])
    assert stored == {
        "status": "failed",
        "at": "2023-11-14T22:13:20.000+00:00",
        "attempts": None,
        "http_status": 500,
        "reason": "HTTP 500: boom",
        "rank": ENDPOINT_RANKS["failed_named"],
    }
    assert ENDPOINT_RANKS["retrying"] < ENDPOINT_RANKS["failed_named"] < ENDPOINT_RANKS["failed"]
    assert ENDPOINT_RANKS["failed"] < ENDPOINT_RANKS["delivered"] == ENDPOINT_RANKS["gone"]


def test_a_notifier_retry_record_marks_the_endpoints_it_names_retrying() -> None:
    message = b"1 of 2 endpoints not delivered: https://a.example/h: HTTP 503"
    headers = [*CE, ("retry.attempt", b"1"), ("retry.error.message", message)]
    update = update_for(TOPICS, "notifier.retry.1", 0, 1, headers, 0, None)
    assert update is not None and update.kind == "retrying"
    stored = json.loads(update.extra["endpoint:https://a.example/h"])
    assert (stored["status"], stored["http_status"], stored["rank"]) == ("retrying", 503, ENDPOINT_RANKS["retrying"])


def test_another_services_dead_letter_names_no_endpoints_even_when_its_message_looks_like_the_notifiers() -> None:
    message = b"1 of 2 endpoints refused: https://a.example/h: no"
    headers = [*CE, ("dlq.service", b"inference"), ("dlq.error.message", message)]
    update = update_for(TOPICS, "inference.dlq", 0, 1, headers, 0, None)
    assert update is not None and set(update.extra) == {"error"}


def test_the_record_reads_each_endpoints_outcome_by_url_without_its_rank_and_skips_unreadable_ones() -> None:
    receipt = receipt_of("delivered", http_status=200, attempts=1)
    update = update_for(TOPICS, "notifications.delivered.v1", 0, 1, CE, 0, receipt)
    assert update is not None
    raw = {
        b"status": b"partially_delivered",
        b"endpoint:https://x.example/hook": update.extra["endpoint:https://x.example/hook"].encode(),
        b"endpoint:https://y.example/": EndpointOutcome("failed", reason="HTTP 400").stored(3).encode(),
        b"endpoint:https://z.example/": b"not json",
        b"endpoint:https://w.example/": b'{"status": "lost"}',
    }
    record = StatusRecord.read(raw)
    assert record is not None and record.status == "partially_delivered"
    assert record.endpoints == {
        "https://x.example/hook": {
            "status": "delivered",
            "at": "2026-01-01T00:00:00.000+00:00",
            "attempts": 1,
            "http_status": 200,
            "reason": None,
        },
        "https://y.example/": {
            "status": "failed",
            "at": None,
            "attempts": None,
            "http_status": None,
            "reason": "HTTP 400",
        },
    }


def test_a_record_without_endpoints_reads_an_empty_map() -> None:
    record = StatusRecord.read({"status": "inferred"})
    assert record is not None and record.endpoints == {}
