"""The analytics serving store in Redis: per tenant and window, the figures the analytics service keeps; its key
layout, its one writer (a script) and its one reader, and the derived rates the ops API shows.

``analytics:<tenant>:<window>:<start>`` (``window`` is ``1m`` or ``1h``, ``start`` the window's start in epoch
seconds) is a hash: one field ``category:<label>`` per category seen (JSON, :class:`CategoryFigures`) and a field
``delivery`` (JSON, :class:`DeliveryFigures`). ``analytics:<tenant>:<window>:starts`` is a sorted set of the starts
(score = start). Both expire after the window's horizon (2 hours for ``1m``, 2 days for ``1h``). The values are
the analytics service's table values, not increments: writing one again changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from shared.topics import ANALYTICS_HORIZON_S, ANALYTICS_WINDOW_S

if TYPE_CHECKING:
    import redis.asyncio as aioredis

Window = Literal["1m", "1h"]
# Each window's length, and how long its figures are kept (in Redis and in the service's tables).
WINDOW_SECONDS: dict[str, int] = ANALYTICS_WINDOW_S
HORIZON_SECONDS: dict[str, int] = ANALYTICS_HORIZON_S
CATEGORY_PREFIX = "category:"
DELIVERY_FIELD = "delivery"
# The confidence histogram: 10 buckets [0, 0.1), [0.1, 0.2), ... [0.9, 1.0] (1.0 falls in the last).
BUCKETS = 10


def window_key(tenant: str, window: str, start: int) -> str:
    """The hash of one tenant's window starting at ``start`` (epoch seconds)."""
    return f"analytics:{tenant}:{window}:{start}"


def starts_key(tenant: str, window: str) -> str:
    """The sorted set of one tenant's window starts (score = start)."""
    return f"analytics:{tenant}:{window}:starts"


def bucket_of(confidence: float) -> int:
    """The histogram bucket of a confidence: ``[i/10, (i+1)/10)``, with 1.0 (and above) in the last."""
    return min(BUCKETS - 1, max(0, int(confidence * BUCKETS)))


class CategoryFigures(BaseModel):
    """One category's figures in one window: results, escalations, confidence, models, cache, auto-resolved."""

    events: int = 0
    needs_review: int = 0
    confidence_sum: float = 0.0
    histogram: list[int] = Field(default_factory=lambda: [0] * BUCKETS)
    fallback: int = 0
    cached: int = 0
    auto_resolved: int = 0

    def plus(self, other: CategoryFigures) -> CategoryFigures:
        return CategoryFigures(
            events=self.events + other.events,
            needs_review=self.needs_review + other.needs_review,
            confidence_sum=self.confidence_sum + other.confidence_sum,
            histogram=[a + b for a, b in zip(self.histogram, other.histogram, strict=True)],
            fallback=self.fallback + other.fallback,
            cached=self.cached + other.cached,
            auto_resolved=self.auto_resolved + other.auto_resolved,
        )


class DeliveryFigures(BaseModel):
    """One tenant's webhook receipts in one window; latency of the delivered ones."""

    delivered: int = 0
    failed: int = 0
    gone: int = 0
    latency_sum_ms: float = 0.0
    latency_count: int = 0

    def plus(self, other: DeliveryFigures) -> DeliveryFigures:
        return DeliveryFigures(
            delivered=self.delivered + other.delivered,
            failed=self.failed + other.failed,
            gone=self.gone + other.gone,
            latency_sum_ms=self.latency_sum_ms + other.latency_sum_ms,
            latency_count=self.latency_count + other.latency_count,
        )


class WindowStats(BaseModel):
    """What the store holds for one tenant's window."""

    tenant: str
    window: str
    start: int
    end: int
    categories: dict[str, CategoryFigures] = Field(default_factory=dict)
    delivery: DeliveryFigures = Field(default_factory=DeliveryFigures)


class Rates(BaseModel):
    """The figures' derived rates; ``None`` where there is nothing to divide by."""

    needs_review_share: float | None = None
    mean_confidence: float | None = None
    fallback_share: float | None = None
    cache_hit_rate: float | None = None
    webhook_success_rate: float | None = None
    mean_delivery_latency_ms: float | None = None
    escalations_per_hour: float | None = None


