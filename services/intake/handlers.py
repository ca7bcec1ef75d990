"""intake's routes: parse and validate, claim the event id, write to Kafka, answer once Kafka acknowledged."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from services.intake.adapters.ping import ping
from services.intake.adapters.store import IntakeStore
from services.intake.adapters.writer import Backpressure, EventWriter, WriteFailed
from services.intake.domain import (
    IDENTIFIER,
    Accepted,
    BatchAnswer,
    BatchIn,
    BatchItem,
    DeliveryList,
    Duplicate,
    EventIn,
    EventStatus,
    PingAnswer,
    Redelivery,
    RedeliveryIn,
    RedeliveryRefused,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionPatch,
    UrlRefused,
    batch_answer,
    batch_status,
    body_digest,
    new_event_id,
    patched,
    ping_body,
    plain_http_in_production,
    received,
    redelivery_endpoints,
    subscription_url,
)
from services.intake.settings import IntakeSettings
from shared.api_auth import authorized
from shared.auth import READ_BUCKET, ApiKey, new_signing_secret
from shared.codec import EventCodec
from shared.errors import DependencyUnavailable
from shared.events import EventInferred
from shared.headers import (
    DLQ_PREFIX,
    REDELIVERY_ENDPOINTS,
    REDELIVERY_ID,
    REDELIVERY_PREFIX,
    REPLAY_PREFIX,
    RETRY_PREFIX,
)
from shared.kafka import RecordPosition
from shared.logging import payload_hash
from shared.netpolicy import AddressRefused, check_resolved
from shared.problems import Problem, problem_responses, validation_errors
from shared.replay.scan import record_at
from shared.runtime import Output
from shared.subscriptions import Subscription, endpoints_for
from shared.webhooks import request_headers, signing_secrets

log = logging.getLogger(__name__)
BATCH_PATH = "/v1/events:batch"
READ_PROBLEMS = (401, 403, 429, 503)
RESOLVE_TIMEOUT_S = 2.0
# getaddrinfo's "no such name" answers; any other failure (a timeout, EAI_AGAIN) may pass, so it is a 503.
NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
WRITE_PROBLEMS = (400, *READ_PROBLEMS, 413, 415, 422)
ModelT = TypeVar("ModelT", bound=BaseModel)
EVENTS = Counter(
    "intake_events_total",
    "Events by outcome: accepted, duplicate, conflict, in_flight, invalid, unavailable",
    ["outcome"],
)

router = APIRouter()


@dataclass
class Resources:
    """What the routes share; the app builds it in its lifespan and puts it on ``app.state.resources``."""

    settings: IntakeSettings
    store: IntakeStore
    codec: EventCodec
    writer: EventWriter


def _resources(request: Request) -> Resources:
    found: Resources = request.app.state.resources
    return found


async def _json_body(request: Request) -> Any:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise Problem(415, f"the body must be application/json, not {content_type or 'unspecified'}")
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}") from exc


def _invalid(exc: ValidationError, loc_prefix: list[Any]) -> Problem:
    """A 422 whose errors name each field (``loc``, from the request's root) and the reason."""
    errors = validation_errors(exc.errors())
    for error in errors:
        error["loc"] = [*loc_prefix, *error["loc"]]
    first = errors[0]
    return Problem(422, f"{'.'.join(str(p) for p in first['loc'][1:])}: {first['msg']}", errors=errors)


async def _parsed(request: Request, model: type[ModelT]) -> ModelT:
    """The JSON body as ``model``, or a 415/400/422 problem naming what was wrong."""
    raw = await _json_body(request)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc, ["body"]) from exc


def _require_https(url: str | None, loc: list[Any], settings: IntakeSettings) -> None:
    """A 422 naming the field when a webhook URL is plain http in production."""
    if plain_http_in_production(url, settings.pipeline.env):
        field = loc[-1]
        error = {"loc": loc, "msg": f"{field} must use https in production", "type": "value_error"}
        raise Problem(422, f"{field}: must use https in production", errors=[error])


