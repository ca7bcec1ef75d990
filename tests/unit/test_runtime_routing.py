"""Routing of failed records: retry levels, dead letters, headers, and records too large to write."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from shared.errors import DeserializationError, PermanentError, RetryableError
from shared.runtime.processing import regroup
from shared.runtime.records import InputRecord
from shared.runtime.routing import Failure, FailureRouter, Routed, due_at, fit, record_size

DELAYS = [1000, 10_000, 60_000]


def route(
    service: str,
    record: InputRecord,
    failure: Failure,
    retry_delays_ms: list[int],
    retry_levels_available: int,
    stacktrace_max_bytes: int,
    now_ms: int | None = None,
) -> Routed:
    return FailureRouter(service, retry_delays_ms, retry_levels_available, stacktrace_max_bytes).route(
        record, failure, now_ms
    )


def record(topic: str = "events.enriched.v1", headers: list[tuple[str, bytes]] | None = None, **kw: Any) -> InputRecord:
    fields: dict[str, Any] = {
        "topic": topic,
        "partition": 3,
        "offset": 41,
        "key": b"t:c",
        "value": b"\x00\x00\x00\x00\x01abc",
        "headers": headers or [("ce_id", b"e1")],
        "timestamp_ms": 1_700_000_000_000,
        "payload": None,
    }
    fields.update(kw)
    return InputRecord(**fields)


def h(routed_headers: list[tuple[str, bytes]]) -> dict[str, bytes]:
    return dict(routed_headers)


def test_failure_classification() -> None:
    retry = Failure.of(RetryableError("x", category="timeout"))
    assert (retry.category, retry.retryable, retry.type_name) == ("timeout", True, "RetryableError")
    assert Failure.of(PermanentError("x", category="validation")).retryable is False
    decode = DeserializationError("bad", topic="t", partition=0, offset=1)
    assert (Failure.of(decode).category, Failure.of(decode).retryable) == ("deserialization", False)
    unexpected = Failure.of(KeyError("k"))
    assert (unexpected.category, unexpected.retryable) == ("internal", True)


def test_a_retry_record_carries_the_error_message_as_its_reason_at_most_1_kib() -> None:
    routed = route("inference", record(), Failure.of(RetryableError("model busy")), DELAYS, 3, 4096, now_ms=5_000)
    assert h(routed.headers)["retry.error.message"] == b"model busy"
    long = route("inference", record(), Failure.of(RetryableError("x" * 5000)), DELAYS, 3, 4096, now_ms=5_000)
    assert len(h(long.headers)["retry.error.message"]) == 1024


def test_first_retryable_failure_goes_to_retry_1_with_due_time_and_original_position() -> None:
    routed = route("inference", record(), Failure.of(RetryableError("later")), DELAYS, 3, 4096, now_ms=5_000)
    assert routed.topic == "inference.retry.1" and not routed.dead
    headers = h(routed.headers)
    assert headers["retry.attempt"] == b"1"
    assert headers["retry.due"] == b"6000"
    assert (headers["retry.original.topic"], headers["retry.original.partition"], headers["retry.original.offset"]) == (
        b"events.enriched.v1",
        b"3",
        b"41",
    )
    assert headers["ce_id"] == b"e1"
    assert (routed.key, routed.value) == (b"t:c", b"\x00\x00\x00\x00\x01abc")


def test_a_record_from_retry_2_moves_to_retry_3_and_keeps_the_first_topic() -> None:
    came_from = record(
        "inference.retry.2",
        [
            ("ce_id", b"e1"),
            ("retry.attempt", b"2"),
            ("retry.due", b"1"),
            ("retry.original.topic", b"events.enriched.v1"),
            ("retry.original.partition", b"7"),
            ("retry.original.offset", b"9"),
        ],
        partition=0,
        offset=2,
    )
    routed = route("inference", came_from, Failure.of(RetryableError("later")), DELAYS, 3, 4096, now_ms=0)
    headers = h(routed.headers)
    assert routed.topic == "inference.retry.3"
    assert headers["retry.attempt"] == b"3" and headers["retry.due"] == b"60000"
    assert headers["retry.original.offset"] == b"9" and headers["retry.original.partition"] == b"7"
    assert sum(1 for k, _ in routed.headers if k == "retry.attempt") == 1


def test_after_the_last_level_the_record_is_dead_lettered_with_every_dlq_header() -> None:
    came_from = record(
        "inference.retry.3",
        [
            ("retry.attempt", b"3"),
            ("retry.original.topic", b"events.enriched.v1"),
            ("retry.original.partition", b"7"),
            ("retry.original.offset", b"9"),
        ],
    )
    routed = route("inference", came_from, Failure.of(RetryableError("still")), DELAYS, 3, 4096, now_ms=0)
    headers = h(routed.headers)
    assert routed.topic == "inference.dlq" and routed.dead
    assert headers["dlq.attempts"] == b"4"
    assert headers["dlq.original.topic"] == b"events.enriched.v1" and headers["dlq.original.offset"] == b"9"
    assert headers["dlq.service"] == b"inference" and headers["dlq.failed.at"] == b"1970-01-01T00:00:00.000+00:00"
    assert not any(k.startswith("retry.") for k in headers)


def test_a_handler_that_counts_its_own_tries_names_them_in_dlq_attempts() -> None:
    came_from = record("notifier.retry.2", [("retry.attempt", b"0")])
    counted = Failure.of(PermanentError("8 calls", category="delivery", attempts=8))
    assert h(route("notifier", came_from, counted, DELAYS, 3, 4096).headers)["dlq.attempts"] == b"8"
    plain = Failure.of(PermanentError("refused", category="delivery"))
    assert h(route("notifier", came_from, plain, DELAYS, 3, 4096).headers)["dlq.attempts"] == b"1"


def test_permanent_failure_skips_retries() -> None:
    routed = route("inference", record(), Failure.of(PermanentError("no", category="model")), DELAYS, 3, 4096)
    assert routed.topic == "inference.dlq"
    assert h(routed.headers)["dlq.error.category"] == b"model"


def test_missing_retry_topics_shorten_the_ladder() -> None:
    routed = route("inference", record(), Failure.of(RetryableError("x")), DELAYS, 0, 4096)
    assert routed.topic == "inference.dlq"


def test_stacktrace_is_capped() -> None:
    try:
        raise RuntimeError("x" * 10_000)
    except RuntimeError as exc:
        routed = route("s", record(), Failure(exc, "internal", False), DELAYS, 3, 4096)
    assert len(h(routed.headers)["dlq.stacktrace"]) <= 4096


def test_an_oversized_dead_letter_is_truncated_to_fit_and_says_so() -> None:
    big = record(value=b"x" * 50_000)
    routed = route("s", big, Failure.of(PermanentError("too big")), DELAYS, 3, 4096)
    fitted = fit(routed, 10_000)
    assert record_size(fitted.key, fitted.value, fitted.headers) <= 10_000
    headers = h(fitted.headers)
    assert headers["dlq.truncated"] == b"true" and headers["dlq.original.size"] == b"50000"
    assert (
        fit(route("s", record(), Failure.of(PermanentError("small")), DELAYS, 3, 4096), 10_000).value == record().value
    )


def test_regroup_keeps_partition_runs_in_order() -> None:
    recs = [record(partition=p, offset=o) for p, o in ((0, 1), (0, 2), (1, 5), (0, 3))]
    batches = regroup(recs)
    assert [(b.partition, [r.offset for r in b.records]) for b in batches] == [(0, [1, 2]), (1, [5]), (0, [3])]


def test_a_dead_letter_whose_key_and_headers_alone_are_too_large_drops_headers_and_trims_the_key() -> None:
    huge = record(key=b"k" * 30_000, headers=[("trace", b"t" * 30_000)], value=b"v" * 1000)
    fitted = fit(route("s", huge, Failure.of(PermanentError("x")), DELAYS, 3, 4096), 10_000)
    assert record_size(fitted.key, fitted.value, fitted.headers) <= 10_000
    headers = h(fitted.headers)
    assert headers["dlq.headers.dropped"] == b"true" and "trace" not in headers
    assert headers["dlq.original.offset"] == b"41"


def test_due_at_reads_the_header_and_caps_it_at_the_longest_delay_after_writing() -> None:
    assert due_at([("retry.due", b"5000")], 1_000, 60_000) == 5000
    assert due_at([("retry.due", b"999999999")], 1_000, 60_000) == 61_000
    assert due_at([("retry.due", b"garbage")], 1_000, 60_000) is None
    assert due_at([], 1_000, 60_000) is None


def test_a_requested_delay_picks_the_nearest_level_at_or_above_it() -> None:
    router = FailureRouter("inference", DELAYS, 3)
    routed = router.route(record(), Failure.of(RetryableError("429", delay_ms=5_000)), now_ms=0)
    assert routed.topic == "inference.retry.2"
    assert h(routed.headers)["retry.due"] == b"5000" and h(routed.headers)["retry.attempt"] == b"1"
    longer = router.route(record(), Failure.of(RetryableError("later", delay_ms=600_000)), now_ms=0)
    assert longer.topic == "inference.retry.3" and h(longer.headers)["retry.due"] == b"60000"


def test_a_deferral_keeps_the_attempt_count_and_remembers_when_it_began() -> None:
    router = FailureRouter("notifier", DELAYS, 3, max_deferral_ms=10_000)
    deferred = router.route(record(), Failure.of(RetryableError("circuit open", counts_attempt=False)), now_ms=1_000)
    headers = h(deferred.headers)
    assert deferred.topic == "notifier.retry.1" and not deferred.dead
    assert headers["retry.attempt"] == b"0" and headers["retry.deferred.since"] == b"1000"
    again = record("notifier.retry.1", deferred.headers)
    later = router.route(again, Failure.of(RetryableError("still open", counts_attempt=False)), now_ms=8_000)
    assert h(later.headers)["retry.deferred.since"] == b"1000" and h(later.headers)["retry.attempt"] == b"0"
    expired = router.route(again, Failure.of(RetryableError("still open", counts_attempt=False)), now_ms=12_000)
    assert expired.dead and h(expired.headers)["dlq.error.category"] == b"delivery"
    assert h(expired.headers)["dlq.error.type"] == b"DeferralExpired"


def test_the_dead_letter_keeps_the_first_records_timestamp_across_retries() -> None:
    router = FailureRouter("inference", DELAYS, 3)
    first = router.route(record(timestamp_ms=111), Failure.of(RetryableError("x")), now_ms=0)
    retried = record("inference.retry.1", first.headers, timestamp_ms=999, partition=0, offset=0)
    dead = router.route(retried, Failure.of(PermanentError("no")), now_ms=0)
    assert h(dead.headers)["dlq.original.timestamp"] == b"111"
    assert h(dead.headers)["dlq.original.topic"] == b"events.enriched.v1"


def test_a_replayed_record_that_fails_again_keeps_the_first_topic_and_its_replay_headers() -> None:
    replayed = record(
        "inference.replay",
        [
            ("ce_id", b"e1"),
            ("replay.id", b"r-1"),
            ("replay.source", b"inference.dlq/0/12"),
            ("replay.count", b"1"),
            ("replay.original.topic", b"events.enriched.v1"),
            ("replay.original.partition", b"4"),
            ("replay.original.offset", b"77"),
            ("replay.original.timestamp", b"123"),
        ],
        partition=0,
        offset=3,
    )
    dead = FailureRouter("inference", DELAYS, 3).route(replayed, Failure.of(PermanentError("again")), now_ms=0)
    headers = h(dead.headers)
    assert (headers["dlq.original.topic"], headers["dlq.original.partition"], headers["dlq.original.offset"]) == (
        b"events.enriched.v1",
        b"4",
        b"77",
    )
    assert headers["dlq.original.timestamp"] == b"123"
    assert headers["replay.id"] == b"r-1" and headers["replay.source"] == b"inference.dlq/0/12"


def test_importing_routing_does_not_import_the_engine() -> None:
    code = "import sys, shared.runtime.routing; sys.exit('shared.runtime.engine' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
