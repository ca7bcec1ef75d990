"""ops: the SRE API over dead-letter topics (summaries, paged browsing, replay plans, replays, the audit) and
the web console that uses it. Auth is intake's: an API key with ``dlq:read`` to look and ``dlq:replay`` to
replay; a key sees only its tenant's records unless it has ``admin``."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.ops.jobs import ReplayJobs
from services.ops.settings import OpsSettings
from shared.api_auth import ApiAuth, authorized
from shared.auth import ApiKey, KeyVerifier, RateLimiter
from shared.codec import EventCodec
from shared.health import health_router
from shared.problems import Problem, install, problem_response, validation_errors
from shared.replay.operations import (
    ReplayOptions,
    ReplayTopics,
    audit_page,
    browse,
    dlq_topics,
    plan,
    read_ledger,
    show,
    summarize,
)
from shared.replay.records import DlqFilter
from shared.schemas import SchemaCatalog
from shared.serde import AvroSerde
from shared.service import serve, standard_checks
from shared.topics import dlq_topic

log = logging.getLogger(__name__)
CONSOLE = Path(__file__).with_name("console.html")
MAX_BODY_BYTES = 65_536  # a replay request is a filter and a few flags


class ReplayRequest(BaseModel):
    """A replay (or dry run) of the dead letters a filter selects."""

    model_config = ConfigDict(extra="forbid")

    filter: DlqFilter = Field(default_factory=DlqFilter)
    dry_run: bool = False
    rate: float | None = Field(default=None, gt=0, description="Records per second, at most.")
    limit: int | None = Field(default=None, ge=1, description="At most this many (the first, by partition).")
    keep_headers: bool = False
    force: bool = False


class Resources:
    def __init__(self, settings: OpsSettings) -> None:
        pipeline = settings.pipeline
        self.settings = settings
        self.kafka = pipeline.kafka.for_client("ops")
        self.redis = aioredis.Redis.from_url(pipeline.redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.codec = EventCodec(
            AvroSerde(SchemaRegistryClient({"url": pipeline.schema_registry_url}), SchemaCatalog(pipeline.schemas_dir))
        )
        self.topics = ReplayTopics(settings.ledger_topic, settings.audit_topic)
        self.jobs = ReplayJobs(self.kafka, self.codec, self.topics)


def scoped(where: DlqFilter, key: ApiKey) -> DlqFilter:
    """The filter as this key may use it: its own tenant's records only, unless it is an admin key."""
    if "admin" in key.scopes:
        return where
    if where.tenant is not None and where.tenant != key.tenant:
        raise Problem(403, f"this key reads only tenant {key.tenant}'s records")
    return where.model_copy(update={"tenant": key.tenant})


def filter_from(
    since: datetime | None = Query(None, description="Failed at or after (RFC 3339)."),
    until: datetime | None = Query(None, description="Failed before (RFC 3339)."),
    category: list[str] = Query([], description="Error categories (repeatable)."),
    error_type: list[str] = Query([], description="Error types (repeatable)."),
    key: str | None = Query(None, description="Exactly this record key."),
    tenant: str | None = Query(None, description="Only this tenant (admin keys)."),
    partition: int | None = Query(None, ge=0),
    offset_from: int | None = Query(None, ge=0),
    offset_to: int | None = Query(None, ge=0),
) -> DlqFilter:
    return DlqFilter(
        since=since,
        until=until,
        category=category,
        error_type=error_type,
        key=key,
        tenant=tenant,
        partition=partition,
        offset_from=offset_from,
        offset_to=offset_to,
    )


