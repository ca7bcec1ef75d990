"""intake's rules, without I/O: the request and answer models, and how a request becomes an ``EventReceived``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import uuid_utils
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)

from shared.events import EventReceived
from shared.status import Status
from shared.subscriptions import Subscription

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")]
EventType = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
MAX_TEXT = 100_000
URL_PATTERN = "^https?://"
IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


def _absolute_url(value: str, info: ValidationInfo) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"{info.field_name} must be an absolute https:// URL")
    return value


def plain_http_in_production(url: str | None, env: str) -> bool:
    """Whether ``url`` breaks the rule that a webhook uses https in production."""
    return url is not None and url.startswith("http://") and env == "production"


class Payload(BaseModel):
    """The event's content: ``text`` for the model, anything else kept as JSON."""

    model_config = ConfigDict(extra="allow")

    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
    attributes: dict[
        Annotated[str, StringConstraints(max_length=128)], Annotated[str, StringConstraints(max_length=1024)]
    ] = Field(default_factory=dict, max_length=64)


class EventIn(BaseModel):
    """One event as an upstream system posts it."""

    model_config = ConfigDict(extra="forbid")

    event_id: Identifier | None = None
    type: EventType
    source: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    subject: Identifier | None = None
    occurred_at: AwareDatetime | None = Field(default=None, description="RFC 3339 with a time zone.")
    payload: Payload
    callback_url: Annotated[str, StringConstraints(max_length=2048), AfterValidator(_absolute_url)] | None = Field(
        default=None, json_schema_extra={"pattern": URL_PATTERN}
    )

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _rfc3339_text(cls, value: Any) -> Any:
        # JSON has no time type: a number is not a time, however pydantic could read it.
        if value is not None and not isinstance(value, str):
            raise ValueError("occurred_at must be an RFC 3339 string with a time zone")
        return value


class BatchIn(BaseModel):
    """Up to 1000 events; each is validated on its own, so one invalid item does not sink the rest."""

    model_config = ConfigDict(extra="forbid")

    events: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


class SubscriptionIn(BaseModel):
    """A tenant webhook for results: which event types, where, and optionally its own signing secret."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(min_length=8, max_length=2048), AfterValidator(_absolute_url)] = Field(
        json_schema_extra={"pattern": URL_PATTERN}
    )
    event_types: list[
        Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^(\*|[a-z0-9][a-z0-9._-]*)$")]
    ] = Field(min_length=1, max_length=64)
    secret: Annotated[str, StringConstraints(pattern=r"^whsec_[A-Za-z0-9+/=]{24,}$")] | None = None


class Accepted(BaseModel):
    event_id: str
    status: Literal["accepted"] = "accepted"
    accepted_at: datetime | None = None
    partition: int | None = None
    offset: int | None = None


class Duplicate(BaseModel):
    event_id: str
    status: Literal["accepted"] = "accepted"
    duplicate: Literal[True] = True
    accepted_at: datetime | None = None
    partition: int | None = None
    offset: int | None = None


class BatchItem(BaseModel):
    index: int
    event_id: str | None = None
    status: Literal["accepted", "duplicate", "rejected"]
    errors: list[dict[str, Any]] | None = None
    detail: str | None = None


class BatchAnswer(BaseModel):
    """One item per event of the request, in its order."""

    results: list[BatchItem]


class SubscriptionList(BaseModel):
    subscriptions: list[Subscription]


class EventStatus(BaseModel):
    """What Kafka committed about an event: the time of each stage, the result, and any failure or retry."""

    event_id: str
    status: Status
    stages: dict[str, str | None]
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    retrying: dict[str, Any] | None = None


def new_event_id() -> str:
    return str(uuid_utils.uuid7())


def received(body: EventIn, tenant: str, event_id: str, now: datetime | None = None) -> EventReceived:
    """The ``EventReceived`` an accepted request becomes: the text and attributes apart, the rest as JSON."""
    now = now or datetime.now(UTC)
    rest = body.payload.model_dump(exclude={"text", "attributes"})
    return EventReceived(
        event_id=event_id,
        tenant=tenant,
        type=body.type,
        source=body.source,
        subject=body.subject or event_id,
        occurred_at=body.occurred_at or now,
        received_at=now,
        text=body.payload.text,
        attributes=dict(body.payload.attributes),
        payload_json=json.dumps(rest, separators=(",", ":"), default=str),
        callback_url=body.callback_url,
    )
