"""The consume-process-produce loop: exactly-once (or at-least-once) with retry topics, DLQ and bisection.

One thread drives one librdkafka consumer and one producer. Records are buffered per partition
(``batching``), handed to the handler in batches, possibly several in flight (``processing``), and their
results go out strictly in submit order: outputs, retry and dead-letter records and the consumed offsets in
one transaction that commits on an interval (``commits``), as Kafka Streams' ``commit.interval.ms``. Pauses
for retry holds, backpressure and outages live in ``flow``; where a failed record goes, in ``routing``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import wait
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from shared.errors import DependencyUnavailable, PermanentError
from shared.kafka import KafkaConnection, KafkaFailure, topic_max_bytes, topic_names
from shared.logging import payload_hash
from shared.runtime import metrics
from shared.runtime.batching import PartitionBuffers
from shared.runtime.commits import (
    TXN_CALL_TIMEOUT_S,
    Commits,
    OffsetCommits,
    RuntimeFatal,
    Segment,
    TransactionalCommits,
    retry_call,
)
from shared.runtime.flow import DEPENDENCY, MISSING_TOPIC, RETRY, FlowControl
from shared.runtime.model import Decoder, Handler, InputRecord, Output, raw_decoder
from shared.runtime.processing import (
    HandlerCaller,
    InFlight,
    Outage,
    Outcome,
    Processor,
    decode_batch,
    fill_results,
    handler_batches,
    read_headers,
)
from shared.runtime.routing import Failure, FailureRouter, due_at, fit, record_size
from shared.runtime.settings import RuntimeSettings
from shared.topics import dlq_topic, replay_topic, retry_topic

log = logging.getLogger(__name__)

TP = tuple[str, int]
PRODUCER_MAX_BYTES = 1_000_000
SIZE_CHECK_FROM = PRODUCER_MAX_BYTES // 2
# The fast path skips the exact size check for outputs this far below their topic's limit (room for headers).
FAST_PATH_HEADROOM = 64 * 1024
TOPICS_REFRESH_S = 5.0

__all__ = ["OutputRejected", "Runtime", "RuntimeFatal"]


class OutputRejected(PermanentError):
    """An output that can never be written (not bytes, too large): the input record is dead-lettered."""


class Runtime:
    """Consume ``input_topics`` (plus this service's retry and replay topics), run ``handler``, produce."""

    def __init__(
        self,
        service: str,
        kafka: KafkaConnection,
        input_topics: Sequence[str],
        handler: Handler,
        settings: RuntimeSettings,
        decode: Decoder = raw_decoder,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        self.service = service
        # client.id, transactional.id and group.instance.id all name this process: <service>-<instance>.
        self.instance_id = f"{service}-{settings.instance}"
        self.kafka = kafka.for_client(self.instance_id)
        self.input_topics = list(input_topics)
        self.settings = settings
        self.decode = decode
        self.producer_factory = producer_factory
        self.eos = settings.exactly_once
        self.dlq = dlq_topic(service)
        self.caller = HandlerCaller(handler, service)
        self.processor = Processor(
            self.caller, settings.handler_timeout_s, settings.bisect_max_calls, settings.bisect_max_seconds
        )
        self.buffers = PartitionBuffers(settings.max_batch_size, settings.max_wait_ms)
        self.flow = FlowControl(service, settings)
        self.router = FailureRouter(
            service, settings.retry_delays_ms, 0, settings.stacktrace_max_bytes, settings.max_deferral_ms
        )
        self.inflight: deque[InFlight] = deque()
        # Results from before an abort carry an older epoch and are never produced.
        self.epoch = 0
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.commits: Commits | None = None
        self.topics: list[str] = []
        self.retry_topic_set: frozenset[str] = frozenset()
        self.assigned: set[TP] = set()
        # Where each partition stands, tracked here so a rewind needs no broker round trip: the first offset
        # fetched since assignment, and the next offset not yet finalized.
        self.first_fetched: dict[TP, int] = {}
        self.next_offset: dict[TP, int] = {}
        # A record that fails on a dependency: (strikes, records that had passed at its last failure). It fails
        # "alone" when others passed since; an outage (nothing passing anywhere) never counts a strike.
        self.dependency_strikes: dict[tuple[TP, int], tuple[int, int]] = {}
        self.passed = 0
        self.known_topics: set[str] = set()
        # Topics the fast path may write without an exact size check, and the size up to which it may.
        self.fast_limits: dict[str, int] = {}
        self.topics_refreshed = 0.0
        self.max_bytes: dict[str, int] = {}
        self.last_commit = time.monotonic()
        self.last_lag = 0.0
        self.failed = False
        self.callback_error: BaseException | None = None
        self.stop_event = threading.Event()
        # Set once this process has joined its group (its first assignment, even an empty one): readiness.
        self.joined = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def run(self, stop: threading.Event | None = None) -> None:
        """Process until ``stop`` is set; finish what is in flight, commit, then close."""
        self.stop_event = stop or threading.Event()
        try:
            self.start()
            while not self.stop_event.is_set():
                self.step()
            self._drain(self.settings.revoke_wait_ms / 1000)
            self.commit(final=True)
        except BaseException:
            # A half-finished batch may sit in the open transaction: it must never be committed on the way
            # out (the close below revokes partitions, and a revoke commits). Abort and let a restart redo it.
            self.failed = True
            if self.commits is not None:
                with contextlib.suppress(Exception):
                    self.commits.abort()
            raise
        finally:
            self.close()

    def start(self) -> None:
        s = self.settings
        try:
            self._load_topics()
            conf = self.kafka.producer_config(**s.extra_producer_config)
            if self.eos:
                # Stable across restarts and unique among live instances: a restart fences its predecessor.
                conf.update({"transactional.id": self.instance_id, "transaction.timeout.ms": s.transaction_timeout_ms})
            else:
                # Only failed deliveries call back into Python, into the segment of the records they belong to.
                conf["delivery.report.only.error"] = True
            self.producer = producer = self.producer_factory(conf)
            if self.eos:
                retry_call(lambda: producer.init_transactions(TXN_CALL_TIMEOUT_S), None, self.stop_event.is_set)
            cconf = self.kafka.consumer_config(
                self.service,
                **{
                    "enable.auto.commit": False,
                    "partition.assignment.strategy": "cooperative-sticky",
                    "session.timeout.ms": s.session_timeout_ms,
                    # Explicit, and above the worst handler time (a validator checks it).
                    "max.poll.interval.ms": s.max_poll_interval_ms,
                    "isolation.level": "read_committed",
                    "queued.max.messages.kbytes": s.max_prefetch_kbytes,
                },
            )
            if s.static_membership:
                cconf["group.instance.id"] = self.instance_id
            cconf.update(s.extra_consumer_config)
            self.consumer = Consumer(cconf)
            self.flow.attach(self.consumer)
            commits_type = TransactionalCommits if self.eos else OffsetCommits
            self.commits = commits_type(self.service, producer, self.consumer, self.stop_event.is_set)
            self.consumer.subscribe(
                self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        except BaseException:
            self.close()
            raise
        log.info("runtime started", extra={"service": self.service, "topics": self.topics, "eos": self.eos})

    def close(self) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                self.consumer.close()
            self.consumer = None
        if self.producer is not None:
            self.producer.flush(10)
            self.producer = None
        self.caller.close()

    def _load_topics(self) -> None:
        """Learn which topics exist, which retry levels there are, and how large a record the DLQ and retry
        topics take, before consuming."""
        present = topic_names(self.kafka, timeout_s=30)
        self.known_topics = present
        self.topics_refreshed = time.monotonic()
        if self.dlq not in present:
            raise RuntimeFatal(f"dead-letter topic {self.dlq} does not exist; run `pipeline topics bootstrap`")
        # Every existing retry topic is consumed, whatever the configured ladder: a shorter ladder must never
        # strand records already written to a higher level.
        pattern = re.compile(rf"^{re.escape(self.service)}\.retry\.(\d+)$")
        existing = sorted((int(m.group(1)), t) for t in present if (m := pattern.match(t)))
        levels = 0
        while levels < len(self.settings.retry_delays_ms) and retry_topic(self.service, levels + 1) in present:
            levels += 1
        if levels < len(self.settings.retry_delays_ms):
            log.warning("missing retry topics; failures past the last one go to the DLQ", extra={"levels": levels})
        s = self.settings
        self.router = FailureRouter(self.service, s.retry_delays_ms, levels, s.stacktrace_max_bytes, s.max_deferral_ms)
        retry_topics = [t for _, t in existing]
        self.retry_topic_set = frozenset(retry_topics)
        self.topics = [*self.input_topics, *retry_topics, replay_topic(self.service)]
        for topic in [self.dlq, *retry_topics]:
            self._limit(topic)

    # ------------------------------------------------------------------ the loop

    def step(self) -> None:
        """One turn: resume what is due, fetch, settle finished batches, submit ready ones, commit on time."""
        assert self.consumer is not None
        now = time.monotonic()
        self.flow.resume_due(now)
        try:
            messages = self.consumer.consume(self.settings.max_batch_size, self._poll_timeout(now))
            if self.callback_error is not None:
                raise RuntimeFatal(f"rebalance callback failed: {self.callback_error!r}") from self.callback_error
            self._buffer_all(messages)
            self._settle_finished()
            while self.buffers.ready() and len(self.inflight) < self.settings.max_inflight_batches:
                # Commit first when due, so an open transaction does not also span this batch's model time.
                if self._commit_due():
                    self.commit()
                taken = self.buffers.take()
                if taken:
                    self._submit(taken)
                self._settle_finished()
            if self._commit_due():
                self.commit()
        except KafkaException as exc:
            self._on_kafka_error(exc)
        assert self.producer is not None
        self.producer.poll(0)  # serve delivery reports, so the in-flight count is current
        self.flow.backpressure(self.assigned, self.buffers.count + self._inflight_records(), len(self.producer))
        self._update_lag()

    def _poll_timeout(self, now: float) -> float:
        """Wait no longer than the nearest of: the poll timeout, a batch's max wait, the next resume, the next
        commit; not at all when a batch is ready to go."""
        timeout = self.settings.poll_timeout_ms / 1000
        to_ready = self.buffers.seconds_to_ready(now)
        if to_ready is not None and len(self.inflight) < self.settings.max_inflight_batches:
            timeout = min(timeout, to_ready)
        next_resume = self.flow.next_resume()
        if next_resume is not None:
            timeout = min(timeout, next_resume - now)
        if self.commits is not None and self.commits.has_work():
            timeout = min(timeout, self.last_commit + self.settings.commit_interval_ms / 1000 - now)
        if self.inflight and not self.inflight[0].future_done():
            timeout = min(timeout, 0.002)  # notice a finished batch soon
        elif self.inflight:
            timeout = 0.0
        return max(0.0, timeout)

    def _commit_due(self) -> bool:
        assert self.commits is not None
        return (
            self.commits.has_work() and time.monotonic() - self.last_commit >= self.settings.commit_interval_ms / 1000
        )

    def _inflight_records(self) -> int:
        return sum(len(b.records) for inflight in self.inflight for b in inflight.batches)

    def _buffer_all(self, messages: list[Message]) -> None:
        # Per-record work on the hot path, so the common checks use locals.
        assigned, paused, next_offset = self.assigned, self.flow.paused, self.next_offset
        retry_topics, add = self.retry_topic_set, self.buffers.add
        for msg in messages:
            if msg.error() is not None:
                self._consumer_error(msg)
                continue
            tp = (msg.topic() or "", msg.partition() or 0)
            if tp not in assigned:
                continue  # fetched before a revoke: the new owner reads it
            if paused and self.flow.held(tp):
                continue  # fetched before a pause that sought back: it is read again after the resume
            if tp not in next_offset:
                offset = msg.offset() or 0
                self.first_fetched[tp] = offset
                next_offset[tp] = offset
            if tp[0] in retry_topics and self._not_due(tp, msg):
                continue
            add(tp, msg)

    def _consumer_error(self, msg: Message) -> None:
        error = msg.error()
        assert error is not None
        if error.fatal():
            raise RuntimeFatal(f"consumer fatal error: {error}")
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error", extra={"error": str(error)})

    def _not_due(self, tp: TP, msg: Message) -> bool:
        """Hold a retry record that is not due yet, and its partition with it (later records are due later)."""
        due_ms = due_at(read_headers(msg), msg.timestamp()[1], self.settings.max_retry_delay_ms)
        now_ms = time.time() * 1000
        if due_ms is None or due_ms <= now_ms:
            return False
        self._seek(tp, msg.offset() or 0)
        self.flow.hold(tp, (due_ms - now_ms) / 1000, RETRY)
        return True

    # ------------------------------------------------------------------ submit and settle

    def _submit(self, taken: list[tuple[TP, list[Message]]]) -> None:
        for tp, msgs in taken:
            metrics.RECORDS_IN.labels(self.service, tp[0]).inc(len(msgs))
        try:
            records, failures = decode_batch(taken, self.decode)
        except Outage as outage:
            self._on_outage({tp: msgs[0].offset() or 0 for tp, msgs in taken if msgs}, outage.cause)
            return
        batches = handler_batches(records, failures)
        future = self.caller.call(batches) if batches else None
        if batches:
            metrics.BATCH_SIZE.labels(self.service).observe(sum(len(b.records) for b in batches))
        self.inflight.append(InFlight(self.epoch, taken, records, failures, batches, future))

    def _settle_finished(self) -> None:
        """Produce the results of finished batches, strictly in submit order."""
        timeout = self.settings.handler_timeout_s
        while self.inflight:
            head = self.inflight[0]
            if not head.future_done() and time.monotonic() - head.submitted_at < timeout:
                return
            self.inflight.popleft()
            failed_call = head.future is not None and head.future.done() and head.future.exception() is not None
            if failed_call and self.commits is not None and self.commits.open:
                # Bisection may take a while: the open transaction must not wait through it.
                self.commit()
            outcome = self.processor.settle(head)
            metrics.HANDLER_SECONDS.labels(self.service).observe(time.monotonic() - head.submitted_at)
            self._finalize(head, outcome)

    def _drain(self, timeout_s: float) -> None:
        """Wait (bounded) for in-flight batches and produce their results; put back what did not finish."""
        deadline = time.monotonic() + timeout_s
        while self.inflight:
            head = self.inflight[0]
            if head.future is not None and not head.future_done():
                wait([head.future], timeout=max(0.0, deadline - time.monotonic()))
                if not head.future_done():
                    break
            self._settle_finished()
        if self.inflight:
            log.warning("in-flight batches discarded", extra={"batches": len(self.inflight)})
            self._put_back({})

    def _finalize(self, inflight: InFlight, outcome: Outcome) -> None:
        """Produce one batch's results: outputs, retry and dead-letter records; advance its partitions."""
        if inflight.epoch != self.epoch:
            return  # results from before an abort: never produced
        if outcome.outage is not None:
            self._on_outage(inflight.first_offsets(), outcome.outage)
            return
        if outcome.clean is not None and self._fits_fast_path(outcome.clean):
            self._finalize_clean(inflight, outcome.clean)
            return
        results = outcome.results
        if outcome.clean is not None:
            results = {}
            fill_results(results, [r for b in inflight.batches for r in b.records], outcome.clean)
        on_dependency = [k for k, r in results.items() if isinstance(r, Failure) and _is_dependency(r)]
        nothing_passed = bool(on_dependency) and not any(not isinstance(r, Failure) for r in results.values())
        if nothing_passed and not all(self._failed_alone(key) for key in on_dependency):
            # Nothing passed, here or since: an outage, not these records' fault. Route nothing.
            for key in on_dependency:
                strikes, _ = self.dependency_strikes.get(key, (0, 0))
                self.dependency_strikes[key] = (strikes, self.passed)
            self._on_outage(inflight.first_offsets(), _first_dependency_error(results))
            return
        self.flow.recovered()
        assert self.commits is not None
        self.commits.begin()
        holds: dict[TP, tuple[int, str, float]] = {}
        produced: Counter[str] = Counter()
        routed: dict[tuple[bool, str, str], list[Any]] = {}
        for tp, recs in inflight.records:
            if tp not in self.assigned:
                continue
            segment = self.commits.delivery(tp, recs[0].offset)
            last: int | None = None
            for record in recs:
                result = results[(tp, record.offset)]
                if isinstance(result, Failure):
                    if _is_dependency(result) and not self._escalate(tp, record.offset):
                        holds[tp] = (record.offset, DEPENDENCY, self.flow.backoff_ms / 1000)
                        break
                    self._send_failure(record, result, segment, routed)
                else:
                    missing = self._emit(record, result, produced, segment, routed)
                    if missing is not None:
                        holds[tp] = (record.offset, MISSING_TOPIC, self.settings.missing_topic_backoff_ms / 1000)
                        metrics.MISSING_TOPIC_PAUSES.labels(self.service, missing).inc()
                        log.warning(
                            "output topic does not exist yet; pausing the partition",
                            extra={"topic": missing, "position": record.position},
                        )
                        break
                last = record.offset
            if last is not None:
                self.commits.done(tp, last + 1)
                self.next_offset[tp] = last + 1
            elif isinstance(segment, Segment):
                segment.end = segment.first  # nothing of this partition went out: nothing to commit for it
        for topic, count in produced.items():
            metrics.RECORDS_OUT.labels(self.service, topic).inc(count)
        self.passed += sum(1 for r in results.values() if not isinstance(r, Failure))
        _log_routed(routed)
        if holds:
            self._put_back({tp: offset for tp, (offset, _, _) in holds.items()})
            for tp, (_offset, reason, seconds) in holds.items():
                self.flow.hold(tp, seconds, reason)

    def _fits_fast_path(self, answers: Sequence[Sequence[Output]]) -> bool:
        """Every output is bytes, to a topic known to exist, and far enough below that topic's size limit
        that no exact size check is needed (checked per distinct topic, not per record)."""
        try:
            return self._all_fit(answers)
        except (TypeError, ValueError):
            return False  # not a list of Output tuples: the slow path routes the record

    def _all_fit(self, answers: Sequence[Sequence[Output]]) -> bool:
        limits = self.fast_limits
        last_topic, limit = "", -1
        for outs in answers:
            for topic, value, key, _headers in outs:
                if topic is not last_topic:
                    found = limits.get(topic)
                    if found is None:
                        return False
                    last_topic, limit = topic, found
                size = 0
                if value is not None:
                    if type(value) is not bytes:
                        return False
                    size = len(value)
                if key is not None:
                    if type(key) is not bytes:
                        return False
                    size += len(key)
                if size > limit:
                    return False
        return True

    def _finalize_clean(self, inflight: InFlight, answers: Sequence[Sequence[Output]]) -> None:
        """The fast path: no failures, every output fits; a tight loop of bound produce calls."""
        assert self.commits is not None and self.producer is not None
        self.flow.recovered()
        commits = self.commits
        commits.begin()
        produce = self.producer.produce
        produced: dict[str, int] = {}
        routed: dict[tuple[bool, str, str], list[Any]] = {}
        i = 0
        for batch in inflight.batches:
            tp = (batch.topic, batch.partition)
            n = len(batch.records)
            segment = commits.delivery(tp, batch.records[0].offset)
            for record, outs in zip(batch.records, answers[i : i + n], strict=True):
                for out in outs:
                    topic, value, key, headers = out
                    try:
                        if segment is not None:
                            produce(topic, value, key, headers=list(headers) or None, on_delivery=segment)
                        elif headers:
                            produce(topic, value, key, headers=headers if type(headers) is list else list(headers))
                        else:
                            produce(topic, value, key)
                    except BufferError:
                        self._produce(topic, key, value, headers, segment)
                    except (KafkaException, TypeError, ValueError) as exc:
                        # The client refused this one output (bad headers, too large): the record is dead-lettered.
                        rejected = OutputRejected(f"output for {topic} refused by the producer: {exc}")
                        self._send_failure(record, Failure.of(rejected), segment, routed)
                        break
                    produced[topic] = produced.get(topic, 0) + 1
            i += n
            last = batch.records[-1].offset + 1
            commits.done(tp, last)
            self.next_offset[tp] = last
        for topic, count in produced.items():
            metrics.RECORDS_OUT.labels(self.service, topic).inc(count)
        _log_routed(routed)
        self.passed += i

    def _failed_alone(self, key: tuple[TP, int]) -> bool:
        entry = self.dependency_strikes.get(key)
        return entry is not None and self.passed > entry[1]

    def _escalate(self, tp: TP, offset: int) -> bool:
        """Count a record that failed alone on a dependency; after ``dependency_strikes`` it is routed."""
        key = (tp, offset)
        strikes = self.dependency_strikes.get(key, (0, 0))[0] + 1
        if strikes < self.settings.dependency_strikes:
            self.dependency_strikes[key] = (strikes, self.passed)
            return False
        self.dependency_strikes.pop(key, None)
        return True

    def _emit(
        self,
        record: InputRecord,
        outs: list[Output],
        produced: Counter[str],
        segment: Segment | None,
        routed: dict[tuple[bool, str, str], list[Any]],
    ) -> str | None:
        """Produce one record's outputs; route it when one can never be written; name a missing topic."""
        if not all(isinstance(out, Output) for out in outs):
            rejected = OutputRejected("handler result for the record is not a list of Output")
            self._send_failure(record, Failure.of(rejected), segment, routed)
            return None
        for out in outs:
            value, key = out.value, out.key
            if not ((value is None or type(value) is bytes) and (key is None or type(key) is bytes)):
                self._send_failure(
                    record,
                    Failure.of(OutputRejected(f"output for {out.topic} has a non-bytes key or value")),
                    segment,
                    routed,
                )
                return None
            if out.topic not in self.known_topics and not self._topic_exists(out.topic):
                return out.topic
            if out.topic not in self.fast_limits:
                limit = self._limit(out.topic)
                # Larger outputs take the slow path, whose exact size check counts the headers too.
                self.fast_limits[out.topic] = min(limit - FAST_PATH_HEADROOM, limit // 2)
            # Exact sizing only where it could matter: most outputs are far below the limit.
            if out.headers or len(value or b"") + len(key or b"") > SIZE_CHECK_FROM:
                size, limit = record_size(key, value, out.headers), self._limit(out.topic)
                if size > limit:
                    failure = Failure.of(OutputRejected(f"output for {out.topic} is {size} bytes, over its {limit}"))
                    self._send_failure(record, failure, segment, routed)
                    return None
        for out in outs:
            try:
                self._produce(out.topic, out.key, out.value, out.headers, segment)
            except (KafkaException, TypeError, ValueError) as exc:
                rejected = OutputRejected(f"output for {out.topic} refused by the producer: {exc}")
                self._send_failure(record, Failure.of(rejected), segment, routed)
                return None
            produced[out.topic] += 1
        return None

    def _send_failure(
        self,
        record: InputRecord,
        failure: Failure,
        segment: Segment | None,
        routed_log: dict[tuple[bool, str, str], list[Any]],
    ) -> None:
        routed = self.router.route(record, failure)
        if not routed.dead and record_size(routed.key, routed.value, routed.headers) > self._limit(routed.topic):
            # Too large for the retry topic: it can never be retried, so it is dead-lettered now.
            routed = self.router.route(record, Failure(failure.error, failure.category, False))
        routed = fit(routed, self._limit(routed.topic))
        self._produce(routed.topic, routed.key, routed.value, routed.headers, segment)
        # What the record achieved before it failed, kept in the same transaction as its retry or dead letter.
        for output in getattr(failure.error, "outputs", ()):
            self._produce(output.topic, output.key, output.value, output.headers, segment)
            metrics.RECORDS_OUT.labels(self.service, output.topic).inc()
        counter = metrics.RECORDS_DEAD if routed.dead else metrics.RECORDS_RETRIED
        counter.labels(self.service, record.topic, failure.category).inc()
        entry = routed_log.setdefault((routed.dead, failure.category, routed.topic), [0, record, failure, routed])
        entry[0] += 1

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        segment: Segment | None,
    ) -> None:
        assert self.producer is not None
        while True:
            try:
                if segment is not None:
                    self.producer.produce(topic, value, key, headers=list(headers) or None, on_delivery=segment)
                elif headers:
                    self.producer.produce(topic, value, key, headers=list(headers))
                else:
                    self.producer.produce(topic, value, key)
                return
            except BufferError:
                # The local queue is full: serve delivery reports until there is room (bounded memory).
                self.producer.poll(0.05)

    def _limit(self, topic: str) -> int:
        """The largest record ``topic`` takes: its ``max.message.bytes`` or the producer's, looked up once."""
        limit = self.max_bytes.get(topic)
        if limit is None:
            limit = min(topic_max_bytes(self.kafka, topic, PRODUCER_MAX_BYTES), PRODUCER_MAX_BYTES)
            self.max_bytes[topic] = limit
        return limit

    def _topic_exists(self, topic: str) -> bool:
        if topic in self.known_topics:
            return True
        if time.monotonic() - self.topics_refreshed > TOPICS_REFRESH_S:
            self.topics_refreshed = time.monotonic()
            try:
                self.known_topics = topic_names(self.kafka)
            except KafkaException as exc:
                log.warning("cannot list topics", extra={"error": str(KafkaFailure.of(exc) or exc)})
        return topic in self.known_topics

    # ------------------------------------------------------------------ commits, aborts, rewinds

    def commit(self, final: bool = False) -> None:
        """Commit what was produced: the open transaction (exactly-once) or the acknowledged offsets."""
        assert self.commits is not None
        self.last_commit = time.monotonic()
        rewind = self.commits.commit(synchronous=final)
        if rewind:
            self._put_back(rewind)

    def _on_kafka_error(self, exc: KafkaException) -> None:
        failure = KafkaFailure.of(exc)
        if failure is None or failure.fatal:
            raise RuntimeFatal(f"fatal Kafka error: {exc}") from exc
        assert self.commits is not None
        if self.eos and (failure.txn_requires_abort or self.commits.open):
            log.warning("aborting transaction", extra={"error": str(failure)})
        # Exactly-once aborts the open transaction; at-least-once forgets unconfirmed segments (they are re-read).
        self.commits.abort()
        self._rewind()

    def _rewind(self, only: set[TP] | None = None) -> None:
        """After an abort: forget every result not committed and seek each partition we consumed back to the
        offset we last committed there, else the first one we fetched."""
        self._discard_inflight()
        targets = {
            tp: self.commits.committed.get(tp, first) if self.commits is not None else first
            for tp, first in self.first_fetched.items()
            if tp in self.assigned and (only is None or tp in only)
        }
        self.buffers.drop(set(targets) if only is not None else None)
        for tp, offset in targets.items():
            if self._seek(tp, offset):
                self.next_offset[tp] = offset
        self.flow.release_retry_holds(only)

    def _put_back(self, targets: dict[TP, int]) -> None:
        """Discard every in-flight batch (nothing of them was produced) and seek their partitions, and
        ``targets``, back to the first record not yet produced; drop what was buffered behind."""
        seek: dict[TP, int] = {}
        for inflight in self.inflight:
            for tp, first in inflight.first_offsets().items():
                seek.setdefault(tp, self.next_offset.get(tp, first))
        self._discard_inflight()
        seek.update(targets)
        self.buffers.drop(set(seek))
        for tp, offset in seek.items():
            if tp in self.assigned and self._seek(tp, offset):
                self.next_offset[tp] = offset

    def _discard_inflight(self) -> None:
        """Forget in-flight batches: their results are never produced, and their work is cancelled."""
        for inflight in self.inflight:
            if inflight.future is not None:
                inflight.future.cancel()
        self.inflight.clear()
        self.epoch += 1

    def _seek(self, tp: TP, offset: int) -> bool:
        """Seek, retrying retriable errors; False when the partition is not fetching yet (nothing to rewind)."""
        assert self.consumer is not None
        for attempt in range(5):
            try:
                self.consumer.seek(TopicPartition(tp[0], tp[1], offset))
                return True
            except KafkaException as exc:
                failure = KafkaFailure.of(exc)
                if failure is not None and failure.code == KafkaError._STATE:
                    # Still fetching its committed offset: nothing was read from it, so nothing to rewind.
                    log.info("partition not fetching yet; not rewound", extra={"partition": f"{tp[0]}[{tp[1]}]"})
                    self.next_offset.pop(tp, None)
                    self.first_fetched.pop(tp, None)
                    return False
                if failure is None or not failure.retriable or attempt == 4:
                    raise RuntimeFatal(f"cannot seek {tp[0]}[{tp[1]}] to {offset}: {exc}") from exc
                time.sleep(0.05 * 2**attempt)
        return False

    # ------------------------------------------------------------------ outages, lag

    def _on_outage(self, firsts: dict[TP, int], cause: DependencyUnavailable) -> None:
        """A shared dependency is down: not the records' fault. Put them back and pause everything a while."""
        # Earlier in-flight batches of the same partitions are discarded too: go back to the first record
        # not yet produced, and drop (and re-read) everything buffered.
        targets = {tp: offset for tp, offset in self.next_offset.items() if tp in self.assigned}
        for tp, first in firsts.items():
            targets.setdefault(tp, first)
        self._put_back(targets)
        self.buffers.drop()
        self.flow.outage(self.assigned, cause)

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self.last_lag < 1.0 or self.consumer is None:
            return
        self.last_lag = now
        for topic, partition in list(self.assigned):
            tp = TopicPartition(topic, partition)
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                position = self.consumer.position([tp])[0].offset
            except KafkaException:
                continue
            if position >= 0 and high >= 0:
                metrics.LAG.labels(self.service, topic, str(partition)).set(max(0, high - position))

    # ------------------------------------------------------------------ rebalances

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            consumer.incremental_assign(partitions)
            for tp in partitions:
                key = (tp.topic, tp.partition)
                self.assigned.add(key)
                # Someone else may have moved it on since we last held it: track it afresh.
                self.first_fetched.pop(key, None)
                self.next_offset.pop(key, None)
            self.flow.on_assign(partitions)
            self.joined.set()
        except BaseException as exc:
            self.callback_error = exc
        log.info("partitions assigned", extra={"partitions": [f"{t.topic}[{t.partition}]" for t in partitions]})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        try:
            if not self.failed:
                # Hand over cleanly: finish (bounded) what is in flight for them, and commit it, before another
                # member takes the partitions.
                self._drain(self.settings.revoke_wait_ms / 1000)
                self.commit(final=True)
        except KafkaException as exc:
            try:
                self._abort_during_rebalance(exc, revoked)
            except BaseException as inner:
                self.callback_error = inner
        except BaseException as exc:
            self.callback_error = exc
        finally:
            self._forget(revoked)
        log.info("partitions revoked", extra={"partitions": sorted(f"{t}[{p}]" for t, p in revoked)})

    def _abort_during_rebalance(self, exc: KafkaException, leaving: set[TP]) -> None:
        """A commit failed while partitions change hands: abort, and rewind only the partitions we keep."""
        failure = KafkaFailure.of(exc)
        if failure is None or failure.fatal:
            raise RuntimeFatal(f"fatal Kafka error during a rebalance: {exc}") from exc
        log.warning("aborting transaction during a rebalance", extra={"error": str(failure)})
        assert self.commits is not None
        self.commits.abort()
        self._rewind(self.assigned - leaving)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        try:
            # Someone else may own them already: nothing processed for them may be committed.
            if self.eos and self.commits is not None:
                self.commits.abort()
                self._rewind(self.assigned - lost)
            else:
                self._put_back({})
        except BaseException as exc:
            self.callback_error = exc
        finally:
            self._forget(lost)
        log.warning("partitions lost", extra={"partitions": sorted(f"{t}[{p}]" for t, p in lost)})

    def _forget(self, partitions: set[TP]) -> None:
        self.buffers.drop(partitions)
        if self.commits is not None:
            self.commits.forget(partitions)
        self.flow.forget(partitions)
        for tp in partitions:
            self.assigned.discard(tp)
            self.first_fetched.pop(tp, None)
            self.next_offset.pop(tp, None)
            with contextlib.suppress(KeyError):
                metrics.LAG.remove(self.service, tp[0], str(tp[1]))
        for key in [k for k in self.dependency_strikes if k[0] in partitions]:
            del self.dependency_strikes[key]


def _is_dependency(failure: Failure) -> bool:
    return isinstance(failure.error, DependencyUnavailable)


def _first_dependency_error(results: dict[Any, Any]) -> DependencyUnavailable:
    for result in results.values():
        if isinstance(result, Failure) and isinstance(result.error, DependencyUnavailable):
            return result.error
    raise AssertionError("no dependency failure among the results")


def _log_routed(routed: dict[tuple[bool, str, str], list[Any]]) -> None:
    """One line per batch, destination and category: a systemic failure must not flood the log."""
    for (dead, category, topic), (count, record, failure, entry) in routed.items():
        event_id = record.header("ce_id")
        traceparent = record.header("traceparent")
        log.warning(
            "records dead-lettered" if dead else "records sent to retry",
            extra={
                "count": count,
                "event_id": event_id.decode(errors="replace") if event_id else None,
                "trace_id": traceparent.decode(errors="replace").split("-")[1]
                if traceparent and b"-" in traceparent
                else None,
                "position": record.position,
                "to": topic,
                "attempt": entry.attempt,
                "category": category,
                "error_type": failure.type_name,
                "payload": payload_hash(record.value),
            },
        )
