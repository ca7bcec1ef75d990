"""Output writing without a broker: the fast path, size and type checks, holds, routing, against a fake producer."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import REGISTRY

from shared.errors import DependencyUnavailable, PermanentError, RetryableError, RuntimeFatal
from shared.kafka import KafkaConnection
from shared.runtime import outputs as outputs_module
from shared.runtime.batching import PartitionBuffers
from shared.runtime.commits import OffsetCommits, TransactionalCommits
from shared.runtime.flow import DEPENDENCY, MISSING_TOPIC, FlowControl
from shared.runtime.outputs import Hold, OutputWriter
from shared.runtime.positions import PartitionPositions
from shared.runtime.processing import SettledRecord
from shared.runtime.records import TP, InputRecord, Output, PartitionBatch, RecordKey
from shared.runtime.routing import Failure, FailureRouter
from shared.runtime.settings import RuntimeSettings
from shared.runtime.strikes import DependencyStrikes

A, B = ("in", 0), ("in", 1)
LIMIT = 100_000


class FakeProducer:
    """Keeps what was produced; ``refuse`` maps a topic to the error its produce raises; ``full`` counts the
    produce calls still to answer BufferError."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self.refuse: dict[str, Exception] = {}
        self.full = 0
        self.polls = 0
        self.transactions = 0

    def produce(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None, **kw: Any
    ) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("local queue full")
        if topic in self.refuse:
            raise self.refuse[topic]
        self.records.append((topic, key, value, headers))

    def poll(self, timeout: float = 0) -> int:
        self.polls += 1
        return 0

    def begin_transaction(self) -> None:
        self.transactions += 1

    def topics(self) -> list[str]:
        return [topic for topic, *_ in self.records]


def writer(
    service: str = "unit", exactly_once: bool = True, strikes: int = 3
) -> tuple[OutputWriter, FakeProducer, PartitionPositions]:
    settings = RuntimeSettings(exactly_once=exactly_once)
    positions = PartitionPositions(service, PartitionBuffers(64, 50), FlowControl(service, settings))
    positions.assign([A, B])
    out = OutputWriter(
        service, KafkaConnection(bootstrap_servers="127.0.0.1:1"), settings, positions, DependencyStrikes(strikes)
    )
    out.router = FailureRouter(service, [1000], 1)
    producer = FakeProducer()
    commits_type = TransactionalCommits if exactly_once else OffsetCommits
    out.attach(producer, commits_type(service, producer, None, bool))  # type: ignore[arg-type]
    topics = {"out", f"{service}.retry.1", f"{service}.dlq"}
    out.known_topics = topics
    out.topics_refreshed = time.monotonic()
    out.max_bytes = dict.fromkeys(topics, LIMIT)
    return out, producer, positions


def record(offset: int, partition: int = 0, value: bytes = b"v") -> InputRecord:
    return InputRecord("in", partition, offset, b"k", value, [("ce_id", b"e%d" % offset)], 0, None)


def write(
    out: OutputWriter, results: dict[int, SettledRecord], partition: int = 0
) -> tuple[dict[TP, Hold], list[InputRecord]]:
    recs = [record(offset, partition) for offset in results]
    tp = ("in", partition)
    settled: dict[RecordKey, SettledRecord] = {(tp, offset): result for offset, result in results.items()}
    return out.write([(tp, recs)], settled), recs


def passed(value: bytes = b"o", topic: str = "out") -> list[Output]:
    return [Output(topic, value, b"k")]


def dead_letter_type(producer: FakeProducer, service: str = "unit") -> bytes:
    [(_topic, _key, _value, headers)] = [r for r in producer.records if r[0] == f"{service}.dlq"]
    error_type: bytes = dict(headers)["dlq.error.type"]
    return error_type


# ---------------------------------------------------------------- topics