class StatsTotals(BaseModel):
    """A tenant's figures over some windows, every category together, with the derived rates."""

    tenant: str
    window: str
    start: int | None
    end: int | None
    windows: int
    figures: CategoryFigures
    by_category: dict[str, CategoryFigures]
    delivery: DeliveryFigures
    auto_resolved: int
    escalations: int
    rates: Rates


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def rates_of(figures: CategoryFigures, delivery: DeliveryFigures, hours: float) -> Rates:
    """The derived rates of ``figures`` and ``delivery`` over ``hours`` of windows."""
    answered = delivery.delivered + delivery.failed + delivery.gone
    return Rates(
        needs_review_share=_share(figures.needs_review, figures.events),
        mean_confidence=_share(figures.confidence_sum, figures.events),
        fallback_share=_share(figures.fallback, figures.events),
        cache_hit_rate=_share(figures.cached, figures.events),
        webhook_success_rate=_share(delivery.delivered, answered),
        mean_delivery_latency_ms=_share(delivery.latency_sum_ms, delivery.latency_count),
        escalations_per_hour=_share(figures.needs_review, hours),
    )


def combine(stats: Sequence[WindowStats], tenant: str = "", window: str = "1h") -> StatsTotals:
    """Every category of ``stats`` (one tenant's windows of one length) into tenant totals with derived rates.

    The escalation frequency is per hour of the span from the first window's start to the last one's end.
    """
    figures = CategoryFigures()
    delivery = DeliveryFigures()
    by_category: dict[str, CategoryFigures] = {}
    for one in stats:
        delivery = delivery.plus(one.delivery)
        for label, category in one.categories.items():
            figures = figures.plus(category)
            by_category[label] = by_category.get(label, CategoryFigures()).plus(category)
    start = min((s.start for s in stats), default=None)
    end = max((s.end for s in stats), default=None)
    hours = (end - start) / 3600 if start is not None and end is not None else 0.0
    return StatsTotals(
        tenant=stats[0].tenant if stats else tenant,
        window=stats[0].window if stats else window,
        start=start,
        end=end,
        windows=len(stats),
        figures=figures,
        by_category=dict(sorted(by_category.items())),
        delivery=delivery,
        auto_resolved=figures.auto_resolved,
        escalations=figures.needs_review,
        rates=rates_of(figures, delivery, hours),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_window(tenant: str, window: str, start: int, fields: Mapping[Any, Any]) -> WindowStats:
    """One window's hash (as HGETALL returns it, bytes or text) as :class:`WindowStats`."""
    stats = WindowStats(tenant=tenant, window=window, start=start, end=start + WINDOW_SECONDS[window])
    for raw_name, raw_value in dict(fields).items():
        name, value = _text(raw_name), json.loads(_text(raw_value))
        if name == DELIVERY_FIELD:
            stats.delivery = DeliveryFigures.model_validate(value)
        elif name.startswith(CATEGORY_PREFIX):
            stats.categories[name.removeprefix(CATEGORY_PREFIX)] = CategoryFigures.model_validate(value)
    stats.categories = dict(sorted(stats.categories.items()))
    return stats


async def read_stats(redis: aioredis.Redis, tenant: str, window: str, count: int) -> list[WindowStats]:
    """The tenant's latest ``count`` windows of length ``window`` that the store still holds, oldest first."""
    if window not in WINDOW_SECONDS:
        raise ValueError(f"window must be one of {', '.join(WINDOW_SECONDS)}, not {window!r}")
    if count <= 0:
        return []
    raw_starts: list[Any] = await redis.zrevrange(starts_key(tenant, window), 0, count - 1)
    starts = sorted(int(_text(s)) for s in raw_starts)
    pipe = redis.pipeline(transaction=False)
    for start in starts:
        pipe.hgetall(window_key(tenant, window, start))
    hashes = await pipe.execute()
    # A start whose hash has expired (the set is trimmed lazily) is left out.
    return [parse_window(tenant, window, s, fields) for s, fields in zip(starts, hashes, strict=True) if fields]


# The writer: one field of a window's hash, the window in the tenant's sorted set, both expiring after the
# horizon; starts older than the newest start minus the horizon leave the set. KEYS: hash, set. ARGV: field,
# value (JSON), start, horizon seconds.
WRITE_SCRIPT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[3])
local newest = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(newest[2]) - tonumber(ARGV[4])))
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""


def write_args(tenant: str, window: str, start: int, field: str, value: BaseModel) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of :data:`WRITE_SCRIPT` for one field of one window."""
    keys = [window_key(tenant, window, start), starts_key(tenant, window)]
    return keys, [field, value.model_dump_json(), start, HORIZON_SECONDS[window]]
