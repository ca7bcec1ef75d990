"""analytics worker (faust): wiring, the health server and the process entry point."""

from __future__ import annotations

import threading

import redis.asyncio as aioredis

from services.analytics.adapters.faust_app import Analytics, create_app, create_topics, readiness
from services.analytics.adapters.faust_mends import AnalyticsWorker
from services.analytics.adapters.store import RedisServingStore
from services.analytics.settings import AnalyticsSettings
from shared.docs import api_app
from shared.health import health_router
from shared.logging import configure_logging, logging_dict
from shared.service import standard_checks, uvicorn_config

SERVICE = "analytics"


def serve_health(settings: AnalyticsSettings, analytics: Analytics) -> threading.Thread:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``ANALYTICS_PORT``, in a thread of their own."""
    import uvicorn

    web = api_app(SERVICE)
    checks = standard_checks(SERVICE, settings.pipeline, redis=True, registry=True)
    web.include_router(health_router(SERVICE, {**checks, "faust": readiness(analytics)}))
    # In a thread, uvicorn leaves signal handling alone: SIGTERM stays faust's (a graceful stop).
    server = uvicorn.Server(uvicorn_config(web, settings))
    thread = threading.Thread(target=server.run, name=f"{SERVICE}-http", daemon=True)
    thread.start()
    return thread


def main() -> None:
    settings = AnalyticsSettings()
    pipeline = settings.pipeline
    configure_logging(SERVICE, pipeline.log_level)
    create_topics(settings)
    client = aioredis.Redis.from_url(pipeline.redis_url, socket_timeout=5, socket_connect_timeout=2)
    analytics = create_app(settings, RedisServingStore(client))
    serve_health(settings, analytics)
    worker = AnalyticsWorker(
        analytics.app,
        loglevel=pipeline.log_level,
        logging_config=logging_dict(SERVICE, pipeline.log_level),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
