"""Liveness, readiness and Prometheus metrics endpoints that every service mounts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import httpx
import redis.asyncio as aioredis
from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from shared.http import metrics_text
from shared.kafka import KafkaConnection

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]


class KafkaCheck:
    """Readiness of the broker: a metadata request answered within the timeout."""

    def __init__(self, kafka: KafkaConnection, timeout_s: float = 2.0) -> None:
        self.kafka = kafka
        self.timeout_s = timeout_s

    async def __call__(self) -> None:
        await asyncio.to_thread(self.kafka.admin(quiet=True).list_topics, timeout=self.timeout_s)


class RedisCheck:
    """Readiness of Redis: PING answered."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self._client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    async def __call__(self) -> None:
        await self._client.ping()


class HttpCheck:
    """Readiness of an HTTP dependency (the schema registry): a 2xx within the timeout."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    async def __call__(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            response = await client.get(self.url)
            response.raise_for_status()


def health_router(service: str, checks: dict[str, ReadinessCheck]) -> APIRouter:
    """Build ``/healthz``, ``/readyz`` and ``/metrics`` for ``service``."""
    router = APIRouter()

    @router.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get(
        "/readyz",
        tags=["health"],
        responses={503: {"description": "A dependency failed its check", "content": {"application/json": {}}}},
    )
    async def readyz() -> JSONResponse:
        results: dict[str, dict[str, object]] = {}

        async def run(name: str, check: ReadinessCheck) -> None:
            started = time.perf_counter()
            try:
                await asyncio.wait_for(check(), timeout=3.0)
                results[name] = {"ok": True}
            except Exception as exc:
                results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
            results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)

        await asyncio.gather(*(run(name, check) for name, check in checks.items()))
        ready = all(bool(r["ok"]) for r in results.values())
        return JSONResponse(
            {"status": "ready" if ready else "unready", "service": service, "checks": results},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(metrics_text(), media_type=CONTENT_TYPE_LATEST)

    return router
