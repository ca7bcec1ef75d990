"""Failed records against a real broker: per-record results, the bisection budget, retry delays and deferrals,
a record stuck on a dependency, and the outputs a failure carries."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from shared.errors import DependencyUnavailable, PermanentError, RetryableError
from shared.kafka import KafkaConnection
from shared.runtime import Output, PartitionBatch, RecordResult, Runtime
from tests.integration.runtime_support import headers, make_topics, produce, read, running
from tests.integration.test_runtime import fast
from tests.support.processes import wait_for


def test_a_per_record_failure_is_routed_without_a_second_handler_call(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 1, out: 1})
    produce(kafka, source, [(b"k", str(i).encode()) for i in range(20)])
    calls: list[int] = []

    def handle(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        calls.append(sum(len(b.records) for b in batches))
        return [
            PermanentError("unreadable ticket", category="validation")
            if r.value == b"7"
            else [Output(out, r.value, r.key)]
            for b in batches
            for r in b.records
        ]

    with running(Runtime(service, kafka, [source], handle, fast(max_batch_size=20, max_wait_ms=3000))):
        outputs = read(kafka, out, 19)
        dead = read(kafka, f"{service}.dlq", 1)
    assert calls == [20]
    assert [m.value() for m in outputs] == [str(i).encode() for i in range(20) if i != 7]
    assert headers(dead[0])["dlq.original.offset"] == b"7"
    assert headers(dead[0])["dlq.error.category"] == b"validation"


def test_a_batch_wide_failure_costs_three_calls_not_a_full_bisection(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source = unique("svc"), unique("in")
    make_topics(kafka, service, {source: 1})
    produce(kafka, source, [(b"k", str(i).encode()) for i in range(64)])
    calls: list[tuple[str, int]] = []

    def handle(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        calls.append((batches[0].topic, sum(len(b.records) for b in batches)))
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    settings = fast(max_batch_size=64, max_wait_ms=3000, retry_delays_ms=[60_000, 60_000, 60_000])
    with running(Runtime(service, kafka, [source], handle, settings)):
        retried = read(kafka, f"{service}.retry.1", 64)
    assert [n for topic, n in calls if topic == source] == [64, 32, 32]
    assert {headers(m)["retry.error.type"] for m in retried} == {b"RuntimeError"}


def test_a_requested_delay_uses_the_nearest_retry_level_and_its_due_time(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 1, out: 1})
    seen: list[tuple[str, float]] = []

    def handle(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        results: list[RecordResult] = []
        for b in batches:
            for r in b.records:
                seen.append((r.topic, time.monotonic()))
                if r.topic == source:
                    results.append(RetryableError("429 Too Many Requests", category="delivery", delay_ms=700))
                else:
                    results.append([Output(out, r.value, r.key)])
        return results

    with running(Runtime(service, kafka, [source], handle, fast(retry_delays_ms=[300, 1000, 3000]))):
        produce(kafka, source, [(b"k", b"rate-limited")])
        outputs = read(kafka, out, 1)
        parked = read(kafka, f"{service}.retry.2", 1)
    assert outputs[0].value() == b"rate-limited"
    h = headers(parked[0])
    assert h["retry.attempt"] == b"1" and h["retry.error.category"] == b"delivery"
    assert read(kafka, f"{service}.retry.1", 0, timeout=1) == []
    assert [t for t, _ in seen] == [source, f"{service}.retry.2"]
    assert seen[1][1] - seen[0][1] >= 0.6


def test_a_deferral_uses_no_attempts_and_ends_in_the_dlq_as_delivery_after_the_maximum(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source = unique("svc"), unique("in")
    make_topics(kafka, service, {source: 1})
    produce(kafka, source, [(b"k", b"circuit-open")])
    visits: Counter[str] = Counter()

    def handle(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        for b in batches:
            visits[b.topic] += len(b.records)
        return [RetryableError("circuit open", counts_attempt=False) for b in batches for _ in b.records]

    settings = fast(retry_delays_ms=[200, 400, 800], max_deferral_ms=1500)
    with running(Runtime(service, kafka, [source], handle, settings)):
        dead = read(kafka, f"{service}.dlq", 1, timeout=60)
    h = headers(dead[0])
    assert h["dlq.error.category"] == b"delivery" and h["dlq.error.type"] == b"DeferralExpired"
    assert h["dlq.attempts"] == b"1"  # deferrals used no attempts
    assert sum(visits.values()) >= 3 and visits[f"{service}.retry.1"] >= 2


def test_a_record_stuck_on_a_dependency_while_others_pass_is_routed_after_n_strikes(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 2, out: 2})
    produce(kafka, source, [(b"k", b"stuck")], partition=0)
    # Per call of the stuck record: (other records in the same call, other records handled before it).
    stuck_calls: list[tuple[int, int]] = []
    others_handled = 0
    traffic_done = threading.Event()

    def traffic() -> None:
        # The rest of the service keeps flowing on partition 1 while the stuck record fails.
        for i in range(200):
            if traffic_done.is_set():
                return
            produce(kafka, source, [(b"k", str(i).encode())], partition=1)
            time.sleep(0.05)

    def handle(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        nonlocal others_handled
        results: list[RecordResult] = []
        stuck_here = False
        others = 0
        for b in batches:
            for r in b.records:
                if r.value == b"stuck" and r.topic == source:
                    stuck_here = True
                    results.append(DependencyUnavailable("tenant's CRM lookup refused"))
                else:
                    others += 1
                    results.append([Output(out, r.value, r.key)])
        if stuck_here:
            stuck_calls.append((others, others_handled))
        others_handled += others
        return results

    settings = fast(dependency_strikes=3, dependency_backoff_ms=100, max_wait_ms=20)
    feeder = threading.Thread(target=traffic, daemon=True)
    with running(Runtime(service, kafka, [source], handle, settings)):
        feeder.start()
        retried = read(kafka, f"{service}.retry.1", 1)
        wait_for(lambda: b"stuck" in {m.value() for m in read(kafka, out, 1)}, "the stuck record retried and passed")
        traffic_done.set()
    feeder.join(30)
    assert headers(retried[0])["retry.error.category"] == b"dependency"
    # A strike is a failure while others pass: in the same call, or since the record's previous failure. A call
    # where nothing else passed before or with it (the first one can be such, when traffic has not started yet)
    # looks like an outage and counts none. The record is routed on its third strike, not before.
    strikes, seen_at = 0, None
    for with_it, before in stuck_calls:
        assert strikes < 3, f"called again after its third strike: {stuck_calls}"
        if with_it > 0 or (seen_at is not None and before > seen_at):
            strikes += 1
        seen_at = before
    assert strikes == 3, f"routed after {strikes} strikes: {stuck_calls}"
    assert read(kafka, f"{service}.dlq", 0, timeout=1) == []


def test_outputs_carried_by_a_failure_commit_with_its_retry_and_dead_letter_records(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 1, out: 1})
    produce(kafka, source, [(b"k", b"retry-me"), (b"k", b"kill-me")])

    def handle(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        results: list[RecordResult] = []
        for r in (r for b in batches for r in b.records):
            achieved = [Output(out, b"achieved:" + (r.value or b""), r.key)]
            if r.value == b"retry-me" and r.topic == source:
                results.append(RetryableError("one endpoint of two is down", outputs=achieved))
            elif r.value == b"kill-me":
                results.append(PermanentError("refused", outputs=achieved))
            else:
                results.append([Output(out, b"done:" + (r.value or b""), r.key)])
        return results

    with running(Runtime(service, kafka, [source], handle, fast(retry_delays_ms=[100]))):
        outputs = {m.value() for m in read(kafka, out, 3)}
        dead = read(kafka, f"{service}.dlq", 1)
    assert outputs == {b"achieved:retry-me", b"achieved:kill-me", b"done:retry-me"}
    assert dead[0].value() == b"kill-me"
