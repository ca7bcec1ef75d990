"""What each committed record means for an event's status (no Redis, no broker)."""

from __future__ import annotations

import json

from services.status.domain import Topics, update_for
from shared.events import EventInferred, NotificationDelivered
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
    assert result["category"] == {"label": "technical", "confidence": 0.9} and result["model"]["name"]


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


def test_a_retry_record_is_a_retrying_detail() -> None:
    update = update_for(TOPICS, "notifier.retry.2", 0, 1, [*CE, ("retry.attempt", b"2")], 0, None)
    assert update is not None and update.kind == "retrying" and json.loads(update.extra["retrying"])["attempt"] == "2"


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
