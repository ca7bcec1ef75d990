"""ops' routes: DLQ summaries, paged browsing, record views, replays and the audit, and the console page."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError
from redis.exceptions import RedisError

from services.ops.adapters.jobs import ReplayJobs
from services.ops.domain import DEFAULT_WINDOWS, MAX_WINDOWS, OtherTenant, ReplayRequest, TenantStats, may_see, scoped
from services.ops.settings import OpsSettings
from shared.analytics import combine, read_stats
from shared.api_auth import authorized
from shared.auth import READ_BUCKET, ApiKey
from shared.codec import EventCodec
from shared.kafka import KafkaConnection
from shared.problems import Problem, problem_responses, validation_errors
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
from shared.topics import dlq_topic

CONSOLE = Path(__file__).with_name("console.html")

router = APIRouter()

# Every /v1 route: no key 401, a missing scope or another tenant's filter 403, over the rate 429, Redis down 503.
READ_PROBLEMS = (401, 403, 429, 503)
REPLAYS_PATH = "/v1/dlqs/{service}/replays"


@dataclass
class Resources:
    """What the routes share; the app builds it in its lifespan and puts it on ``app.state.resources``."""

    settings: OpsSettings
    kafka: KafkaConnection
    codec: EventCodec
    topics: ReplayTopics
    jobs: ReplayJobs
    redis: aioredis.Redis

    def known_service(self, service: str) -> str:
        if service not in self.settings.services:
            raise Problem(404, f"no service {service!r}; known: {', '.join(self.settings.services)}")
        return service


def _resources(request: Request) -> Resources:
    found: Resources = request.app.state.resources
    return found


def _scoped(where: DlqFilter, key: ApiKey) -> DlqFilter:
    try:
        return scoped(where, key)
    except OtherTenant as exc:
        raise Problem(403, str(exc)) from exc


def filter_from(
    since: datetime | None = Query(None, description="Failed at or after (RFC 3339)."),
    until: datetime | None = Query(None, description="Failed before (RFC 3339)."),
    category: list[str] = Query([], description="Error categories (repeatable)."),
    error_type: list[str] = Query([], description="Error types (repeatable)."),
    key: str | None = Query(None, description="Exactly this record key."),
    tenant: str | None = Query(None, description="Only this tenant (admin keys)."),
    event_id: str | None = Query(None, description="Only this event's dead letters (ce_id)."),
    partition: int | None = Query(None, ge=0),
    offset_from: int | None = Query(None, ge=0),
    offset_to: int | None = Query(None, ge=0),
) -> DlqFilter:
    return DlqFilter.from_params(**locals())


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def console() -> HTMLResponse:
    return HTMLResponse(CONSOLE.read_text())


@router.get("/v1/dlqs", responses=problem_responses(*READ_PROBLEMS))
def list_dlqs(request: Request, key: ApiKey = Depends(authorized("dlq:read"))) -> Any:
    """Every service's DLQ with its counts (of this key's tenant's records)."""
    res = _resources(request)
    where = _scoped(DlqFilter(), key)
    ledger = read_ledger(res.kafka, res.topics.ledger, res.codec)
    return {
        "dlqs": [
            {"service": service, **summarize(res.kafka, topic, where, ledger).as_dict()}
            for service, topic in dlq_topics(res.kafka, res.settings.services)
        ]
    }


@router.get("/v1/dlqs/{service}", responses=problem_responses(*READ_PROBLEMS, 404, 422))
def dlq_summary(
    service: str,
    request: Request,
    where: DlqFilter = Depends(filter_from),
    key: ApiKey = Depends(authorized("dlq:read")),
) -> Any:
    """Counts by category, error type and hour, the oldest and the newest record."""
    res = _resources(request)
    ledger = read_ledger(res.kafka, res.topics.ledger, res.codec)
    return summarize(res.kafka, dlq_topic(res.known_service(service)), _scoped(where, key), ledger).as_dict()


@router.get("/v1/dlqs/{service}/records", responses=problem_responses(400, *READ_PROBLEMS, 404, 422))
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
    res = _resources(request)
    try:
        page = browse(
            res.kafka,
            res.codec if values else None,
            dlq_topic(res.known_service(service)),
            _scoped(where, key),
            cursor,
            min(limit, res.settings.max_page),
        )
    except ValueError as exc:
        raise Problem(400, str(exc)) from exc
    return {"records": page.records, "next_cursor": page.next_cursor}


@router.get("/v1/dlqs/{service}/records/{partition}/{offset}", responses=problem_responses(*READ_PROBLEMS, 404, 422))
def dlq_record(
    service: str,
    partition: int,
    offset: int,
    request: Request,
    key: ApiKey = Depends(authorized("dlq:read")),
) -> Any:
    """One dead letter: headers, the decoded value, the error and its stack trace."""
    res = _resources(request)
    try:
        found = show(res.kafka, res.codec, dlq_topic(res.known_service(service)), partition, offset)
    except LookupError as exc:
        raise Problem(404, str(exc)) from exc
    if not may_see(key, found["tenant"]):
        raise Problem(404, f"no record at {dlq_topic(service)}/{partition}/{offset}")
    return found


