"""What each committed record means for an event's status (no Redis, no broker)."""

from __future__ import annotations

import json

from services.status.domain import Topics, update_for
from shared.events import EventInferred, NotificationDelivered
from shared.status import StatusRecord
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


def test_a_failed_delivery_receipt_is_not_the_delivered_stage() -> None:
    receipt = NotificationDelivered.model_validate(
        {
            "event_id": "e1",
            "tenant": "acme",
            "subject": "s",
            "endpoint": "https://x",
            "status": "failed",
            "delivered_at": "2026-01-01T00:00:00Z",
        }
    )
    assert update_for(TOPICS, "notifications.delivered.v1", 0, 1, CE, 0, receipt) is None
