"""Commit order and rewinds against a real broker: pipelined batches commit in submit order, at-least-once
rewinds only the partition whose delivery failed, and an abort during a rebalance keeps exactly-once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar

from confluent_kafka import KafkaError, KafkaException, Producer
from prometheus_client import REGISTRY

from shared.kafka import KafkaConnection, bootstrap_topics
from shared.runtime import Output, PartitionBatch, RecordResult, Runtime
from shared.topics import TopicSpec
from tests.integration.runtime_support import make_topics, produce, read, running
from tests.integration.test_runtime import fast, tagger
from tests.support.processes import wait_for


def test_with_two_batches_in_flight_consumption_goes_on_while_the_first_is_still_running(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 1, out: 1})
    produce(kafka, source, [(b"k", str(i).encode()) for i in range(30)])
    release = threading.Event()
    started: list[list[bytes | None]] = []
    pool = ThreadPoolExecutor(4)

    def work(batches: Sequence[PartitionBatch], first: bool) -> Sequence[RecordResult]:
        if first:
            release.wait(60)  # the model is busy with batch 1
        return list(tagger(out)(batches))

    def handle(batches: Sequence[PartitionBatch]) -> Future[Sequence[RecordResult]]:
        started.append([r.value for b in batches for r in b.records])
        return pool.submit(work, batches, len(started) == 1)

    settings = fast(max_batch_size=10, max_wait_ms=10, max_inflight_batches=2)
    records_in = {"service": service, "topic": source}
    with running(Runtime(service, kafka, [source], handle, settings)):
        wait_for(lambda: len(started) == 2, "a second batch submitted while the first runs")
        # Still polling and buffering while both are in flight: the third batch's records are consumed.
        wait_for(lambda: (REGISTRY.get_sample_value("runtime_records_in_total", records_in) or 0) >= 20, "consumed")
        assert read(kafka, out, 0, timeout=1) == []  # nothing overtakes batch 1
        release.set()
        outputs = read(kafka, out, 30)
    pool.shutdown()
    assert [m.value() for m in outputs] == [b"tagged:%d" % i for i in range(30)]
    assert len(started) >= 3


def test_at_least_once_rewinds_only_the_partition_whose_delivery_failed(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out, other = unique("svc"), unique("in"), unique("out"), unique("other")
    make_topics(kafka, service, {source: 2, other: 1})
    # The broker refuses records over 2 kB on this topic; the runtime's own size check only starts at 500 kB.
    # (It refuses the whole produce request, so partition 1 writes to a topic of its own.)
    bootstrap_topics(kafka, [TopicSpec(out, 1, "k", None, extra_config={"max.message.bytes": "2000"})])
    produce(kafka, source, [(b"a", b"p0-%d" % i) for i in range(10)], partition=0)
    produce(kafka, source, [(b"b", b"p1-%d" % i) for i in range(10)], partition=1)
    handled: Counter[bytes] = Counter()

    def handle(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        results: list[RecordResult] = []
        for b in batches:
            for r in b.records:
                value = r.value or b""
                handled[value] += 1
                too_big = value == b"p0-5" and handled[value] == 1
                topic = out if r.partition == 0 else other
                results.append([Output(topic, b"x" * 5000 if too_big else value, r.key)])
        return results

    with running(Runtime(service, kafka, [source], handle, fast(exactly_once=False, max_wait_ms=300))):
        wait_for(lambda: handled[b"p0-9"] >= 2, "partition 0 read again after its failed delivery")
        outputs = read(kafka, out, 10) + read(kafka, other, 10)
    assert {m.value() for m in outputs} == {b"p%d-%d" % (p, i) for p in (0, 1) for i in range(10)}
    assert all(handled[b"p1-%d" % i] == 1 for i in range(10)), "partition 1 was rewound too"
    assert handled[b"p0-5"] == 2


class RebalanceAbortProducer(Producer):
    """Test-side producer: the first commit made inside a rebalance callback fails as abortable."""

    in_rebalance: ClassVar[threading.Event] = threading.Event()
    injected: ClassVar[list[int]] = []

    def commit_transaction(self, *args: Any) -> None:
        if self.in_rebalance.is_set() and not self.injected:
            self.injected.append(1)
            raise KafkaException(KafkaError(KafkaError._STATE, "injected during rebalance", txn_requires_abort=True))
        super().commit_transaction(*args)


def test_an_abort_during_a_rebalance_keeps_the_process_up_and_exactly_once(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 6, out: 6})
    # Enough work that the first instance is still busy, with a transaction open, however long the join takes.
    total = 6000
    produce(kafka, source, [(f"k{i % 30}".encode(), str(i).encode()) for i in range(total)])
    seen = Counter[int]()

    def slow(instance: int) -> Callable[[Sequence[PartitionBatch]], list[RecordResult]]:
        def handle(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
            n = sum(len(b.records) for b in batches)
            seen[instance] += n
            time.sleep(0.003 * n)
            return list(tagger(out)(batches))

        return handle

    first = Runtime(
        service,
        kafka,
        [source],
        slow(0),
        # A long commit interval: when the second instance joins, a transaction is open and the revoke commits it.
        fast(instance=0, session_timeout_ms=6000, max_batch_size=50, commit_interval_ms=3000),
        producer_factory=RebalanceAbortProducer,
    )
    original_revoke = first._on_revoke

    def revoke(consumer: Any, partitions: Any) -> None:
        RebalanceAbortProducer.in_rebalance.set()
        try:
            original_revoke(consumer, partitions)
        finally:
            RebalanceAbortProducer.in_rebalance.clear()

    first._on_revoke = revoke  # type: ignore[method-assign]
    with running(first) as first_thread:
        wait_for(lambda: seen[0] >= total // 10, "first instance progress")
        second = Runtime(
            service, kafka, [source], slow(1), fast(instance=1, session_timeout_ms=6000, max_batch_size=50)
        )
        with running(second):
            outputs = read(kafka, out, total, timeout=180)
            assert first_thread.is_alive(), "the abort during the rebalance ended the first instance"
    assert RebalanceAbortProducer.injected == [1]
    values = [m.value() for m in outputs]
    assert len(values) == total == len(set(values))
    aborts = REGISTRY.get_sample_value("runtime_transactions_total", {"service": service, "result": "abort"})
    assert aborts is not None and aborts >= 1
