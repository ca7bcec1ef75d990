"""The event status record in Redis: the stages and their ranks, the record's fields, its one reader and writer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from shared.results import json_time, json_time_ms

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline as AsyncPipeline
    from redis.client import Pipeline


class Stage(StrEnum):
    """A stage an event reaches, in pipeline order; ``rank`` is that order, from 1."""

    ACCEPTED = "accepted"
    ENRICHED = "enriched"
    INFERRED = "inferred"
    DELIVERED = "delivered"

    @property
    def rank(self) -> int:
        return _ORDER.index(self) + 1


_ORDER = tuple(Stage)
FAILED = "failed"
PARTIALLY_DELIVERED = "partially_delivered"
# What ``GET /v1/events/{id}`` answers as ``status``: the highest stage reached, or ``failed``; once endpoints have
# outcomes, ``delivered`` only when every one was delivered (or gone), else ``partially_delivered`` or ``failed``.
Status = Literal["accepted", "enriched", "inferred", "delivered", "partially_delivered", "failed"]
STATUSES: tuple[str, ...] = (*(s.value for s in Stage), PARTIALLY_DELIVERED, FAILED)
# The stage a consuming service's output reaches; its retries and dead letters are about that stage.
STAGE_OF_SERVICE: dict[str, Stage] = {
    "enrichment": Stage.ENRICHED,
    "inference": Stage.INFERRED,
    "notifier": Stage.DELIVERED,
}

# The hash's fields besides one per stage reached (its first time): the highest rank reached, the status shown,
# the result (JSON), a failure of a stage not yet reached (rank + JSON), a retry in progress (rank + JSON).
RANK_FIELD = "rank"
STATUS_FIELD = "status"
RESULT_FIELD = "result"
# Where the result's record sits, ``topic/partition/offset``: a redelivery sends that record again.
RESULT_POSITION_FIELD = "result_position"
ERROR_FIELD = "error"
FAILED_RANK_FIELD = "failed_rank"
RETRYING_FIELD = "retrying"
RETRYING_RANK_FIELD = "retrying_rank"
# One field per endpoint the result was sent to, ``endpoint:<url>``: its outcome (JSON, ``EndpointOutcome``).
ENDPOINT_PREFIX = "endpoint:"

UpdateKind = Literal["stage", "failed", "retrying", "endpoint"]
EndpointStatus = Literal["delivered", "gone", "failed", "retrying"]
# How final an endpoint's outcome is: an outcome replaces the stored one only when at least as final. A failure
# named only in a dead letter's message ranks below a failed receipt, which has the HTTP status and attempts.
ENDPOINT_RANKS: dict[str, int] = {"retrying": 1, "failed_named": 2, "failed": 3, "delivered": 4, "gone": 4}


def status_key(tenant: str, event_id: str) -> str:
    """``status:<tenant>:<event_id>``: a hash with one field per stage reached, ``status``, ``result``, ..."""
    return f"status:{tenant}:{event_id}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _json(value: str | None) -> Any:
    return json.loads(value) if value else None


def _attempt(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _due(value: Any) -> str | None:
    # Records written before the detail was typed hold ``retry.due`` as is: epoch milliseconds, as a string.
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return json_time_ms(int(value))
    try:
        return json_time(datetime.fromisoformat(value)) if isinstance(value, str) and value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class RetryDetail:
    """A retry in progress: the service retrying, which attempt, when it is due (UTC, RFC 3339) and why."""

    service: str
    attempt: int
    due: str | None
    reason: str
    error_type: str
    category: str
    topic: str

    @classmethod
    def read(cls, raw: Mapping[str, Any]) -> RetryDetail:
        """The detail in ``raw``: a stored ``retrying`` field (the older, all-string shape too) or header values."""
        error_type = str(raw.get("error_type") or "")
        return cls(
            service=str(raw.get("service") or ""),
            attempt=_attempt(raw.get("attempt")),
            due=_due(raw.get("due")),
            # The older shape has no reason; the error type is the best reason it has.
            reason=str(raw.get("reason") or error_type),
            error_type=error_type,
            category=str(raw.get("category") or ""),
            topic=str(raw.get("topic") or ""),
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _retrying(raw: Any) -> dict[str, Any] | None:
    return RetryDetail.read(raw).as_json() if isinstance(raw, dict) else None


@dataclass(frozen=True)
class EndpointOutcome:
    """What became of one endpoint of an event: its status, when, after how many calls, its HTTP status, why."""

    status: str
    at: str | None = None
    attempts: int | None = None
    http_status: int | None = None
    reason: str | None = None

    @classmethod
    def read(cls, raw: Any) -> EndpointOutcome | None:
        """The outcome in a stored ``endpoint:<url>`` value (JSON), or None for an unreadable one."""
        try:
            found = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(found, dict) or found.get("status") not in ("delivered", "gone", "failed", "retrying"):
            return None
        attempts, http_status = found.get("attempts"), found.get("http_status")
        return cls(
            status=found["status"],
            at=found.get("at") if isinstance(found.get("at"), str) else None,
            attempts=attempts if isinstance(attempts, int) else None,
            http_status=http_status if isinstance(http_status, int) else None,
            reason=found.get("reason") if isinstance(found.get("reason"), str) else None,
        )

    def stored(self, rank: int) -> str:
        """The field's value: the outcome and its rank (``ENDPOINT_RANKS``), which the script compares."""
        return json.dumps({**asdict(self), "rank": rank}, separators=(",", ":"))

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StatusRecord:
    """One event's status as read back from its hash."""

    status: str
    stages: dict[str, str | None]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    retrying: dict[str, Any] | None
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    result_position: str | None = None

    @classmethod
    def read(cls, raw: Mapping[bytes, bytes] | Mapping[str, str] | Mapping[Any, Any]) -> StatusRecord | None:
        """The record in an ``HGETALL`` answer, or None for an empty one (no such event)."""
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return cls(
            status=fields.get(STATUS_FIELD, Stage.ACCEPTED.value),
            stages={s.value: fields.get(s.value) for s in Stage},
            result=_json(fields.get(RESULT_FIELD)),
            error=_json(fields.get(ERROR_FIELD)),
            retrying=_retrying(_json(fields.get(RETRYING_FIELD))),
            endpoints={
                name.removeprefix(ENDPOINT_PREFIX): outcome.as_json()
                for name, value in sorted(fields.items())
                if name.startswith(ENDPOINT_PREFIX) and (outcome := EndpointOutcome.read(value)) is not None
            },
            result_position=fields.get(RESULT_POSITION_FIELD),
        )


