"""intake API: authenticated, rate-limited, idempotent HTTP → Kafka; wiring and the process entry point."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from starlette.types import ASGIApp

from services.intake.adapters.store import IntakeStore
from services.intake.adapters.writer import EventWriter
from services.intake.handlers import BATCH_PATH, Resources, router
from services.intake.openapi import openapi_document
from services.intake.settings import IntakeSettings
from shared.api_auth import ApiAuth, install_api_key_auth
from shared.codec import EventCodec
from shared.docs import api_app
from shared.errors import DependencyUnavailable
from shared.health import health_router
from shared.http import BodyLimit, HttpEdge
from shared.logging import configure_logging
from shared.service import serve, standard_checks

log = logging.getLogger(__name__)


def create_app(settings: IntakeSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pipeline = settings.pipeline
        # A bounded pool that waits for a free connection: a burst queues briefly instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            pipeline.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=5,
            socket_timeout=5,
            socket_connect_timeout=2,
        )
        client = aioredis.Redis(connection_pool=pool)
        resources = Resources(
            settings,
            IntakeStore(client, settings.dedup_window_s, settings.inflight_ttl_s, settings.status_ttl_s),
            EventCodec.from_settings(pipeline),
            EventWriter(pipeline.kafka.for_client("intake"), settings.delivery_timeout_ms, settings.queue_max_messages),
        )
        app.state.resources = resources
        app.state.auth = ApiAuth.over(client, settings.key_cache_s, settings.retry_after_s)
        try:
            # Warm the schema id, so the first request does not wait on the registry.
            resources.codec.serde.schema_id(settings.topic, "EventReceived")
        except DependencyUnavailable as exc:
            log.warning("schema registry not reachable at start", extra={"error": str(exc)})
        yield
        remaining = resources.writer.flush(10)
        if remaining:
            log.warning("producer closed with unacknowledged records", extra={"remaining": remaining})
        await client.aclose()

    app = api_app("intake", version="1", lifespan=lifespan)
    install_api_key_auth(app, settings.retry_after_s)
    app.include_router(health_router("intake", standard_checks("intake", settings.pipeline, redis=True, registry=True)))
    app.include_router(router)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app


def build(settings: IntakeSettings) -> ASGIApp:
    """The app behind its body limit and the request metrics."""
    app = BodyLimit(create_app(settings), settings.max_body_bytes, {BATCH_PATH: settings.max_batch_body_bytes})
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
