"""intake's rules, without I/O: the request and answer models, and how a request becomes an ``EventReceived``."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import idna
import orjson
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
from pydantic.json_schema import SkipJsonSchema

from shared.events import EventReceived
from shared.netpolicy import Address, AddressRefused, Network, check_address
from shared.status import Status
from shared.subscriptions import DeliveryAttempt, Subscription

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")]
EVENT_TYPE = r"^[a-z0-9][a-z0-9._-]*$"
EVENT_TYPE_PATTERN = re.compile(EVENT_TYPE)
SUBSCRIBABLE_PATTERN = r"^(\*|[a-z0-9][a-z0-9._-]*)$"
EventType = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=EVENT_TYPE)]
MAX_TEXT = 100_000
URL_PATTERN = "^https?://"
IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)
BATCH_OUTCOMES = ("accepted", "duplicate", "rejected")


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


def _subscribable(value: str) -> str:
    # The notifier matches ``*`` and exact types only (``subscription_matches``): a pattern would match nothing.
    if value != "*" and not EVENT_TYPE_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value[:130]!r} is not an event type: use * (every type) or an exact type such as ticket.created "
            "(lowercase letters, digits, '.', '_', '-'); patterns such as ticket.* are not supported"
        )
    return value


# The schema keeps the pattern (for clients and the fuzzer); the validator refuses with a message naming the rule.
Subscribable = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    Field(json_schema_extra={"pattern": SUBSCRIBABLE_PATTERN}),
    AfterValidator(_subscribable),
]


class SubscriptionIn(BaseModel):
    """A tenant webhook for results: which event types, where, and optionally its own signing secret.

    The URL's rules depend on the environment and the network, so ``subscription_url`` checks them."""

    model_config = ConfigDict(extra="forbid")

    url: SubscriptionUrlText = Field(json_schema_extra={"pattern": URL_PATTERN})
    event_types: list[Subscribable] = Field(min_length=1, max_length=64)
    secret: Annotated[str, StringConstraints(pattern=r"^whsec_[A-Za-z0-9+/=]{24,}$")] | None = None


SubscriptionUrlText = Annotated[str, StringConstraints(min_length=8, max_length=2048)]


def _absent_by_default(schema: dict[str, Any]) -> None:
    # A field left out stays as it is: null is no value a client may send, so the schema shows no default.
    schema.pop("default", None)


class SubscriptionPatch(BaseModel):
    """A JSON merge patch of a subscription: the fields sent replace the stored ones, the others stay. Null
    removes nothing here (every field is required), so it is refused."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[SubscriptionUrlText, Field(json_schema_extra={"pattern": URL_PATTERN})] | SkipJsonSchema[None] = (
        Field(default=None, json_schema_extra=_absent_by_default)
    )
    event_types: Annotated[list[Subscribable], Field(min_length=1, max_length=64)] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_absent_by_default
    )
    enabled: bool | SkipJsonSchema[None] = Field(
        default=None,
        description="true re-enables a disabled subscription (one its endpoint answered 410), false disables it.",
        json_schema_extra=_absent_by_default,
    )

    @field_validator("url", "event_types", "enabled", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            raise ValueError(f"{info.field_name} cannot be removed: send a value or leave it out")
        return value


def patched(subscription: Subscription, patch: SubscriptionPatch, url: str | None, now: datetime) -> Subscription:
    """``subscription`` with ``patch`` applied (``url`` is the patch's URL as checked and stored)."""
    update: dict[str, Any] = {}
    if url is not None:
        update["url"] = url
    if patch.event_types is not None:
        update["event_types"] = sorted(set(patch.event_types))
    if patch.enabled is True:
        update.update(disabled_at=None, disabled_reason=None)
    elif patch.enabled is False and subscription.disabled_at is None:
        update.update(disabled_at=now, disabled_reason="disabled by hand")
    return subscription.model_copy(update=update)


class PingAnswer(BaseModel):
    """What came of a test ping: the receiver's answer, or why there was none."""

    delivered: bool = Field(description="Whether the receiver answered 2xx.")
    http_status: int | None = Field(description="The receiver's HTTP status, if it answered.")
    latency_ms: float = Field(description="How long the call took.")
    error: str | None = Field(description="Why it was not delivered, if it was not.")


def ping_body(subscription_id: str, now: datetime) -> bytes:
    """The JSON of a test ping."""
    return orjson.dumps({"type": "ping", "subscription_id": subscription_id, "sent_at": now.isoformat()})


class DeliveryList(BaseModel):
    deliveries: list[DeliveryAttempt] = Field(description="The subscription's recent calls, newest first.")


class RedeliveryIn(BaseModel):
    """Which endpoints get the result again: one named by URL or by subscription, or (an empty body) all."""

    model_config = ConfigDict(extra="forbid")

    endpoint: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None, description="One endpoint URL of the event: its callback_url or a matching subscription's URL."
    )
    subscription_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None, description="One of the tenant's subscriptions that matches the event's type."
    )


