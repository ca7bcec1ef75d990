"""The processing runtime against a real broker: poison isolation, undecodable bytes, retries, outages."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from confluent_kafka import KafkaError, KafkaException, Producer
from prometheus_client import REGISTRY

from shared.errors import DependencyUnavailable, PermanentError, RetryableError
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.runtime import Output, PartitionBatch, Runtime, RuntimeSettings
from shared.serde import AvroSerde
from shared.settings import PipelineSettings
from shared.topics import TopicSpec
from tests.integration.runtime_support import headers, make_topics, produce, read, running
from tests.support.factories import make_event_received

DLQ_HEADERS = {
    "dlq.original.topic",
    "dlq.original.partition",
    "dlq.original.offset",
    "dlq.original.timestamp",
    "dlq.service",
    "dlq.error.category",
    "dlq.error.type",
    "dlq.error.message",
    "dlq.stacktrace",
    "dlq.attempts",
    "dlq.failed.at",
}


def fast(**overrides: object) -> RuntimeSettings:
    base: dict[str, object] = {"retry_delays_ms": [300, 600, 900], "commit_interval_ms": 100, "max_wait_ms": 20}
    base.update(overrides)
    return RuntimeSettings.model_validate(base)


def tagger(out: str) -> Callable[[Sequence[PartitionBatch]], list[list[Output]]]:
    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        return [[Output(out, b"tagged:" + (r.value or b""), r.key)] for b in batches for r in b.records]

    return handle


def test_poison_records_in_a_batch_of_64_are_isolated_and_dead_lettered(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 1, out: 1})
    poison = {b"5", b"20", b"50"}
    produce(kafka, source, [(b"k", str(i).encode()) for i in range(64)])
    calls: list[int] = []

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        calls.append(sum(len(b.records) for b in batches))
        bad = [r for b in batches for r in b.records if r.value in poison]
        if bad:
            raise PermanentError(f"cannot handle {bad[0].value!r}", category="validation")
        return tagger(out)(batches)

    runtime = Runtime(service, kafka, [source], handle, fast(max_batch_size=64, max_wait_ms=3000))
    with running(runtime):
        outputs = read(kafka, out, 61)
        dead = read(kafka, f"{service}.dlq", 3)
        produce(kafka, source, [(b"k", b"after")])
        after = read(kafka, out, 62)
    assert calls[0] == 64
    assert [m.value() for m in outputs] == [b"tagged:%d" % i for i in range(64) if str(i).encode() not in poison]
    assert after[-1].value() == b"tagged:after"
    assert sorted(int(headers(m)["dlq.original.offset"]) for m in dead) == [5, 20, 50]
    for msg in dead:
        h = headers(msg)
        assert set(h) >= DLQ_HEADERS
        assert h["dlq.error.category"] == b"validation"
        assert h["dlq.error.type"] == b"PermanentError"
        assert h["dlq.original.topic"] == source.encode()
        assert h["dlq.attempts"] == b"1"
        assert msg.value() == h["dlq.original.offset"]  # original bytes, unchanged
    assert read(kafka, f"{service}.retry.1", 0, timeout=1) == []
    sample = REGISTRY.get_sample_value
    assert sample("runtime_records_in_total", {"service": service, "topic": source}) == 65
    assert sample("runtime_records_out_total", {"service": service, "topic": out}) == 62
    labels = {"service": service, "topic": source, "category": "validation"}
    assert sample("runtime_records_dead_lettered_total", labels) == 3
    assert (sample("runtime_transactions_total", {"service": service, "result": "commit"}) or 0) >= 1


def test_undecodable_bytes_go_to_the_dlq_without_retry(
    kafka: KafkaConnection, registry_url: str, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 1, out: 1})
    serde = AvroSerde.connect(registry_url, PipelineSettings().schemas_dir)
    good = serde.encode(source, make_event_received(), schema_name="EventReceived")
    produce(
        kafka,
        source,
        [
            (b"a", b"\xde\xad garbage"),
            (b"b", b"\x05" + good[1:]),
            (b"c", struct.pack(">bI", 0, 777777) + good[5:]),
            (b"d", good),
        ],
    )

    def decode(topic: str, value: bytes | None, partition: int, offset: int) -> object:
        return serde.decode(topic, value, partition, offset, schema_name="EventReceived")

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        return [[Output(out, r.payload["event_id"].encode(), r.key)] for b in batches for r in b.records]

    with running(Runtime(service, kafka, [source], handle, fast(), decode=decode)):
        outputs = read(kafka, out, 1)
        dead = read(kafka, f"{service}.dlq", 3)
    assert [m.key() for m in outputs] == [b"d"]
    assert [m.key() for m in dead] == [b"a", b"b", b"c"]
    messages = [headers(m)["dlq.error.message"].decode() for m in dead]
    assert "unknown magic byte" in messages[0] and "unknown magic byte 5" in messages[1]
    assert "unknown schema id 777777" in messages[2]
    assert all(headers(m)["dlq.error.category"] == b"deserialization" for m in dead)
    assert all(headers(m)["dlq.attempts"] == b"1" for m in dead)
    assert read(kafka, f"{service}.retry.1", 0, timeout=1) == []


def test_retryable_failure_goes_through_two_retry_levels_without_blocking_the_main_topic(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 1, out: 1})
    settings = fast(retry_delays_ms=[700, 1400, 5000])
    first_seen: dict[str, float] = {}  # topic -> when "flaky" first reached the handler from it

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        for record in (r for b in batches for r in b.records if r.value == b"flaky"):
            first_seen.setdefault(record.topic, time.time())
            if record.topic != f"{service}.retry.2":  # fails from the main topic and from retry.1
                raise RetryableError("downstream said try later", category="timeout")
        return tagger(out)(batches)

    with running(Runtime(service, kafka, [source], handle, settings)):
        produce(kafka, source, [(b"k1", b"flaky")])
        time.sleep(0.2)  # lets "flaky" be consumed first; the assertion below does not depend on it
        produce(kafka, source, [(b"k2", b"behind")])
        outputs = read(kafka, out, 2, timeout=60)
        first_retry = read(kafka, f"{service}.retry.1", 1)
        second_retry = read(kafka, f"{service}.retry.2", 1)
    assert [m.value() for m in outputs] == [b"tagged:behind", b"tagged:flaky"]
    assert list(first_seen) == [source, f"{service}.retry.1", f"{service}.retry.2"]
    assert first_seen[f"{service}.retry.1"] - first_seen[source] >= 0.7
    assert first_seen[f"{service}.retry.2"] - first_seen[f"{service}.retry.1"] >= 1.4
    for level, msg in ((1, first_retry[0]), (2, second_retry[0])):
        h = headers(msg)
        assert h["retry.attempt"] == str(level).encode()
        assert h["retry.original.topic"] == source.encode()
        assert h["retry.original.offset"] == b"0"
        assert h["retry.error.type"] == b"RetryableError"
    assert read(kafka, f"{service}.dlq", 0, timeout=1) == []


def test_a_dependency_outage_pauses_instead_of_dead_lettering(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 1, out: 1})
    produce(kafka, source, [(b"k", str(i).encode()) for i in range(20)])
    outage_calls: list[float] = []

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        if len(outage_calls) < 3:
            outage_calls.append(time.monotonic())
            raise DependencyUnavailable("registry answered 503")
        return tagger(out)(batches)

    with running(Runtime(service, kafka, [source], handle, fast(dependency_backoff_ms=200))):
        outputs = read(kafka, out, 20)
    assert [m.value() for m in outputs] == [b"tagged:%d" % i for i in range(20)]
    assert outage_calls[2] - outage_calls[1] >= 0.35  # backoff doubled: 200 ms, then 400 ms
    assert read(kafka, f"{service}.dlq", 0, timeout=1) == []
    assert read(kafka, f"{service}.retry.1", 0, timeout=1) == []


def test_unexpected_exceptions_retry_then_dead_letter_as_internal(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 1, out: 1})
    produce(kafka, source, [(b"k", b"boom")])

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        raise ZeroDivisionError("model exploded")

    with running(Runtime(service, kafka, [source], handle, fast(retry_delays_ms=[50, 50, 50]))):
        dead = read(kafka, f"{service}.dlq", 1, timeout=60)
    h = headers(dead[0])
    assert (h["dlq.error.category"], h["dlq.error.type"], h["dlq.attempts"]) == (
        b"internal",
        b"ZeroDivisionError",
        b"4",
    )
    assert h["dlq.original.topic"] == source.encode() and b"ZeroDivisionError" in h["dlq.stacktrace"]
    assert not any(k.startswith("retry.") for k in h)


def test_at_least_once_mode_and_replay_topic(kafka: KafkaConnection, unique: Callable[[str], str]) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 2, out: 1})
    produce(kafka, source, [(f"k{i}".encode(), str(i).encode()) for i in range(30)])
    produce(kafka, f"{service}.replay", [(b"r", b"replayed")])
    with running(Runtime(service, kafka, [source], tagger(out), fast(exactly_once=False))):
        outputs = read(kafka, out, 31)
    expected = [b"tagged:%d" % i for i in range(30)] + [b"tagged:replayed"]
    assert sorted(m.value() or b"" for m in outputs) == sorted(expected)


def test_an_output_to_a_topic_that_does_not_exist_yet_pauses_and_is_delivered_once_it_does(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out, late = unique("svc"), unique("in"), unique("out"), unique("late")
    make_topics(kafka, service, {source: 1, out: 1})
    produce(kafka, source, [(b"k", b"to-late"), (b"k", b"behind")])

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        return [[Output(late if r.value == b"to-late" else out, r.value, r.key)] for b in batches for r in b.records]

    pauses = {"service": service, "topic": late}
    with running(Runtime(service, kafka, [source], handle, fast(missing_topic_backoff_ms=200))):
        deadline = time.monotonic() + 60
        while (REGISTRY.get_sample_value("runtime_missing_topic_pauses_total", pauses) or 0) < 2:
            assert time.monotonic() < deadline, "the runtime never paused for the missing topic"
            time.sleep(0.05)
        # A deploy-order race: the topic appears a moment later. Nothing behind the record overtook it.
        assert read(kafka, out, 0, timeout=1) == []
        bootstrap_topics(kafka, [TopicSpec(late, 1, "k", None)])
        delivered = read(kafka, late, 1)
        behind = read(kafka, out, 1)
    assert delivered[0].value() == b"to-late" and behind[0].value() == b"behind"
    assert read(kafka, f"{service}.dlq", 0, timeout=1) == []
    assert read(kafka, f"{service}.retry.1", 0, timeout=1) == []


def test_a_rebalance_between_two_instances_keeps_exactly_once(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 6, out: 6})
    total = 3000
    produce(kafka, source, [(f"k{i % 30}".encode(), str(i).encode()) for i in range(total)])
    seen_by: dict[int, int] = {0: 0, 1: 0}

    def handler_for(instance: int) -> Callable[[Sequence[PartitionBatch]], list[list[Output]]]:
        def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
            n = sum(len(b.records) for b in batches)
            seen_by[instance] += n
            time.sleep(0.003 * n)
            return tagger(out)(batches)

        return handle

    def settings(instance: int) -> RuntimeSettings:
        return fast(instance=instance, session_timeout_ms=6000, max_batch_size=50)

    with running(Runtime(service, kafka, [source], handler_for(0), settings(0))):
        while seen_by[0] < total // 5:
            time.sleep(0.05)
        with running(Runtime(service, kafka, [source], handler_for(1), settings(1))):
            outputs = read(kafka, out, total, timeout=180)
    values = [m.value() for m in outputs]
    assert len(values) == total == len(set(values))
    assert seen_by[1] > 0, "the second instance never got partitions"


class FlakyCommitProducer(Producer):
    """Test-side producer whose first commits fail the ways librdkafka can fail (the broker stays real)."""

    script: ClassVar[list[str]] = []

    def commit_transaction(self, *args: Any) -> None:
        if self.script:
            kind = self.script.pop(0)
            if kind == "abortable":
                raise KafkaException(KafkaError(KafkaError._STATE, "injected", txn_requires_abort=True))
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected", retriable=True))
        super().commit_transaction(*args)


def test_abortable_and_retriable_commit_errors_keep_exactly_once(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 3, out: 3})
    produce(kafka, source, [(f"k{i % 9}".encode(), str(i).encode()) for i in range(300)])
    FlakyCommitProducer.script = ["retriable", "abortable", "retriable", "abortable"]
    runtime = Runtime(
        service, kafka, [source], tagger(out), fast(max_batch_size=50), producer_factory=FlakyCommitProducer
    )
    with running(runtime):
        outputs = read(kafka, out, 300)
        uncommitted = read(kafka, out, 300, isolation="read_uncommitted")
    assert FlakyCommitProducer.script == []
    values = [m.value() for m in outputs]
    assert len(values) == 300 == len(set(values))
    assert len(uncommitted) > 300  # the aborted transactions' records are in the log, and invisible above
    aborts = REGISTRY.get_sample_value("runtime_transactions_total", {"service": service, "result": "abort"})
    assert aborts == 2


def test_backpressure_pauses_partitions_and_loses_nothing(kafka: KafkaConnection, unique: Callable[[str], str]) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 3, out: 3})
    produce(kafka, source, [(f"k{i % 7}".encode(), str(i).encode()) for i in range(600)])
    settings = fast(max_batch_size=40, max_inflight_outputs=4, max_wait_ms=5)
    with running(Runtime(service, kafka, [source], tagger(out), settings)):
        outputs = read(kafka, out, 600)
    assert sorted(m.value() or b"" for m in outputs) == sorted(b"tagged:%d" % i for i in range(600))
    assert (REGISTRY.get_sample_value("runtime_backpressure_pauses_total", {"service": service}) or 0) > 0


def test_oversized_output_and_oversized_dead_letter_never_wedge_the_partition(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 1, out: 1})
    near_limit = b"x" * 999_000  # fits as input; plus dlq.* headers it no longer fits the DLQ
    produce(kafka, source, [(b"big-out", b"small"), (b"big-dead", near_limit), (b"ok", b"fine")])

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        if any(r.key == b"big-dead" for b in batches for r in b.records):
            raise PermanentError("cannot classify", category="model")
        return [
            [Output(out, b"y" * 1_200_000 if r.key == b"big-out" else r.value, r.key)]
            for b in batches
            for r in b.records
        ]

    with running(Runtime(service, kafka, [source], handle, fast())):
        outputs = read(kafka, out, 1)
        dead = read(kafka, f"{service}.dlq", 2)
    assert [(m.key(), m.value()) for m in outputs] == [(b"ok", b"fine")]
    by_key = {m.key(): m for m in dead}
    assert headers(by_key[b"big-out"])["dlq.error.type"] == b"OutputRejected"
    assert by_key[b"big-out"].value() == b"small"
    truncated = headers(by_key[b"big-dead"])
    assert truncated["dlq.truncated"] == b"true" and truncated["dlq.original.size"] == b"999000"
    assert 0 < len(by_key[b"big-dead"].value() or b"") < 999_000


def test_a_non_bytes_output_is_dead_lettered_instead_of_crashing(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 1, out: 1})
    produce(kafka, source, [(b"a", b"text"), (b"b", b"fine")])

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        return [
            [Output(out, "not bytes" if r.key == b"a" else r.value, r.key)]  # type: ignore[arg-type]
            for b in batches
            for r in b.records
        ]

    with running(Runtime(service, kafka, [source], handle, fast())):
        outputs = read(kafka, out, 1)
        dead = read(kafka, f"{service}.dlq", 1)
    assert [m.key() for m in outputs] == [b"b"]
    assert dead[0].key() == b"a" and headers(dead[0])["dlq.error.type"] == b"OutputRejected"


def test_an_output_over_its_topics_own_size_limit_is_dead_lettered(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    service, source, small = unique("svc"), unique("in"), unique("small")
    make_topics(kafka, service, {source: 1})
    bootstrap_topics(kafka, [TopicSpec(small, 1, "k", None, extra_config={"max.message.bytes": "600000"})])
    produce(kafka, source, [(b"big", b"x"), (b"ok", b"y")])

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        return [[Output(small, b"z" * (700_000 if r.key == b"big" else 10), r.key)] for b in batches for r in b.records]

    with running(Runtime(service, kafka, [source], handle, fast())):
        outputs = read(kafka, small, 1)
        dead = read(kafka, f"{service}.dlq", 1)
    assert [m.key() for m in outputs] == [b"ok"]
    assert dead[0].key() == b"big" and b"over its 600000" in headers(dead[0])["dlq.error.message"]
