"""Processing: decode a batch, call the handler, and settle its answer into one result per record."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Message

from shared.errors import DependencyUnavailable, DeserializationError, RetryableError
from shared.runtime.records import TP, Decoder, Headers, InputRecord, Output, PartitionBatch, RecordKey
from shared.runtime.routing import Failure

# One record's settled result: the outputs to produce, or why it failed.
SettledRecord = list[Output] | Failure


class CallScope(Protocol):
    """What the processor tells a call's table state: whether the call answered (its writes kept) or failed (its
    writes dropped before a bisection), and around each bisection call the same for that call alone."""

    def answered(self, ok: bool) -> None: ...

    def before_call(self) -> list[int]: ...

    def after_call(self, points: list[int], ok: bool) -> None: ...


class HandlerTimeout(RetryableError):
    """A handler call did not finish within ``handler_timeout_s``."""

    category = "timeout"


class Outage(Exception):
    """The whole call failed on a shared dependency: not the records' fault."""

    def __init__(self, cause: DependencyUnavailable) -> None:
        super().__init__(str(cause))
        self.cause = cause


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a dependency; the stock loop still works
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class HandlerCaller:
    """Calls the handler the way it wants to be called; every call answers a ``concurrent.futures.Future``.

    A coroutine function runs on an event loop that the runtime owns (one thread, started on first use);
    a function that returns a Future is passed through; a plain function runs inline.
    """

    def __init__(self, handler: Callable[..., Any], name: str) -> None:
        self.handler = handler
        self.name = name
        self.is_coroutine = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            # uvloop where installed (it is a dependency): a handler that does network I/O (webhooks, Redis)
            # spends most of its time in the loop, and uvloop's is several times cheaper per event.
            loop = new_event_loop()
            self.thread = threading.Thread(target=loop.run_forever, name=f"{self.name}-handler-loop", daemon=True)
            self.thread.start()
            self.loop = loop
        return self.loop

    def call(self, batches: Sequence[PartitionBatch]) -> Future[Any]:
        if self.is_coroutine:
            return asyncio.run_coroutine_threadsafe(self.handler(batches), self._loop())
        future: Future[Any] = Future()
        try:
            answer = self.handler(batches)
        except BaseException as exc:
            future.set_exception(exc)
            return future
        if isinstance(answer, Future):
            return answer
        if inspect.iscoroutine(answer):
            return asyncio.run_coroutine_threadsafe(answer, self._loop())
        future.set_result(answer)
        return future

    def close(self) -> None:
        loop = self.loop
        if loop is not None:

            def stop() -> None:
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                loop.stop()

            loop.call_soon_threadsafe(stop)
            if self.thread is not None:
                self.thread.join(5)
            if not loop.is_running():
                loop.close()
            self.loop = None


@dataclass
class InFlight:
    """One batch handed to the handler: its records, decode failures and the handler's pending answer."""

    epoch: int
    taken: list[tuple[TP, list[Message]]]
    records: list[tuple[TP, list[InputRecord]]]
    failures: dict[RecordKey, SettledRecord]
    batches: list[PartitionBatch]
    future: Future[Any] | None
    submitted_at: float = field(default_factory=time.monotonic)
    # With tables: the state of each partition number this call reads and writes (``shared/runtime/stateful``).
    scope: CallScope | None = None

    def future_done(self) -> bool:
        return self.future is None or self.future.done()

    def first_offsets(self) -> dict[TP, int]:
        return {tp: msgs[0].offset() or 0 for tp, msgs in self.taken if msgs}


@dataclass
class SettledBatch:
    """Per-record results of one batch (every record has one), or the outage that stopped it."""

    results: dict[RecordKey, SettledRecord]
    outage: DependencyUnavailable | None = None
    calls: int = 1
    # The fast path: one call, every record decoded and answered with outputs, aligned with the handler's
    # batches (``results`` is then empty).
    clean: Sequence[Sequence[Output]] | None = None


def read_headers(msg: Message) -> Headers:
    raw = msg.headers()
    if raw is None:
        return []
    items = raw.items() if isinstance(raw, dict) else raw
    return [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in items]


