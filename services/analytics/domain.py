"""analytics' rules, without I/O: windows, what one result or receipt adds to the figures, the join that counts an
event auto-resolved once, and the per-partition state that makes a record processed again count once.

Two stages. The first reads the results and the receipts (co-partitioned by ``tenant:subject``) and keeps, per
input partition, one table: the join entries (``event_id`` -> category, review, first delivery) and *partial*
figures per window: what that partition's records add to a (tenant, category) or tenant window. Each entry
records, per input topic, the offset of the last record applied to it, so a record processed again after a crash
(at-least-once) is recognised and adds nothing. After each record the first stage sends each partial it touched,
whole, as a :class:`Snapshot` keyed by (tenant, category) or tenant; the second stage keeps, per window and key,
the newest snapshot of every input partition and serves their sum. Snapshots replace, never add: a repeat of
one changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.analytics import (
    HORIZON_SECONDS,
    WINDOW_SECONDS,
    CategoryFigures,
    DeliveryFigures,
    WindowStats,
    bucket_of,
)
from shared.events import EventInferred, NotificationDelivered

# The input topics' roles in the offsets an entry keeps: results and receipts.
RESULT = "i"
RECEIPT = "d"
RECEIPT_STATUSES = ("delivered", "failed", "gone")
Kind = Literal["category", "delivery"]


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def window_start(moment_ms: int, window: str) -> int:
    """The start (epoch seconds) of the tumbling ``window`` that holds ``moment_ms``."""
    size = WINDOW_SECONDS[window]
    return (moment_ms // 1000) // size * size


def result_figures(result: EventInferred, fallback_model: str) -> CategoryFigures:
    """What one result adds to its category's window."""
    confidence = result.category.confidence
    histogram = [0] * len(CategoryFigures().histogram)
    histogram[bucket_of(confidence)] = 1
    return CategoryFigures(
        events=1,
        needs_review=int(result.needs_review),
        confidence_sum=confidence,
        histogram=histogram,
        fallback=int(result.model.name == fallback_model),
        cached=int(result.cached),
    )


def receipt_figures(receipt: NotificationDelivered) -> DeliveryFigures:
    """What one receipt adds to its tenant's window (a status outside delivered|failed|gone adds nothing)."""
    delivered = receipt.status == "delivered"
    return DeliveryFigures(
        delivered=int(delivered),
        failed=int(receipt.status == "failed"),
        gone=int(receipt.status == "gone"),
        latency_sum_ms=receipt.latency_ms if delivered else 0.0,
        latency_count=int(delivered),
    )


AUTO_RESOLVED = CategoryFigures(auto_resolved=1)


@dataclass(frozen=True)
class Position:
    """A record's place: its input topic's role and its offset (the partition is the state's own)."""

    role: str
    offset: int


def _applied(hw: Mapping[str, int], at: Position) -> bool:
    # Each input partition is read in offset order, so an entry holds a record's effect iff its offset for the
    # record's topic reached the record's.
    return hw.get(at.role, -1) >= at.offset


class JoinEntry(BaseModel):
    """One event's join: its category, whether a result needed no review, its first delivery, and where it was
    counted auto-resolved (the position of the record that completed it)."""

    hw: dict[str, int] = Field(default_factory=dict)
    category: str | None = None
    eligible: bool = False
    delivered_at_ms: int | None = None
    auto: tuple[str, int] | None = None
    seen_ms: int = 0

    def add_result(self, at: Position, category: str, needs_review: bool, at_ms: int) -> None:
        # The category counted is the first result's that needed no review.
        if not needs_review and not self.eligible:
            self.eligible, self.category = True, category
        elif self.category is None:
            self.category = category
        self._complete(at, at_ms)

    def add_receipt(self, at: Position, status: str, at_ms: int) -> None:
        if status == "delivered" and self.delivered_at_ms is None:
            self.delivered_at_ms = at_ms
        self._complete(at, at_ms)

    def _complete(self, at: Position, at_ms: int) -> None:
        if self.eligible and self.delivered_at_ms is not None and self.auto is None:
            self.auto = (at.role, at.offset)
        self.hw[at.role] = at.offset
        self.seen_ms = max(self.seen_ms, at_ms)

    def resolved_by(self, at: Position) -> bool:
        return self.auto == (at.role, at.offset)


class Partial(BaseModel):
    """One input partition's figures for one window of one key, and the offsets of what it holds."""

    hw: dict[str, int] = Field(default_factory=dict)
    kind: Kind
    tenant: str
    category: str | None = None
    window: str
    start: int
    figures: dict[str, Any] = Field(default_factory=dict)

    def add(self, at: Position, delta: CategoryFigures | DeliveryFigures) -> None:
        self.figures = plus(figures_of(self.kind, self.figures), delta).model_dump()
        self.hw[at.role] = at.offset


def figures_of(kind: str, raw: Mapping[str, Any]) -> CategoryFigures | DeliveryFigures:
    return CategoryFigures.model_validate(raw) if kind == "category" else DeliveryFigures.model_validate(raw)


