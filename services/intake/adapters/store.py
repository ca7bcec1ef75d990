"""intake's Redis state: idempotency claims, the ``accepted`` stage of the event status, subscriptions."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import orjson
import redis.asyncio as aioredis

from services.intake.domain import Accepted
from shared.auth import TenantSecrets, secrets_key
from shared.status import STATUSES, Stage, Status, StatusRecord, queue_accepted, status_key
from shared.subscriptions import (
    DeliveryAttempt,
    Subscription,
    load_deliveries,
    load_subscription,
    load_subscriptions,
    remove_subscription,
    replace_subscription,
    save_subscription_within,
)

# ``idem:<tenant>:<event_id>`` holds ``inflight`` while the first write is in flight (short TTL), then the
# original acceptance as JSON, with the body's digest (``body_sha256``), for the dedup window. Acceptances
# stored before the digest existed have none: their repeats are duplicates whatever the body.
INFLIGHT = b"inflight"
DIGEST_FIELD = "body_sha256"


def idem_key(tenant: str, event_id: str) -> str:
    return f"idem:{tenant}:{event_id}"


class Claim:
    """What a claim on an event id found: ours to write, a write in flight, or an earlier acceptance (with the
    digest of its body, when it was stored with one, and its status record now)."""

    def __init__(
        self,
        mine: bool,
        inflight: bool = False,
        original: Accepted | None = None,
        digest: str | None = None,
        current: StatusRecord | None = None,
    ) -> None:
        self.mine = mine
        self.inflight = inflight
        self.original = original
        self.digest = digest
        self.current = current

    @property
    def current_status(self) -> Status:
        """The original's status now: the status consumer's record, else (expired) ``accepted``."""
        found = self.current.status if self.current is not None else Stage.ACCEPTED.value
        # The status consumer writes only ``STATUSES``; anything else would be a corrupt record.
        return cast(Status, found) if found in STATUSES else "accepted"


class IntakeStore:
    def __init__(self, client: aioredis.Redis, window_s: int, inflight_s: int, status_ttl_s: int) -> None:
        self.redis = client
        self.window_s = window_s
        self.inflight_s = inflight_s
        self.status_ttl_s = status_ttl_s

    async def claim(self, tenant: str, event_id: str) -> Claim:
        return (await self.claim_many(tenant, [event_id]))[0]

    async def claim_many(self, tenant: str, event_ids: list[str]) -> list[Claim]:
        """Claim every id in one round trip; look up only the ids someone else holds."""
        pipe = self.redis.pipeline(transaction=False)
        for event_id in event_ids:
            pipe.set(idem_key(tenant, event_id), INFLIGHT, nx=True, ex=self.inflight_s)
        won = await pipe.execute()
        claims = []
        for event_id, ok in zip(event_ids, won, strict=True):
            claims.append(Claim(mine=True) if ok else await self._held(tenant, event_id))
        return claims

    async def _held(self, tenant: str, event_id: str) -> Claim:
        key = idem_key(tenant, event_id)
        # The status record comes in the same round trip: a duplicate answers with the event's status now.
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.hgetall(status_key(tenant, event_id))
        found, raw_status = await pipe.execute()
        if found is None:  # expired between the two calls: try once more
            return Claim(mine=bool(await self.redis.set(key, INFLIGHT, nx=True, ex=self.inflight_s)), inflight=True)
        if found == INFLIGHT:
            return Claim(mine=False, inflight=True)
        stored = orjson.loads(found)
        digest = stored.pop(DIGEST_FIELD, None)
        return Claim(
            mine=False, original=Accepted.model_validate(stored), digest=digest, current=StatusRecord.read(raw_status)
        )

    async def accepted(self, tenant: str, accepted: list[tuple[Accepted, str]], at: datetime) -> None:
        """Remember the acceptances, each with its body's digest, for the dedup window, and record their
        ``accepted`` stage (one round trip)."""
        if not accepted:
            return
        pipe = self.redis.pipeline(transaction=False)
        for one, digest in accepted:
            record = orjson.dumps({**one.model_dump(mode="json"), DIGEST_FIELD: digest})
            pipe.set(idem_key(tenant, one.event_id), record, ex=self.window_s)
            queue_accepted(pipe, status_key(tenant, one.event_id), at.isoformat(), self.status_ttl_s)
        await pipe.execute()

    async def release(self, tenant: str, event_ids: list[str]) -> None:
        """Failed writes give their ids back, so the client's retry can succeed."""
        if event_ids:
            await self.redis.delete(*(idem_key(tenant, event_id) for event_id in event_ids))

    async def add_subscription(self, tenant: str, subscription: Subscription, cap: int) -> bool:
        """Save it unless the tenant holds ``cap`` subscriptions already (disabled ones count); False then."""
        return await save_subscription_within(self.redis, tenant, subscription, cap)

    async def subscriptions(self, tenant: str) -> list[Subscription]:
        return await load_subscriptions(self.redis, tenant)

    async def remove_subscription(self, tenant: str, subscription_id: str) -> bool:
        return await remove_subscription(self.redis, tenant, subscription_id)

    async def subscription(self, tenant: str, subscription_id: str) -> Subscription | None:
        return await load_subscription(self.redis, tenant, subscription_id)

    async def replace_subscription(self, tenant: str, subscription: Subscription) -> bool:
        """Store an edited subscription; False when it was deleted meanwhile."""
        return await replace_subscription(self.redis, tenant, subscription)

    async def deliveries(self, tenant: str, subscription_id: str) -> list[DeliveryAttempt]:
        return await load_deliveries(self.redis, tenant, subscription_id)

    async def tenant_secrets(self, tenant: str) -> list[str]:
        """The tenant's signing secrets valid now; none when it has no secret."""
        raw = await self.redis.get(secrets_key(tenant))
        return TenantSecrets.model_validate_json(raw).valid() if raw is not None else []

    async def status(self, tenant: str, event_id: str) -> StatusRecord | None:
        """The event's status record, or None when this tenant has no such event."""
        raw = await self.redis.hgetall(status_key(tenant, event_id))
        # The client does not decode responses: the answer is bytes, whatever the stubs allow.
        return StatusRecord.read(raw)
