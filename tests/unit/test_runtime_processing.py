"""Batching, handler calls (plain, coroutine, Future), per-record results and the bisection budget: no broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from shared.errors import DependencyUnavailable, PermanentError
from shared.runtime.batching import PartitionBuffers
from shared.runtime.processing import HandlerCaller, InFlight, Processor, regroup
from shared.runtime.records import InputRecord, Output, PartitionBatch
from shared.runtime.routing import Failure


class FakeMessage:
    """What the buffers read of a librdkafka message."""

    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


def record(offset: int, partition: int = 0, value: bytes = b"v") -> InputRecord:
    return InputRecord("in", partition, offset, b"k", value, [], 0, value)


def inflight(caller: HandlerCaller, records: list[InputRecord]) -> InFlight:
    batches = regroup(records)
    return InFlight(0, [], [], {}, batches, caller.call(batches))


def processor(handler: Any, **overrides: Any) -> tuple[HandlerCaller, Processor]:
    caller = HandlerCaller(handler, "test")
    settings = {"handler_timeout_s": 5.0, "bisect_max_calls": 64, "bisect_max_seconds": 5.0, **overrides}
    return caller, Processor(caller, **settings)


def outputs_for(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
    return [[Output("out", r.value, r.key)] for b in batches for r in b.records]


# ---------------------------------------------------------------- batching


def test_a_batch_closes_on_size() -> None:
    buffers = PartitionBuffers(max_batch_size=3, max_wait_ms=60_000)
    for offset in range(3):
        buffers.add(("t", 0), FakeMessage(offset))  # type: ignore[arg-type]
    assert buffers.ready()
    assert buffers.seconds_to_ready(time.monotonic()) == 0.0


def test_a_batch_closes_on_the_oldest_records_wait() -> None:
    buffers = PartitionBuffers(max_batch_size=100, max_wait_ms=50)
    buffers.add(("t", 0), FakeMessage(0))  # type: ignore[arg-type]
    now = time.monotonic()
    assert not buffers.ready(now)
    assert 0 < (buffers.seconds_to_ready(now) or 0) <= 0.05
    assert buffers.ready(now + 0.06)


def test_take_serves_partitions_round_robin_and_keeps_offset_order() -> None:
    buffers = PartitionBuffers(max_batch_size=4, max_wait_ms=0)
    for offset in range(3):
        buffers.add(("t", 0), FakeMessage(offset))  # type: ignore[arg-type]
        buffers.add(("t", 1), FakeMessage(10 + offset))  # type: ignore[arg-type]
    first = buffers.take()
    assert [(tp, [m.offset() for m in msgs]) for tp, msgs in first] == [(("t", 0), [0, 1, 2]), (("t", 1), [10])]
    second = buffers.take()
    assert [(tp, [m.offset() for m in msgs]) for tp, msgs in second] == [(("t", 1), [11, 12])]
    assert buffers.count == 0 and buffers.seconds_to_ready(time.monotonic()) is None


def test_drop_forgets_a_revoked_partition_only() -> None:
    buffers = PartitionBuffers(max_batch_size=10, max_wait_ms=0)
    buffers.add(("t", 0), FakeMessage(0))  # type: ignore[arg-type]
    buffers.add(("t", 1), FakeMessage(0))  # type: ignore[arg-type]
    buffers.drop({("t", 0)})
    assert buffers.count == 1 and buffers.queues[("t", 1)][0].offset() == 0 and ("t", 0) not in buffers.queues


# ---------------------------------------------------------------- handler calls


def test_a_plain_handler_answers_a_finished_future() -> None:
    caller = HandlerCaller(outputs_for, "t")
    future = caller.call([PartitionBatch("in", 0, [record(1)])])
    assert future.done() and future.result()[0][0].value == b"v"


def test_a_coroutine_handler_runs_on_the_runtimes_own_loop() -> None:
    seen: list[bool] = []

    async def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        await asyncio.sleep(0.01)
        seen.append(asyncio.get_running_loop() is caller.loop)
        return outputs_for(batches)

    caller = HandlerCaller(handle, "t")
    try:
        result = caller.call([PartitionBatch("in", 0, [record(1)])]).result(5)
    finally:
        caller.close()
    assert seen == [True] and len(result) == 1


def test_a_future_returning_handler_is_passed_through() -> None:
    pool = ThreadPoolExecutor(1)

    def handle(batches: Sequence[PartitionBatch]) -> Future[list[list[Output]]]:
        return pool.submit(outputs_for, batches)

    future = HandlerCaller(handle, "t").call([PartitionBatch("in", 0, [record(1)])])
    assert len(future.result(5)) == 1
    pool.shutdown()


# ---------------------------------------------------------------- results and bisection


def test_per_record_failures_cost_no_bisection() -> None:
    calls: list[int] = []

    def handle(batches: Sequence[PartitionBatch]) -> list[Any]:
        calls.append(sum(len(b.records) for b in batches))
        return [
            PermanentError("bad") if r.offset == 3 else [Output("out", r.value)] for b in batches for r in b.records
        ]

    caller, proc = processor(handle)
    settled = proc.settle(inflight(caller, [record(i) for i in range(8)]))
    assert calls == [8]
    assert isinstance(settled.results[(("in", 0), 3)], Failure)
    assert sum(isinstance(r, list) for r in settled.results.values()) == 7


def test_a_raising_handler_is_bisected_to_isolate_the_bad_records() -> None:
    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        bad = [r.offset for b in batches for r in b.records if r.offset in (5, 20)]
        if bad:
            raise PermanentError(f"record {bad[0]} is bad")
        return outputs_for(batches)

    caller, proc = processor(handle)
    settled = proc.settle(inflight(caller, [record(i) for i in range(32)]))
    failed = sorted(k[1] for k, r in settled.results.items() if isinstance(r, Failure))
    assert failed == [5, 20]
    assert len(settled.results) == 32


def test_a_batch_wide_failure_stops_after_both_halves_fail_the_same_way() -> None:
    calls: list[int] = []

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        calls.append(sum(len(b.records) for b in batches))
        raise RuntimeError("CUDA error: device-side assert triggered")

    caller, proc = processor(handle)
    settled = proc.settle(inflight(caller, [record(i) for i in range(64)]))
    assert calls == [64, 32, 32]
    assert settled.calls == 3
    assert all(isinstance(r, Failure) and r.type_name == "RuntimeError" for r in settled.results.values())


def test_the_bisection_budget_caps_the_calls() -> None:
    calls: list[int] = []

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        records = [r for b in batches for r in b.records]
        calls.append(len(records))
        raise PermanentError(f"bad among {records[0].offset}..{records[-1].offset}")  # a new message each time

    caller, proc = processor(handle, bisect_max_calls=6)
    settled = proc.settle(inflight(caller, [record(i) for i in range(64)]))
    assert len(calls) <= 1 + 6
    assert len(settled.results) == 64 and all(isinstance(r, Failure) for r in settled.results.values())


def test_a_dependency_outage_during_the_call_is_an_outage_not_failures() -> None:
    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        raise DependencyUnavailable("redis down")

    caller, proc = processor(handle)
    settled = proc.settle(inflight(caller, [record(i) for i in range(4)]))
    assert isinstance(settled.outage, DependencyUnavailable)


def test_a_handler_that_never_answers_times_out_as_a_retryable_timeout() -> None:
    never: Future[list[list[Output]]] = Future()
    caller, proc = processor(lambda batches: never, handler_timeout_s=0.05, bisect_max_calls=2)
    settled = proc.settle(inflight(caller, [record(0)]))
    result = settled.results[(("in", 0), 0)]
    assert isinstance(result, Failure) and result.category == "timeout" and result.retryable


def test_a_wrong_number_of_results_fails_the_call() -> None:
    caller, proc = processor(lambda batches: [], bisect_max_calls=2)
    settled = proc.settle(inflight(caller, [record(0)]))
    result = settled.results[(("in", 0), 0)]
    assert isinstance(result, Failure) and "0 results for 1 records" in str(result.error)


@pytest.mark.parametrize("n", [1, 2, 7])
def test_regroup_of_one_partition_is_one_batch(n: int) -> None:
    assert [len(b.records) for b in regroup([record(i) for i in range(n)])] == [n]


def test_a_result_that_is_neither_outputs_nor_an_exception_fails_that_record_only() -> None:
    def handle(batches: Sequence[PartitionBatch]) -> list[Any]:
        return [None if r.offset == 1 else [Output("out", r.value)] for b in batches for r in b.records]

    caller, proc = processor(handle)
    settled = proc.settle(inflight(caller, [record(i) for i in range(3)]))
    bad = settled.results[(("in", 0), 1)]
    assert isinstance(bad, Failure) and "not a list of Output" in str(bad.error)
    assert isinstance(settled.results[(("in", 0), 0)], list)


def test_an_answer_that_is_not_a_list_fails_the_call() -> None:
    caller, proc = processor(lambda batches: None, bisect_max_calls=2)
    settled = proc.settle(inflight(caller, [record(0)]))
    result = settled.results[(("in", 0), 0)]
    assert isinstance(result, Failure) and isinstance(result.error, TypeError)
