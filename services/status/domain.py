"""What one committed record means for an event's status: a stage reached, a retry, or a failure. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.events import EventInferred, NotificationDelivered
from shared.headers import (
    CE_ID,
    CE_TENANT,
    DLQ_ERROR_CATEGORY,
    DLQ_ERROR_MESSAGE,
    DLQ_ERROR_TYPE,
    DLQ_SERVICE,
    RETRY_ATTEMPT,
    RETRY_DUE,
    RETRY_ERROR_CATEGORY,
    RETRY_ERROR_MESSAGE,
    RETRY_ERROR_TYPE,
)
from shared.results import json_time, json_time_ms, result_view
from shared.status import ERROR_FIELD, RESULT_FIELD, RETRYING_FIELD, RetryDetail, Stage, UpdateKind


@dataclass(frozen=True)
class StatusUpdate:
    """One change to ``status:<tenant>:<event_id>``: a stage reached, or a failure or retry of that stage."""

    tenant: str
    event_id: str
    kind: UpdateKind
    stage: Stage
    at: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        """The stage's place in pipeline order (the failing or retrying stage's, for those kinds)."""
        return self.stage.rank


@dataclass(frozen=True)
class Topics:
    """Which topic means what: the four stage topics and each watched service's retry topics and DLQ."""

    stages: Mapping[str, str]  # topic -> the stage (a ``Stage`` value) it holds
    services: Mapping[str, str]  # service -> the stage (a ``Stage`` value) it produces

    def classify(self, topic: str) -> tuple[UpdateKind, Stage, str] | None:
        """(kind, stage, service) for ``topic``, or None for a topic that says nothing about status."""
        if topic in self.stages:
            return "stage", Stage(self.stages[topic]), ""
        service, _, rest = topic.partition(".")
        if service in self.services:
            if rest == "dlq":
                return "failed", Stage(self.services[service]), service
            if rest.startswith("retry."):
                return "retrying", Stage(self.services[service]), service
        return None


def _headers(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode("utf-8", errors="replace") for k, v in headers}


def _time(timestamp_ms: int) -> str:
    return json_time_ms(timestamp_ms) if timestamp_ms > 0 else json_time(datetime.now(UTC))


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
    header = _headers(headers)
    tenant = header.get(CE_TENANT) or getattr(payload, "tenant", None)
    event_id = header.get(CE_ID) or getattr(payload, "event_id", None)
    if not tenant or not event_id:
        return None
    at = _time(timestamp_ms)
    if kind == "stage":
        extra: dict[str, str] = {}
        if isinstance(payload, EventInferred):
            extra[RESULT_FIELD] = json.dumps(result_view(payload), separators=(",", ":"))
        if isinstance(payload, NotificationDelivered) and payload.status != "delivered":
            return None  # a failed delivery is not a stage; its DLQ record says why
        return StatusUpdate(tenant, event_id, "stage", stage, at, extra)
    if kind == "failed":
        error = {
            "service": header.get(DLQ_SERVICE, service),
            "category": header.get(DLQ_ERROR_CATEGORY, "internal"),
            "type": header.get(DLQ_ERROR_TYPE, ""),
            "message": header.get(DLQ_ERROR_MESSAGE, ""),
            "dlq": f"{topic}/{partition}/{offset}",
        }
        return StatusUpdate(tenant, event_id, "failed", stage, at, {ERROR_FIELD: json.dumps(error)})
    retrying = RetryDetail.read(
        {
            "service": service,
            "attempt": header.get(RETRY_ATTEMPT),
            "due": header.get(RETRY_DUE),
            "reason": header.get(RETRY_ERROR_MESSAGE),
            "error_type": header.get(RETRY_ERROR_TYPE),
            "category": header.get(RETRY_ERROR_CATEGORY),
            "topic": topic,
        }
    )
    return StatusUpdate(tenant, event_id, "retrying", stage, at, {RETRYING_FIELD: json.dumps(retrying.as_json())})
