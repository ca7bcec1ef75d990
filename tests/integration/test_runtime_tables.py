"""Tables in the runtime against a real broker: state per partition, its changelog written in the batch's
transaction, restored on assignment, rolled back with an aborted transaction or a failed call, and a source table
fed by a compacted input topic."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer

from shared.kafka import KafkaConnection, bootstrap_topics
from shared.runtime import Output, PartitionBatch, RecordResult, Runtime
from shared.runtime.state import changelog_topic
from shared.runtime.stateful import SourceTable
from shared.topics import TopicSpec, dlq_topic
from tests.integration.runtime_support import headers, produce, read, running
from tests.support.kafka import wait_consumed
from tests.support.tables import (
    COUNTS,
    PARTITIONS,
    PLANS,
    counting,
    names,
    outputs,
    settings,
    tables_topics,
    wait_ready,
)


def test_counts_are_exact_per_key_and_survive_a_restart_through_the_changelog(
    kafka: KafkaConnection, tmp_path: Path
) -> None:
    service, source, out = names("count")
    tables_topics(kafka, service, source, out, "counts")
    keys = [f"k{i}".encode() for i in range(12)]
    produce(kafka, source, [(k, b"x") for _ in range(5) for k in keys])
    with running(Runtime(service, kafka, [source], counting(out), settings(tmp_path), tables=[COUNTS])):
        first = outputs(kafka, out, 60)
    assert {k: sorted(v) for k, v in first.items()} == {k.decode(): [1, 2, 3, 4, 5] for k in keys}
    log = read(kafka, changelog_topic(service, "counts"), 12, until=lambda ms: len({m.key() for m in ms}) == 12)
    latest = {m.key(): m.value() for m in log}
    assert latest == {k: b"5" for k in keys}
    # Each changelog record sits in its input partition: the key's partition in the input topic.
    by_key_partition = {m.key(): m.partition() for m in read(kafka, source, 60)}
    assert all(m.partition() == by_key_partition[m.key()] for m in log)
    # A new process (fresh stores) restores from the changelog and counts on.
    produce(kafka, source, [(k, b"x") for k in keys])
    runtime = Runtime(service, kafka, [source], counting(out), settings(tmp_path / "again"), tables=[COUNTS])
    with running(runtime):
        after = outputs(kafka, out, 72)
    assert {k: sorted(v) for k, v in after.items()} == {k.decode(): [1, 2, 3, 4, 5, 6] for k in keys}


def test_a_failed_calls_writes_are_dropped_and_the_rest_of_the_batch_kept(
    kafka: KafkaConnection, tmp_path: Path
) -> None:
    service, source, out = names("poison")
    tables_topics(kafka, service, source, out, "counts")
    produce(kafka, source, [(b"a", b"x"), (b"a", b"poison"), (b"a", b"x"), (b"a", b"x")], partition=0)
    with running(Runtime(service, kafka, [source], counting(out), settings(tmp_path), tables=[COUNTS])):
        found = outputs(kafka, out, 3)
        [dead] = read(kafka, dlq_topic(service), 1)
    # The poison record was bisected out: its write never counted, so the others count 1, 2, 3.
    assert found == {"a": [1, 2, 3]}
    assert headers(dead)["dlq.error.category"] == b"validation"


class FailingOnce(Producer):
    """Fails the first commit of a transaction that holds changelog records: the runtime must abort it and
    throw away the batch's state."""

    armed = threading.Event()

    def commit_transaction(self, *args: Any) -> None:
        if FailingOnce.armed.is_set():
            FailingOnce.armed.clear()
            raise KafkaException(_abortable())
        super().commit_transaction(*args)


def _abortable() -> Any:
    from confluent_kafka import KafkaError

    return KafkaError(KafkaError._STATE, "injected: the transaction must be aborted", txn_requires_abort=True)


def test_an_aborted_transaction_throws_its_state_away_and_the_batch_counts_once(
    kafka: KafkaConnection, tmp_path: Path
) -> None:
    service, source, out = names("abort")
    tables_topics(kafka, service, source, out, "counts")
    produce(kafka, source, [(b"a", b"x")] * 10, partition=0)
    FailingOnce.armed.set()
    runtime = Runtime(
        service, kafka, [source], counting(out), settings(tmp_path), producer_factory=FailingOnce, tables=[COUNTS]
    )
    with running(runtime):
        found = outputs(kafka, out, 10)
    assert not FailingOnce.armed.is_set()  # the injected failure happened
    assert sorted(found["a"]) == list(range(1, 11))


def test_a_source_table_follows_its_topic_and_is_restored_up_to_the_committed_offset(
    kafka: KafkaConnection, tmp_path: Path
) -> None:
    service, source, out = names("source")
    profiles = f"profiles-{uuid.uuid4().hex[:8]}"
    tables_topics(kafka, service, source, out)
    bootstrap_topics(kafka, [TopicSpec(profiles, PARTITIONS, "k", None, compacted=True)])
    plans = SourceTable(PLANS, profiles, lambda key, value, partition, offset: value)

    def join(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        return [
            [Output(out, b"%s:%s" % (r.key or b"", b.table(PLANS).get(r.key or b"") or b"-"), r.key)]
            for b in batches
            for r in b.records
        ]

    produce(kafka, profiles, [(b"a", b"gold"), (b"b", b"free")], partition=1)
    runtime = Runtime(service, kafka, [source, profiles], join, settings(tmp_path), sources=[plans])
    with running(runtime):
        wait_ready(runtime)
        produce(kafka, profiles, [(b"b", None)], partition=1)  # a tombstone deletes
        wait_consumed(kafka, service, [profiles])
        produce(kafka, source, [(b"a", b"x"), (b"b", b"x")], partition=1)
        found = sorted((m.value() or b"").decode() for m in read(kafka, out, 2))
    assert found == ["a:gold", "b:-"]
    # A new process restores the table from the topic, up to the group's committed offset.
    runtime = Runtime(service, kafka, [source, profiles], join, settings(tmp_path / "again"), sources=[plans])
    with running(runtime):
        produce(kafka, source, [(b"a", b"y")], partition=1)
        found = sorted((m.value() or b"").decode() for m in read(kafka, out, 3))
    assert found == ["a:gold", "a:gold", "b:-"]
