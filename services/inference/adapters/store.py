"""Inference's Redis: each event's answered result (its status record) and the result cache by text."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from services.inference.domain import Triage, dump_triage
from shared.errors import DependencyUnavailable
from shared.status import RESULT_FIELD, status_key

log = logging.getLogger(__name__)


class ResultStore:
    """Reads, in one round trip per batch, what answered each event and what the cache holds for its text;
    writes new results to the cache, each for ``cache_ttl_s``."""

    def __init__(self, client: redis.Redis, cache_ttl_s: int = 86400) -> None:
        self.redis = client
        self.cache_ttl_s = cache_ttl_s

    def lookup(self, events: Sequence[tuple[str, str]], cache_keys: Sequence[str] | None) -> list[tuple[Any, Any]]:
        """(the status record's result field, the cached result under its key, if any) for each (tenant, event id);
        no cache lookups without ``cache_keys``. Redis down is a ``DependencyUnavailable``."""
        if not events:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for n, (tenant, event_id) in enumerate(events):
            pipe.hget(status_key(tenant, event_id), RESULT_FIELD)
            if cache_keys:
                pipe.get(cache_keys[n])
        try:
            replies = pipe.execute()
        except redis.RedisError as exc:
            raise DependencyUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        if cache_keys:
            return list(zip(replies[0::2], replies[1::2], strict=True))
        return [(reply, None) for reply in replies]

    def keep(self, entries: Sequence[tuple[str, Triage]]) -> None:
        """Cache ``entries`` (key, triage); a Redis failure here costs only future hits."""
        if not entries:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key, triage in entries:
            pipe.set(key, dump_triage(triage), ex=self.cache_ttl_s)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("result cache write failed", extra={"error": f"{type(exc).__name__}: {exc}"})
