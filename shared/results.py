"""The one JSON view of an inference result: what the status API, the webhook body and the JSON mirror carry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.events import EventInferred, Prediction

# The JSON mirror's ``content-type`` (the Avro topics carry ``application/vnd.confluent.avro``).
CONTENT_TYPE_JSON = "application/json"


def json_time(moment: datetime) -> str:
    """``moment`` in UTC to the millisecond, ``+00:00``-suffixed: how the JSON views write every time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def json_time_ms(epoch_ms: int) -> str:
    """An epoch-milliseconds time (a Kafka timestamp, ``retry.due``) as ``json_time`` writes it."""
    return json_time(datetime.fromtimestamp(epoch_ms / 1000, UTC))


def _prediction(prediction: Prediction) -> dict[str, Any]:
    return {"label": prediction.label, "confidence": prediction.confidence, "scores": dict(prediction.scores)}


def result_view(event: EventInferred) -> dict[str, Any]:
    """The result of ``event``: each head's label, confidence and scores, the review flag, the model, whether it
    came from the cache, when it was inferred and the model time it took."""
    return {
        "category": _prediction(event.category),
        "priority": _prediction(event.priority),
        "needs_review": event.needs_review,
        "model": {"name": event.model.name, "version": event.model.version},
        "cached": event.cached,
        "inferred_at": json_time(event.inferred_at),
        "latency_ms": event.latency_ms,
    }


def result_document(event: EventInferred, trace_id: str | None) -> dict[str, Any]:
    """The whole JSON document of a result, what a webhook body and a ``events.inferred.json.v1`` value carry: the
    event id, the stage's and the publisher's types, tenant, subject, when it happened, the trace id, and
    ``result_view``."""
    return {
        "event_id": event.event_id,
        "type": f"{event.type}.inferred",
        "event_type": event.type,
        "tenant": event.tenant,
        "subject": event.subject,
        "occurred_at": json_time(event.occurred_at),
        "trace_id": trace_id,
        "result": result_view(event),
    }
