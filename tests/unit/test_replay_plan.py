"""The replay plan and summary keyed by a dead letter's origin, without a broker: refailed records are left out
and counted, and the ledger counts an origin's replays across the dead letters it produced."""

from __future__ import annotations

from typing import Any

from shared.replay.operations import DlqSummary, ReplayPlan, replayed_since, times_replayed
from shared.replay.records import DeadLetter, DlqFilter

DLQ = "svc.dlq"


def make_dead_letter(offset: int, source_offset: int, replays: int = 0, **overrides: Any) -> DeadLetter:
    headers = [
        ("dlq.original.topic", b"events.enriched.v1"),
        ("dlq.original.partition", b"2"),
        ("dlq.original.offset", str(source_offset).encode()),
        ("dlq.error.category", b"deserialization"),
    ]
    if replays:
        headers += [("replay.count", str(replays).encode()), ("replay.source", f"{DLQ}/0/{offset - 1}".encode())]
    fields: dict[str, Any] = {
        "topic": DLQ,
        "partition": 0,
        "offset": offset,
        "timestamp_ms": 1_700_000_000_000 + offset,
        "key": b"k",
        "value": b"\x00bad",
        "headers": headers,
    }
    fields.update(overrides)
    return DeadLetter(**fields)


def make_plan(include_refailed: bool = False) -> ReplayPlan:
    return ReplayPlan("svc", DLQ, "svc.replay", DlqFilter(), include_refailed=include_refailed)


def test_every_dead_letter_of_one_event_has_the_first_failures_origin() -> None:
    first, again, third = make_dead_letter(0, 42), make_dead_letter(1, 42, replays=1), make_dead_letter(5, 42, 2)
    assert first.origin == again.origin == third.origin == f"{DLQ}/events.enriched.v1/2/42"
    assert (first.replays, again.replays, third.replays) == (0, 1, 2)


def test_a_dead_letter_without_original_headers_is_its_own_origin() -> None:
    assert make_dead_letter(3, 1, headers=[]).origin == f"{DLQ}/0/3"


def test_a_plain_plan_leaves_refailed_records_out_and_counts_them_by_replays() -> None:
    chosen = make_plan()
    for record in (make_dead_letter(0, 42), make_dead_letter(1, 42, 1), make_dead_letter(2, 43, 1)):
        chosen.take(record)
    chosen.take(make_dead_letter(3, 43, 2))  # the same origin as offset 2, after a second replay
    assert chosen.total == 1 and chosen.offsets == {0: [0]}
    assert chosen.refailed_by_replays() == {1: 1, 2: 1}
    assert chosen.as_dict()["refailed"] == 2 and chosen.as_dict()["refailed_by_replays"] == {"1": 1, "2": 1}
    assert chosen.describe_refailed() == "2 failed again after replay: 1 after 1 time, 1 after 2 times"
    assert [s["replays"] for s in chosen.refailed_samples] == [1, 1, 2]


def test_include_refailed_takes_them() -> None:
    chosen = make_plan(include_refailed=True)
    chosen.take(make_dead_letter(1, 42, 1))
    assert chosen.total == 1 and chosen.refailed == {} and chosen.describe_refailed() == ""


def test_the_ledger_counts_an_origins_replays_for_each_of_its_dead_letters() -> None:
    first, again = make_dead_letter(0, 42), make_dead_letter(1, 42, 1)
    ledger = {first.origin: 1}
    assert replayed_since(ledger, first) and not replayed_since(ledger, again)
    ledger[first.origin] = 2  # the refailed one was replayed (--include-refailed)
    assert replayed_since(ledger, again)


def test_a_ledger_entry_keyed_by_the_dead_letter_itself_still_counts() -> None:
    first = make_dead_letter(7, 42)
    assert times_replayed({first.coordinates: 1}, first) == 1 and replayed_since({first.coordinates: 1}, first)


def test_the_summary_counts_refailed_records_not_replayed_since() -> None:
    first, again = make_dead_letter(0, 42), make_dead_letter(1, 42, 1)
    ledger = {first.origin: 1}
    summary = DlqSummary(DLQ)
    for record in (first, again):
        summary.add(record, replayed_since(ledger, record))
    assert summary.as_dict()["replayed"] == 1 and summary.as_dict()["refailed"] == 1
    assert summary.as_dict()["pending"] == 1
