"""API keys, tenants, scopes, per-key rate limits and tenant webhook secrets, kept in Redis."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel, Field

# Keys are stored only as SHA-256 hashes. Redis layout (all under ``auth:``):
# - ``auth:key:<sha256 of the key>`` -> the key's record (JSON: id, tenant, scopes, rate, created_at, label)
# - ``auth:keyid:<key id>`` -> the hash above (for list and revoke by id)
# - ``auth:keys`` -> the set of key ids
# - ``auth:whsec:<tenant>`` -> the tenant's signing secrets (JSON: current, previous, previous_until ms)
# - ``auth:bucket:<key id>`` -> the key's token bucket (tokens, last refill in ms), with a TTL; reads (status,
#   listings) have their own, ``auth:bucket:<key id>:read``: the key's rate applies to each bucket separately
SCOPES = ("events:write", "events:read", "subscriptions:write", "dlq:read", "dlq:replay", "admin")
KEY_PREFIX = "pk_"
SECRET_PREFIX = "whsec_"
DEFAULT_GRACE_S = 24 * 3600
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
READ_BUCKET = "read"
_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


class AuthError(ValueError):
    """A bad argument to the key store (unknown scope, malformed rate, unknown key id)."""


@dataclass(frozen=True)
class RateLimit:
    """``count`` requests per ``period_s`` seconds, as a token bucket of that capacity."""

    count: int
    period_s: int

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = _RATE.match(text)
        if match is None or int(match.group(1)) <= 0:
            raise AuthError(f"rate {text!r} is not N/second, N/minute or N/hour with N > 0")
        return cls(int(match.group(1)), _PERIODS[match.group(2)])

    @property
    def per_second(self) -> float:
        return self.count / self.period_s

    def __str__(self) -> str:
        unit = {1: "second", 60: "minute", 3600: "hour"}[self.period_s]
        return f"{self.count}/{unit}"


class ApiKey(BaseModel):
    """What a key grants: one tenant, some scopes, a rate limit. The key itself is never stored."""

    id: str
    tenant: str
    scopes: list[str]
    rate: str
    label: str = ""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    @property
    def rate_limit(self) -> RateLimit:
        return RateLimit.parse(self.rate)


def bucket_key(key_id: str, bucket: str | None = None) -> str:
    """The Redis key of a key's token bucket: the default one (writes), or a named one such as ``READ_BUCKET``."""
    return f"auth:bucket:{key_id}" if bucket is None else f"auth:bucket:{key_id}:{bucket}"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_signing_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_scopes(scopes: list[str]) -> list[str]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise AuthError(f"unknown or missing scopes {unknown or scopes}; known: {', '.join(SCOPES)}")
    return sorted(set(scopes))


def secrets_key(tenant: str) -> str:
    return f"auth:whsec:{tenant}"


class TenantSecrets(BaseModel):
    """A tenant's webhook signing secrets; after a rotation the previous one stays valid for a grace period."""

    current: str
    previous: str | None = None
    previous_until_ms: int = 0

    def valid(self, now_ms: int | None = None) -> list[str]:
        """The secrets to sign with now: the current one, and the previous one during its grace period."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        if self.previous is not None and now_ms < self.previous_until_ms:
            return [self.current, self.previous]
        return [self.current]


class KeyStore:
    """API keys and tenant secrets in Redis (the synchronous side: the CLI and `make up`)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    @classmethod
    def from_url(cls, url: str) -> KeyStore:
        return cls(redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5))

    def create(
        self,
        tenant: str,
        scopes: list[str],
        rate: str,
        label: str = "",
        key: str | None = None,
        key_id: str | None = None,
    ) -> tuple[str, ApiKey]:
        """Create a key (random unless given) for ``tenant``; return the key, shown once, and its record.

        The tenant's signing secret is created with its first key.
        """
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", tenant):
            raise AuthError(f"tenant {tenant!r} must be 1-64 of a-z, 0-9, '-' and '_'")
        record = ApiKey(
            id=key_id or secrets.token_hex(6),
            tenant=tenant,
            scopes=check_scopes(scopes),
            rate=str(RateLimit.parse(rate)),
            label=label,
        )
        key = key or f"{KEY_PREFIX}{record.id}_{secrets.token_urlsafe(24)}"
        digest = key_hash(key)
        pipe = self.redis.pipeline(transaction=True)
        old = _text(self.redis.get(f"auth:keyid:{record.id}"))
        if old is not None and old != digest:
            pipe.delete(f"auth:key:{old}")
        pipe.set(f"auth:key:{digest}", record.model_dump_json())
        pipe.set(f"auth:keyid:{record.id}", digest)
        pipe.sadd("auth:keys", record.id)
        pipe.set(secrets_key(tenant), TenantSecrets(current=new_signing_secret()).model_dump_json(), nx=True)
        pipe.execute()
        return key, record

    def verify(self, key: str) -> ApiKey | None:
        raw = self.redis.get(f"auth:key:{key_hash(key)}")
        return ApiKey.model_validate_json(raw) if raw is not None else None

    def list(self) -> list[ApiKey]:
        ids = sorted(str(_text(i)) for i in self.redis.smembers("auth:keys"))
        digests = [_text(d) for d in self.redis.mget([f"auth:keyid:{i}" for i in ids])] if ids else []
        records = self.redis.mget([f"auth:key:{d}" for d in digests if d is not None]) if digests else []
        return [ApiKey.model_validate_json(r) for r in records if r is not None]

    def revoke(self, key_id: str) -> ApiKey:
        digest = _text(self.redis.get(f"auth:keyid:{key_id}"))
        raw = self.redis.get(f"auth:key:{digest}") if digest is not None else None
        if digest is None or raw is None:
            raise AuthError(f"no key with id {key_id!r}")
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(f"auth:key:{digest}", f"auth:keyid:{key_id}", bucket_key(key_id), bucket_key(key_id, READ_BUCKET))
        pipe.srem("auth:keys", key_id)
        pipe.execute()
        return ApiKey.model_validate_json(raw)

    def secrets(self, tenant: str) -> TenantSecrets:
        raw = self.redis.get(secrets_key(tenant))
        if raw is None:
            raise AuthError(f"tenant {tenant!r} has no signing secret (it is created with the tenant's first key)")
        return TenantSecrets.model_validate_json(raw)

    def rotate(self, tenant: str, grace_s: float = DEFAULT_GRACE_S) -> TenantSecrets:
        """A new current secret; the old one stays valid for ``grace_s`` seconds."""
        old = self.secrets(tenant)
        rotated = TenantSecrets(
            current=new_signing_secret(), previous=old.current, previous_until_ms=int((time.time() + grace_s) * 1000)
        )
        self.redis.set(secrets_key(tenant), rotated.model_dump_json())
        return rotated


