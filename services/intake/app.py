"""intake API: authenticated, rate-limited, idempotent HTTP → Kafka; a 202 means the event is in Kafka."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastapi import Depends, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.intake.adapters.store import IntakeStore
from services.intake.adapters.writer import Backpressure, EventWriter, WriteFailed
from services.intake.domain import (
    Accepted,
    BatchAnswer,
    BatchIn,
    BatchItem,
    Duplicate,
    EventIn,
    EventStatus,
    Identifier,
    SubscriptionIn,
    SubscriptionList,
    new_event_id,
    received,
)
from services.intake.metrics import EVENTS
from services.intake.settings import IntakeSettings
from shared.api_auth import ApiAuth, authorized
from shared.auth import ApiKey, KeyVerifier, RateLimiter, new_signing_secret
from shared.codec import EventCodec
from shared.errors import DependencyUnavailable
from shared.health import health_router
from shared.http import HttpEdge
from shared.kafka import RecordPosition
from shared.logging import configure_logging, payload_hash
from shared.problems import (
    Problem,
    document_problems,
    install,
    problem_response,
    problem_responses,
    validation_errors,
)
from shared.schemas import SchemaCatalog
from shared.serde import AvroSerde
from shared.service import serve, standard_checks
from shared.subscriptions import Subscription

log = logging.getLogger(__name__)
BATCH_PATH = "/v1/events:batch"
_READ_PROBLEMS = (401, 403, 429, 503)
_WRITE_PROBLEMS = (400, *_READ_PROBLEMS, 413, 415, 422)
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
ModelT = TypeVar("ModelT", bound=BaseModel)
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


class BodyLimit:
    """413 for a body over the limit, counted as it streams in, before anything parses it."""

    def __init__(self, app: ASGIApp, limit: int, batch_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.batch_limit = batch_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.batch_limit if scope["path"] == BATCH_PATH else self.limit
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(scope, send, limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(scope, send, limit)


class _TooLarge(Exception):
    pass


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    response = problem_response(413, f"the body is over the {limit}-byte limit", scope["path"])
    await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class Resources:
    """What the routes share, created in the lifespan."""

    def __init__(self, settings: IntakeSettings) -> None:
        pipeline = settings.pipeline
        self.settings = settings
        # A bounded pool that waits for a free connection: a burst queues briefly instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            pipeline.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=5,
            socket_timeout=5,
            socket_connect_timeout=2,
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        self.store = IntakeStore(self.redis, settings.dedup_window_s, settings.inflight_ttl_s, settings.status_ttl_s)
        self.limiter = RateLimiter(self.redis)
        self.keys = KeyVerifier(self.redis, settings.key_cache_s)
        registry = SchemaRegistryClient({"url": pipeline.schema_registry_url})
        self.codec = EventCodec(AvroSerde(registry, SchemaCatalog(pipeline.schemas_dir)))
        self.writer = EventWriter(
            pipeline.kafka.for_client("intake"), settings.delivery_timeout_ms, settings.queue_max_messages
        )

    async def close(self) -> None:
        remaining = self.writer.flush(10)
        if remaining:
            log.warning("producer closed with unacknowledged records", extra={"remaining": remaining})
        await self.redis.aclose()


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


def _validate_event(raw: Any, resources: Resources, loc_prefix: list[Any]) -> EventIn:
    """Validate one event; the errors name each field (``loc``) and the reason."""
    try:
        body = EventIn.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc, loc_prefix) from exc
    url = body.callback_url
    if url is not None and url.startswith("http://") and resources.settings.pipeline.env == "production":
        loc = [*loc_prefix, "callback_url"]
        error = {"loc": loc, "msg": "callback_url must use https in production", "type": "value_error"}
        raise Problem(422, "callback_url: must use https in production", errors=[error])
    return body


def _event_id(body: EventIn, request: Request | None) -> str:
    """The body's ``event_id``, else the ``Idempotency-Key`` header, else a new UUIDv7. A header that is sent
    must be a valid id even when the body names the event: a malformed one is the client's bug either way."""
    header = request.headers.get("idempotency-key") if request is not None else None
    if header is not None:
        try:
            header = _IDENTIFIER.validate_python(header)
        except ValidationError as exc:
            error = {"loc": ["header", "Idempotency-Key"], "msg": "not a valid event id", "type": "value_error"}
            raise Problem(422, "Idempotency-Key: not a valid event id", errors=[error]) from exc
    return body.event_id or header or new_event_id()


