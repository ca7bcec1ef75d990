"""ASGI pieces every HTTP service shares: request metrics, response headers, body limits, multiprocess metrics."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.problems import problem_response

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["service", "method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "http_request_seconds",
    "Time from the request to the first byte of the answer",
    ["service", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Set by a route or a dependency (``request.state.response_headers``); added to whatever the answer is,
# errors included (a 429 and a 202 both carry the rate-limit headers).
RESPONSE_HEADERS = "response_headers"


class HttpEdge:
    """Pure ASGI (no per-request task, unlike ``@app.middleware``): counts and times each request by its route
    template, and adds the headers left in ``scope["state"]``."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = scope.get("state", {}).get(RESPONSE_HEADERS)
                if extra:
                    present = {name.lower() for name, _ in message.get("headers", [])}
                    added = [
                        (k.lower().encode(), v.encode()) for k, v in extra.items() if k.lower().encode() not in present
                    ]
                    message["headers"] = [*message.get("headers", []), *added]
                route = _route(scope)
                REQUEST_SECONDS.labels(self.service, route).observe(time.perf_counter() - started)
                REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()
            await send(message)

        await self.app(scope, receive, sending)


def _route(scope: Scope) -> str:
    """The route's template (``/v1/events/{event_id}``), so ids do not explode the label set."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class BodyLimit:
    """413 for a body over the limit, counted as it streams in, before anything parses it; ``by_path`` gives
    some paths a limit of their own."""

    def __init__(self, app: ASGIApp, limit: int, by_path: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.by_path = dict(by_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.by_path.get(scope["path"], self.limit)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(scope, send, limit)
            return
        seen = 0
        started = answered = False

        async def counted() -> Message:
            nonlocal seen, answered
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                if not started:
                    # Answered here, while the app still reads: the error answer the app's own middleware
                    # makes of the exception below is dropped.
                    await _too_large(scope, send, limit)
                    answered = True
                raise _TooLarge
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if answered:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except _TooLarge:
            if not answered:
                raise


class _TooLarge(Exception):
    pass


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    response = problem_response(413, f"the body is over the {limit}-byte limit", scope["path"])
    await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def metrics_text() -> bytes:
    """The exposition of this process, or of every worker together in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def prepare_multiprocess(directory: Path) -> None:
    """Empty ``directory`` and point this process (and the workers it spawns) at it; call it before the
    workers start, since each reads the variable when it first imports ``prometheus_client``."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
