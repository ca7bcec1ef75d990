"""The serving store: each window's figures written to Redis with shared/analytics.py's script (its key layout)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from services.analytics.domain import Snapshot
from shared.analytics import CATEGORY_PREFIX, DELIVERY_FIELD, WRITE_SCRIPT, CategoryFigures, DeliveryFigures, write_args


class RedisServingStore:
    """Writes one field of a tenant's window hash per call: ``category:<label>`` or ``delivery``."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self.script: Any = client.register_script(WRITE_SCRIPT)

    async def write(self, snapshot: Snapshot, figures: CategoryFigures | DeliveryFigures) -> None:
        field = DELIVERY_FIELD if snapshot.kind == "delivery" else f"{CATEGORY_PREFIX}{snapshot.category}"
        keys, args = write_args(snapshot.tenant, snapshot.window, snapshot.start, field, figures)
        await self.script(keys=keys, args=args)