def plus(
    a: CategoryFigures | DeliveryFigures, b: CategoryFigures | DeliveryFigures
) -> CategoryFigures | DeliveryFigures:
    if isinstance(a, CategoryFigures) and isinstance(b, CategoryFigures):
        return a.plus(b)
    if isinstance(a, DeliveryFigures) and isinstance(b, DeliveryFigures):
        return a.plus(b)
    raise TypeError(f"cannot add {type(b).__name__} to {type(a).__name__}")


class Snapshot(BaseModel):
    """A partial, whole, on its way to the second stage; ``generation`` and ``sequence`` order the snapshots of
    one input partition (a later generation is a later owner of the partition)."""

    kind: Kind
    tenant: str
    category: str | None = None
    window: str
    start: int
    source: int
    generation: int = 0
    sequence: int = 0
    figures: dict[str, Any]

    @property
    def key(self) -> str:
        """The second stage's key: every partition's partials of one (tenant, category), or one tenant's receipts."""
        return f"c|{self.tenant}|{self.category}" if self.kind == "category" else f"d|{self.tenant}"


def join_key(partition: int, tenant: str, event_id: str) -> str:
    return f"{partition}|j|{tenant}|{event_id}"


def partial_key(partition: int, kind: Kind, window: str, start: int, tenant: str, category: str | None) -> str:
    head = f"{partition}|{kind[0]}|{window}|{start}|{tenant}"
    return f"{head}|{category}" if kind == "category" else head


@dataclass
class Step:
    """What one record does to the first stage's table: its writes, in order, and a snapshot of every partial it
    touched (applied now or before)."""

    writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    fresh: bool = False  # the record reached the join for the first time
    resolved: str | None = None  # the category counted auto-resolved by this record
    late: bool = False  # too old for its windows: counted nowhere


def expired_window(window: str, start: int, now_ms: int) -> bool:
    """Whether a window ended more than its horizon before ``now_ms`` (stream time)."""
    return (start + WINDOW_SECONDS[window] + HORIZON_SECONDS[window]) * 1000 < now_ms


class Stage:
    """The first stage's rules over one partition's view of the table (reads only: the caller writes)."""

    def __init__(self, fallback_model: str, windows: Iterable[str] = tuple(WINDOW_SECONDS)) -> None:
        self.fallback_model = fallback_model
        self.windows = tuple(windows)

    def on_result(
        self, state: Mapping[str, Any], partition: int, offset: int, result: EventInferred, now_ms: int = 0
    ) -> Step:
        at = Position(RESULT, offset)
        at_ms = epoch_ms(result.inferred_at)
        key = join_key(partition, result.tenant, result.event_id)
        entry = JoinEntry.model_validate(state.get(key) or {})
        step = Step(fresh=not _applied(entry.hw, at))
        if step.fresh:
            entry.add_result(at, result.category.label, result.needs_review, at_ms)
            step.writes.append((key, entry.model_dump(mode="json")))
        deltas: dict[tuple[Kind, str, int, str | None], CategoryFigures | DeliveryFigures] = {}
        figures = result_figures(result, self.fallback_model)
        for window in self.windows:
            deltas[("category", window, window_start(at_ms, window), result.category.label)] = figures
        self._resolve(entry, at, deltas, step)
        return self._apply(state, partition, result.tenant, at, deltas, step, now_ms)

    def on_receipt(
        self, state: Mapping[str, Any], partition: int, offset: int, receipt: NotificationDelivered, now_ms: int = 0
    ) -> Step:
        at = Position(RECEIPT, offset)
        at_ms = epoch_ms(receipt.delivered_at)
        key = join_key(partition, receipt.tenant, receipt.event_id)
        entry = JoinEntry.model_validate(state.get(key) or {})
        step = Step(fresh=not _applied(entry.hw, at))
        if step.fresh:
            entry.add_receipt(at, receipt.status, at_ms)
            step.writes.append((key, entry.model_dump(mode="json")))
        deltas: dict[tuple[Kind, str, int, str | None], CategoryFigures | DeliveryFigures] = {}
        if receipt.status in RECEIPT_STATUSES:
            figures = receipt_figures(receipt)
            for window in self.windows:
                deltas[("delivery", window, window_start(at_ms, window), None)] = figures
        self._resolve(entry, at, deltas, step)
        return self._apply(state, partition, receipt.tenant, at, deltas, step, now_ms)

    def _resolve(
        self,
        entry: JoinEntry,
        at: Position,
        deltas: dict[tuple[Kind, str, int, str | None], CategoryFigures | DeliveryFigures],
        step: Step,
    ) -> None:
        # Recovered from the entry, not decided again: a record processed again after a crash finds what it did.
        if not entry.resolved_by(at) or entry.delivered_at_ms is None or entry.category is None:
            return
        step.resolved = entry.category
        for window in self.windows:
            where: tuple[Kind, str, int, str | None] = (
                "category",
                window,
                window_start(entry.delivered_at_ms, window),
                entry.category,
            )
            found = deltas.get(where)
            deltas[where] = AUTO_RESOLVED if found is None else plus(found, AUTO_RESOLVED)

    def _apply(
        self,
        state: Mapping[str, Any],
        partition: int,
        tenant: str,
        at: Position,
        deltas: Mapping[tuple[Kind, str, int, str | None], CategoryFigures | DeliveryFigures],
        step: Step,
        now_ms: int,
    ) -> Step:
        for (kind, window, start, category), delta in deltas.items():
            if now_ms and expired_window(window, start, now_ms):
                step.late = True
                continue
            key = partial_key(partition, kind, window, start, tenant, category)
            raw = state.get(key)
            partial = (
                Partial.model_validate(raw)
                if raw
                else Partial(kind=kind, tenant=tenant, category=category, window=window, start=start)
            )
            if not _applied(partial.hw, at):
                partial.add(at, delta)
                step.writes.append((key, partial.model_dump(mode="json")))
            step.snapshots.append(
                Snapshot(
                    kind=kind,
                    tenant=tenant,
                    category=category,
                    window=window,
                    start=start,
                    source=partition,
                    figures=partial.figures or figures_of(kind, {}).model_dump(),
                )
            )
        return step


