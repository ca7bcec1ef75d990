"""enrichment worker (faust): wiring, the health server and the process entry point."""

from __future__ import annotations

import threading

import faust

from services.enrichment.adapters.faust_app import create_app, create_changelogs, readiness
from services.enrichment.adapters.faust_mends import EnrichmentWorker
from services.enrichment.handlers import Enricher
from services.enrichment.settings import EnrichmentSettings
from shared.docs import api_app
from shared.health import health_router
from shared.logging import configure_logging, logging_dict
from shared.service import standard_checks, uvicorn_config

SERVICE = "enrichment"


def serve_health(settings: EnrichmentSettings, app: faust.App, enricher: Enricher) -> threading.Thread:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``ENRICHMENT_PORT``, in a thread of their own."""
    import uvicorn

    web = api_app(SERVICE)
    checks = standard_checks(SERVICE, settings.pipeline, redis=False, registry=True)
    web.include_router(health_router(SERVICE, {**checks, "faust": readiness(app, enricher)}))
    # In a thread, uvicorn leaves signal handling alone: SIGTERM stays faust's (a graceful stop).
    server = uvicorn.Server(uvicorn_config(web, settings))
    thread = threading.Thread(target=server.run, name=f"{SERVICE}-http", daemon=True)
    thread.start()
    return thread


def main() -> None:
    settings = EnrichmentSettings()
    configure_logging(SERVICE, settings.pipeline.log_level)
    create_changelogs(settings)
    app, enricher = create_app(settings)
    serve_health(settings, app, enricher)
    worker = EnrichmentWorker(
        app,
        loglevel=settings.pipeline.log_level,
        logging_config=logging_dict(SERVICE, settings.pipeline.log_level),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
