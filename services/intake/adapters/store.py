"""intake's Redis state: idempotency claims and the ``accepted`` stage of the event status.

Keys:
- ``idem:<tenant>:<event_id>`` → ``inflight`` while the first write is in flight (short TTL), then the original
  acceptance as JSON for the dedup window.
- ``status:<tenant>:<event_id>`` → a hash of stage → time (and later the result and error), TTL 7 days; the
  status consumer owns every stage after ``accepted``.
"""

from __future__ import annotations

from datetime import datetime

import redis.asyncio as aioredis

from services.intake.domain import Accepted, Subscription

INFLIGHT = b"inflight"


class Claim:
    """What a claim on an event id found: ours to write, a write in flight, or an earlier acceptance."""

    def __init__(self, mine: bool, inflight: bool = False, original: Accepted | None = None) -> None:
        self.mine = mine
        self.inflight = inflight
        self.original = original


class IntakeStore:
    def __init__(self, client: aioredis.Redis, window_s: int, inflight_s: int, status_ttl_s: int) -> None:
        self.redis = client
        self.window_s = window_s
        self.inflight_s = inflight_s
        self.status_ttl_s = status_ttl_s

    async def claim(self, tenant: str, event_id: str) -> Claim:
        key = f"idem:{tenant}:{event_id}"
        if await self.redis.set(key, INFLIGHT, nx=True, ex=self.inflight_s):
            return Claim(mine=True)
        found = await self.redis.get(key)
        if found is None:  # expired between the two calls: try once more
            return Claim(mine=bool(await self.redis.set(key, INFLIGHT, nx=True, ex=self.inflight_s)), inflight=True)
        if found == INFLIGHT:
            return Claim(mine=False, inflight=True)
        return Claim(mine=False, original=Accepted.model_validate_json(found))

    async def accepted(self, tenant: str, accepted: Accepted, at: datetime) -> None:
        """Remember the acceptance for the dedup window, and record the ``accepted`` stage."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(f"idem:{tenant}:{accepted.event_id}", accepted.model_dump_json(), ex=self.window_s)
        status = f"status:{tenant}:{accepted.event_id}"
        # The status consumer owns the record; these only fill it when nothing later has arrived yet.
        pipe.hsetnx(status, "accepted", at.isoformat())
        pipe.hsetnx(status, "rank", 1)
        pipe.hsetnx(status, "status", "accepted")
        pipe.expire(status, self.status_ttl_s)
        await pipe.execute()

    async def release(self, tenant: str, event_id: str) -> None:
        """A failed write gives the id back, so the client's retry can succeed."""
        await self.redis.delete(f"idem:{tenant}:{event_id}")

    async def add_subscription(self, tenant: str, subscription: Subscription) -> None:
        await self.redis.hset(f"subs:{tenant}", subscription.id, subscription.model_dump_json())

    async def subscriptions(self, tenant: str) -> list[Subscription]:
        raw = await self.redis.hgetall(f"subs:{tenant}")
        found = [Subscription.model_validate_json(v) for v in raw.values()]
        return sorted(found, key=lambda s: s.created_at)

    async def remove_subscription(self, tenant: str, subscription_id: str) -> bool:
        return bool(await self.redis.hdel(f"subs:{tenant}", subscription_id))

    async def status(self, tenant: str, event_id: str) -> dict[str, str] | None:
        raw = await self.redis.hgetall(f"status:{tenant}:{event_id}")
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