def expired_keys(items: Iterable[tuple[str, Any]], partition: int, now_ms: int, join_ttl_s: float) -> list[str]:
    """The keys of ``partition`` in the first stage's table that stream time ``now_ms`` has left behind: partials
    of windows past their horizon, join entries not seen for ``join_ttl_s``."""
    prefix = f"{partition}|"
    found: list[str] = []
    for key, value in items:
        if not key.startswith(prefix):
            continue
        parts = key.split("|", 4)
        if parts[1] == "j":
            if value and int(value.get("seen_ms", 0)) + join_ttl_s * 1000 < now_ms:
                found.append(key)
        elif len(parts) >= 4 and parts[2] in WINDOW_SECONDS and expired_window(parts[2], int(parts[3]), now_ms):
            found.append(key)
    return found


class Merged(BaseModel):
    """One input partition's newest snapshot, as the second stage keeps it."""

    generation: int
    sequence: int
    figures: dict[str, Any]


def merge(current: Mapping[str, Any], snapshot: Snapshot) -> dict[str, Any]:
    """The second stage's value for one window and key with ``snapshot`` taken in, unless it is older than the
    one held for its input partition (a repeat, or a late copy from a former owner)."""
    merged = dict(current)
    source = str(snapshot.source)
    held = merged.get(source)
    if held is not None and (held["generation"], held["sequence"]) > (snapshot.generation, snapshot.sequence):
        return merged
    merged[source] = Merged(
        generation=snapshot.generation, sequence=snapshot.sequence, figures=snapshot.figures
    ).model_dump()
    return merged


def total(kind: str, merged: Mapping[str, Any]) -> CategoryFigures | DeliveryFigures:
    """The sum of every input partition's partial: the window's figures for its key."""
    result = figures_of(kind, {})
    for source in sorted(merged, key=int):
        result = plus(result, figures_of(kind, merged[source]["figures"]))
    return result


def recount(
    results: Iterable[EventInferred],
    receipts: Iterable[NotificationDelivered],
    fallback_model: str,
    windows: Iterable[str] = tuple(WINDOW_SECONDS),
) -> dict[tuple[str, str, int], WindowStats]:
    """Every window's figures straight from the records, without the stages: what the served windows must equal.

    Each input in its topic's order per partition (an event's records share one partition). An event counts
    auto-resolved once: in its first delivered receipt's window, under the category of its first result that
    needed no review.
    """
    stats: dict[tuple[str, str, int], WindowStats] = {}
    kept = tuple(windows)

    def window_of(tenant: str, window: str, moment_ms: int) -> WindowStats:
        start = window_start(moment_ms, window)
        found = stats.get((tenant, window, start))
        if found is None:
            found = WindowStats(tenant=tenant, window=window, start=start, end=start + WINDOW_SECONDS[window])
            stats[(tenant, window, start)] = found
        return found

    def add(one: WindowStats, category: str, figures: CategoryFigures) -> None:
        one.categories[category] = one.categories.get(category, CategoryFigures()).plus(figures)

    eligible: dict[tuple[str, str], str] = {}
    delivered: dict[tuple[str, str], int] = {}
    for result in results:
        for window in kept:
            one = window_of(result.tenant, window, epoch_ms(result.inferred_at))
            add(one, result.category.label, result_figures(result, fallback_model))
        if not result.needs_review:
            eligible.setdefault((result.tenant, result.event_id), result.category.label)
    for receipt in receipts:
        if receipt.status not in RECEIPT_STATUSES:
            continue
        for window in kept:
            one = window_of(receipt.tenant, window, epoch_ms(receipt.delivered_at))
            one.delivery = one.delivery.plus(receipt_figures(receipt))
        if receipt.status == "delivered":
            delivered.setdefault((receipt.tenant, receipt.event_id), epoch_ms(receipt.delivered_at))
    for event, category in eligible.items():
        if event in delivered:
            for window in kept:
                add(window_of(event[0], window, delivered[event]), category, AUTO_RESOLVED)
    for one in stats.values():
        one.categories = dict(sorted(one.categories.items()))
    return stats