def _validate_event(raw: Any, resources: Resources, loc_prefix: list[Any]) -> EventIn:
    """Validate one event; the errors name each field (``loc``) and the reason."""
    try:
        body = EventIn.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc, loc_prefix) from exc
    _require_https(body.callback_url, [*loc_prefix, "callback_url"], resources.settings)
    return body


def _event_id(body: EventIn, request: Request | None) -> str:
    """The body's ``event_id``, else the ``Idempotency-Key`` header, else a new UUIDv7. A header that is sent
    must be a valid id even when the body names the event: a malformed one is the client's bug either way."""
    header = request.headers.get("idempotency-key") if request is not None else None
    if header is not None:
        try:
            header = IDENTIFIER.validate_python(header)
        except ValidationError as exc:
            error = {"loc": ["header", "Idempotency-Key"], "msg": "not a valid event id", "type": "value_error"}
            raise Problem(422, "Idempotency-Key: not a valid event id", errors=[error]) from exc
    return body.event_id or header or new_event_id()


def _unavailable(resources: Resources, detail: str) -> Problem:
    return Problem(503, detail, headers={"Retry-After": str(resources.settings.retry_after_s)})


def _reused(event_id: str) -> str:
    return (
        f"event id {event_id} was already used with a different body; a repeat must send the same body, "
        "and a different event needs a new event_id (or Idempotency-Key)"
    )


def _batch_responses() -> dict[int | str, dict[str, Any]]:
    responses = problem_responses(*WRITE_PROBLEMS)
    responses[422] = {
        **responses[422],
        "description": "The body is not a batch, or no item was accepted and at least one was rejected: then the "
        "problem also carries results (one item per event, with the reasons) and the accepted, duplicate and "
        "rejected counts.",
    }
    return {200: {"model": BatchAnswer, "description": "Every item was a duplicate"}, **responses}


