"""What one committed record means for an event's status: a stage reached, a retry, or a failure. Pure."""

from __future__ import annotations

import json
import re
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
from shared.status import (
    ENDPOINT_PREFIX,
    ENDPOINT_RANKS,
    ERROR_FIELD,
    RESULT_FIELD,
    RESULT_POSITION_FIELD,
    RETRYING_FIELD,
    EndpointOutcome,
    RetryDetail,
    Stage,
    UpdateKind,
)

# The notifier's message for a record some endpoints of which were not delivered: "<n> of <m> endpoints not
# delivered: <url>: <why>; <url>: <why>" (or "... refused: ..."), perhaps after the runtime's own words (a deferral
# over its limit), at most 1 KiB. A ``why`` may hold "; " itself, so a piece belongs to the endpoint before it
# unless it starts with a URL.
_ENDPOINTS_MESSAGE = re.compile(r"\d+ of \d+ endpoints (?:not delivered|refused): (?P<rest>.*)", re.DOTALL)
_ENDPOINT_PIECE = re.compile(r"(?P<url>[a-zA-Z][a-zA-Z0-9+.-]*://\S+?): (?P<why>.*)", re.DOTALL)
_HTTP_STATUS = re.compile(r"\bHTTP (?P<code>[1-5]\d\d)\b")


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


def endpoints_named(message: str) -> dict[str, str]:
    """The endpoints a notifier retry or dead-letter message names as not delivered, and why each was not."""
    found = _ENDPOINTS_MESSAGE.search(message)
    if found is None:
        return {}
    named: dict[str, str] = {}
    last: str | None = None
    for piece in found["rest"].split("; "):
        endpoint = _ENDPOINT_PIECE.fullmatch(piece)
        if endpoint is not None:
            last = endpoint["url"]
            named[last] = endpoint["why"]
        elif last is not None:
            named[last] += "; " + piece
    return named


def _named_outcomes(message: str, status: str, rank: int, at: str) -> dict[str, str]:
    outcomes = {}
    for url, why in endpoints_named(message).items():
        code = _HTTP_STATUS.search(why)
        outcome = EndpointOutcome(status, at, None, int(code["code"]) if code else None, why)
        outcomes[ENDPOINT_PREFIX + url] = outcome.stored(rank)
    return outcomes


def _receipt_outcome(receipt: NotificationDelivered) -> dict[str, str]:
    outcome = EndpointOutcome(
        status=receipt.status,
        at=json_time(receipt.delivered_at),
        attempts=receipt.attempts,
        http_status=receipt.http_status,
        reason=receipt.error,
    )
    return {ENDPOINT_PREFIX + receipt.endpoint: outcome.stored(ENDPOINT_RANKS[receipt.status])}


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
            extra[RESULT_POSITION_FIELD] = f"{topic}/{partition}/{offset}"
        if isinstance(payload, NotificationDelivered):
            if payload.status not in ("delivered", "gone", "failed"):
                return None
            extra.update(_receipt_outcome(payload))
            if payload.status == "failed":
                # Not a stage reached: one endpoint's outcome (its dead letter, with the same transaction, says why).
                return StatusUpdate(tenant, event_id, "endpoint", stage, at, extra)
        return StatusUpdate(tenant, event_id, "stage", stage, at, extra)
    if kind == "failed":
        error = {
            "service": header.get(DLQ_SERVICE, service),
            "category": header.get(DLQ_ERROR_CATEGORY, "internal"),
            "type": header.get(DLQ_ERROR_TYPE, ""),
            "message": header.get(DLQ_ERROR_MESSAGE, ""),
            "dlq": f"{topic}/{partition}/{offset}",
        }
        extra = {ERROR_FIELD: json.dumps(error)}
        if stage is Stage.DELIVERED:
            # Where no failed receipt names them (a deferral over the runtime's limit), the message does.
            extra.update(_named_outcomes(error["message"], "failed", ENDPOINT_RANKS["failed_named"], at))
        return StatusUpdate(tenant, event_id, "failed", stage, at, extra)
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
    extra = {RETRYING_FIELD: json.dumps(retrying.as_json())}
    if stage is Stage.DELIVERED:
        extra.update(_named_outcomes(retrying.reason, "retrying", ENDPOINT_RANKS["retrying"], at))
    return StatusUpdate(tenant, event_id, "retrying", stage, at, extra)