def test_loading_topics_finds_the_retry_ladder_and_every_existing_retry_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    out, _, _ = writer()
    present = {"unit.dlq", "unit.retry.1", "unit.retry.3", "unit.retry.10", "other.retry.2"}
    monkeypatch.setattr(outputs_module, "topic_names", lambda kafka, timeout_s=10: present)
    monkeypatch.setattr(outputs_module, "topic_max_bytes", lambda kafka, topic, default: 5_000)
    out.max_bytes = {}
    assert out.load_topics() == ["unit.retry.1", "unit.retry.3", "unit.retry.10"]
    assert out.router.delays == [1_000]  # unit.retry.2 is missing: the ladder stops at the first level
    assert out.max_bytes == dict.fromkeys(["unit.dlq", "unit.retry.1", "unit.retry.3", "unit.retry.10"], 5_000)
    assert out.topic_exists("other.retry.2")


def test_loading_topics_without_a_dead_letter_topic_is_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    out, _, _ = writer()
    monkeypatch.setattr(outputs_module, "topic_names", lambda kafka, timeout_s=10: {"unit.retry.1"})
    with pytest.raises(RuntimeFatal, match=r"unit\.dlq does not exist"):
        out.load_topics()


# ---------------------------------------------------------------- the fast path


def test_the_fast_path_takes_bytes_below_a_known_topics_limit_only() -> None:
    out, _, _ = writer()
    assert not out.fits_fast_path([passed()])  # no fast limit for "out" yet: the checked path learns it
    out.fast_limits["out"] = 10
    assert out.fits_fast_path([passed(b"12345"), passed(b"")])
    assert not out.fits_fast_path([passed(b"x" * 20)])
    assert not out.fits_fast_path([[Output("out", "text", None)]])  # type: ignore[arg-type]
    assert not out.fits_fast_path([[Output("elsewhere", b"v", None)]])
    assert not out.fits_fast_path([["not an Output"]])  # type: ignore[list-item]


def test_the_fast_path_writes_every_output_and_advances_each_partition() -> None:
    out, producer, positions = writer()
    batches = [PartitionBatch("in", 0, [record(5), record(6)]), PartitionBatch("in", 1, [record(9, 1)])]
    answers = [passed(b"a"), [Output("out", b"b", None, [("h", b"1")])] * 2, passed(b"c")]
    out.write_clean(batches, answers)
    assert [(topic, value) for topic, _, value, _ in producer.records] == [
        ("out", b"a"),
        ("out", b"b"),
        ("out", b"b"),
        ("out", b"c"),
    ]
    assert producer.records[1][3] == [("h", b"1")]
    assert positions.next_offset == {A: 7, B: 10}
    assert out.commits is not None and out.commits.pending == {A: 7, B: 10}  # type: ignore[union-attr]
    assert producer.transactions == 1


def test_an_output_the_client_refuses_dead_letters_its_record_and_the_rest_go_on() -> None:
    out, producer, positions = writer()
    producer.refuse["bad"] = KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"))
    batches = [PartitionBatch("in", 0, [record(0), record(1)])]
    out.write_clean(batches, [[Output("out", b"kept", None), Output("bad", b"x", None)], passed(b"next")])
    assert producer.topics() == ["out", "unit.dlq", "out"]
    assert dead_letter_type(producer) == b"OutputRejected"
    assert positions.next_offset[A] == 2


def test_a_full_local_queue_is_waited_out() -> None:
    out, producer, _ = writer()
    producer.full = 2
    out.write_clean([PartitionBatch("in", 0, [record(0)])], [passed()])
    assert producer.topics() == ["out"] and producer.polls == 2


# ---------------------------------------------------------------- the checked path