def _raw_id(raw: Any) -> str | None:
    value = raw.get("event_id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


@router.post(
    "/v1/events",
    status_code=202,
    response_model=Accepted,
    responses={
        200: {"model": Duplicate, "description": "A repeat of an accepted event, with its current status"},
        **problem_responses(*WRITE_PROBLEMS, 409),
    },
    summary="Publish one event",
    description="Validates the event, writes it to Kafka and answers 202 once Kafka acknowledged it. The event id "
    "is the body's event_id, else the Idempotency-Key header, else a new UUIDv7. A repeat of an id with the same "
    "body within the dedup window answers 200 with the original acceptance and the event's current status; the "
    "same id with a different body is a 409, as is a repeat while the first write is in flight (with "
    "Retry-After).",
)
async def post_event(request: Request, key: ApiKey = Depends(authorized("events:write"))) -> Response:
    resources = _resources(request)
    try:
        body = _validate_event(await _json_body(request), resources, ["body"])
        event_id = _event_id(body, request)
    except Problem:
        EVENTS.labels("invalid").inc()
        raise
    digest = body_digest(body)
    claim = await resources.store.claim(key.tenant, event_id)
    if claim.original is not None:
        # An acceptance stored without a digest (before digests existed) is a duplicate whatever the body.
        if claim.digest is not None and claim.digest != digest:
            EVENTS.labels("conflict").inc()
            raise Problem(409, _reused(event_id))
        EVENTS.labels("duplicate").inc()
        duplicate = Duplicate(**claim.original.model_dump(exclude={"status"}), status=claim.current_status)
        return JSONResponse(duplicate.model_dump(mode="json"), status_code=200)
    if not claim.mine:
        EVENTS.labels("in_flight").inc()
        raise Problem(
            409,
            f"event {event_id} is being written; retry shortly",
            headers={"Retry-After": str(resources.settings.retry_after_s)},
        )
    accepted = await write_events(resources, key, [(event_id, body)])
    result = accepted[0]
    if isinstance(result, Problem):
        raise result
    return JSONResponse(result.model_dump(mode="json"), status_code=202)


@router.post(
    BATCH_PATH,
    status_code=202,
    response_model=BatchAnswer,
    responses=_batch_responses(),
    summary="Publish up to 1000 events",
    description="Each event is validated, deduplicated and written on its own; the answer has one item per event, "
    "in order (accepted, duplicate with its current_status, or rejected with the reasons), and the accepted, "
    "duplicate and rejected counts. 202 when at least one event was accepted; 200 when every event was a "
    "duplicate; 422 when none was accepted and at least one was rejected; 503 when Kafka accepted none of the "
    "events it was given.",
)
async def post_batch(request: Request, key: ApiKey = Depends(authorized("events:write"))) -> Response:
    resources = _resources(request)
    batch = await _parsed(request, BatchIn)
    items: list[BatchItem | None] = [None] * len(batch.events)
    valid: list[tuple[int, str, EventIn]] = []
    for index, raw_event in enumerate(batch.events):
        try:
            body = _validate_event(raw_event, resources, ["body", "events", index])
            valid.append((index, _event_id(body, None), body))
        except Problem as problem:
            EVENTS.labels("invalid").inc()
            items[index] = BatchItem(
                index=index,
                event_id=_raw_id(raw_event),
                status="rejected",
                errors=problem.extra.get("errors"),
                detail=problem.detail,
            )
    # One round trip claims every id; in order, so a repeated id within the batch finds the first in flight.
    claims = await resources.store.claim_many(key.tenant, [event_id for _, event_id, _ in valid])
    to_write: list[tuple[int, str, EventIn]] = []
    for (index, event_id, body), claim in zip(valid, claims, strict=True):
        if claim.original is not None and claim.digest is not None and claim.digest != body_digest(body):
            EVENTS.labels("conflict").inc()
            items[index] = BatchItem(index=index, event_id=event_id, status="rejected", detail=_reused(event_id))
        elif claim.original is not None:
            EVENTS.labels("duplicate").inc()
            items[index] = BatchItem(
                index=index, event_id=event_id, status="duplicate", current_status=claim.current_status
            )
        elif not claim.mine:
            EVENTS.labels("in_flight").inc()
            items[index] = BatchItem(
                index=index,
                event_id=event_id,
                status="rejected",
                detail="a write of this event id is in flight; retry shortly",
            )
        else:
            to_write.append((index, event_id, body))
    results = await write_events(resources, key, [(event_id, body) for _, event_id, body in to_write])
    unavailable = 0
    for (index, event_id, _), result in zip(to_write, results, strict=True):
        if isinstance(result, Problem):
            unavailable += 1
            items[index] = BatchItem(index=index, event_id=event_id, status="rejected", detail=result.detail)
        else:
            items[index] = BatchItem(index=index, event_id=event_id, status="accepted")
    if to_write and unavailable == len(to_write):
        # Nothing reached Kafka: say so with a 503, never a 202.
        raise _unavailable(resources, "Kafka did not acknowledge the batch; nothing was accepted")
    answer = batch_answer([item for item in items if item is not None])
    content = answer.model_dump(mode="json", exclude_none=True)
    status = batch_status(answer)
    if status == 422:
        raise Problem(422, f"no event was accepted: {answer.rejected} rejected (see results)", **content)
    return JSONResponse(content, status_code=status)


def _url_refused(detail: str) -> Problem:
    error = {"loc": ["body", "url"], "msg": detail, "type": "value_error"}
    return Problem(422, detail, errors=[error])


async def _check_resolves(resources: Resources, host: str, port: int) -> None:
    """A 422 when ``host`` does not exist or resolves only to addresses the notifier would refuse; a 503 when
    the resolver cannot answer now. The notifier checks again on every call (the answer may change)."""
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=RESOLVE_TIMEOUT_S)
    except socket.gaierror as exc:
        if exc.errno in NO_SUCH_NAME:
            raise _url_refused(f"url host {host} does not resolve") from exc
        raise _unavailable(resources, f"url host {host} could not be resolved now ({exc.strerror}); retry") from exc
    except TimeoutError as exc:
        raise _unavailable(resources, f"url host {host} did not resolve within {RESOLVE_TIMEOUT_S:g} s; retry") from exc
    addresses = [ipaddress.ip_address(str(entry[4][0]).split("%")[0]) for entry in found]
    try:
        check_resolved(host, addresses, resources.settings.webhook_networks())
    except AddressRefused as exc:
        raise _url_refused(f"url host {exc}; webhooks may reach public addresses only") from exc


