"""analytics' rules without a broker: windows and figures, the auto-resolved join, a record processed again after a
crash counting once, the second stage's merge, and the serving store's layout and rates (shared/analytics.py)."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.analytics.domain import (
    RESULT,
    JoinEntry,
    Position,
    Snapshot,
    Stage,
    expired_keys,
    join_key,
    merge,
    receipt_figures,
    recount,
    result_figures,
    total,
    window_start,
)
from shared.analytics import (
    CATEGORY_PREFIX,
    DELIVERY_FIELD,
    CategoryFigures,
    DeliveryFigures,
    WindowStats,
    bucket_of,
    combine,
    parse_window,
    starts_key,
    window_key,
    write_args,
)
from shared.events import EventInferred, NotificationDelivered
from tests.support.factories import make_event_inferred

BASE = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
BASE_S = int(BASE.timestamp())


def result(event_id: str = "e1", minute: float = 0, **overrides: Any) -> EventInferred:
    label = overrides.pop("category", "technical")
    confidence = overrides.pop("confidence", 0.875)
    fields: dict[str, Any] = {
        "event_id": event_id,
        "tenant": "acme",
        "inferred_at": BASE + timedelta(minutes=minute),
        "category": {"label": label, "confidence": confidence, "scores": {label: confidence}},
        **overrides,
    }
    return EventInferred.model_validate(make_event_inferred(**fields))


def receipt(
    event_id: str = "e1", minute: float = 1, status: str = "delivered", **overrides: Any
) -> NotificationDelivered:
    fields: dict[str, Any] = {
        "event_id": event_id,
        "tenant": "acme",
        "subject": "customer-7",
        "endpoint": "https://hooks.example/x",
        "status": status,
        "http_status": 200 if status == "delivered" else 500,
        "delivered_at": BASE + timedelta(minutes=minute),
        "latency_ms": 40.0,
    }
    fields.update(overrides)
    return NotificationDelivered.model_validate(fields)


# --- windows, figures, the histogram ---------------------------------------------------------------------------


def test_a_moment_falls_in_the_tumbling_window_that_starts_at_its_floor() -> None:
    moment_ms = (BASE_S + 3599) * 1000 + 999
    assert window_start(moment_ms, "1m") == BASE_S + 3540
    assert window_start(moment_ms, "1h") == BASE_S
    assert window_start((BASE_S + 3600) * 1000, "1h") == BASE_S + 3600


@pytest.mark.parametrize(
    ("confidence", "bucket"), [(0.0, 0), (0.0999, 0), (0.1, 1), (0.55, 5), (0.95, 9), (1.0, 9), (1.2, 9), (-0.1, 0)]
)
def test_the_confidence_histogram_has_ten_buckets_and_one_point_zero_falls_in_the_last(
    confidence: float, bucket: int
) -> None:
    assert bucket_of(confidence) == bucket


def test_a_result_counts_an_event_its_review_confidence_fallback_and_cache() -> None:
    figures = result_figures(
        result(confidence=0.25, needs_review=True, cached=True, model={"name": "keywords", "version": "r"}), "keywords"
    )
    assert (figures.events, figures.needs_review, figures.fallback, figures.cached) == (1, 1, 1, 1)
    assert figures.confidence_sum == 0.25 and figures.histogram == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert result_figures(result(), "keywords").fallback == 0


def test_a_receipt_counts_its_status_and_only_a_delivery_its_latency() -> None:
    assert receipt_figures(receipt(status="delivered", latency_ms=40)) == DeliveryFigures(
        delivered=1, latency_sum_ms=40, latency_count=1
    )
    assert receipt_figures(receipt(status="failed", latency_ms=900)) == DeliveryFigures(failed=1)
    assert receipt_figures(receipt(status="gone")) == DeliveryFigures(gone=1)


# --- the first stage: join, partials, repeats ------------------------------------------------------------------


class Table(dict[str, Any]):
    """The first stage's table for a test: the writes of each step applied in order."""

    def run(self, steps: Sequence[Any]) -> None:
        for step in steps:
            for key, value in step.writes:
                self[key] = value


def apply(state: Table, step: Any) -> Any:
    state.run([step])
    return step


