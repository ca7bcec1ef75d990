"""Dependency strikes without a broker: an outage counts none; a record failing alone is routed after N."""

from __future__ import annotations

from shared.errors import DependencyUnavailable, PermanentError
from shared.runtime.processing import SettledRecord
from shared.runtime.records import Output, RecordKey
from shared.runtime.routing import Failure
from shared.runtime.strikes import DependencyStrikes, is_dependency

A = ("in", 0)
DOWN = Failure.of(DependencyUnavailable("redis down"))
PASSED: SettledRecord = [Output("out", b"v")]


def test_a_dependency_failure_is_told_from_others() -> None:
    assert is_dependency(DOWN)
    assert not is_dependency(Failure.of(PermanentError("bad")))


def test_a_batch_where_nothing_passed_is_an_outage_and_counts_no_strike() -> None:
    strikes = DependencyStrikes(limit=3)
    results: dict[RecordKey, SettledRecord] = {(A, 1): DOWN, (A, 2): Failure.of(DependencyUnavailable("later"))}
    assert strikes.outage(results) is DOWN.error
    assert strikes.strikes == {(A, 1): (0, 0), (A, 2): (0, 0)}


def test_a_batch_where_some_passed_is_no_outage() -> None:
    strikes = DependencyStrikes(limit=3)
    assert strikes.outage({(A, 1): DOWN, (A, 2): PASSED}) is None


def test_a_batch_without_dependency_failures_is_no_outage() -> None:
    strikes = DependencyStrikes(limit=3)
    assert strikes.outage({(A, 1): Failure.of(PermanentError("bad"))}) is None
    assert strikes.outage({}) is None


def test_a_record_failing_alone_since_others_passed_is_no_outage() -> None:
    strikes = DependencyStrikes(limit=3)
    assert strikes.outage({(A, 1): DOWN}) is DOWN.error  # nothing passed yet: an outage
    strikes.count_passed(5)
    assert strikes.outage({(A, 1): DOWN}) is None  # others passed since its last failure: it fails alone


def test_a_record_is_routed_on_its_nth_strike_and_forgotten() -> None:
    strikes = DependencyStrikes(limit=3)
    assert [strikes.escalate(A, 7) for _ in range(3)] == [False, False, True]
    assert (A, 7) not in strikes.strikes


def test_a_strike_remembers_how_many_had_passed() -> None:
    strikes = DependencyStrikes(limit=3)
    strikes.count_passed(4)
    strikes.escalate(A, 7)
    assert strikes.strikes[(A, 7)] == (1, 4)


def test_forget_drops_the_strikes_of_revoked_partitions_only() -> None:
    strikes = DependencyStrikes(limit=3)
    strikes.escalate(A, 1)
    strikes.escalate(("in", 1), 1)
    strikes.forget({A})
    assert list(strikes.strikes) == [(("in", 1), 1)]