@router.post(
    "/v1/subscriptions",
    status_code=201,
    response_model=Subscription,
    responses=problem_responses(*WRITE_PROBLEMS, 409),
    summary="Create a webhook subscription",
    description="Results of the listed event types (or * for all) are posted to the URL, signed with the secret "
    "(generated when absent and shown only in this answer). The URL is checked now: https in production, a valid "
    "host that resolves to an address the notifier may call. 409 above the tenant's subscription cap.",
)
async def post_subscription(request: Request, key: ApiKey = Depends(authorized("subscriptions:write"))) -> Response:
    resources = _resources(request)
    settings = resources.settings
    body = await _parsed(request, SubscriptionIn)
    url = await _checked_url(resources, body.url)
    subscription = Subscription(
        id=f"sub_{new_event_id().replace('-', '')[:20]}",
        url=url,
        event_types=sorted(set(body.event_types)),
        created_at=datetime.now(UTC),
        secret=body.secret or new_signing_secret(),
    )
    cap = settings.max_subscriptions_per_tenant
    if not await resources.store.add_subscription(key.tenant, subscription, cap):
        raise Problem(
            409,
            f"this tenant already has {cap} subscriptions, the most allowed (INTAKE_MAX_SUBSCRIPTIONS_PER_TENANT); "
            "delete one first",
        )
    # The secret is shown this once; listings never include it.
    return JSONResponse(subscription.model_dump(mode="json"), status_code=201)


@router.get(
    "/v1/subscriptions",
    response_model=SubscriptionList,
    responses=problem_responses(*READ_PROBLEMS),
    summary="List the tenant's subscriptions",
    description="Every subscription of the key's tenant, without secrets. Charged to the key's read bucket.",
)
async def list_subscriptions(
    request: Request, key: ApiKey = Depends(authorized("subscriptions:write", READ_BUCKET))
) -> Any:
    found = await _resources(request).store.subscriptions(key.tenant)
    return JSONResponse({"subscriptions": [s.model_dump(mode="json", exclude={"secret"}) for s in found]})


@router.delete(
    "/v1/subscriptions/{subscription_id}",
    status_code=204,
    responses=problem_responses(*READ_PROBLEMS, 404),
    summary="Delete a subscription",
    description="Removes one of the tenant's subscriptions; 404 when the tenant has no subscription of that id.",
)
async def delete_subscription(
    subscription_id: str, request: Request, key: ApiKey = Depends(authorized("subscriptions:write"))
) -> Response:
    if not await _resources(request).store.remove_subscription(key.tenant, subscription_id):
        raise Problem(404, f"no subscription {subscription_id}")
    return Response(status_code=204)


async def _subscription(resources: Resources, tenant: str, subscription_id: str) -> Subscription:
    found = await resources.store.subscription(tenant, subscription_id)
    if found is None:
        # Another tenant's subscription is as unknown as one that never existed.
        raise Problem(404, f"no subscription {subscription_id}")
    return found