def create_app(settings: OpsSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = Resources(settings)
        app.state.resources = resources
        app.state.auth = ApiAuth(
            KeyVerifier(resources.redis, settings.key_cache_s), RateLimiter(resources.redis), settings.retry_after_s
        )
        yield
        await resources.redis.aclose()

    app = FastAPI(title="ops", version="1", lifespan=lifespan)
    install(app)
    app.include_router(health_router("ops", standard_checks("ops", settings.pipeline, redis=True, registry=True)))

    @app.exception_handler(aioredis.RedisError)
    async def redis_down(request: Request, exc: aioredis.RedisError) -> Response:
        headers = {"Retry-After": str(settings.retry_after_s)}
        return problem_response(503, f"a dependency is unavailable: {type(exc).__name__}", request.url.path, headers)

    def known_service(service: str) -> str:
        if service not in settings.services:
            raise Problem(404, f"no service {service!r}; known: {', '.join(settings.services)}")
        return service

    def resources(request: Request) -> Resources:
        found: Resources = request.app.state.resources
        return found

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def console() -> HTMLResponse:
        return HTMLResponse(CONSOLE.read_text())

    @app.get("/v1/dlqs")
    def list_dlqs(request: Request, key: ApiKey = Depends(authorized("dlq:read"))) -> Any:
        """Every service's DLQ with its counts (of this key's tenant's records)."""
        res = resources(request)
        where = scoped(DlqFilter(), key)
        ledger = read_ledger(res.kafka, res.topics.ledger, res.codec)
        return {
            "dlqs": [
                {"service": service, **summarize(res.kafka, topic, where, ledger).as_dict()}
                for service, topic in dlq_topics(res.kafka, settings.services)
            ]
        }

    @app.get("/v1/dlqs/{service}")
    def dlq_summary(
        service: str,
        request: Request,
        where: DlqFilter = Depends(filter_from),
        key: ApiKey = Depends(authorized("dlq:read")),
    ) -> Any:
        """Counts by category, error type and hour, the oldest and the newest record."""
        res = resources(request)
        ledger = read_ledger(res.kafka, res.topics.ledger, res.codec)
        return summarize(res.kafka, dlq_topic(known_service(service)), scoped(where, key), ledger).as_dict()

    @app.get("/v1/dlqs/{service}/records")
    def dlq_records(
        service: str,
        request: Request,
        where: DlqFilter = Depends(filter_from),
        cursor: str | None = Query(None, description="The next_cursor of the previous page."),
        limit: int = Query(50, ge=1),
        values: bool = Query(False, description="Decode values; add headers and stack traces."),
        key: ApiKey = Depends(authorized("dlq:read")),
    ) -> Any:
        """One page of matching dead letters, oldest partition first; ``next_cursor`` is null at the end."""
        res = resources(request)
        try:
            page = browse(
                res.kafka,
                res.codec if values else None,
                dlq_topic(known_service(service)),
                scoped(where, key),
                cursor,
                min(limit, settings.max_page),
            )
        except ValueError as exc:
            raise Problem(400, str(exc)) from exc
        return {"records": page.records, "next_cursor": page.next_cursor}

    @app.get("/v1/dlqs/{service}/records/{partition}/{offset}")
    def dlq_record(
        service: str,
        partition: int,
        offset: int,
        request: Request,
        key: ApiKey = Depends(authorized("dlq:read")),
    ) -> Any:
        """One dead letter: headers, the decoded value, the error and its stack trace."""
        res = resources(request)
        try:
            found = show(res.kafka, res.codec, dlq_topic(known_service(service)), partition, offset)
        except LookupError as exc:
            raise Problem(404, str(exc)) from exc
        if "admin" not in key.scopes and found["tenant"] != key.tenant:
            raise Problem(404, f"no record at {dlq_topic(service)}/{partition}/{offset}")
        return found

    @app.post("/v1/dlqs/{service}/replays", status_code=202)
    async def post_replay(service: str, request: Request, key: ApiKey = Depends(authorized("dlq:replay"))) -> Any:
        """Plan and start a replay (202, then poll ``/v1/replays/{id}``); a dry run answers 200 with the plan."""
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise Problem(413, f"the body is over the {MAX_BODY_BYTES}-byte limit")
        try:
            body = ReplayRequest.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            raise Problem(422, "the replay request is invalid", errors=validation_errors(exc.errors())) from exc
        res = resources(request)
        where = scoped(body.filter, key)
        chosen = plan(res.kafka, known_service(service), where, body.limit)
        options = ReplayOptions(
            requested_by=f"key:{key.id}",
            rate=body.rate or settings.default_rate,
            keep_headers=body.keep_headers,
            force=body.force,
            dry_run=body.dry_run,
        )
        if body.dry_run:
            return JSONResponse(res.jobs.run_now(chosen, options).as_dict(), status_code=200)
        return res.jobs.start(chosen, options).as_dict()

    @app.get("/v1/replays/{replay_id}")
    def get_replay(replay_id: str, request: Request, key: ApiKey = Depends(authorized("dlq:read"))) -> Any:
        """A replay started by this ops process: its progress while it runs, then its result."""
        job = resources(request).jobs.get(replay_id)
        if job is None or ("admin" not in key.scopes and job.plan.where.tenant != key.tenant):
            raise Problem(404, f"no replay {replay_id} in this ops process (the audit keeps every run)")
        return job.as_dict()

    @app.get("/v1/audit")
    def audit(
        request: Request,
        cursor: int | None = Query(None, ge=0, description="The next_cursor of the previous page."),
        limit: int = Query(50, ge=1),
        key: ApiKey = Depends(authorized("dlq:read")),
    ) -> Any:
        """Replay runs, newest first (a key without admin sees the runs of its tenant's filters)."""
        res = resources(request)
        found, following = audit_page(res.kafka, res.codec, res.topics.audit, cursor, min(limit, settings.max_page))
        runs = [a.model_dump(mode="json") for a in found]
        if "admin" not in key.scopes:
            runs = [r for r in runs if json.loads(r["filters_json"]).get("tenant") == key.tenant]
        return {"runs": runs, "next_cursor": following}

    return app


def main() -> None:
    settings = OpsSettings()
    serve("ops", create_app(settings), settings)


if __name__ == "__main__":
    main()
