"""Applies status updates to Redis atomically: a stage never moves the status back; a replay moves a
``failed`` event on again. One Lua script per update, pipelined per batch."""

from __future__ import annotations

from typing import Any

import redis

from services.status.domain import StatusUpdate
from shared.status import status_key

# KEYS[1] = status:<tenant>:<event_id>; ARGV = kind, stage, rank, at, ttl, [field, value].
# Fields: one per stage (first time reached), rank (highest stage), failed_rank + error (a failure of the
# stage with that rank, not yet reached), retrying + retrying_rank, result, status (what the API shows).
_APPLY = """
local key = KEYS[1]
local kind, stage, rank, at, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local names = {'accepted', 'enriched', 'inferred', 'delivered'}
local cur = tonumber(redis.call('HGET', key, 'rank') or '0')
local failed = tonumber(redis.call('HGET', key, 'failed_rank') or '0')
if kind == 'stage' then
  redis.call('HSETNX', key, stage, at)
  if ARGV[6] then redis.call('HSET', key, ARGV[6], ARGV[7]) end
  if rank > cur then
    cur = rank
    redis.call('HSET', key, 'rank', cur)
  end
  if failed > 0 and rank >= failed then
    failed = 0
    redis.call('HDEL', key, 'failed_rank', 'error')
  end
  local retrying = tonumber(redis.call('HGET', key, 'retrying_rank') or '0')
  if retrying > 0 and rank >= retrying then
    redis.call('HDEL', key, 'retrying', 'retrying_rank')
  end
elseif cur < rank then
  if kind == 'failed' then
    failed = rank
    redis.call('HSET', key, 'failed_rank', rank, ARGV[6], ARGV[7])
    redis.call('HDEL', key, 'retrying', 'retrying_rank')
  else
    redis.call('HSET', key, 'retrying_rank', rank, ARGV[6], ARGV[7])
  end
end
local status = 'failed'
if failed == 0 then
  status = names[cur] or 'accepted'
end
redis.call('HSET', key, 'status', status)
redis.call('EXPIRE', key, ttl)
return status
"""


class StatusStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self.script: Any = client.register_script(_APPLY)

    def apply(self, updates: list[StatusUpdate]) -> list[str]:
        """Apply every update in one round trip; return each event's status after its update."""
        pipe = self.redis.pipeline(transaction=False)
        for u in updates:
            args: list[Any] = [u.kind, u.stage, u.rank, u.at, self.ttl_s]
            for name, value in u.extra.items():
                args += [name, value]
            self.script(keys=[status_key(u.tenant, u.event_id)], args=args, client=pipe)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in pipe.execute()]