async def _checked_url(resources: Resources, url: str) -> str:
    """``url`` as stored, after the rules of creation (the resolution check included); a 422 naming the rule."""
    settings = resources.settings
    try:
        target = subscription_url(url, settings.pipeline.env, settings.webhook_networks())
    except UrlRefused as exc:
        raise _url_refused(str(exc)) from exc
    if target.address is None:
        await _check_resolves(resources, target.host, target.port)
    return target.url


def _patch_of(raw: Any) -> SubscriptionPatch:
    try:
        return SubscriptionPatch.model_validate(raw)
    except ValidationError as exc:
        problem = _invalid(exc, ["body"])
        # The optional fields are unions with None: keep field names and indexes, drop pydantic's member tags.
        for error in problem.extra["errors"]:
            error["loc"] = [p for p in error["loc"] if isinstance(p, int) or str(p).isidentifier()]
        first = problem.extra["errors"][0]
        raise Problem(422, f"{'.'.join(str(p) for p in first['loc'][1:])}: {first['msg']}", **problem.extra) from exc


@router.patch(
    "/v1/subscriptions/{subscription_id}",
    response_model=Subscription,
    responses=problem_responses(*WRITE_PROBLEMS, 404),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SubscriptionPatch.model_json_schema()}},
        }
    },
    summary="Edit, re-enable or disable a subscription",
    description="A JSON merge patch of url, event_types and enabled: the fields sent replace the stored ones. A new "
    "URL is checked as at creation. enabled true re-enables a subscription (one the notifier disabled when its "
    "endpoint answered 410 Gone) and clears disabled_at and disabled_reason; enabled false disables it. Answers "
    "the subscription without its secret; 404 when the tenant has no subscription of that id.",
)
async def patch_subscription(
    subscription_id: str, request: Request, key: ApiKey = Depends(authorized("subscriptions:write"))
) -> Response:
    resources = _resources(request)
    patch = _patch_of(await _json_body(request))
    found = await _subscription(resources, key.tenant, subscription_id)
    url = await _checked_url(resources, patch.url) if patch.url is not None else None
    edited = patched(found, patch, url, datetime.now(UTC))
    if not await resources.store.replace_subscription(key.tenant, edited):
        raise Problem(404, f"no subscription {subscription_id}")
    return JSONResponse(edited.model_dump(mode="json", exclude={"secret"}))


@router.post(
    "/v1/subscriptions/{subscription_id}/test",
    response_model=PingAnswer,
    responses=problem_responses(*READ_PROBLEMS, 404, 409),
    summary="Send a test ping to a subscription",
    description="Posts {type: ping, subscription_id, sent_at} to the subscription's URL now, signed as the notifier "
    "signs (Standard Webhooks headers; the subscription's own secret, else the tenant's), with the notifier's "
    "address rules, no redirects, and 3 s to connect and 10 s to read. A disabled subscription may be pinged. "
    "200 whatever the receiver did: delivered (2xx or not), its http_status, the latency and the error. 404 when "
    "the tenant has no subscription of that id; 409 when there is no secret to sign with.",
)
async def ping_subscription(
    subscription_id: str, request: Request, key: ApiKey = Depends(authorized("subscriptions:write"))
) -> Response:
    resources = _resources(request)
    found = await _subscription(resources, key.tenant, subscription_id)
    secrets = signing_secrets(found.secret, await resources.store.tenant_secrets(key.tenant))
    if not secrets:
        raise Problem(409, f"subscription {subscription_id} has no secret and tenant has no signing secret")
    body = ping_body(found.id, datetime.now(UTC))
    headers = request_headers(f"ping_{new_event_id().replace('-', '')}", body, secrets)
    answer = await ping(found.url, body, headers, resources.settings.webhook_networks())
    log.info(
        "subscription pinged",
        extra={"tenant": key.tenant, "subscription": found.id, "http_status": answer.http_status},
    )
    return JSONResponse(answer.model_dump(mode="json"))


