"""The notifier's Redis state: subscriptions, tenant secrets and delivery marks read per batch; marks written."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.exceptions import RedisError

from shared.auth import TenantSecrets, secrets_key
from shared.errors import DependencyUnavailable
from shared.subscriptions import (
    DELIVERIES_KEPT,
    DeliveryAttempt,
    Subscription,
    deliveries_key,
    disable_subscription,
    subscriptions_key,
)


# A hash of endpoint URL -> Mark. A ``delivered`` or ``gone`` (410) mark means never call that endpoint for that
# event again (a replay, a redelivery after a crash); a ``failed`` one holds only within its replay generation, so
# a replayed dead letter tries the endpoint again; a ``retrying`` one counts the calls made in that generation and
# says when the retry schedule's next call is due.
def marks_key(tenant: str, event_id: str) -> str:
    return f"notify:{tenant}:{event_id}"


class Mark(BaseModel):
    """One endpoint's outcome for one event."""

    state: Literal["delivered", "failed", "gone", "retrying"]
    at_ms: int
    http_status: int | None = None
    attempts: int = 1
    latency_ms: float = 0.0
    subscription_id: str | None = None
    generation: str = ""
    error: str | None = None
    next_at_ms: int | None = None


@dataclass
class Known:
    """What a batch needs from Redis, read in one round trip."""

    subscriptions: dict[str, list[Subscription]] = field(default_factory=dict)
    secrets: dict[str, TenantSecrets | None] = field(default_factory=dict)
    marks: dict[tuple[str, str], dict[str, Mark]] = field(default_factory=dict)


class NotifierStore:
    def __init__(self, client: aioredis.Redis, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        # Marks wait here for the next flush: many concurrent deliveries share one pipelined round trip
        # (a group commit), so a mark lands about one round trip after its 2xx without one trip per call.
        self._pending: list[tuple[str, str, Mark, asyncio.Future[None]]] = []
        # A subscription's recent calls (``GET /v1/subscriptions/{id}/deliveries``) ride the same flush.
        self._attempts: list[tuple[str, str]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def load(self, tenants: Iterable[str], events: Iterable[tuple[str, str]]) -> Known:
        tenants, events = sorted(set(tenants)), list(dict.fromkeys(events))
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for tenant in tenants:
                    pipe.hgetall(subscriptions_key(tenant))
                    pipe.get(secrets_key(tenant))
                for tenant, event_id in events:
                    pipe.hgetall(marks_key(tenant, event_id))
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable(f"redis: {exc}") from exc
        known = Known()
        for i, tenant in enumerate(tenants):
            subs, secrets = replies[2 * i], replies[2 * i + 1]
            known.subscriptions[tenant] = sorted(
                (Subscription.model_validate_json(v) for v in subs.values()), key=lambda s: s.created_at
            )
            known.secrets[tenant] = TenantSecrets.model_validate_json(secrets) if secrets else None
        for j, (tenant, event_id) in enumerate(events):
            raw = replies[2 * len(tenants) + j]
            known.marks[(tenant, event_id)] = {
                (k.decode() if isinstance(k, bytes) else k): Mark.model_validate_json(v) for k, v in raw.items()
            }
        return known

    async def mark(self, tenant: str, event_id: str, url: str, mark: Mark) -> None:
        """Record one endpoint's outcome; returns once it is in Redis (raises if the write failed)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((marks_key(tenant, event_id), url, mark, done))
        self._schedule_flush()
        await done

    def attempt(self, tenant: str, subscription_id: str, attempt: DeliveryAttempt) -> None:
        """Queue one call for the subscription's recent-calls list (the newest ``DELIVERIES_KEPT``); it is
        written with the next flush, best effort: a lost entry costs a line of history, nothing else."""
        self._attempts.append((deliveries_key(tenant, subscription_id), attempt.model_dump_json()))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        while self._pending or self._attempts:
            batch, self._pending = self._pending, []
            attempts, self._attempts = self._attempts, []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key, entry in attempts:
                        pipe.lpush(key, entry)
                        pipe.ltrim(key, 0, DELIVERIES_KEPT - 1)
                        pipe.expire(key, self.ttl_s)
                    for key, url, mark, _ in batch:
                        pipe.hset(key, url, mark.model_dump_json())
                        pipe.expire(key, self.ttl_s)
                    await pipe.execute()
            except Exception as exc:
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for *_, done in batch:
                if not done.done():
                    done.set_result(None)

    async def disable(self, tenant: str, subscription_id: str, reason: str) -> bool:
        return await disable_subscription(self.redis, tenant, subscription_id, reason)
