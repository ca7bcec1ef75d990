"""Tenant webhook subscriptions as stored in Redis (``subs:<tenant>``): written by intake, read by the notifier."""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis
from pydantic import BaseModel


def subscriptions_key(tenant: str) -> str:
    return f"subs:{tenant}"


class Subscription(BaseModel):
    id: str
    url: str
    event_types: list[str]
    created_at: datetime
    secret: str | None = None
    disabled_at: datetime | None = None
    disabled_reason: str | None = None


async def load_subscriptions(client: aioredis.Redis, tenant: str) -> list[Subscription]:
    """A tenant's subscriptions, oldest first (disabled ones included)."""
    raw = await client.hgetall(subscriptions_key(tenant))
    found = [Subscription.model_validate_json(v) for v in raw.values()]
    return sorted(found, key=lambda s: s.created_at)


async def save_subscription(client: aioredis.Redis, tenant: str, subscription: Subscription) -> None:
    await client.hset(subscriptions_key(tenant), subscription.id, subscription.model_dump_json())


# Count and write in one step, so concurrent creations cannot pass the cap together.
_ADD_WITHIN_CAP = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


async def save_subscription_within(client: aioredis.Redis, tenant: str, subscription: Subscription, cap: int) -> bool:
    """Save ``subscription`` unless the tenant already holds ``cap`` others; False when it was not saved."""
    saved = await client.eval(
        _ADD_WITHIN_CAP, 1, subscriptions_key(tenant), subscription.id, subscription.model_dump_json(), str(cap)
    )
    return bool(saved)


async def remove_subscription(client: aioredis.Redis, tenant: str, subscription_id: str) -> bool:
    return bool(await client.hdel(subscriptions_key(tenant), subscription_id))


async def disable_subscription(client: aioredis.Redis, tenant: str, subscription_id: str, reason: str) -> bool:
    """Mark a subscription disabled (its endpoint said 410 Gone); False when it no longer exists."""
    raw = await client.hget(subscriptions_key(tenant), subscription_id)
    if raw is None:
        return False
    found = Subscription.model_validate_json(raw)
    if found.disabled_at is None:
        disabled = found.model_copy(update={"disabled_at": datetime.now(UTC), "disabled_reason": reason})
        await save_subscription(client, tenant, disabled)
    return True