class Redelivery(BaseModel):
    """A redelivery accepted: the notifier will call these endpoints again with the event's current result."""

    redelivery_id: str = Field(description="Names this redelivery; the notifier's log and the record carry it.")
    event_id: str
    endpoints: list[str] = Field(description="The endpoint URLs that will be called again.")
    result_from: str = Field(description="The result record sent again, topic/partition/offset.")


class RedeliveryRefused(ValueError):
    """The endpoints asked for are not the event's: a message that names what is."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def redelivery_endpoints(
    ask: RedeliveryIn,
    event_type: str,
    endpoints: Sequence[tuple[str, Subscription | None]],
    subscriptions: Sequence[Subscription],
) -> list[str]:
    """The URLs a redelivery calls, from the event's endpoints as the notifier would choose them now
    (``endpoints_for``): all of them, the one at ``ask.endpoint``, or ``ask.subscription_id``'s."""
    urls = [url for url, _ in endpoints]
    if ask.endpoint is not None and ask.subscription_id is not None:
        raise RedeliveryRefused(422, "name either endpoint or subscription_id, not both")
    if ask.subscription_id is not None:
        found = next((s for s in subscriptions if s.id == ask.subscription_id), None)
        if found is None:
            raise RedeliveryRefused(404, f"no subscription {ask.subscription_id}")
        if found.disabled_at is not None:
            raise RedeliveryRefused(
                409,
                f"subscription {found.id} is disabled ({found.disabled_reason or 'by its owner'}): "
                "PATCH it with enabled true first",
            )
        if found.url not in urls:
            raise RedeliveryRefused(
                409, f"subscription {found.id} does not take {event_type} events (its types: {found.event_types})"
            )
        return [found.url]
    if ask.endpoint is not None:
        if ask.endpoint not in urls:
            named = ", ".join(urls) if urls else "none"
            raise RedeliveryRefused(409, f"{ask.endpoint} is not an endpoint of this event (its endpoints: {named})")
        return [ask.endpoint]
    if not urls:
        raise RedeliveryRefused(409, "the event has no endpoint: no callback_url and no enabled matching subscription")
    return urls


class UrlRefused(ValueError):
    """A subscription URL that breaks one of its rules; the message names the rule."""


@dataclass(frozen=True)
class SubscriptionUrl:
    """A subscription URL that passed every rule that needs no network: as stored (a host name in its ASCII,
    punycode form), its host, its port, and the address when the host is one."""

    url: str
    host: str
    port: int
    address: Address | None