@router.post(
    REPLAYS_PATH,
    status_code=202,
    responses={
        200: {
            "description": "The dry run's plan and result (nothing was replayed)",
            "content": {"application/json": {"schema": {}}},
        },
        **problem_responses(*READ_PROBLEMS, 404, 413, 422),
    },
)
async def post_replay(service: str, request: Request, key: ApiKey = Depends(authorized("dlq:read"))) -> Any:
    """Plan and start a replay (202, then poll ``/v1/replays/{id}``; scope ``dlq:replay``); a dry run answers 200
    with the plan and needs only ``dlq:read``. Records that failed again after a replay are left out and counted
    (``plan.refailed``) unless ``include_refailed``."""
    try:
        body = ReplayRequest.model_validate_json(await request.body() or b"{}")
    except ValidationError as exc:
        raise Problem(422, "the replay request is invalid", errors=validation_errors(exc.errors())) from exc
    if not body.dry_run and not key.allows("dlq:replay"):
        raise Problem(
            403, "the key lacks the scope dlq:replay (a dry run needs only dlq:read)", required_scope="dlq:replay"
        )
    res = _resources(request)
    where = _scoped(body.filter, key)
    chosen = plan(res.kafka, res.known_service(service), where, body.limit, body.include_refailed)
    options = ReplayOptions(
        requested_by=f"key:{key.id}",
        rate=body.rate or res.settings.default_rate,
        keep_headers=body.keep_headers,
        force=body.force,
        dry_run=body.dry_run,
    )
    if body.dry_run:
        return JSONResponse(res.jobs.run_now(chosen, options).as_dict(), status_code=200)
    return res.jobs.start(chosen, options).as_dict()


@router.get("/v1/replays/{replay_id}", responses=problem_responses(*READ_PROBLEMS, 404))
def get_replay(replay_id: str, request: Request, key: ApiKey = Depends(authorized("dlq:read"))) -> Any:
    """A replay started by this ops process: its progress while it runs, then its result."""
    job = _resources(request).jobs.get(replay_id)
    if job is None or not may_see(key, job.plan.where.tenant):
        raise Problem(404, f"no replay {replay_id} in this ops process (the audit keeps every run)")
    return job.as_dict()


@router.get("/v1/audit", responses=problem_responses(*READ_PROBLEMS, 422))
def audit(
    request: Request,
    cursor: int | None = Query(None, ge=0, description="The next_cursor of the previous page."),
    limit: int = Query(50, ge=1),
    key: ApiKey = Depends(authorized("dlq:read")),
) -> Any:
    """Replay runs, newest first (a key without admin sees the runs of its tenant's filters)."""
    res = _resources(request)
    found, following = audit_page(res.kafka, res.codec, res.topics.audit, cursor, min(limit, res.settings.max_page))
    runs = [a.model_dump(mode="json") for a in found]
    runs = [r for r in runs if may_see(key, json.loads(r["filters_json"]).get("tenant"))]
    return {"runs": runs, "next_cursor": following}


@router.get(
    "/v1/stats",
    response_model=TenantStats,
    responses=problem_responses(*READ_PROBLEMS, 422),
    summary="A tenant's figures over recent windows",
    description="What the analytics service counted for the key's tenant (an admin key may name another with "
    "tenant): per window of 1m or 1h, the latest count windows still kept (2 h of 1m windows, 2 days of 1h ones), "
    "oldest first, each with its figures per category (events, escalations, confidence and its histogram, fallback "
    "model, cache hits, auto-resolved tickets) and its deliveries; and their totals with the derived rates "
    "(needs-review share, mean confidence, fallback share, cache hit rate, webhook success rate, mean delivery "
    "latency, escalations per hour). At-least-once figures, exact after a crash (docs/architecture.md). Charged to "
    "the key's read bucket.",
)
async def stats(
    request: Request,
    window: Literal["1m", "1h"] = Query("1h", description="The window length."),
    count: int | None = Query(None, ge=1, le=MAX_WINDOWS, description="Windows to return: 24 of 1h, 60 of 1m."),
    tenant: str | None = Query(None, description="Another tenant's figures (admin keys only)."),
    key: ApiKey = Depends(authorized("events:read", READ_BUCKET)),
) -> Any:
    wanted = tenant or key.tenant
    if not may_see(key, wanted):
        raise Problem(403, f"this key reads only tenant {key.tenant}'s figures")
    try:
        windows = await read_stats(_resources(request).redis, wanted, window, count or DEFAULT_WINDOWS[window])
    except (RedisError, OSError) as exc:
        raise Problem(503, f"the figures' store (Redis) is unavailable: {exc}") from exc
    answer = TenantStats(tenant=wanted, window=window, windows=windows, totals=combine(windows, wanted, window))
    return JSONResponse(answer.model_dump(mode="json"))