def partial_figures(state: Mapping[str, Any], kind: str, window: str, moment: float, category: str = "") -> Any:
    start = window_start(int((BASE_S + moment * 60) * 1000), window)
    head = f"0|{kind[0]}|{window}|{start}|acme"
    value = state[f"{head}|{category}" if kind == "category" else head]
    return (CategoryFigures if kind == "category" else DeliveryFigures).model_validate(value["figures"])


def test_a_result_then_its_first_delivery_counts_the_event_auto_resolved_once_in_the_delivery_window() -> None:
    stage, state = Stage("keywords"), Table()
    apply(state, stage.on_result(state, 0, 0, result(minute=0)))
    step = apply(state, stage.on_receipt(state, 0, 0, receipt(minute=2)))
    assert step.resolved == "technical"
    assert partial_figures(state, "category", "1m", 2, "technical").auto_resolved == 1
    assert partial_figures(state, "category", "1m", 0, "technical").auto_resolved == 0
    assert partial_figures(state, "category", "1h", 0, "technical") == CategoryFigures(
        events=1, confidence_sum=0.875, histogram=[0] * 8 + [1, 0], auto_resolved=1
    )
    again = apply(state, stage.on_receipt(state, 0, 1, receipt(minute=3)))  # a second endpoint's delivery
    assert again.resolved is None
    assert partial_figures(state, "category", "1h", 0, "technical").auto_resolved == 1
    assert partial_figures(state, "delivery", "1h", 0) == DeliveryFigures(
        delivered=2, latency_sum_ms=80, latency_count=2
    )


def test_a_delivery_read_before_its_result_counts_the_event_when_the_result_comes() -> None:
    stage, state = Stage("keywords"), Table()
    assert apply(state, stage.on_receipt(state, 0, 0, receipt(minute=2))).resolved is None
    assert apply(state, stage.on_result(state, 0, 0, result(minute=0))).resolved == "technical"
    assert partial_figures(state, "category", "1m", 2, "technical").auto_resolved == 1


@pytest.mark.parametrize(
    "records",
    [
        [("i", {"needs_review": True}), ("d", {})],  # escalated: never auto-resolved
        [("i", {}), ("d", {"status": "failed"}), ("d", {"status": "gone"})],  # never delivered
    ],
)
def test_an_escalated_or_undelivered_event_is_not_auto_resolved(records: list[tuple[str, dict[str, Any]]]) -> None:
    stage, state = Stage("keywords"), Table()
    offsets = {"i": 0, "d": 0}
    for role, overrides in records:
        offset = offsets[role]
        offsets[role] += 1
        step = (
            stage.on_result(state, 0, offset, result(**overrides))
            if role == "i"
            else stage.on_receipt(state, 0, offset, receipt(**overrides))
        )
        assert apply(state, step).resolved is None


def test_the_category_counted_is_the_first_result_that_needed_no_review() -> None:
    stage, state = Stage("keywords"), Table()
    apply(state, stage.on_result(state, 0, 0, result(category="billing", needs_review=True)))
    apply(state, stage.on_result(state, 0, 1, result(category="account")))
    assert apply(state, stage.on_receipt(state, 0, 0, receipt())).resolved == "account"


def test_a_record_processed_again_adds_nothing_and_sends_the_same_snapshots() -> None:
    stage, state = Stage("keywords"), Table()
    apply(state, stage.on_result(state, 0, 0, result()))
    first = apply(state, stage.on_receipt(state, 0, 0, receipt()))
    before = dict(state)
    again = stage.on_receipt(state, 0, 0, receipt())  # at-least-once: the same record after a crash
    assert again.writes == [] and not again.fresh
    assert again.resolved == "technical"  # what it did is recovered from the join entry, not decided again
    assert [s.figures for s in again.snapshots] == [s.figures for s in first.snapshots]
    assert dict(state) == before


def test_a_join_entry_knows_which_record_completed_it() -> None:
    entry = JoinEntry()
    entry.add_result(Position(RESULT, 4), "billing", False, 1)
    entry.add_receipt(Position("d", 9), "delivered", 2)
    assert entry.resolved_by(Position("d", 9)) and not entry.resolved_by(Position(RESULT, 4))
    assert entry.hw == {"i": 4, "d": 9}