def decode_batch(
    taken: list[tuple[TP, list[Message]]], decode: Decoder
) -> tuple[list[tuple[TP, list[InputRecord]]], dict[RecordKey, SettledRecord]]:
    """Decode every record; a record that cannot be decoded gets a permanent failure, never an exception.

    ``DependencyUnavailable`` (the registry is down) is the one exception that escapes, as an ``Outage``.
    """
    records: list[tuple[TP, list[InputRecord]]] = []
    failures: dict[RecordKey, SettledRecord] = {}
    for tp, msgs in taken:
        topic, partition = tp
        decoded: list[InputRecord] = []
        for msg in msgs:
            offset = msg.offset() or 0
            value = msg.value()
            payload: Any = None
            try:
                payload = decode(topic, value, partition, offset)
            except DependencyUnavailable as exc:
                raise Outage(exc) from exc
            except DeserializationError as exc:
                failures[(tp, offset)] = Failure.of(exc)
            except Exception as exc:  # a decoder bug or odd bytes: still the record's fault, never the consumer's
                wrapped = DeserializationError(
                    f"{type(exc).__name__}: {exc}", topic=topic, partition=partition, offset=offset
                )
                wrapped.__cause__ = exc
                failures[(tp, offset)] = Failure.of(wrapped)
            decoded.append(
                InputRecord(topic, partition, offset, msg.key(), value, read_headers(msg), msg.timestamp()[1], payload)
            )
        records.append((tp, decoded))
    return records, failures


def handler_batches(
    records: list[tuple[TP, list[InputRecord]]], failures: dict[RecordKey, SettledRecord]
) -> list[PartitionBatch]:
    batches = []
    for tp, recs in records:
        kept = [r for r in recs if (tp, r.offset) not in failures] if failures else recs
        if kept:
            batches.append(PartitionBatch(tp[0], tp[1], kept))
    return batches


def regroup(records: list[InputRecord], states: Mapping[int, Any] | None = None) -> list[PartitionBatch]:
    """Consecutive records of one partition back into partition batches, in order (with their partition's table
    state, where the runtime has tables)."""
    batches: list[PartitionBatch] = []
    for record in records:
        if batches and (batches[-1].topic, batches[-1].partition) == (record.topic, record.partition):
            batches[-1].records.append(record)
        else:
            state = states.get(record.partition) if states else None
            batches.append(PartitionBatch(record.topic, record.partition, [record], state))
    return batches


def _signature(error: BaseException) -> tuple[type[BaseException], str]:
    return type(error), str(error)


