"""What one committed record means for an event's status: a stage reached, a retry, or a failure. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from shared.events import EventInferred, NotificationDelivered
from shared.status import RESULT_FIELD

RANKS = {"accepted": 1, "enriched": 2, "inferred": 3, "delivered": 4}
Kind = Literal["stage", "failed", "retrying"]


@dataclass(frozen=True)
class StatusUpdate:
    """One change to ``status:<tenant>:<event_id>``: ``rank`` is the stage's (or the failing stage's) order."""

    tenant: str
    event_id: str
    kind: Kind
    stage: str
    rank: int
    at: str
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topics:
    """Which topic means what: the four stage topics and each watched service's retry topics and DLQ."""

    stages: Mapping[str, str]  # topic -> stage
    services: Mapping[str, str]  # service -> the stage it produces

    def classify(self, topic: str) -> tuple[Kind, str, str] | None:
        """(kind, stage, service) for ``topic``, or None for a topic that says nothing about status."""
        if topic in self.stages:
            return "stage", self.stages[topic], ""
        service, _, rest = topic.partition(".")
        if service in self.services:
            if rest == "dlq":
                return "failed", self.services[service], service
            if rest.startswith("retry."):
                return "retrying", self.services[service], service
        return None


def _headers(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode("utf-8", errors="replace") for k, v in headers}


def _time(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC) if timestamp_ms > 0 else datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds")


def update_for(
    topics: Topics,
    topic: str,
    partition: int,
    offset: int,
    headers: Sequence[tuple[str, bytes]],
    timestamp_ms: int,
    payload: Any,
) -> StatusUpdate | None:
    """The status change a committed record implies, or None (a record without an event id, a failed receipt)."""
    kind_stage = topics.classify(topic)
    if kind_stage is None:
        return None
    kind, stage, service = kind_stage
    h = _headers(headers)
    tenant = h.get("ce_tenant") or getattr(payload, "tenant", None)
    event_id = h.get("ce_id") or getattr(payload, "event_id", None)
    if not tenant or not event_id:
        return None
    at = _time(timestamp_ms)
    rank = RANKS[stage]
    if kind == "stage":
        extra: dict[str, str] = {}
        if isinstance(payload, EventInferred):
            extra[RESULT_FIELD] = json.dumps(result_of(payload), separators=(",", ":"))
        if isinstance(payload, NotificationDelivered) and payload.status != "delivered":
            return None  # a failed delivery is not a stage; its DLQ record says why
        return StatusUpdate(tenant, event_id, "stage", stage, rank, at, extra)
    if kind == "failed":
        error = {
            "service": h.get("dlq.service", service),
            "category": h.get("dlq.error.category", "internal"),
            "type": h.get("dlq.error.type", ""),
            "message": h.get("dlq.error.message", ""),
            "dlq": f"{topic}/{partition}/{offset}",
        }
        return StatusUpdate(tenant, event_id, "failed", stage, rank, at, {"error": json.dumps(error)})
    retrying = {
        "service": service,
        "attempt": h.get("retry.attempt", ""),
        "due": h.get("retry.due", ""),
        "error_type": h.get("retry.error.type", ""),
        "topic": topic,
    }
    return StatusUpdate(tenant, event_id, "retrying", stage, rank, at, {"retrying": json.dumps(retrying)})


def result_of(event: EventInferred) -> dict[str, Any]:
    """The result the status API shows: labels with confidences, review flag, model, cache hit."""
    return {
        "category": {"label": event.category.label, "confidence": event.category.confidence},
        "priority": {"label": event.priority.label, "confidence": event.priority.confidence},
        "needs_review": event.needs_review,
        "model": {"name": event.model.name, "version": event.model.version},
        "cached": event.cached,
    }
