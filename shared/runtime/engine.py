"""The consume-process-produce loop: exactly-once (or at-least-once) with retry topics, DLQ and bisection.

One thread drives one librdkafka consumer and one producer. Records are buffered per partition, handed
to the handler in batches, and their outputs, retry and dead-letter records and consumed offsets go out
in one transaction that commits on an interval (as Kafka Streams' ``commit.interval.ms``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from shared.errors import DependencyUnavailable, DeserializationError, PermanentError
from shared.kafka import DeliveryReports, KafkaConnection, KafkaFailure, topic_max_bytes, topic_names
from shared.logging import payload_hash
from shared.runtime import metrics
from shared.runtime.model import Decoder, Handler, Headers, InputRecord, Output, PartitionBatch, raw_decoder
from shared.runtime.routing import Failure, Routed, fit, record_size, route
from shared.runtime.settings import RuntimeSettings
from shared.topics import dlq_topic, replay_topic, retry_topic

log = logging.getLogger(__name__)

TP = tuple[str, int]
PRODUCER_MAX_BYTES = 1_000_000
SIZE_CHECK_FROM = PRODUCER_MAX_BYTES // 2
TXN_CALL_TIMEOUT_S = 30.0


class RuntimeFatal(Exception):
    """An error the process cannot recover from (fencing, fatal producer state): exit and be restarted."""


class OutputRejected(PermanentError):
    """An output that can never be written (topic missing, too large): the input record is dead-lettered."""


class _Outage(Exception):
    def __init__(self, cause: DependencyUnavailable) -> None:
        super().__init__(str(cause))
        self.cause = cause


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
        self.handler = handler
        self.settings = settings
        self.decode = decode
        self.producer_factory = producer_factory
        self.retry_topics = [retry_topic(service, n) for n in range(1, len(settings.retry_delays_ms) + 1)]
        self.retry_topic_set = frozenset(self.retry_topics)
        self.topics = [*input_topics, *self.retry_topics, replay_topic(service)]
        self.dlq = dlq_topic(service)
        self.eos = settings.exactly_once
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.buffers: dict[TP, deque[Message]] = {}
        self.buffered = 0
        self.oldest_buffered_at: float | None = None
        self.paused: dict[TP, tuple[float, str]] = {}
        self.assigned: set[TP] = set()
        self.pending: dict[TP, int] = {}
        self.txn_open = False
        self.last_commit = time.monotonic()
        self.last_lag = 0.0
        self.backoff_ms = settings.dependency_backoff_ms
        self.known_topics: set[str] = set()
        self.topics_refreshed = 0.0
        self.max_bytes: dict[str, int] = {}
        self.retry_levels = 0
        self.deliveries = DeliveryReports(keep_acked=False)
        # Set once this process has joined its group (its first assignment, even an empty one): readiness.
        self.joined = threading.Event()
        self.failed = False
        self.callback_error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle

    def run(self, stop: threading.Event | None = None) -> None:
        """Process until ``stop`` is set; commit what was processed, then close."""
        stop = stop or threading.Event()
        self.start()
        try:
            while not stop.is_set():
                self.step()
            self.commit(final=True)
        except BaseException:
            # A half-finished batch may sit in the open transaction: it must never be committed on the way
            # out (the close below revokes partitions, and a revoke commits). Abort and let a restart redo it.
            self.failed = True
            with contextlib.suppress(Exception):
                self._abort()
            raise
        finally:
            self.close()

    def start(self) -> None:
        s = self.settings
        instance_id = self.instance_id
        self._load_topic_limits()
        conf = self.kafka.producer_config(**s.extra_producer_config)
        if self.eos:
            # Stable across restarts and unique among live instances: a restart fences its predecessor.
            conf.update({"transactional.id": instance_id, "transaction.timeout.ms": s.transaction_timeout_ms})
        else:
            # Only failed deliveries call back into Python; a commit needs just "none failed since the last".
            conf.update({"delivery.report.only.error": True, "on_delivery": self.deliveries})
        self.producer = self.producer_factory(conf)
        if self.eos:
            self.producer.init_transactions(TXN_CALL_TIMEOUT_S)
        cconf = self.kafka.consumer_config(
            self.service,
            **{
                "enable.auto.commit": False,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": s.session_timeout_ms,
                "isolation.level": "read_committed",
                "queued.max.messages.kbytes": s.max_prefetch_kbytes,
            },
        )
        if s.static_membership:
            cconf["group.instance.id"] = instance_id
        cconf.update(s.extra_consumer_config)
        self.consumer = Consumer(cconf)
        self.consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        log.info("runtime started", extra={"service": self.service, "topics": self.topics, "eos": self.eos})

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        if self.producer is not None:
            self.producer.flush(10)
            self.producer = None

    def _load_topic_limits(self) -> None:
        """Learn which topics exist, and how large a record the DLQ and retry topics take, before consuming."""
        present = topic_names(self.kafka, timeout_s=30)
        self.known_topics = present
        self.topics_refreshed = time.monotonic()
        if self.dlq not in present:
            raise RuntimeFatal(f"dead-letter topic {self.dlq} does not exist; run `pipeline topics bootstrap`")
        self.retry_levels = 0
        for topic in self.retry_topics:
            if topic not in present:
                break
            self.retry_levels += 1
        if self.retry_levels < len(self.retry_topics):
            log.warning(
                "missing retry topics; failures past the last one go to the DLQ", extra={"levels": self.retry_levels}
            )
        self.topics = [t for t in self.topics if t in present or t not in self.retry_topics]
        for topic in [self.dlq, *self.retry_topics[: self.retry_levels]]:
            self._limit(topic)

    # ------------------------------------------------------------------ the loop

    def step(self) -> None:
        """One turn: resume what is due, fetch, process a batch if one is ready, commit on the interval."""
        assert self.consumer is not None
        self._resume_due()
        interval = self.settings.commit_interval_ms / 1000
        try:
            messages = self.consumer.consume(self.settings.max_batch_size, self.settings.poll_timeout_ms / 1000)
            if self.callback_error is not None:
                raise RuntimeFatal(f"rebalance callback failed: {self.callback_error!r}") from self.callback_error
            for msg in messages:
                self._buffer(msg)
            if self._batch_ready():
                # Commit first when due, so an open transaction does not also span this batch's model time.
                if self.txn_open and time.monotonic() - self.last_commit >= interval:
                    self.commit()
                self._process(self._take_batch())
            if time.monotonic() - self.last_commit >= interval:
                self.commit()
        except KafkaException as exc:
            self._on_kafka_error(exc)
        self._apply_backpressure()
        self._update_lag()

    def _buffer(self, msg: Message) -> None:
        error = msg.error()
        if error is not None:
            if error.fatal():
                raise RuntimeFatal(f"consumer fatal error: {error}")
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", extra={"error": str(error)})
            return
        tp = (msg.topic() or "", msg.partition() or 0)
        if tp not in self.assigned:
            return  # fetched before a revoke: the new owner reads it
        if tp in self.paused and self.paused[tp][1] != "backpressure":
            return  # fetched before a pause that sought back: it is read again after the resume
        if tp[0] in self.retry_topic_set:
            due_ms = _header_int(msg, "retry.due")
            now_ms = time.time() * 1000
            if due_ms is not None:
                # A retry record is due at most the longest delay after it was written, so a bogus or
                # skewed retry.due cannot hold the partition longer than that.
                written_ms = msg.timestamp()[1]
                if written_ms > 0:
                    due_ms = min(due_ms, written_ms + max(self.settings.retry_delays_ms))
            if due_ms is not None and due_ms > now_ms:
                # Not due yet: hold the partition here. Later records of a retry topic are due later still.
                self._seek(tp, msg.offset() or 0)
                self._pause(tp, time.monotonic() + (due_ms - now_ms) / 1000, "retry")
                return
        self.buffers.setdefault(tp, deque()).append(msg)
        self.buffered += 1
        if self.oldest_buffered_at is None:
            self.oldest_buffered_at = time.monotonic()

    def _batch_ready(self) -> bool:
        if self.buffered == 0:
            return False
        if self.buffered >= self.settings.max_batch_size:
            return True
        assert self.oldest_buffered_at is not None
        return (time.monotonic() - self.oldest_buffered_at) * 1000 >= self.settings.max_wait_ms

    def _take_batch(self) -> list[tuple[TP, list[Message]]]:
        taken: list[tuple[TP, list[Message]]] = []
        budget = self.settings.max_batch_size
        for tp in list(self.buffers):
            queue = self.buffers[tp]
            n = min(len(queue), budget)
            taken.append((tp, [queue.popleft() for _ in range(n)]))
            # Partitions served this time go to the back, so no partition starves the others.
            del self.buffers[tp]
            if queue:
                self.buffers[tp] = queue
            budget -= n
            self.buffered -= n
            if budget == 0:
                break
        self.oldest_buffered_at = time.monotonic() if self.buffered else None
        return taken

    # ------------------------------------------------------------------ processing

    def _process(self, taken: list[tuple[TP, list[Message]]]) -> None:
        records: dict[TP, list[InputRecord]] = {}
        failures: dict[tuple[TP, int], Failure] = {}
        for tp, msgs in taken:
            metrics.RECORDS_IN.labels(self.service, tp[0]).inc(len(msgs))
        try:
            for tp, msgs in taken:
                records[tp] = [self._decode(tp, msg, failures) for msg in msgs]
            outputs: dict[tuple[TP, int], list[Output]] = {}
            batches = [
                PartitionBatch(tp[0], tp[1], [r for r in recs if (tp, r.offset) not in failures] if failures else recs)
                for tp, recs in records.items()
            ]
            batches = [b for b in batches if b.records]
            if batches:
                metrics.BATCH_SIZE.labels(self.service).observe(sum(len(b.records) for b in batches))
                self._run_handler(batches, outputs, failures)
        except _Outage as outage:
            self._on_outage(taken, outage.cause)
            return
        self.backoff_ms = self.settings.dependency_backoff_ms
        # The transaction begins only now, after the handler returned: it never spans this batch's model time.
        if self.eos and not self.txn_open:
            self._begin()
        produced: Counter[str] = Counter()
        for tp, recs in records.items():
            for record in recs:
                key = (tp, record.offset)
                failure = failures.get(key)
                if failure is None:
                    failure = self._emit(record, outputs.get(key, []), produced)
                if failure is not None:
                    self._send_failure(record, failure)
            self.pending[tp] = recs[-1].offset + 1
        for topic, count in produced.items():
            metrics.RECORDS_OUT.labels(self.service, topic).inc(count)

    def _decode(self, tp: TP, msg: Message, failures: dict[tuple[TP, int], Failure]) -> InputRecord:
        offset = msg.offset() or 0
        payload: Any = None
        try:
            payload = self.decode(tp[0], msg.value(), tp[1], offset)
        except DependencyUnavailable as exc:
            raise _Outage(exc) from exc
        except DeserializationError as exc:
            failures[(tp, offset)] = Failure.of(exc)
        except Exception as exc:  # a decoder bug or odd bytes: still the record's fault, never the consumer's
            wrapped = DeserializationError(f"{type(exc).__name__}: {exc}", topic=tp[0], partition=tp[1], offset=offset)
            wrapped.__cause__ = exc
            failures[(tp, offset)] = Failure.of(wrapped)
        return InputRecord(tp[0], tp[1], offset, msg.key(), msg.value(), _headers(msg), msg.timestamp()[1], payload)

    def _run_handler(
        self,
        batches: list[PartitionBatch],
        outputs: dict[tuple[TP, int], list[Output]],
        failures: dict[tuple[TP, int], Failure],
    ) -> None:
        """Run the handler; when it raises, bisect until the failing records are isolated."""
        flat = [r for b in batches for r in b.records]
        started = time.perf_counter()
        try:
            result = self.handler(batches)
            if len(result) != len(flat):
                raise RuntimeError(f"handler returned {len(result)} results for {len(flat)} records")
        except DependencyUnavailable as exc:
            raise _Outage(exc) from exc
        except Exception as exc:
            if len(flat) == 1:
                failures[((flat[0].topic, flat[0].partition), flat[0].offset)] = Failure.of(exc)
                return
            half = len(flat) // 2
            for part in (flat[:half], flat[half:]):
                self._run_handler(_regroup(part), outputs, failures)
            return
        finally:
            metrics.HANDLER_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        for record, outs in zip(flat, result, strict=True):
            outputs[((record.topic, record.partition), record.offset)] = list(outs)

    def _emit(self, record: InputRecord, outs: list[Output], produced: Counter[str]) -> Failure | None:
        """Produce one record's outputs, unless one of them can never be written."""
        for out in outs:
            value, key = out.value, out.key
            if not ((value is None or type(value) is bytes) and (key is None or type(key) is bytes)):
                return Failure.of(OutputRejected(f"output for {out.topic} has a non-bytes key or value"))
            if out.topic not in self.known_topics and not self._topic_exists(out.topic):
                return Failure.of(OutputRejected(f"output topic {out.topic} does not exist", category="internal"))
            # Exact sizing only where it could matter: most outputs are far below the limit.
            if out.headers or len(out.value or b"") + len(out.key or b"") > SIZE_CHECK_FROM:
                size, limit = record_size(out.key, out.value, out.headers), self._limit(out.topic)
                if size > limit:
                    return Failure.of(OutputRejected(f"output for {out.topic} is {size} bytes, over its {limit}"))
        for out in outs:
            self._produce(out.topic, out.key, out.value, out.headers)
            produced[out.topic] += 1
        return None

    def _send_failure(self, record: InputRecord, failure: Failure) -> None:
        routed = route(
            self.service,
            record,
            failure,
            self.settings.retry_delays_ms,
            self.retry_levels,
            self.settings.stacktrace_max_bytes,
        )
        limit = self._limit(routed.topic)
        if not routed.dead and record_size(routed.key, routed.value, routed.headers) > limit:
            # Too large for the retry topic: it can never be retried, so it is dead-lettered now.
            routed = route(
                self.service,
                record,
                Failure(failure.error, failure.category, False),
                [],
                0,
                self.settings.stacktrace_max_bytes,
            )
        routed = fit(routed, self._limit(routed.topic))
        self._produce(routed.topic, routed.key, routed.value, routed.headers)
        counter = metrics.RECORDS_DEAD if routed.dead else metrics.RECORDS_RETRIED
        counter.labels(self.service, record.topic, failure.category).inc()
        _log_routed(record, routed, failure)

    def _produce(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        assert self.producer is not None
        while True:
            try:
                if headers:
                    self.producer.produce(topic, value=value, key=key, headers=list(headers))
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
        if time.monotonic() - self.topics_refreshed > 5.0:
            self.known_topics = topic_names(self.kafka)
            self.topics_refreshed = time.monotonic()
        return topic in self.known_topics

    # ------------------------------------------------------------------ commits and transactions

    def _begin(self) -> None:
        assert self.producer is not None
        self.producer.begin_transaction()
        self.txn_open = True

    def commit(self, final: bool = False) -> None:
        """Commit what was processed: the open transaction (exactly-once) or the stored offsets (at-least-once)."""
        self.last_commit = time.monotonic()
        if self.eos:
            self._commit_transaction()
        else:
            self._commit_offsets(synchronous=final)

    def _pending_offsets(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, offset) for (t, p), offset in self.pending.items()]

    def _commit_transaction(self) -> None:
        if not self.txn_open:
            return
        assert self.producer is not None and self.consumer is not None
        producer, consumer = self.producer, self.consumer
        offsets = self._pending_offsets()
        if offsets:
            # Fresh group metadata at every commit (KIP-447): the generation may have moved since the last one.
            _retry_call(
                lambda: producer.send_offsets_to_transaction(
                    offsets, consumer.consumer_group_metadata(), TXN_CALL_TIMEOUT_S
                )
            )
        # A commit that timed out may still land: retry the same call (for as long as it is retriable),
        # never abort after it.
        _retry_call(lambda: producer.commit_transaction(TXN_CALL_TIMEOUT_S), attempts=None)
        self.txn_open = False
        self.pending.clear()
        metrics.TRANSACTIONS.labels(self.service, "commit").inc()

    def _commit_offsets(self, synchronous: bool = False) -> None:
        assert self.producer is not None and self.consumer is not None
        if not self.pending:
            self.producer.poll(0)
            return
        remaining = self.producer.flush(TXN_CALL_TIMEOUT_S)
        if remaining or self.deliveries.failures:
            # An output was not acknowledged: do not commit past it; read again from the last commit.
            log.warning(
                "unacknowledged outputs; rewinding",
                extra={"remaining": remaining, "failures": len(self.deliveries.failures)},
            )
            self.deliveries.clear()
            self._rewind()
            return
        # Every output up to here is acknowledged. An asynchronous commit that is lost only means those
        # records are read again, which at-least-once allows; it saves a round trip per interval.
        if synchronous:
            self.consumer.commit(offsets=self._pending_offsets(), asynchronous=False)
        else:
            self.consumer.commit(offsets=self._pending_offsets(), asynchronous=True)
        self.pending.clear()

    def _on_kafka_error(self, exc: KafkaException) -> None:
        failure = KafkaFailure.of(exc)
        if failure is None or failure.fatal:
            raise RuntimeFatal(f"fatal Kafka error: {exc}") from exc
        if self.eos and (failure.txn_requires_abort or self.txn_open):
            log.warning("aborting transaction", extra={"error": str(failure)})
            self._abort()
        self._rewind()

    def _abort(self) -> None:
        assert self.producer is not None
        producer = self.producer
        if self.txn_open:
            _retry_call(lambda: producer.abort_transaction(TXN_CALL_TIMEOUT_S))
            metrics.TRANSACTIONS.labels(self.service, "abort").inc()
        self.txn_open = False

    def _rewind(self, only: set[TP] | None = None) -> None:
        """Seek every assigned partition back to its committed offset and drop what was buffered."""
        assert self.consumer is not None
        for key in list(self.buffers):
            if only is None or key in only:
                self.buffered -= len(self.buffers.pop(key))
        self.oldest_buffered_at = time.monotonic() if self.buffered else None
        for key in list(self.pending):
            if only is None or key in only:
                del self.pending[key]
        targets = [TopicPartition(t, p) for (t, p) in (only if only is not None else self.assigned)]
        if targets:
            try:
                for tp in self.consumer.committed(targets, timeout=TXN_CALL_TIMEOUT_S):
                    if tp.error is not None:
                        raise RuntimeFatal(f"cannot read committed offset of {tp.topic}[{tp.partition}]: {tp.error}")
                    self._seek((tp.topic, tp.partition), tp.offset if tp.offset >= 0 else self._reset_offset())
            except KafkaException as exc:
                # Cannot put the consumer back where it must be: a restart reads from the committed offsets.
                raise RuntimeFatal(f"rewind failed: {exc}") from exc
        # Held retry records are read again and held again if still not due.
        for key, (_until, reason) in list(self.paused.items()):
            if reason == "retry" and (only is None or key in only):
                self._resume(key)

    def _reset_offset(self) -> int:
        reset = str(self.settings.extra_consumer_config.get("auto.offset.reset", "earliest"))
        return OFFSET_END if reset in ("latest", "largest", "end") else OFFSET_BEGINNING

    # ------------------------------------------------------------------ pause, resume, outages

    def _seek(self, tp: TP, offset: int) -> None:
        assert self.consumer is not None
        self.consumer.seek(TopicPartition(tp[0], tp[1], offset))

    def _pause(self, tp: TP, until: float, reason: str) -> None:
        assert self.consumer is not None
        self.consumer.pause([TopicPartition(*tp)])
        self.paused[tp] = (until, reason)
        metrics.PAUSED.labels(self.service).set(len(self.paused))

    def _resume(self, tp: TP) -> None:
        assert self.consumer is not None
        self.paused.pop(tp, None)
        self.consumer.resume([TopicPartition(*tp)])
        metrics.PAUSED.labels(self.service).set(len(self.paused))

    def _resume_due(self) -> None:
        now = time.monotonic()
        for tp, (until, _reason) in list(self.paused.items()):
            if until <= now:
                self._resume(tp)

    def _apply_backpressure(self) -> None:
        """Pause every partition while too much is buffered or the producer is behind; resume at half."""
        assert self.producer is not None
        self.producer.poll(0)  # serve delivery reports, so the in-flight count is current
        buffered, inflight = self.buffered, len(self.producer)
        s = self.settings
        if buffered > s.max_buffered_records or inflight > s.max_inflight_outputs:
            to_pause = self.assigned - set(self.paused)
            for tp in to_pause:
                self._pause(tp, math.inf, "backpressure")
            if to_pause:
                metrics.BACKPRESSURE_PAUSES.labels(self.service).inc()
        elif buffered <= s.max_buffered_records // 2 and inflight <= s.max_inflight_outputs // 2:
            for tp, (_until, reason) in list(self.paused.items()):
                if reason == "backpressure":
                    self._resume(tp)

    def _on_outage(self, taken: list[tuple[TP, list[Message]]], cause: DependencyUnavailable) -> None:
        """A shared dependency is down: not the records' fault. Put them back and pause everything a while."""
        firsts = {tp: msgs[0].offset() or 0 for tp, msgs in taken if msgs}
        for tp, queue in self.buffers.items():
            if queue and tp not in firsts:
                firsts[tp] = queue[0].offset() or 0
        for tp, offset in firsts.items():
            self._seek(tp, offset)
        self.buffers.clear()
        self.buffered = 0
        self.oldest_buffered_at = None
        until = time.monotonic() + self.backoff_ms / 1000
        for tp in self.assigned:
            self._pause(tp, until, "dependency")
        metrics.DEPENDENCY_PAUSES.labels(self.service).inc()
        log.warning("dependency unavailable; pausing", extra={"error": str(cause), "backoff_ms": self.backoff_ms})
        self.backoff_ms = min(self.backoff_ms * 2, self.settings.dependency_backoff_max_ms)

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
                self.assigned.add((tp.topic, tp.partition))
            self.joined.set()
            outage = [until for until, reason in self.paused.values() if reason == "dependency"]
            if outage:
                # A dependency is down: new partitions wait out the same backoff as the others.
                for tp in partitions:
                    self._pause((tp.topic, tp.partition), max(outage), "dependency")
            else:
                # A pause outlives a rebalance in librdkafka: clear any pause we do not hold ourselves.
                fresh = [tp for tp in partitions if (tp.topic, tp.partition) not in self.paused]
                if fresh:
                    consumer.resume(fresh)
        except BaseException as exc:
            self.callback_error = exc
        log.info("partitions assigned", extra={"partitions": [f"{t.topic}[{t.partition}]" for t in partitions]})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        try:
            if not self.failed:
                # Hand over cleanly: what was processed is committed before another member takes the partitions.
                self.commit()
        except KafkaException as exc:
            try:
                self._on_kafka_error(exc)
            except BaseException as inner:
                self.callback_error = inner
        except BaseException as exc:
            self.callback_error = exc
        finally:
            self._forget(revoked)
        log.info("partitions revoked", extra={"partitions": sorted(f"{t}[{p}]" for t, p in revoked)})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        try:
            # Someone else may own them already: nothing processed for them may be committed.
            if self.eos:
                self._abort()
                self._rewind(self.assigned - lost)
        except BaseException as exc:
            self.callback_error = exc
        finally:
            self._forget(lost)
        log.warning("partitions lost", extra={"partitions": sorted(f"{t}[{p}]" for t, p in lost)})

    def _forget(self, partitions: set[TP]) -> None:
        for tp in partitions:
            queue = self.buffers.pop(tp, None)
            if queue:
                self.buffered -= len(queue)
            self.pending.pop(tp, None)
            self.paused.pop(tp, None)
            self.assigned.discard(tp)
        self.oldest_buffered_at = time.monotonic() if self.buffered else None
        metrics.PAUSED.labels(self.service).set(len(self.paused))


