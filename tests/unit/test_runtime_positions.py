"""Partition positions without a broker: rewinds, put-backs, seeks and forgetting, against a fake consumer."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from shared.errors import RuntimeFatal
from shared.runtime.batching import PartitionBuffers
from shared.runtime.flow import RETRY, FlowControl
from shared.runtime.positions import PartitionPositions
from shared.runtime.records import TP
from shared.runtime.settings import RuntimeSettings


class FakeConsumer:
    """Records seeks, pauses and resumes; ``refuse`` lists the errors the next seeks raise, in order."""

    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []
        self.refuse: list[KafkaError] = []
        self.resumed: list[TP] = []

    def seek(self, tp: TopicPartition) -> None:
        if self.refuse:
            raise KafkaException(self.refuse.pop(0))
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def pause(self, partitions: list[TopicPartition]) -> None:
        pass

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.resumed += [(tp.topic, tp.partition) for tp in partitions]


class FakeMessage:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


def positions(*assigned: TP) -> tuple[PartitionPositions, FakeConsumer]:
    buffers = PartitionBuffers(max_batch_size=100, max_wait_ms=1000)
    flow = FlowControl("unit", RuntimeSettings())
    consumer = FakeConsumer()
    flow.attach(consumer)  # type: ignore[arg-type]
    tracked = PartitionPositions("unit", buffers, flow)
    tracked.attach(consumer)  # type: ignore[arg-type]
    tracked.assign(assigned)
    return tracked, consumer


def fetched(tracked: PartitionPositions, tp: TP, first: int, next_offset: int) -> None:
    tracked.first_fetched[tp] = first
    tracked.next_offset[tp] = next_offset


def buffer(tracked: PartitionPositions, tp: TP, offset: int) -> None:
    tracked.buffers.add(tp, FakeMessage(offset))  # type: ignore[arg-type]


A, B, C = ("in", 0), ("in", 1), ("in", 2)


def test_an_assigned_partition_is_tracked_afresh() -> None:
    tracked, _ = positions(A)
    fetched(tracked, A, 10, 15)
    tracked.assign([A])
    assert A in tracked.assigned and A not in tracked.first_fetched and A not in tracked.next_offset


def test_a_rewind_seeks_to_the_committed_offset_else_the_first_fetched() -> None:
    tracked, consumer = positions(A, B)
    fetched(tracked, A, 10, 20)
    fetched(tracked, B, 5, 9)
    buffer(tracked, A, 20)
    tracked.rewind({A: 17})
    assert sorted(consumer.seeks) == [("in", 0, 17), ("in", 1, 5)]
    assert tracked.next_offset == {A: 17, B: 5}
    assert tracked.buffers.count == 0


def test_a_rewind_of_some_partitions_leaves_the_others_and_their_buffers() -> None:
    tracked, consumer = positions(A, B)
    fetched(tracked, A, 10, 20)
    fetched(tracked, B, 5, 9)
    buffer(tracked, B, 9)
    tracked.rewind({}, only={A})
    assert consumer.seeks == [("in", 0, 10)]
    assert tracked.next_offset[B] == 9 and tracked.buffers.count == 1


def test_a_rewind_releases_held_retry_records() -> None:
    tracked, consumer = positions(A)
    tracked.flow.hold(A, 60, RETRY)
    tracked.rewind({})
    assert consumer.resumed == [A] and A not in tracked.flow.paused


def test_a_partition_no_longer_assigned_is_not_rewound() -> None:
    tracked, consumer = positions(A)
    fetched(tracked, B, 3, 4)
    tracked.rewind({})
    assert consumer.seeks == []


def test_put_back_goes_to_the_first_record_not_finalized_and_targets_win() -> None:
    tracked, consumer = positions(A, B, C)
    fetched(tracked, A, 0, 12)  # finalized up to 12: the discarded batch from 12 on is read again
    buffer(tracked, A, 30)
    tracked.put_back([{A: 15, B: 40}, {A: 20}], {C: 7})
    assert sorted(consumer.seeks) == [("in", 0, 12), ("in", 1, 40), ("in", 2, 7)]
    assert tracked.next_offset == {A: 12, B: 40, C: 7}
    assert tracked.buffers.count == 0


def test_put_back_skips_partitions_no_longer_assigned() -> None:
    tracked, consumer = positions(A)
    tracked.put_back([], {A: 3, B: 4})
    assert consumer.seeks == [("in", 0, 3)]


def test_an_outage_goes_back_to_the_first_record_not_finalized_else_the_batch_start() -> None:
    tracked, _ = positions(A, B)
    fetched(tracked, A, 0, 12)
    fetched(tracked, C, 0, 99)  # not assigned any more
    assert tracked.outage_targets({A: 20, B: 5}) == {A: 12, B: 5}


def test_a_partition_not_fetching_yet_is_not_rewound_and_its_positions_are_forgotten() -> None:
    tracked, consumer = positions(A)
    fetched(tracked, A, 4, 8)
    consumer.refuse = [KafkaError(KafkaError._STATE, "not fetching")]
    assert tracked.seek(A, 4) is False
    assert A not in tracked.first_fetched and A not in tracked.next_offset and consumer.seeks == []


def test_a_retriable_seek_error_is_retried() -> None:
    tracked, consumer = positions(A)
    consumer.refuse = [KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True)]
    assert tracked.seek(A, 4) is True
    assert consumer.seeks == [("in", 0, 4)]


def test_a_seek_that_keeps_failing_is_fatal() -> None:
    tracked, consumer = positions(A)
    consumer.refuse = [KafkaError(KafkaError._INVALID_ARG, "bad offset")]
    with pytest.raises(RuntimeFatal):
        tracked.seek(A, 4)


def test_forget_drops_a_revoked_partition_only() -> None:
    tracked, _ = positions(A, B)
    fetched(tracked, A, 1, 2)
    fetched(tracked, B, 3, 4)
    tracked.forget({A})
    assert tracked.assigned == {B} and tracked.first_fetched == {B: 3} and tracked.next_offset == {B: 4}