def test_a_record_older_than_its_windows_horizon_counts_nowhere() -> None:
    stage, state = Stage("keywords"), Table()
    three_days_on = (BASE_S + 3 * 86400) * 1000
    step = apply(state, stage.on_result(state, 0, 0, result(), now_ms=three_days_on))
    assert step.late and step.snapshots == []
    assert list(state) == [join_key(0, "acme", "e1")]


def test_stream_time_expires_partials_past_their_horizon_and_join_entries_not_seen_for_the_ttl() -> None:
    stage, state = Stage("keywords"), Table()
    apply(state, stage.on_result(state, 0, 0, result(minute=0)))
    apply(state, stage.on_result(state, 1, 0, result(minute=0)))  # another partition's: not swept with 0
    now_ms = (BASE_S + 60 + 2 * 3600) * 1000 + 1  # the 1m window's horizon passed, not the 1h one's
    keys = expired_keys(state.items(), 0, now_ms, join_ttl_s=30 * 3600)
    assert keys == [k for k in state if k.startswith("0|c|1m|")]
    keys = expired_keys(state.items(), 0, (BASE_S + 31 * 3600) * 1000, join_ttl_s=30 * 3600)
    assert join_key(0, "acme", "e1") in keys and join_key(1, "acme", "e1") not in keys


# --- the second stage ------------------------------------------------------------------------------------------


def snapshot(source: int, generation: int, sequence: int, events: int) -> Snapshot:
    return Snapshot(
        kind="category",
        tenant="acme",
        category="billing",
        window="1h",
        start=BASE_S,
        source=source,
        generation=generation,
        sequence=sequence,
        figures=CategoryFigures(events=events).model_dump(),
    )


def test_the_second_stage_keeps_each_partitions_newest_snapshot_and_serves_their_sum() -> None:
    merged: dict[str, Any] = {}
    for one in (snapshot(0, 1, 1, 1), snapshot(0, 1, 2, 3), snapshot(1, 1, 1, 5), snapshot(0, 1, 1, 1)):
        merged = merge(merged, one)  # the last: a repeat of an older snapshot changes nothing
    assert total("category", merged) == CategoryFigures(events=8)
    merged = merge(merged, snapshot(0, 2, 1, 2))  # a new owner's (after a crash: rebuilt from the changelog)
    merged = merge(merged, snapshot(0, 1, 9, 7))  # a late copy from the former owner
    assert total("category", merged) == CategoryFigures(events=7)


# --- a crash at any point: the served windows equal a recount -------------------------------------------------


@dataclass(frozen=True)
class Record:
    role: str
    partition: int
    offset: int
    event: EventInferred | NotificationDelivered


def topics_of(
    events: list[tuple[int, str, bool, int, list[tuple[str, int]], bool]],
) -> tuple[list[Record], list[Record]]:
    """Results and receipts per partition, in offset order, from (partition, category, review, minute, receipts
    (status, minute), answered twice)."""
    results: list[Record] = []
    receipts: list[Record] = []
    offsets: dict[tuple[str, int], int] = {}

    def place(role: str, partition: int, event: Any) -> Record:
        offset = offsets.get((role, partition), 0)
        offsets[(role, partition)] = offset + 1
        return Record(role, partition, offset, event)

    for n, (partition, category, review, minute, delivered, twice) in enumerate(events):
        event_id = f"e{n}"
        answers = [(review, category)] + ([(not review, "billing")] if twice else [])
        for needs_review, label in answers:
            one = result(
                event_id,
                minute,
                category=label,
                needs_review=needs_review,
                confidence=(n % 8 + 1) / 8,  # exact in binary: sums do not depend on their order
                cached=n % 3 == 0,
                model={"name": "keywords" if n % 4 == 0 else "minilm", "version": "v"},
            )
            results.append(place("i", partition, one))
        for status, at in delivered:
            receipts.append(place("d", partition, receipt(event_id, minute + at, status, latency_ms=float(n))))
    return results, receipts