def _regroup(records: list[InputRecord]) -> list[PartitionBatch]:
    batches: list[PartitionBatch] = []
    for record in records:
        if batches and (batches[-1].topic, batches[-1].partition) == (record.topic, record.partition):
            batches[-1].records.append(record)
        else:
            batches.append(PartitionBatch(record.topic, record.partition, [record]))
    return batches


def _retry_call(call: Callable[[], object], attempts: int | None = 10) -> None:
    """Call a transactional API; repeat it on a retriable error, as librdkafka's EOS guide says.

    ``attempts=None`` repeats for as long as the error stays retriable.
    """
    attempt = 0
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            failure = KafkaFailure.of(exc)
            if failure is not None and failure.retriable and (attempts is None or attempt < attempts - 1):
                time.sleep(min(0.1 * 2**attempt, 2.0))
                attempt += 1
                continue
            if failure is not None and failure.fatal:
                raise RuntimeFatal(f"fatal transactional error: {failure}") from exc
            raise


def _headers(msg: Message) -> Headers:
    raw = msg.headers()
    if raw is None:
        return []
    items = raw.items() if isinstance(raw, dict) else raw
    return [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in items]


def _header_int(msg: Message, name: str) -> int | None:
    for key, value in _headers(msg):
        if key == name:
            try:
                return int(value.decode())
            except ValueError:
                return None
    return None


def _log_routed(record: InputRecord, routed: Routed, failure: Failure) -> None:
    event_id = record.header("ce_id")
    traceparent = record.header("traceparent")
    log.warning(
        "record dead-lettered" if routed.dead else "record sent to retry",
        extra={
            "event_id": event_id.decode(errors="replace") if event_id else None,
            "trace_id": traceparent.decode(errors="replace").split("-")[1]
            if traceparent and b"-" in traceparent
            else None,
            "position": record.position,
            "to": routed.topic,
            "attempt": routed.attempt,
            "category": failure.category,
            "error_type": failure.type_name,
            "payload": payload_hash(record.value),
        },
    )