# Token bucket, atomically in Redis with Redis's own clock, so several intake processes share one bucket.
# KEYS[1] = bucket; ARGV = capacity, tokens per ms, cost. Returns {allowed, tokens left (x1000), ms to next token,
# ms until full}.
_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
local full_ms = math.ceil((capacity - tokens) / rate)
redis.call('PEXPIRE', KEYS[1], full_ms + 1000)
local next_ms = 0
if tokens < cost then
  next_ms = math.ceil((cost - tokens) / rate)
end
return {allowed, math.floor(tokens * 1000), next_ms, full_ms}
"""


@dataclass(frozen=True)
class RateDecision:
    """One request against a key's bucket, and the headers that say so."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class RateLimiter:
    """Per-key token buckets in Redis (asyncio client); one round trip and one atomic script per request."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.script: Any = client.register_script(_BUCKET)

    async def take(self, key: ApiKey, cost: int = 1, bucket: str | None = None) -> RateDecision:
        """Charge ``cost`` to the key's ``bucket`` (the default one when None); each bucket holds the key's rate."""
        limit = key.rate_limit
        capacity = limit.count
        allowed, tokens_milli, next_ms, full_ms = await self.script(
            keys=[bucket_key(key.id, bucket)], args=[capacity, limit.per_second / 1000, cost]
        )
        return RateDecision(
            allowed=bool(allowed),
            limit=capacity,
            remaining=int(tokens_milli) // 1000,
            retry_after_s=max(1, math.ceil(int(next_ms) / 1000)),
            reset_s=math.ceil(int(full_ms) / 1000),
        )


def describe(record: ApiKey) -> dict[str, Any]:
    """A key's record as shown by ``pipeline keys`` (never the key itself)."""
    shown: dict[str, Any] = json.loads(record.model_dump_json())
    return shown


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


async def verify_async(client: aioredis.Redis, key: str) -> ApiKey | None:
    """``KeyStore.verify`` for asyncio services: one GET by the key's hash."""
    raw = await client.get(f"auth:key:{key_hash(key)}")
    return ApiKey.model_validate_json(raw) if raw is not None else None


class KeyVerifier:
    """``verify_async`` with a short in-process memory of keys found, so a busy key costs no round trip.

    A revoked key keeps working in a process for at most ``ttl_s`` (0 turns the memory off). Unknown keys are
    never remembered: a key created a moment ago works at once, and a spray of guesses cannot fill the memory.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        ttl_s: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._found: dict[str, tuple[float, ApiKey]] = {}

    async def verify(self, key: str) -> ApiKey | None:
        if self.ttl_s <= 0:
            return await verify_async(self.client, key)
        now = self.clock()
        remembered = self._found.get(key)
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        found = await verify_async(self.client, key)
        if found is None:
            self._found.pop(key, None)
            return None
        if len(self._found) >= self.max_entries:
            self._found = {k: v for k, v in self._found.items() if v[0] > now}
            if len(self._found) >= self.max_entries:
                self._found.pop(next(iter(self._found)))
        self._found[key] = (now + self.ttl_s, found)
        return found