def interleave(rng: random.Random, *streams: list[Record]) -> list[Record]:
    """One order a consumer may read the streams in: each stream's own order kept."""
    queues = [list(s) for s in streams if s]
    merged: list[Record] = []
    while queues:
        queue = rng.choice(queues)
        merged.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return merged


def process(stage: Stage, state: Table, record: Record) -> Any:
    if record.role == "i":
        assert isinstance(record.event, EventInferred)
        return stage.on_result(state, record.partition, record.offset, record.event)
    assert isinstance(record.event, NotificationDelivered)
    return stage.on_receipt(state, record.partition, record.offset, record.event)


def served(snapshots: list[Snapshot]) -> dict[tuple[str, str, int], WindowStats]:
    """The second stage: every snapshot merged in order, each window's keys summed."""
    merged: dict[tuple[str, int, str], dict[str, Any]] = {}
    meta: dict[tuple[str, int, str], Snapshot] = {}
    for one in snapshots:
        where = (one.window, one.start, one.key)
        merged[where] = merge(merged.get(where, {}), one)
        meta[where] = one
    windows: dict[tuple[str, str, int], WindowStats] = {}
    for where, value in merged.items():
        one = meta[where]
        stats = windows.setdefault(
            (one.tenant, one.window, one.start),
            WindowStats(tenant=one.tenant, window=one.window, start=one.start, end=one.start + 60),
        )
        figures = total(one.kind, value)
        if isinstance(figures, CategoryFigures):
            assert one.category is not None
            stats.categories[one.category] = figures
        else:
            stats.delivery = figures
    return windows


def comparable(windows: Mapping[tuple[str, str, int], WindowStats]) -> dict[tuple[str, str, int], Any]:
    return {
        key: (
            {c: f.model_dump() for c, f in sorted(w.categories.items()) if f != CategoryFigures()},
            w.delivery.model_dump(),
        )
        for key, w in windows.items()
    }