def read_result(raw: bytes | str | None) -> dict[str, Any] | None:
    """A record's ``result`` field (JSON) as a dict, or None when it is missing or unreadable."""
    if not raw:
        return None
    try:
        result = json.loads(raw)
    except ValueError:
        return None
    return result if isinstance(result, dict) else None


# KEYS[1] = the status key; ARGV = kind, stage, rank, at, ttl, [field, value]... A stage never moves the status
# back; a failure or retry counts only for a stage not yet reached; a later stage clears an earlier failure
# (a replay moves a ``failed`` event on again). An ``endpoint:<url>`` field is kept when its outcome is at least as
# final as the stored one (its ``rank``), whatever the kind. Once any endpoint is delivered, gone or failed, the
# endpoints decide: ``delivered`` when all are delivered or gone, ``partially_delivered`` when some are and the
# others failed or are retrying, ``failed`` when all failed; the error stays only while the status is a failure.
APPLY_SCRIPT = """
local key = KEYS[1]
local kind, stage, rank, at, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local names = {{{names}}}
local prefix = '{prefix}'
local function outcome(value)
  local ok, found = pcall(cjson.decode, value or '')
  if ok and type(found) == 'table' then return found end
  return {{}}
end
local cur = tonumber(redis.call('HGET', key, '{rank}') or '0')
local failed = tonumber(redis.call('HGET', key, '{failed_rank}') or '0')
local fields = {{}}
for i = 6, #ARGV, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  if string.sub(name, 1, #prefix) == prefix then
    local old = redis.call('HGET', key, name)
    if not old or (tonumber(outcome(value).rank) or 0) >= (tonumber(outcome(old).rank) or 0) then
      redis.call('HSET', key, name, value)
    end
  else
    table.insert(fields, name)
    table.insert(fields, value)
  end
end
if kind == 'stage' then
  redis.call('HSETNX', key, stage, at)
  if #fields > 0 then redis.call('HSET', key, unpack(fields)) end
  if rank > cur then
    cur = rank
    redis.call('HSET', key, '{rank}', cur)
  end
  if failed > 0 and rank >= failed then
    failed = 0
    redis.call('HDEL', key, '{failed_rank}')
  end
  local retrying = tonumber(redis.call('HGET', key, '{retrying_rank}') or '0')
  if retrying > 0 and rank >= retrying then
    redis.call('HDEL', key, '{retrying}', '{retrying_rank}')
  end
elseif kind == 'endpoint' then
  -- an endpoint's outcome only (a failed receipt): no stage reached
elseif cur < rank then
  if kind == 'failed' then
    failed = rank
    redis.call('HSET', key, '{failed_rank}', rank, unpack(fields))
    redis.call('HDEL', key, '{retrying}', '{retrying_rank}')
  else
    redis.call('HSET', key, '{retrying_rank}', rank, unpack(fields))
  end
elseif kind == 'failed' and #fields > 0 then
  -- a dead letter of a stage reached already (the notifier's, after one endpoint of two was delivered)
  redis.call('HSET', key, unpack(fields))
end
local status = '{failed}'
if failed == 0 then
  status = names[cur] or '{accepted}'
end
local done, refused, pending = 0, 0, 0
local all = redis.call('HGETALL', key)
for i = 1, #all, 2 do
  if string.sub(all[i], 1, #prefix) == prefix then
    local s = outcome(all[i + 1]).status
    if s == 'delivered' or s == 'gone' then done = done + 1
    elseif s == 'failed' then refused = refused + 1
    elseif s == 'retrying' then pending = pending + 1 end
  end
end
if done > 0 then
  if refused == 0 and pending == 0 then status = '{delivered}' else status = '{partially}' end
elseif refused > 0 and pending == 0 then
  status = '{failed}'
end
if status ~= '{failed}' and status ~= '{partially}' then
  redis.call('HDEL', key, '{error}')
end
redis.call('HSET', key, '{status}', status)
redis.call('EXPIRE', key, ttl)
return status
""".format(
    names=", ".join(f"'{s.value}'" for s in Stage),
    prefix=ENDPOINT_PREFIX,
    rank=RANK_FIELD,
    failed_rank=FAILED_RANK_FIELD,
    error=ERROR_FIELD,
    retrying=RETRYING_FIELD,
    retrying_rank=RETRYING_RANK_FIELD,
    status=STATUS_FIELD,
    failed=FAILED,
    partially=PARTIALLY_DELIVERED,
    delivered=Stage.DELIVERED.value,
    accepted=Stage.ACCEPTED.value,
)


def apply_args(kind: UpdateKind, stage: Stage, at: str, ttl_s: int, extra: Mapping[str, str]) -> list[Any]:
    """``APPLY_SCRIPT``'s arguments for one update."""
    args: list[Any] = [kind, stage.value, stage.rank, at, ttl_s]
    for name, value in extra.items():
        args += [name, value]
    return args


def queue_accepted(pipe: Pipeline | AsyncPipeline, key: str, at: str, ttl_s: int) -> None:
    """Queue the ``accepted`` stage on ``pipe``: it fills the record only where nothing later has arrived yet,
    since the status consumer owns the record from then on."""
    pipe.hsetnx(key, Stage.ACCEPTED.value, at)
    pipe.hsetnx(key, RANK_FIELD, Stage.ACCEPTED.rank)
    pipe.hsetnx(key, STATUS_FIELD, Stage.ACCEPTED.value)
    pipe.expire(key, ttl_s)