def subscription_url(url: str, env: str, allowed: Sequence[Network]) -> SubscriptionUrl:
    """Check a subscription URL without I/O; ``UrlRefused`` naming the rule it breaks.

    No spaces or control characters; http(s) as the environment allows; a host, no credentials; a valid host
    name (IDNA: an internationalized one is stored as punycode) or an address the notifier may call."""
    if any(c.isspace() or not c.isprintable() for c in url):
        raise UrlRefused("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unbalanced bracket of an IPv6 host
        raise UrlRefused(f"url is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if env == "production" and scheme != "https":
        raise UrlRefused("url must be an absolute https:// URL (production accepts https only)")
    if scheme not in ("http", "https"):
        raise UrlRefused("url must be an absolute http:// or https:// URL (production requires https://)")
    if "@" in parts.netloc:
        raise UrlRefused("url must not contain credentials (user:password@)")
    if not parts.hostname:
        raise UrlRefused("url must name a host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise UrlRefused(f"url has an invalid port: {exc}") from exc
    address = _address(parts.hostname)
    if address is not None:
        try:
            check_address(address, allowed)
        except AddressRefused as exc:
            raise UrlRefused(f"url host {exc}; webhooks may reach public addresses only") from exc
        host = f"[{address}]" if address.version == 6 else str(address)
    else:
        host = _host_name(parts.hostname)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return SubscriptionUrl(urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment)), host, port, address)


def _address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _host_name(host: str) -> str:
    try:
        return idna.encode(host.rstrip("."), uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise UrlRefused(f"url host {host[:260]!r} is not a valid host name ({exc})") from exc


class Accepted(BaseModel):
    event_id: str
    status: Literal["accepted"] = "accepted"
    accepted_at: datetime | None = None
    partition: int | None = None
    offset: int | None = None


class Duplicate(BaseModel):
    """A repeat of an accepted event: the original acceptance, and the event's status now."""

    event_id: str
    status: Status = Field(default="accepted", description="The event's current status, as GET /v1/events/{id}.")
    duplicate: Literal[True] = True
    accepted_at: datetime | None = None
    partition: int | None = None
    offset: int | None = None


class BatchItem(BaseModel):
    index: int
    event_id: str | None = None
    status: Literal["accepted", "duplicate", "rejected"]
    current_status: Status | None = Field(default=None, description="A duplicate's current status.")
    errors: list[dict[str, Any]] | None = None
    detail: str | None = None


class BatchAnswer(BaseModel):
    """One item per event of the request, in its order, and how many items had each outcome."""

    results: list[BatchItem]
    accepted: int
    duplicate: int
    rejected: int


def batch_answer(items: list[BatchItem]) -> BatchAnswer:
    """The answer for ``items`` (in request order), counted by outcome."""
    counts = {outcome: sum(1 for item in items if item.status == outcome) for outcome in BATCH_OUTCOMES}
    return BatchAnswer(results=items, **counts)


def batch_status(answer: BatchAnswer) -> int:
    """202 when anything was accepted; else 422 when anything was rejected; else (duplicates only) 200."""
    if answer.accepted:
        return 202
    return 422 if answer.rejected else 200


class SubscriptionList(BaseModel):
    subscriptions: list[Subscription]


class EndpointDelivery(BaseModel):
    """What became of the result at one endpoint (the event's ``callback_url`` or a subscription's URL)."""

    status: Literal["delivered", "gone", "failed", "retrying"] = Field(
        description="delivered (2xx), gone (410: not called again), failed (refused, or out of retries), retrying."
    )
    at: str | None = Field(default=None, description="When this outcome was known (UTC, RFC 3339).")
    attempts: int | None = Field(default=None, description="Calls made to the endpoint, where known.")
    http_status: int | None = Field(default=None, description="The endpoint's last HTTP status, if it answered.")
    reason: str | None = Field(default=None, description="Why it was not delivered, if it was not.")


class EventStatus(BaseModel):
    """What Kafka committed about an event: the time of each stage, the result, any failure or retry, and what
    became of the result at each endpoint."""

    event_id: str
    status: Status
    stages: dict[str, str | None]
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    retrying: dict[str, Any] | None = None
    endpoints: dict[str, EndpointDelivery] = Field(
        default_factory=dict,
        description="Each endpoint the result was sent to, by URL. The status is delivered only when every one "
        "was delivered or gone; partially_delivered when some were and others failed or are retrying.",
    )


def body_digest(body: EventIn) -> str:
    """SHA-256 of the event as the client sent it, validated, without its ``event_id`` (which may come from the
    ``Idempotency-Key`` header instead), as JSON with sorted keys. Nothing the server sets (``received_at``, an
    ``occurred_at`` filled in with the arrival time) is part of it, so a retry of the same request matches."""
    canonical = orjson.dumps(body.model_dump(mode="json", exclude={"event_id"}), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


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