class Processor:
    """Settles handler answers into per-record results, bisecting a failed call within its budget."""

    def __init__(
        self, caller: HandlerCaller, handler_timeout_s: float, bisect_max_calls: int, bisect_max_seconds: float
    ) -> None:
        self.caller = caller
        self.handler_timeout_s = handler_timeout_s
        self.bisect_max_calls = bisect_max_calls
        self.bisect_max_seconds = bisect_max_seconds

    def settle(self, inflight: InFlight) -> SettledBatch:
        """Wait for the handler's answer (within the handler timeout) and return one result per record."""
        results: dict[RecordKey, SettledRecord] = dict(inflight.failures)
        flat = [r for b in inflight.batches for r in b.records]
        if not flat:
            return SettledBatch(results, calls=0)
        assert inflight.future is not None
        remaining = max(0.0, inflight.submitted_at + self.handler_timeout_s - time.monotonic())
        answer = self._answer(inflight.future, len(flat), remaining)
        scope = inflight.scope
        if scope is not None:
            scope.answered(not isinstance(answer, BaseException))
        if isinstance(answer, DependencyUnavailable):
            return SettledBatch(results, outage=answer)
        if not isinstance(answer, BaseException):
            if not results and all(isinstance(result, list | tuple) for result in answer):
                return SettledBatch(results, clean=answer)
            fill_results(results, flat, answer)
            return SettledBatch(results)
        try:
            states = {b.partition: b.state for b in inflight.batches if b.state is not None}
            if scope is not None:
                calls = 1 + self._bisect_in_order(flat, answer, results, scope, states)
            else:
                calls = 1 + self._bisect(flat, answer, results)
        except Outage as outage:
            return SettledBatch(results, outage=outage.cause)
        return SettledBatch(results, calls=calls)

    def _answer(self, future: Future[Any], expected: int, timeout_s: float) -> Sequence[Any] | BaseException:
        try:
            answer = future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()
            return HandlerTimeout(f"handler did not answer within {self.handler_timeout_s:.0f}s")
        except Exception as exc:
            return exc
        if not isinstance(answer, list | tuple):
            return TypeError(f"handler returned {type(answer).__name__}, not a list of results")
        if len(answer) != expected:
            return RuntimeError(f"handler returned {len(answer)} results for {expected} records")
        results: Sequence[Any] = answer
        return results

    def _bisect(self, flat: list[InputRecord], error: BaseException, results: dict[RecordKey, SettledRecord]) -> int:
        """Split a failed call until the failing records are isolated; return the calls it made.

        A batch-wide failure (the model down, every call timing out) must not cost 2n-1 calls: when both halves
        fail with the same error (type and message), every record of both is routed with it; and the calls and
        time are capped. Records left when the budget runs out take the error of the call that covered them.
        """
        calls = 0
        deadline = time.monotonic() + self.bisect_max_seconds
        stack: list[tuple[list[InputRecord], BaseException]] = [(flat, error)]
        while stack:
            group, failure = stack.pop()
            if len(group) == 1 or calls + 2 > self.bisect_max_calls or time.monotonic() >= deadline:
                for record in group:
                    results[((record.topic, record.partition), record.offset)] = Failure.of(failure)
                continue
            half = len(group) // 2
            parts = [group[:half], group[half:]]
            answers: list[Sequence[Any] | BaseException] = []
            for part in parts:
                if time.monotonic() >= deadline:
                    answers.append(failure)  # out of time: this half keeps the error that covered it
                    continue
                calls += 1
                remaining = max(0.0, min(self.handler_timeout_s, deadline - time.monotonic()))
                answer = self._answer(self.caller.call(regroup(part)), len(part), remaining)
                if isinstance(answer, DependencyUnavailable):
                    raise Outage(answer)
                answers.append(answer)
            errors = [a for a in answers if isinstance(a, BaseException)]
            same = len(errors) == 2 and _signature(errors[0]) == _signature(errors[1])
            for part, answer in zip(parts, answers, strict=True):
                if not isinstance(answer, BaseException):
                    fill_results(results, part, answer)
                elif same:
                    for record in part:
                        results[((record.topic, record.partition), record.offset)] = Failure.of(answer)
                else:
                    stack.append((part, answer))
        return calls

    def _bisect_in_order(
        self,
        flat: list[InputRecord],
        error: BaseException,
        results: dict[RecordKey, SettledRecord],
        scope: CallScope,
        states: Mapping[int, Any],
    ) -> int:
        """Bisection for a handler with tables: state follows offset order, so a later half is called only once
        every record before it has an answer. A failing group is split and its left half called first; a call's
        writes are kept only when it answers. Capped in calls and time like ``_bisect``."""
        calls = 0
        deadline = time.monotonic() + self.bisect_max_seconds
        # Groups left to settle, in offset order: known to fail (with that error), or not called yet (None).
        queue: deque[tuple[list[InputRecord], BaseException | None]] = deque([(flat, error)])
        while queue:
            group, failure = queue.popleft()
            out_of_budget = calls + 1 > self.bisect_max_calls or time.monotonic() >= deadline
            if failure is not None and (len(group) == 1 or out_of_budget):
                for record in group:
                    results[((record.topic, record.partition), record.offset)] = Failure.of(failure)
                continue
            if failure is not None:
                half = len(group) // 2
                queue.appendleft((group[half:], None))
                queue.appendleft((group[:half], None))
                continue
            if out_of_budget:
                timeout = HandlerTimeout("bisection budget spent before this record was called alone")
                queue.appendleft((group, timeout))  # routed (retried) with a timeout: it was never answered
                continue
            calls += 1
            points = scope.before_call()
            remaining = max(0.0, min(self.handler_timeout_s, deadline - time.monotonic()))
            answer = self._answer(self.caller.call(regroup(group, states)), len(group), remaining)
            scope.after_call(points, not isinstance(answer, BaseException))
            if isinstance(answer, DependencyUnavailable):
                raise Outage(answer)
            if isinstance(answer, BaseException):
                queue.appendleft((group, answer))
            else:
                fill_results(results, group, answer)
        return calls


def fill_results(results: dict[RecordKey, SettledRecord], records: list[InputRecord], answer: Sequence[Any]) -> None:
    """Per-record results from a handler's answer; a result that is neither outputs nor an exception fails."""
    for record, result in zip(records, answer, strict=True):
        key = ((record.topic, record.partition), record.offset)
        if isinstance(result, BaseException):
            results[key] = Failure.of(result)
        elif isinstance(result, list | tuple):
            results[key] = list(result)
        else:
            results[key] = Failure.of(TypeError(f"handler result is a {type(result).__name__}, not a list of Output"))