def test_outputs_failures_and_dead_letters_go_out_in_record_order() -> None:
    out, producer, positions = writer()
    holds, _ = write(
        out,
        {0: passed(b"a"), 1: Failure.of(RetryableError("later")), 2: Failure.of(PermanentError("bad")), 3: passed()},
    )
    assert holds == {}
    assert producer.topics() == ["out", "unit.retry.1", "unit.dlq", "out"]
    assert positions.next_offset[A] == 4
    assert out.fast_limits["out"] == min(LIMIT - 64 * 1024, LIMIT // 2)  # learnt for the fast path


def test_an_output_to_a_missing_topic_holds_its_partition_at_that_record() -> None:
    out, producer, positions = writer("unit-missing")
    holds, _ = write(out, {0: passed(b"a"), 1: passed(b"b", topic="later"), 2: passed(b"c")})
    assert holds == {A: Hold(1, MISSING_TOPIC)}
    assert producer.topics() == ["out"]
    assert positions.next_offset[A] == 1
    pauses = {"service": "unit-missing", "topic": "later"}
    assert REGISTRY.get_sample_value("runtime_missing_topic_pauses_total", pauses) == 1


def test_a_dependency_failure_with_strikes_left_holds_then_is_routed() -> None:
    out, producer, _ = writer(strikes=2)
    down = Failure.of(DependencyUnavailable("crm down"))
    holds, _ = write(out, {0: passed(), 1: down})
    assert holds == {A: Hold(1, DEPENDENCY)} and producer.topics() == ["out"]
    holds, _ = write(out, {1: down})
    assert holds == {} and producer.topics() == ["out", "unit.retry.1"]


def test_a_non_bytes_or_non_output_result_is_dead_lettered() -> None:
    out, producer, _ = writer()
    write(out, {0: [Output("out", "text", None)]})  # type: ignore[arg-type]
    assert dead_letter_type(producer) == b"OutputRejected"
    out, producer, _ = writer()
    write(out, {0: ["not an Output"]})  # type: ignore[list-item]
    assert dead_letter_type(producer) == b"OutputRejected"


def test_an_output_over_its_topics_limit_is_dead_lettered() -> None:
    out, producer, _ = writer()
    out.max_bytes["out"] = 2_000
    write(out, {0: [Output("out", b"x" * 1000, None, [("big", b"y" * 1500)])]})
    assert producer.topics() == ["unit.dlq"] and dead_letter_type(producer) == b"OutputRejected"


def test_a_retry_record_too_large_for_its_topic_is_dead_lettered_now() -> None:
    out, producer, _ = writer()
    out.max_bytes["unit.retry.1"] = 600  # below the record framing plus the retry headers
    write(out, {0: Failure.of(RetryableError("later"))})
    assert producer.topics() == ["unit.dlq"]


def test_outputs_carried_by_a_failure_go_out_with_its_retry_record() -> None:
    out, producer, _ = writer()
    write(out, {0: Failure.of(RetryableError("one of two", outputs=[Output("out", b"achieved", None)]))})
    assert producer.topics() == ["unit.retry.1", "out"]


def test_a_partition_no_longer_assigned_is_not_written() -> None:
    out, producer, positions = writer()
    positions.forget({A})
    write(out, {0: passed()})
    assert producer.records == [] and A not in positions.next_offset


def test_at_least_once_a_partition_with_nothing_written_commits_nothing() -> None:
    out, _, _ = writer(exactly_once=False)
    write(out, {0: passed(topic="later")})
    assert isinstance(out.commits, OffsetCommits)
    [segment] = out.commits.segments[A]
    assert segment.end == segment.first == 0


def test_routed_records_are_logged_once_per_destination_and_category(caplog: pytest.LogCaptureFixture) -> None:
    out, _, _ = writer()
    with caplog.at_level(logging.WARNING, logger="shared.runtime.outputs"):
        write(out, {i: Failure.of(PermanentError("bad", category="validation")) for i in range(5)})
    [line] = [r for r in caplog.records if r.getMessage() == "records dead-lettered"]
    assert line.__dict__["count"] == 5 and line.__dict__["event_id"] == "e0" and line.__dict__["to"] == "unit.dlq"
