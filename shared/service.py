"""Process wiring shared by every service: logging, the HTTP server and standard readiness checks."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from shared.health import HttpCheck, KafkaCheck, ReadinessCheck, RedisCheck, health_router
from shared.logging import configure_logging
from shared.settings import PipelineSettings, ServiceSettings


def standard_checks(
    pipeline: PipelineSettings, *, kafka: bool = True, redis: bool = False, registry: bool = False
) -> dict[str, ReadinessCheck]:
    """The readiness checks for the dependencies a service names."""
    checks: dict[str, ReadinessCheck] = {}
    if kafka:
        checks["kafka"] = KafkaCheck(pipeline.kafka_bootstrap_servers)
    if redis:
        checks["redis"] = RedisCheck(pipeline.redis_url)
    if registry:
        checks["registry"] = HttpCheck(pipeline.schema_registry_url.rstrip("/") + "/subjects")
    return checks


def serve(service: str, app: FastAPI, settings: ServiceSettings) -> None:
    """Run ``app`` under uvicorn with JSON logs on the service's host and port."""
    configure_logging(service, settings.pipeline.log_level)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)


def shell_app(service: str, settings: ServiceSettings, **dependencies: bool) -> FastAPI:
    """An app with only health, readiness and metrics, for a service whose processing is still to come."""
    app = FastAPI(title=service)
    app.include_router(health_router(service, standard_checks(settings.pipeline, **dependencies)))
    return app
