"""ops: the SRE API over dead-letter topics and its web console; wiring and the process entry point."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from starlette.types import ASGIApp

from services.ops.adapters.jobs import ReplayJobs
from services.ops.handlers import Resources, router
from services.ops.openapi import openapi_document
from services.ops.settings import OpsSettings
from shared.api_auth import ApiAuth, install_api_key_auth
from shared.codec import EventCodec
from shared.docs import api_app
from shared.health import health_router
from shared.http import BodyLimit
from shared.replay.operations import ReplayTopics
from shared.service import serve, standard_checks

MAX_BODY_BYTES = 65_536  # a replay request is a filter and a few flags


def create_app(settings: OpsSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pipeline = settings.pipeline
        kafka = pipeline.kafka.for_client("ops")
        codec = EventCodec.from_settings(pipeline)
        topics = ReplayTopics(settings.ledger_topic, settings.audit_topic)
        # Auth is intake's: an API key with ``dlq:read`` to look and ``dlq:replay`` to replay; a key sees only
        # its tenant's records unless it has ``admin``. The same Redis serves analytics' figures (/v1/stats).
        client = aioredis.Redis.from_url(pipeline.redis_url, socket_timeout=5, socket_connect_timeout=2)
        app.state.resources = Resources(settings, kafka, codec, topics, ReplayJobs(kafka, codec, topics), client)
        app.state.auth = ApiAuth.over(client, settings.key_cache_s, settings.retry_after_s)
        yield
        await client.aclose()

    app = api_app("ops", version="1", lifespan=lifespan)
    install_api_key_auth(app, settings.retry_after_s)
    app.include_router(health_router("ops", standard_checks("ops", settings.pipeline, redis=True, registry=True)))
    app.include_router(router)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app


def build(settings: OpsSettings) -> ASGIApp:
    """The app behind its body limit."""
    return BodyLimit(create_app(settings), MAX_BODY_BYTES)


def main() -> None:
    settings = OpsSettings()
    serve("ops", build(settings), settings)


if __name__ == "__main__":
    main()
