"""Tenant webhook subscriptions as stored in Redis (``subs:<tenant>``): written by intake, read by the notifier."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

DELIVERIES_KEPT = 100  # the newest calls kept per subscription


def subscriptions_key(tenant: str) -> str:
    return f"subs:{tenant}"


def deliveries_key(tenant: str, subscription_id: str) -> str:
    """A list of the subscription's recent calls, newest first (the notifier pushes, intake reads)."""
    return f"subs:{tenant}:{subscription_id}:deliveries"


class Subscription(BaseModel):
    id: str
    url: str
    event_types: list[str]
    created_at: datetime
    secret: str | None = None
    disabled_at: datetime | None = None
    disabled_reason: str | None = None


def subscription_matches(subscription: Subscription, event_type: str) -> bool:
    """Whether ``subscription`` wants ``event_type`` events; a disabled one (its endpoint said 410 Gone) wants none."""
    if subscription.disabled_at is not None:
        return False
    return "*" in subscription.event_types or event_type in subscription.event_types


def endpoints_for(
    callback_url: str | None, event_type: str, subscriptions: Iterable[Subscription]
) -> list[tuple[str, Subscription | None]]:
    """Who gets a result: the event's own ``callback_url`` first, then each matching subscription, each URL once
    (the first to name it wins). The notifier calls these; intake's redelivery chooses among them."""
    found: list[tuple[str, Subscription | None]] = []
    seen: set[str] = set()
    if callback_url:
        found.append((callback_url, None))
        seen.add(callback_url)
    for sub in subscriptions:
        if subscription_matches(sub, event_type) and sub.url not in seen:
            found.append((sub.url, sub))
            seen.add(sub.url)
    return found


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
    async with client.pipeline(transaction=True) as pipe:
        pipe.hdel(subscriptions_key(tenant), subscription_id)
        pipe.delete(deliveries_key(tenant, subscription_id))
        removed, _ = await pipe.execute()
    return bool(removed)


async def load_subscription(client: aioredis.Redis, tenant: str, subscription_id: str) -> Subscription | None:
    raw = await client.hget(subscriptions_key(tenant), subscription_id)
    return Subscription.model_validate_json(raw) if raw is not None else None


# Replace only a subscription that still exists: an edit must not bring back one deleted meanwhile.
_REPLACE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


async def replace_subscription(client: aioredis.Redis, tenant: str, subscription: Subscription) -> bool:
    """Store an edited subscription; False when it no longer exists."""
    saved = await client.eval(_REPLACE, 1, subscriptions_key(tenant), subscription.id, subscription.model_dump_json())
    return bool(saved)


class DeliveryAttempt(BaseModel):
    """One call the notifier made (or refused to make) to a subscription's URL."""

    at: datetime = Field(description="When the call ended (UTC).")
    event_id: str
    endpoint: str = Field(description="The URL called.")
    outcome: Literal["delivered", "retry", "permanent", "gone", "refused"] = Field(
        description="delivered (2xx), retry (no answer, 408, 429, 5xx), permanent (another 4xx or a 3xx), gone "
        "(410), refused (the address may not be called)."
    )
    http_status: int | None = Field(default=None, description="The endpoint's HTTP status, if it answered.")
    latency_ms: float | None = Field(default=None, description="How long the call took, if one was made.")
    error: str | None = None


async def load_deliveries(client: aioredis.Redis, tenant: str, subscription_id: str) -> list[DeliveryAttempt]:
    """The subscription's recent calls, newest first."""
    raw = await client.lrange(deliveries_key(tenant, subscription_id), 0, DELIVERIES_KEPT - 1)
    return [DeliveryAttempt.model_validate_json(entry) for entry in raw]


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
