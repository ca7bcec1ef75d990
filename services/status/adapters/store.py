"""Applies status updates to Redis with shared/status.py's script: one call per update, pipelined per batch."""

from __future__ import annotations

from typing import Any

import redis

from services.status.domain import StatusUpdate
from shared.status import APPLY_SCRIPT, apply_args, status_key


class StatusStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self.script: Any = client.register_script(APPLY_SCRIPT)

    def apply(self, updates: list[StatusUpdate]) -> list[str]:
        """Apply every update in one round trip; return each event's status after its update."""
        pipe = self.redis.pipeline(transaction=False)
        for u in updates:
            args = apply_args(u.kind, u.stage, u.at, self.ttl_s, u.extra)
            self.script(keys=[status_key(u.tenant, u.event_id)], args=args, client=pipe)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in pipe.execute()]