EVENTS = st.lists(
    st.tuples(
        st.integers(0, 1),  # partition
        st.sampled_from(["billing", "technical"]),
        st.booleans(),  # needs review
        st.integers(0, 3),  # minute
        st.lists(st.tuples(st.sampled_from(["delivered", "failed", "gone"]), st.integers(0, 2)), max_size=3),
        st.booleans(),  # answered twice (a replay through the fallback)
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(events=EVENTS, seed=st.integers(0, 2**32 - 1))
def test_a_kill_at_any_point_and_a_restart_serve_what_a_recount_of_the_topics_gives(
    events: list[tuple[int, str, bool, int, list[tuple[str, int]], bool]], seed: int
) -> None:
    """At-least-once with faust's guarantees: offsets commit only after the table writes of the records before them
    are flushed; a kill keeps a prefix of the table's writes (one changelog partition) and of the snapshots; the
    restart reads again from the committed offsets, in any order of the two topics."""
    rng = random.Random(seed)
    results, receipts = topics_of(events)
    stage = Stage("keywords")
    sent: list[Snapshot] = []
    durable = Table()
    for partition in (0, 1):
        mine = [[r for r in stream if r.partition == partition] for stream in (results, receipts)]
        first = interleave(rng, *mine)
        processed = rng.randint(0, len(first))
        committed = rng.randint(0, processed)
        state, writes, snapshots = Table(), list[tuple[str, Any]](), list[Snapshot]()
        flushed_writes = flushed_snapshots = 0
        for n, record in enumerate(first[:processed]):
            step = process(stage, state, record)
            state.run([step])
            writes += step.writes
            for one in step.snapshots:
                snapshots.append(one.model_copy(update={"generation": 1, "sequence": len(snapshots) + 1}))
            if n + 1 == committed:
                flushed_writes, flushed_snapshots = len(writes), len(snapshots)
        for key, value in writes[: rng.randint(flushed_writes, len(writes))]:
            durable[key] = value
        sent += snapshots[: rng.randint(flushed_snapshots, len(snapshots))]
        done = first[:committed]
        rest = [[r for r in stream if r not in done] for stream in mine]
        sequence = 0
        for record in interleave(rng, *rest):
            step = process(stage, durable, record)
            durable.run([step])
            for one in step.snapshots:
                sequence += 1
                sent.append(one.model_copy(update={"generation": 2, "sequence": sequence}))
    expected = recount(
        [r.event for r in results if isinstance(r.event, EventInferred)],
        [r.event for r in receipts if isinstance(r.event, NotificationDelivered)],
        "keywords",
    )
    assert comparable(served(sent)) == comparable(expected)


def test_the_recount_counts_an_event_auto_resolved_in_its_first_deliverys_window() -> None:
    windows = recount(
        [result("e1", 0), result("e2", 0, needs_review=True)],
        [receipt("e1", 1, "failed"), receipt("e1", 2), receipt("e1", 3), receipt("e2", 1)],
        "keywords",
    )
    hour = windows[("acme", "1h", BASE_S)]
    assert hour.categories["technical"].auto_resolved == 1 and hour.categories["technical"].events == 2
    assert hour.delivery == DeliveryFigures(delivered=3, failed=1, latency_sum_ms=120, latency_count=3)
    assert windows[("acme", "1m", BASE_S + 120)].categories["technical"].auto_resolved == 1


# --- the serving store's layout and the ops API's figures (shared/analytics.py) --------------------------------


def test_the_store_keys_and_the_writer_arguments() -> None:
    assert window_key("acme", "1h", BASE_S) == f"analytics:acme:1h:{BASE_S}"
    assert starts_key("acme", "1m") == "analytics:acme:1m:starts"
    keys, args = write_args("acme", "1m", BASE_S, DELIVERY_FIELD, DeliveryFigures(delivered=1))
    assert keys == [f"analytics:acme:1m:{BASE_S}", "analytics:acme:1m:starts"]
    assert args[0] == "delivery" and json.loads(args[1])["delivered"] == 1 and args[2:] == [BASE_S, 7200]


def test_a_window_hash_reads_back_as_typed_figures() -> None:
    fields = {
        f"{CATEGORY_PREFIX}billing".encode(): CategoryFigures(events=2, needs_review=1).model_dump_json().encode(),
        DELIVERY_FIELD.encode(): DeliveryFigures(delivered=1).model_dump_json().encode(),
    }
    stats = parse_window("acme", "1h", BASE_S, fields)
    assert stats.end == BASE_S + 3600
    assert stats.categories == {"billing": CategoryFigures(events=2, needs_review=1)}
    assert stats.delivery == DeliveryFigures(delivered=1)


def test_combine_adds_every_category_and_derives_the_rates() -> None:
    first = WindowStats(
        tenant="acme",
        window="1h",
        start=BASE_S,
        end=BASE_S + 3600,
        categories={
            "billing": CategoryFigures(events=3, needs_review=1, confidence_sum=2.4, fallback=1, cached=0),
            "technical": CategoryFigures(events=1, needs_review=1, confidence_sum=0.4, cached=1, auto_resolved=0),
        },
        delivery=DeliveryFigures(delivered=3, failed=1, latency_sum_ms=300, latency_count=3),
    )
    second = WindowStats(
        tenant="acme",
        window="1h",
        start=BASE_S + 3600,
        end=BASE_S + 7200,
        categories={"billing": CategoryFigures(events=4, auto_resolved=2, confidence_sum=3.6)},
    )
    totals = combine([first, second])
    assert (totals.start, totals.end, totals.windows) == (BASE_S, BASE_S + 7200, 2)
    assert totals.figures.events == 8 and totals.by_category["billing"].events == 7
    assert (totals.escalations, totals.auto_resolved) == (2, 2)
    rates = totals.rates
    assert rates.needs_review_share == pytest.approx(0.25)
    assert rates.mean_confidence == pytest.approx(0.8)
    assert rates.fallback_share == pytest.approx(0.125) and rates.cache_hit_rate == pytest.approx(0.125)
    assert rates.webhook_success_rate == pytest.approx(0.75)
    assert rates.mean_delivery_latency_ms == pytest.approx(100)
    assert rates.escalations_per_hour == pytest.approx(1.0)


def test_combine_of_nothing_has_no_rates() -> None:
    totals = combine([], tenant="acme", window="1m")
    assert totals.windows == 0 and totals.figures == CategoryFigures()
    assert totals.rates.needs_review_share is None and totals.rates.escalations_per_hour is None