@router.get(
    "/v1/subscriptions/{subscription_id}/deliveries",
    response_model=DeliveryList,
    responses=problem_responses(*READ_PROBLEMS, 404),
    summary="List a subscription's recent deliveries",
    description="The notifier's last 100 calls to the subscription's URL, newest first: when, the event id, the "
    "outcome (delivered, retry, permanent, gone, refused), the HTTP status, the latency and the error. Test pings "
    "are not included. 404 when the tenant has no subscription of that id. Charged to the key's read bucket.",
)
async def list_deliveries(
    subscription_id: str, request: Request, key: ApiKey = Depends(authorized("subscriptions:write", READ_BUCKET))
) -> Any:
    resources = _resources(request)
    await _subscription(resources, key.tenant, subscription_id)
    found = await resources.store.deliveries(key.tenant, subscription_id)
    return JSONResponse({"deliveries": [d.model_dump(mode="json") for d in found]})


@router.get(
    "/v1/events/{event_id}",
    response_model=EventStatus,
    responses=problem_responses(*READ_PROBLEMS, 404),
    summary="Read an event's status",
    description="The highest stage the event reached (or failed), the time of each stage, the result, any "
    "failure or retry in progress, and each endpoint's delivery outcome (delivered only when every endpoint was "
    "delivered or gone, else partially_delivered or failed). 404 for an unknown event or another tenant's. "
    "Charged to the key's read bucket, so polling does not use up the rate for publishing.",
)
async def get_event(
    event_id: str, request: Request, key: ApiKey = Depends(authorized("events:read", READ_BUCKET))
) -> Any:
    record = await _resources(request).store.status(key.tenant, event_id)
    if record is None:
        # Another tenant's event is as unknown as one that never existed.
        raise Problem(404, f"no event {event_id}")
    return {
        "event_id": event_id,
        "status": record.status,
        "stages": record.stages,
        "result": record.result,
        "error": record.error,
        "retrying": record.retrying,
        "endpoints": record.endpoints,
    }


@router.post(
    "/v1/events/{event_id}/redeliver",
    status_code=202,
    response_model=Redelivery,
    responses=problem_responses(*WRITE_PROBLEMS, 404, 409, 410),
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": RedeliveryIn.model_json_schema()}},
        }
    },
    summary="Send an event's result to its endpoints again",
    description="Sends the event's current result (the record the status points at) to all its endpoints again, "
    "or only to the one named by endpoint (a URL) or subscription_id; no body means all. The endpoints are those "
    "the notifier would choose now: the event's callback_url and the enabled subscriptions matching its type. "
    "Calls already delivered are made again; each is signed, retried on its schedule and receipted as any other. "
    "202 once the request is in Kafka, naming the redelivery and the endpoints; follow it with GET "
    "/v1/events/{event_id}. 404 for an unknown event or subscription; 409 when the event has no result yet, the "
    "endpoint is not one of the event's, or the subscription is disabled; 410 when the result's record is no longer "
    "in Kafka.",
)
async def redeliver_event(
    event_id: str, request: Request, key: ApiKey = Depends(authorized("subscriptions:write"))
) -> Response:
    resources = _resources(request)
    ask = await _redelivery_of(request)
    record = await resources.store.status(key.tenant, event_id)
    if record is None:
        raise Problem(404, f"no event {event_id}")
    if record.result_position is None:
        raise Problem(409, f"event {event_id} has no result yet (status {record.status}): redeliver once inferred")
    topic, partition, offset = record.result_position.rsplit("/", 2)
    try:
        found = await asyncio.to_thread(
            record_at, resources.settings.pipeline.kafka, topic, int(partition), int(offset)
        )
    except Exception as exc:
        raise _unavailable(resources, f"the result could not be read from Kafka: {exc}") from exc
    if found is None:
        raise Problem(410, f"the result at {record.result_position} is no longer in Kafka (past its retention)")
    try:
        inferred = resources.codec.decode_value(topic, found.value, found.partition, found.offset, EventInferred)
    except DependencyUnavailable as exc:
        raise _unavailable(resources, f"the schema registry is unavailable: {exc}") from exc
    assert isinstance(inferred, EventInferred)
    subscriptions = await resources.store.subscriptions(key.tenant)
    try:
        urls = redelivery_endpoints(
            ask, inferred.type, endpoints_for(inferred.callback_url, inferred.type, subscriptions), subscriptions
        )
    except RedeliveryRefused as exc:
        raise Problem(exc.status, str(exc)) from exc
    redelivery_id = f"rd_{new_event_id().replace('-', '')}"
    headers = [
        (name, value)
        for name, value in found.headers
        if not name.startswith((REDELIVERY_PREFIX, REPLAY_PREFIX, RETRY_PREFIX, DLQ_PREFIX))
    ]
    headers += [(REDELIVERY_ID, redelivery_id.encode()), (REDELIVERY_ENDPOINTS, orjson.dumps(urls))]
    output = Output(resources.settings.redelivery_topic, found.value, found.key, headers)
    (outcome,) = await resources.writer.write([output])
    if not isinstance(outcome, RecordPosition):
        raise _unavailable(resources, f"the redelivery was not written: {outcome}")
    log.info(
        "redelivery requested",
        extra={
            "event_id": event_id,
            "tenant": key.tenant,
            "redelivery_id": redelivery_id,
            "position": str(outcome),
            "endpoints": len(urls),
        },
    )
    answer = Redelivery(redelivery_id=redelivery_id, event_id=event_id, endpoints=urls, result_from=found.coordinates)
    return JSONResponse(answer.model_dump(mode="json"), status_code=202, headers={"Location": f"/v1/events/{event_id}"})