def _unavailable(resources: Resources, detail: str) -> Problem:
    return Problem(503, detail, headers={"Retry-After": str(resources.settings.retry_after_s)})


def create_app(settings: IntakeSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = Resources(settings)
        app.state.resources = resources
        app.state.auth = ApiAuth(resources.keys, resources.limiter, settings.retry_after_s)
        try:
            # Warm the schema id, so the first request does not wait on the registry.
            resources.codec.serde.schema_id(settings.topic, "EventReceived")
        except DependencyUnavailable as exc:
            log.warning("schema registry not reachable at start", extra={"error": str(exc)})
        yield
        await resources.close()

    app = FastAPI(title="intake", version="1", lifespan=lifespan)
    install(app)

    @app.exception_handler(aioredis.RedisError)
    async def redis_down(request: Request, exc: aioredis.RedisError) -> Response:
        # Redis (keys, idempotency, status) unavailable: not the client's fault, and nothing was promised.
        log.warning("redis unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
        headers = {"Retry-After": str(settings.retry_after_s)}
        return problem_response(503, f"a dependency is unavailable: {type(exc).__name__}", request.url.path, headers)

    app.include_router(health_router("intake", standard_checks("intake", settings.pipeline, redis=True, registry=True)))

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=Accepted,
        responses={200: {"model": Duplicate}, **problem_responses(*_WRITE_PROBLEMS, 409)},
    )
    async def post_event(request: Request, key: ApiKey = Depends(authorized("events:write"))) -> Response:
        resources: Resources = request.app.state.resources
        try:
            body = _validate_event(await _json_body(request), resources, ["body"])
            event_id = _event_id(body, request)
        except Problem:
            EVENTS.labels("invalid").inc()
            raise
        claim = await resources.store.claim(key.tenant, event_id)
        if claim.original is not None:
            EVENTS.labels("duplicate").inc()
            duplicate = Duplicate(**claim.original.model_dump(exclude={"status"}))
            return JSONResponse(duplicate.model_dump(mode="json"), status_code=200)
        if not claim.mine:
            EVENTS.labels("in_flight").inc()
            raise Problem(
                409,
                f"event {event_id} is being written; retry shortly",
                headers={"Retry-After": str(resources.settings.retry_after_s)},
            )
        accepted = await _write(resources, key, [(event_id, body)])
        result = accepted[0]
        if isinstance(result, Problem):
            raise result
        return JSONResponse(result.model_dump(mode="json"), status_code=202)

    @app.post(BATCH_PATH, status_code=202, response_model=BatchAnswer, responses=problem_responses(*_WRITE_PROBLEMS))
    async def post_batch(request: Request, key: ApiKey = Depends(authorized("events:write"))) -> Response:
        resources: Resources = request.app.state.resources
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
            if claim.original is not None:
                EVENTS.labels("duplicate").inc()
                items[index] = BatchItem(index=index, event_id=event_id, status="duplicate")
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
        results = await _write(resources, key, [(event_id, body) for _, event_id, body in to_write])
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
        return JSONResponse(
            {"results": [item.model_dump(mode="json", exclude_none=True) for item in items if item is not None]},
            status_code=202,
        )

    @app.post(
        "/v1/subscriptions", status_code=201, response_model=Subscription, responses=problem_responses(*_WRITE_PROBLEMS)
    )
    async def post_subscription(request: Request, key: ApiKey = Depends(authorized("subscriptions:write"))) -> Response:
        resources: Resources = request.app.state.resources
        body = await _parsed(request, SubscriptionIn)
        if body.url.startswith("http://") and resources.settings.pipeline.env == "production":
            error = {"loc": ["body", "url"], "msg": "url must use https in production", "type": "value_error"}
            raise Problem(422, "url: must use https in production", errors=[error])
        subscription = Subscription(
            id=f"sub_{new_event_id().replace('-', '')[:20]}",
            url=body.url,
            event_types=sorted(set(body.event_types)),
            created_at=datetime.now(UTC),
            secret=body.secret or new_signing_secret(),
        )
        await resources.store.add_subscription(key.tenant, subscription)
        # The secret is shown this once; listings never include it.
        return JSONResponse(subscription.model_dump(mode="json"), status_code=201)

    @app.get("/v1/subscriptions", response_model=SubscriptionList, responses=problem_responses(*_READ_PROBLEMS))
    async def list_subscriptions(request: Request, key: ApiKey = Depends(authorized("subscriptions:write"))) -> Any:
        resources: Resources = request.app.state.resources
        found = await resources.store.subscriptions(key.tenant)
        return JSONResponse({"subscriptions": [s.model_dump(mode="json", exclude={"secret"}) for s in found]})

    @app.delete(
        "/v1/subscriptions/{subscription_id}", status_code=204, responses=problem_responses(*_READ_PROBLEMS, 404)
    )
    async def delete_subscription(
        subscription_id: str, request: Request, key: ApiKey = Depends(authorized("subscriptions:write"))
    ) -> Response:
        resources: Resources = request.app.state.resources
        if not await resources.store.remove_subscription(key.tenant, subscription_id):
            raise Problem(404, f"no subscription {subscription_id}")
        return Response(status_code=204)

    @app.get("/v1/events/{event_id}", response_model=EventStatus, responses=problem_responses(*_READ_PROBLEMS, 404))
    async def get_event(event_id: str, request: Request, key: ApiKey = Depends(authorized("events:read"))) -> Any:
        resources: Resources = request.app.state.resources
        status = await resources.store.status(key.tenant, event_id)
        if status is None:
            # Another tenant's event is as unknown as one that never existed.
            raise Problem(404, f"no event {event_id}")
        stages = {s: status.get(s) for s in ("accepted", "enriched", "inferred", "delivered")}
        result = orjson.loads(status["result"]) if "result" in status else None
        error = orjson.loads(status["error"]) if "error" in status else None
        return {
            "event_id": event_id,
            "status": status.get("status", "accepted"),
            "stages": stages,
            "result": result,
            "error": error,
            "retrying": orjson.loads(status["retrying"]) if "retrying" in status else None,
        }

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated document, plus the request bodies the routes parse themselves (so the body limit and
    the field-naming errors run first)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (EventIn, BatchIn, SubscriptionIn):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
    for path, name in (("/v1/events", "EventIn"), (BATCH_PATH, "BatchIn"), ("/v1/subscriptions", "SubscriptionIn")):
        schema["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    schema["paths"]["/v1/events"]["post"]["parameters"] = [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Names the event when the body has no event_id; a repeat within the window is a duplicate.",
            "schema": _IDENTIFIER.json_schema(),
        }
    ]
    schema["components"]["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in schema["paths"].items():
        if path.startswith("/v1/"):
            for operation in operations.values():
                operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
    app.openapi_schema = document_problems(schema)
    return schema


async def _write(resources: Resources, key: ApiKey, events: list[tuple[str, EventIn]]) -> list[Accepted | Problem]:
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
            continue
        released.append(event_id)
        reason = "the producer queue is full" if isinstance(outcome, Backpressure) else str(outcome)
        if not isinstance(outcome, Backpressure | WriteFailed):
            log.error("unexpected write failure", extra={"event_id": event_id, "error": repr(outcome)})
        answers.append(_unavailable(resources, f"not accepted: {reason}"))
    EVENTS.labels("accepted").inc(len(events) - len(released))
    EVENTS.labels("unavailable").inc(len(released))
    await resources.store.accepted(key.tenant, [a for a in answers if isinstance(a, Accepted)], now)
    await resources.store.release(key.tenant, released)
    return answers


def _raw_id(raw: Any) -> str | None:
    value = raw.get("event_id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def build(settings: IntakeSettings) -> ASGIApp:
    """The app behind its body limit and the request metrics."""
    app = BodyLimit(create_app(settings), settings.max_body_bytes, settings.max_batch_body_bytes)
    return HttpEdge(app, "intake")


def from_environment() -> ASGIApp:
    """The factory each worker process calls when ``INTAKE_WORKERS`` > 1."""
    settings = IntakeSettings()
    configure_logging("intake", settings.pipeline.log_level)
    return build(settings)


def main() -> None:
    settings = IntakeSettings()
    if settings.workers > 1:
        serve("intake", "services.intake.app:from_environment", settings, workers=settings.workers)
    else:
        serve("intake", build(settings), settings)


if __name__ == "__main__":
    main()
