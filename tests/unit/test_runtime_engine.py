"""Engine logic that needs no broker: completion order, poll timeouts, retry loops, start failures, lag series."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import REGISTRY

from shared.errors import RuntimeFatal
from shared.kafka import KafkaConnection
from shared.runtime import Runtime, RuntimeSettings, metrics
from shared.runtime import outputs as outputs_module
from shared.runtime.commits import retry_call
from shared.runtime.processing import InFlight, SettledBatch


def runtime(**overrides: Any) -> Runtime:
    settings = RuntimeSettings.model_validate({"max_inflight_batches": 4, **overrides})
    return Runtime("unit", KafkaConnection(bootstrap_servers="127.0.0.1:1"), ["in"], lambda b: [], settings)


def pending(rt: Runtime, partition: int) -> tuple[InFlight, Future[Any]]:
    future: Future[Any] = Future()
    inflight = InFlight(rt.epoch, [], [], {}, [], future)
    inflight.taken = []
    rt.inflight.append(inflight)
    return inflight, future


def test_results_are_produced_strictly_in_submit_order() -> None:
    rt = runtime()
    finalized: list[InFlight] = []
    rt._finalize = lambda inflight, settled: finalized.append(inflight)  # type: ignore[method-assign]
    rt.processor.settle = lambda inflight: SettledBatch({})  # type: ignore[method-assign]
    first, first_future = pending(rt, 0)
    second, second_future = pending(rt, 1)
    second_future.set_result([])
    rt._settle_finished()
    assert finalized == []  # the second is done, but the first is not: nothing goes out
    first_future.set_result([])
    rt._settle_finished()
    assert finalized == [first, second]


def test_results_from_before_an_abort_are_never_produced(monkeypatch: pytest.MonkeyPatch) -> None:
    rt = runtime()
    stale, future = pending(rt, 0)
    rt.epoch += 1
    future.set_result([])
    rt.inflight.clear()
    produced: list[Any] = []

    def write(*args: Any) -> dict[Any, Any]:
        produced.append(args)
        return {}

    monkeypatch.setattr(rt.writer, "write", write)
    monkeypatch.setattr(rt.writer, "write_clean", write)
    rt._finalize(stale, SettledBatch({}))
    assert produced == []


def test_the_poll_waits_no_longer_than_the_next_ready_batch_or_resume() -> None:
    rt = runtime(poll_timeout_ms=500, max_wait_ms=40)
    now = time.monotonic()
    assert rt._poll_timeout(now) == pytest.approx(0.5)
    rt.buffers.add(("t", 0), object())  # type: ignore[arg-type]
    now = time.monotonic()
    assert rt._poll_timeout(now) <= 0.04
    rt.flow.paused[("t", 1)] = (now + 0.01, "retry")
    assert rt._poll_timeout(now) == pytest.approx(0.01)


def test_a_ready_batch_is_not_held_back() -> None:
    rt = runtime(poll_timeout_ms=500, max_batch_size=1)
    rt.buffers.add(("t", 0), object())  # type: ignore[arg-type]
    assert rt._poll_timeout(time.monotonic()) == 0.0


def test_a_retry_loop_gives_up_once_the_process_is_stopping() -> None:
    calls: list[int] = []

    def timing_out() -> None:
        calls.append(1)
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True))

    with pytest.raises(KafkaException):
        retry_call(timing_out, attempts=None, stopping=lambda: True)
    assert len(calls) == 2


def test_a_fatal_error_in_a_retry_loop_is_fatal() -> None:
    def fenced() -> None:
        raise KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))

    with pytest.raises(RuntimeFatal):
        retry_call(fenced)


class BrokenProducer:
    """A producer whose init_transactions fails for good; records whether it was flushed on the way out."""

    flushed = False

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf

    def init_transactions(self, *args: Any) -> None:
        raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "bad config"))

    def flush(self, *args: Any) -> int:
        BrokenProducer.flushed = True
        return 0


def test_a_failed_start_still_closes_its_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs_module, "topic_names", lambda kafka, timeout_s=10: {"unit.dlq"})
    monkeypatch.setattr(outputs_module, "topic_max_bytes", lambda kafka, topic, default: default)
    rt = Runtime(
        "unit",
        KafkaConnection(bootstrap_servers="127.0.0.1:1"),
        ["in"],
        lambda b: [],
        RuntimeSettings(),
        producer_factory=BrokenProducer,  # type: ignore[arg-type]
    )
    with pytest.raises(KafkaException):
        rt.start()
    assert BrokenProducer.flushed and rt.producer is None and rt.consumer is None


def test_the_lag_series_of_a_revoked_partition_is_removed() -> None:
    rt = runtime()
    metrics.LAG.labels("unit", "in", "3").set(7)
    rt.positions.assigned.add(("in", 3))
    rt._forget({("in", 3)})
    assert (
        REGISTRY.get_sample_value("runtime_consumer_lag", {"service": "unit", "topic": "in", "partition": "3"}) is None
    )


def test_settings_refuse_a_poll_interval_below_the_worst_handler_time() -> None:
    with pytest.raises(ValueError, match="max_poll_interval_ms"):
        RuntimeSettings(handler_timeout_s=300, bisect_max_seconds=30, max_poll_interval_ms=300_000)