async def _redelivery_of(request: Request) -> RedeliveryIn:
    """The body as ``RedeliveryIn``; no body at all means every endpoint."""
    if not await request.body():
        return RedeliveryIn()
    return await _parsed(request, RedeliveryIn)


async def write_events(
    resources: Resources, key: ApiKey, events: list[tuple[str, EventIn]]
) -> list[Accepted | Problem]:
    """Encode and write claimed events; answer per event once Kafka acknowledged it (or did not)."""
    if not events:
        return []
    now = datetime.now(UTC)
    records = []
    try:
        for event_id, body in events:
            records.append(
                resources.codec.encode(received(body, key.tenant, event_id, now), topic=resources.settings.topic)
            )
    except DependencyUnavailable as exc:
        EVENTS.labels("unavailable").inc(len(events))
        await resources.store.release(key.tenant, [event_id for event_id, _ in events])
        raise _unavailable(resources, f"the schema registry is unavailable: {exc}") from exc
    outcomes = await resources.writer.write(records)
    answers: list[Accepted | Problem] = []
    remembered: list[tuple[Accepted, str]] = []
    released: list[str] = []
    for (event_id, body), outcome in zip(events, outcomes, strict=True):
        if isinstance(outcome, RecordPosition):
            accepted = Accepted(event_id=event_id, accepted_at=now, partition=outcome.partition, offset=outcome.offset)
            log.info(
                "event accepted",
                extra={
                    "event_id": event_id,
                    "tenant": key.tenant,
                    "position": str(outcome),
                    "payload": payload_hash(body.payload.text),
                },
            )
            answers.append(accepted)
            remembered.append((accepted, body_digest(body)))
            continue
        released.append(event_id)
        reason = "the producer queue is full" if isinstance(outcome, Backpressure) else str(outcome)
        if not isinstance(outcome, Backpressure | WriteFailed):
            log.error("unexpected write failure", extra={"event_id": event_id, "error": repr(outcome)})
        answers.append(_unavailable(resources, f"not accepted: {reason}"))
    EVENTS.labels("accepted").inc(len(events) - len(released))
    EVENTS.labels("unavailable").inc(len(released))
    await resources.store.accepted(key.tenant, remembered, now)
    await resources.store.release(key.tenant, released)
    return answers
