"""Process wiring shared by every service: logging, the HTTP server, readiness, and the consumer process."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
import uvicorn.importer
from fastapi import FastAPI
from starlette.types import ASGIApp
from uvicorn.supervisors import Multiprocess

from shared.docs import api_app
from shared.health import HttpCheck, KafkaCheck, ReadinessCheck, RedisCheck, health_router
from shared.http import prepare_multiprocess
from shared.logging import configure_logging
from shared.runtime import Runtime
from shared.settings import ConsumerServiceSettings, PipelineSettings, ServiceSettings

log = logging.getLogger(__name__)


def standard_checks(
    service: str, pipeline: PipelineSettings, *, kafka: bool = True, redis: bool = False, registry: bool = False
) -> dict[str, ReadinessCheck]:
    """The readiness checks for the dependencies a service names."""
    checks: dict[str, ReadinessCheck] = {}
    if kafka:
        checks["kafka"] = KafkaCheck(pipeline.kafka.for_client(service))
    if redis:
        checks["redis"] = RedisCheck(pipeline.redis_url)
    if registry:
        checks["registry"] = HttpCheck(pipeline.schema_registry_url.rstrip("/") + "/subjects")
    return checks


def uvicorn_config(app: ASGIApp | str, settings: ServiceSettings, **extra: Any) -> uvicorn.Config:
    # Logging is ours (JSON); uvicorn's own config would replace it.
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        **extra,
    )


def serve(service: str, app: ASGIApp | str, settings: ServiceSettings, workers: int = 1) -> None:
    """Run ``app`` under uvicorn with JSON logs on the service's host and port.

    With ``workers > 1`` the app must be the import string of a factory (each worker process builds its own),
    and the workers share one Prometheus multiprocess directory, so ``/metrics`` on any of them adds all up.
    """
    configure_logging(service, settings.pipeline.log_level)
    if workers > 1:
        if not isinstance(app, str):
            raise ValueError("several workers need the app as 'module:factory', so that each builds its own")
        prepare_multiprocess(settings.pipeline.state_dir / "metrics" / f"{service}-{settings.port}")
        config = uvicorn_config(app, settings, factory=True, workers=workers)
        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
        return
    if isinstance(app, str):
        app = uvicorn.importer.import_from_string(app)()
    uvicorn.Server(uvicorn_config(app, settings)).run()


def partitions_check(runtime: Runtime, stopping: threading.Event | None = None) -> ReadinessCheck:
    """Ready once the group has given this process its assignment (a replica beyond the partition count gets an
    empty one and is still ready) and its tables are restored, and no longer once it is stopping."""

    async def check() -> None:
        if stopping is not None and stopping.is_set():
            raise RuntimeError("stopping")
        if not runtime.joined.is_set():
            raise RuntimeError("no partitions assigned yet")
        restoring = runtime.restoring
        if restoring:
            raise RuntimeError(f"restoring tables of partitions {restoring} from their changelogs")

    return check


def run_consumer(
    settings: ConsumerServiceSettings,
    runtime: Runtime,
    checks: dict[str, ReadinessCheck] | None = None,
    app: FastAPI | None = None,
    warmup: Callable[[], None] | None = None,
) -> int:
    """Run a consuming service until SIGTERM/SIGINT or a fatal error; return the process exit code.

    The runtime loop runs in its own thread and the HTTP server (health, readiness, metrics, and any routes
    of ``app``) in another; the main thread only waits for signals. On a signal the loop finishes its batch,
    commits and closes within ``shutdown_timeout_s``. A ``RuntimeFatal`` (or any crash) ends the process
    with 1, so the supervisor restarts it and the new instance fences the old transactional producer.
    ``warmup`` (loading a model) runs in the loop thread before the runtime starts, while the HTTP server
    already answers: readiness says what is still missing.
    """
    service = runtime.service
    configure_logging(service, settings.pipeline.log_level)
    app = app or api_app(service)
    stop = threading.Event()
    app.include_router(health_router(service, {**(checks or {}), "partitions": partitions_check(runtime, stop)}))
    crashed: list[BaseException] = []

    def loop() -> None:
        try:
            if warmup is not None:
                warmup()
            if not stop.is_set():
                runtime.run(stop)
        except BaseException as exc:
            crashed.append(exc)
            log.critical("runtime stopped on an error; exiting", exc_info=True, extra={"service": service})
        finally:
            stop.set()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping on signal", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = uvicorn.Server(uvicorn_config(app, settings))
    server_thread = threading.Thread(target=server.run, name=f"{service}-http", daemon=True)
    loop_thread = threading.Thread(target=loop, name=f"{service}-runtime", daemon=True)
    server_thread.start()
    loop_thread.start()
    # A short wait, not an unbounded one: the main thread must come back to run the signal handler.
    while not stop.wait(0.2):
        if not server_thread.is_alive():
            log.critical("HTTP server stopped (port taken?); exiting", extra={"port": settings.port})
            crashed.append(RuntimeError("HTTP server stopped"))
            stop.set()
    started = time.monotonic()
    loop_thread.join(settings.shutdown_timeout_s)
    if loop_thread.is_alive():
        # Whatever is uncommitted is aborted by the broker (transaction timeout) or fenced by the restart.
        log.error("runtime did not stop in time; exiting anyway", extra={"deadline_s": settings.shutdown_timeout_s})
        crashed.append(TimeoutError("shutdown deadline passed"))
    server.should_exit = True
    server_thread.join(5)
    log.info(
        "stopped",
        extra={"service": service, "clean": not crashed, "shutdown_s": round(time.monotonic() - started, 3)},
    )
    return 1 if crashed else 0
