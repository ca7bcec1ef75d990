"""API-key auth for the HTTP services (intake, ops): who calls, with which scopes, within which rate."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from fastapi import FastAPI, Request, Response

from shared.auth import ApiKey, KeyVerifier, RateLimiter
from shared.http import RESPONSE_HEADERS
from shared.problems import Problem, install, problem_response

log = logging.getLogger(__name__)


class ApiAuth:
    """The key store and the rate limiter ``authorized`` uses; an app puts one on ``app.state.auth`` in its
    lifespan."""

    def __init__(self, keys: KeyVerifier, limiter: RateLimiter, retry_after_s: int) -> None:
        self.keys = keys
        self.limiter = limiter
        self.retry_after_s = retry_after_s

    @classmethod
    def over(cls, client: aioredis.Redis, key_cache_s: float, retry_after_s: int) -> ApiAuth:
        """Keys and rate limits kept in the Redis of ``client``."""
        return cls(KeyVerifier(client, key_cache_s), RateLimiter(client), retry_after_s)


def install_api_key_auth(app: FastAPI, retry_after_s: int) -> None:
    """Answer every error of ``app`` as RFC 9457 problem details: 401 without a valid key, 403 without the scope,
    429 over the rate, and 503 with ``Retry-After`` when Redis (keys, or anything a route keeps there) is down."""
    install(app)

    @app.exception_handler(aioredis.RedisError)
    async def redis_down(request: Request, exc: aioredis.RedisError) -> Response:
        # Not the client's fault, and nothing was promised.
        log.warning("redis unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
        headers = {"Retry-After": str(retry_after_s)}
        return problem_response(503, f"a dependency is unavailable: {type(exc).__name__}", request.url.path, headers)


def key_from(request: Request) -> str | None:
    """The presented key: ``Authorization: Bearer <key>``, else ``X-API-Key``. An ``Authorization`` header of
    another form is refused, not skipped: credentials that are sent must be valid."""
    auth = request.headers.get("authorization")
    if auth is not None:
        if auth[:7].lower() != "bearer " or not auth[7:].strip():
            raise Problem(401, "Authorization must be 'Bearer <API key>'", headers={"WWW-Authenticate": "Bearer"})
        return auth[7:].strip()
    return request.headers.get("x-api-key") or None


def authorized(scope: str, bucket: str | None = None) -> Callable[[Request], Awaitable[ApiKey]]:
    """A dependency: the caller's key, checked for ``scope`` and charged against its rate limit in ``bucket``
    (the default bucket when None; ``READ_BUCKET`` for reads, so polling does not use up publishing)."""

    async def dependency(request: Request) -> ApiKey:
        auth: ApiAuth = request.app.state.auth
        key = key_from(request)
        if key is None:
            raise Problem(
                401,
                "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            found = await auth.keys.verify(key)
        except aioredis.RedisError as exc:
            raise Problem(
                503,
                f"the key store is unavailable: {type(exc).__name__}",
                headers={"Retry-After": str(auth.retry_after_s)},
            ) from exc
        if found is None:
            raise Problem(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        if not found.allows(scope):
            raise Problem(403, f"the key lacks the scope {scope}", required_scope=scope)
        decision = await auth.limiter.take(found, bucket=bucket)
        setattr(request.state, RESPONSE_HEADERS, decision.headers())
        if not decision.allowed:
            raise Problem(429, f"rate limit of {found.rate} exceeded", headers=decision.headers())
        return found

    return dependency
