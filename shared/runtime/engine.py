"""The consume-process-produce loop: one thread, one consumer, one producer, exactly-once or at-least-once."""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import wait
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from shared.errors import DependencyUnavailable, RuntimeFatal
from shared.kafka import KafkaConnection, KafkaFailure, bootstrap_topics
from shared.kafka.admin import partitions_of
from shared.runtime import metrics
from shared.runtime.batching import PartitionBuffers
from shared.runtime.commits import TXN_CALL_TIMEOUT_S, Commits, OffsetCommits, TransactionalCommits, retry_call
from shared.runtime.flow import DEPENDENCY, RETRY, FlowControl
from shared.runtime.outputs import Hold, OutputWriter
from shared.runtime.positions import PartitionPositions
from shared.runtime.processing import (
    HandlerCaller,
    InFlight,
    Outage,
    Processor,
    SettledBatch,
    decode_batch,
    fill_results,
    handler_batches,
    read_headers,
)
from shared.runtime.records import TP, Decoder, Handler, PartitionBatch, RecordKey, raw_decoder
from shared.runtime.routing import Failure, due_at
from shared.runtime.settings import RuntimeSettings
from shared.runtime.state import ChangelogRecord, Table, Tables
from shared.runtime.stateful import CallState, Restorer, SourceTable, StateBook, apply_source
from shared.runtime.strikes import DependencyStrikes
from shared.topics import TopicSpec, replay_topic

log = logging.getLogger(__name__)


class Runtime:
    """Consume ``input_topics`` (plus this service's retry and replay topics), run ``handler``, produce.

    Records are buffered per partition (``batching``), handed to the handler in batches, possibly several in
    flight (``processing``), and their results are written strictly in submit order (``outputs``): outputs,
    retry and dead-letter records and the consumed offsets in one transaction that commits on an interval
    (``commits``), as Kafka Streams' ``commit.interval.ms``.
    """

    def __init__(
        self,
        service: str,
        kafka: KafkaConnection,
        input_topics: Sequence[str],
        handler: Handler,
        settings: RuntimeSettings,
        decode: Decoder = raw_decoder,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
        tables: Sequence[Table[Any]] = (),
        sources: Sequence[SourceTable] = (),
    ) -> None:
        self.service = service
        # client.id, transactional.id and group.instance.id all name this process: <service>-<instance>.
        self.instance_id = f"{service}-{settings.instance}"
        self.kafka = kafka.for_client(self.instance_id)
        self.input_topics = list(input_topics)
        self.settings = settings
        # A source table's topic is read as bytes: the table decodes it (``SourceTable.decode``).
        self.sources = {source.topic: source for source in sources}
        self.decode = _skipping(decode, set(self.sources)) if self.sources else decode
        self.tables: Tables | None = None
        self.book: StateBook | None = None
        self.restorer: Restorer | None = None
        self.max_inflight = settings.max_inflight_batches
        if tables or sources:
            missing = set(self.sources) - set(self.input_topics)
            if missing:
                raise ValueError(f"source table topics {sorted(missing)} must be input topics too")
            self.tables = Tables(
                service,
                self.instance_id,
                [*tables, *(source.table for source in sources)],
                settings.state,
                {source.table.name: source.topic for source in sources},
            )
            self.book = StateBook(self.tables)
            sources_by_table = {source.table.name: source for source in sources}
            self.restorer = Restorer(service, self.kafka, self.tables, sources_by_table, settings.restore_timeout_s)
            # A partition's next batch reads its previous one's writes: one call at a time, each settled (and its
            # state sealed) before the next begins.
            self.max_inflight = 1
        self.producer_factory = producer_factory
        self.eos = settings.exactly_once
        self.caller = HandlerCaller(handler, service)
        self.processor = Processor(
            self.caller, settings.handler_timeout_s, settings.bisect_max_calls, settings.bisect_max_seconds
        )
        self.buffers = PartitionBuffers(settings.max_batch_size, settings.max_wait_ms)
        self.flow = FlowControl(service, settings)
        self.positions = PartitionPositions(service, self.buffers, self.flow)
        self.strikes = DependencyStrikes(settings.dependency_strikes)
        self.writer = OutputWriter(service, self.kafka, settings, self.positions, self.strikes)
        self.inflight: deque[InFlight] = deque()
        # Results from before an abort carry an older epoch and are never produced.
        self.epoch = 0
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.commits: Commits | None = None
        self.topics: list[str] = []
        self.retry_topic_set: frozenset[str] = frozenset()
        self.last_commit = time.monotonic()
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
            if self.settings.gc_gen0_threshold:
                # Every record allocates; few of those objects form cycles. Collect generation 0 every 50k
                # allocations rather than 700, and leave what start-up built (models, codecs) out of every pass.
                gc.freeze()
                _, gen1, gen2 = gc.get_threshold()
                gc.set_threshold(self.settings.gc_gen0_threshold, gen1, gen2)
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
            retry_topics = self.writer.load_topics()
            if self.tables is not None:
                self._changelogs()
            self.retry_topic_set = frozenset(retry_topics)
            self.topics = [*self.input_topics, *retry_topics, replay_topic(self.service)]
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
                    # Tables need partition p of every input topic in one process (state is per partition number):
                    # the range assignor gives co-partitioned topics' partitions to the same member.
                    "partition.assignment.strategy": "range" if self.tables is not None else "cooperative-sticky",
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
            self.positions.attach(self.consumer)
            commits_type = TransactionalCommits if self.eos else OffsetCommits
            self.commits = commits_type(self.service, producer, self.consumer, self.stop_event.is_set)
            self.writer.attach(producer, self.commits)
            self.consumer.subscribe(
                self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        except BaseException:
            self.close()
            raise
        log.info("runtime started", extra={"service": self.service, "topics": self.topics, "eos": self.eos})

    def _changelogs(self) -> None:
        """Create any changelog topic not there yet, as Kafka Streams creates its internal topics: compacted, with
        the first input topic's partitions (``shared/topics.py`` registers the services' own, for bootstrap)."""
        assert self.tables is not None
        absent = [t for t in self.tables.changelogged.values() if not self.writer.topic_exists(t)]
        if not absent:
            return
        partitions = len(partitions_of(self.kafka, self.input_topics[0]))
        specs = [TopicSpec(topic, partitions, "table key", None, compacted=True) for topic in absent]
        bootstrap_topics(self.kafka, specs)
        log.info("changelog topics created", extra={"topics": absent, "partitions": partitions})

    @property
    def restoring(self) -> list[int]:
        """Partitions whose tables are being restored (readiness waits for them)."""
        return sorted(self.restorer.jobs) if self.restorer is not None else []

    def close(self) -> None:
        if self.restorer is not None:
            self.restorer.close()
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                self.consumer.close()
            self.consumer = None
        if self.producer is not None:
            self.producer.flush(10)
            self.producer = None
        self.caller.close()
        if self.tables is not None:
            self.tables.close()

    # ------------------------------------------------------------------ the loop

    def step(self) -> None:
        """One turn: resume what is due, fetch, settle finished batches, submit ready ones, commit on time."""
        assert self.consumer is not None
        now = time.monotonic()
        if self.restorer is not None:
            for partition in self.restorer.take_finished():
                self.flow.restored({tp for tp in self.positions.assigned if tp[1] == partition})
        self.flow.resume_due(now)
        try:
            messages = self.consumer.consume(self.settings.max_batch_size, self._poll_timeout(now))
            if self.callback_error is not None:
                raise RuntimeFatal(f"rebalance callback failed: {self.callback_error!r}") from self.callback_error
            self._buffer_all(messages)
            self._settle_finished()
            while self.buffers.ready() and len(self.inflight) < self.max_inflight:
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
        assigned = self.positions.assigned
        self.flow.backpressure(assigned, self.buffers.count + self._inflight_records(), len(self.producer))
        self.positions.update_lag()

    def _poll_timeout(self, now: float) -> float:
        """Wait no longer than the nearest of: the poll timeout, a batch's max wait, the next resume, the next
        commit; not at all when a batch is ready to go."""
        timeout = self.settings.poll_timeout_ms / 1000
        to_ready = self.buffers.seconds_to_ready(now)
        if to_ready is not None and len(self.inflight) < self.max_inflight:
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
        positions = self.positions
        assigned, first_fetched, next_offset = positions.assigned, positions.first_fetched, positions.next_offset
        paused, retry_topics, add = self.flow.paused, self.retry_topic_set, self.buffers.add
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
                first_fetched[tp] = offset
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
        self.positions.seek(tp, msg.offset() or 0)
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
        scope: CallState | None = None
        if self.book is not None and batches:
            batches, entries = self.book.begin(batches)
            if self.sources:
                batches = self._apply_sources(batches, failures)
            scope = CallState(entries)  # after the source tables' writes: a failed call never drops those
        future = self.caller.call(batches) if batches else None
        if batches:
            metrics.BATCH_SIZE.labels(self.service).observe(sum(len(b.records) for b in batches))
        self.inflight.append(InFlight(self.epoch, taken, records, failures, batches, future, scope=scope))

    def _apply_sources(self, batches: list[PartitionBatch], results: dict[RecordKey, Any]) -> list[PartitionBatch]:
        """Source tables' records update their tables here (no handler call); the rest go to the handler."""
        kept = []
        for batch in batches:
            source = self.sources.get(batch.topic)
            if source is None:
                kept.append(batch)
                continue
            fill_results(results, batch.records, apply_source(batch, source))
        return kept

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
            settled = self.processor.settle(head)
            if isinstance(head.scope, CallState):
                head.scope.seal()
            metrics.HANDLER_SECONDS.labels(self.service).observe(time.monotonic() - head.submitted_at)
            self._finalize(head, settled)

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

    def _finalize(self, inflight: InFlight, settled: SettledBatch) -> None:
        """Produce one batch's results: outputs, retry and dead-letter records; advance its partitions."""
        if inflight.epoch != self.epoch:
            return  # results from before an abort: never produced
        if settled.outage is not None:
            self._on_outage(inflight.first_offsets(), settled.outage)
            return
        changelog = self._changelog(inflight)
        if settled.clean is not None and self.writer.fits_fast_path(settled.clean):
            self.flow.recovered()
            self.writer.write_clean(inflight.batches, settled.clean, changelog)
            self._produced(inflight)
            self.strikes.count_passed(len(settled.clean))
            return
        results = settled.results
        if settled.clean is not None:
            results = {}
            fill_results(results, [r for b in inflight.batches for r in b.records], settled.clean)
        outage = self.strikes.outage(results)
        if outage is not None:
            # Nothing passed, here or since: an outage, not these records' fault. Route nothing.
            self._on_outage(inflight.first_offsets(), outage)
            return
        self.flow.recovered()
        holds = self.writer.write(inflight.records, results, changelog)
        self._produced(inflight)
        self.strikes.count_passed(sum(1 for r in results.values() if not isinstance(r, Failure)))
        if holds and self.book is not None:
            # A hold would split a batch whose state writes are one: start every partition again from what was
            # committed (exactly-once: the open transaction aborts), then hold.
            assert self.commits is not None
            self.commits.abort()
            self._rewind()
            for tp, hold in holds.items():
                self._hold(tp, hold)
            return
        if holds:
            self._put_back({tp: hold.offset for tp, hold in holds.items()})
            for tp, hold in holds.items():
                self._hold(tp, hold)

    def _produced(self, inflight: InFlight) -> None:
        if self.book is not None and isinstance(inflight.scope, CallState):
            self.book.produced(inflight.scope.entries)

    def _hold(self, tp: TP, hold: Hold) -> None:
        backoff_ms = self.flow.backoff_ms if hold.reason == DEPENDENCY else self.settings.missing_topic_backoff_ms
        self.flow.hold(tp, backoff_ms / 1000, hold.reason)

    def _changelog(self, inflight: InFlight) -> dict[TP, list[ChangelogRecord]]:
        """The batch's table writes, by the input partition whose outputs they go out with (partition ``p``'s
        with the first input topic-partition numbered ``p``)."""
        if self.book is None or not isinstance(inflight.scope, CallState):
            return {}
        first: dict[int, TP] = {}
        for tp, _ in inflight.taken:
            first.setdefault(tp[1], tp)
        found: dict[TP, list[ChangelogRecord]] = {}
        for record in self.book.changelog(inflight.scope.entries):
            found.setdefault(first[record.partition], []).append(record)
        return found

    # ------------------------------------------------------------------ commits, aborts, rewinds

    def commit(self, final: bool = False) -> None:
        """Commit what was produced: the open transaction (exactly-once) or the acknowledged offsets."""
        assert self.commits is not None
        self.last_commit = time.monotonic()
        rewind = self.commits.commit(synchronous=final)
        if self.book is not None:
            self.book.committed(tp[1] for tp in rewind)
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
        """After an abort: forget every result not committed and rewind the partitions we consumed."""
        self._discard_inflight()
        if self.book is not None:
            self.book.discard(None if only is None else {tp[1] for tp in only})
        self.positions.rewind(self.commits.committed if self.commits is not None else {}, only)

    def _put_back(self, targets: dict[TP, int]) -> None:
        """Discard every in-flight batch (nothing of them was produced) and seek their partitions, and
        ``targets``, back to the first record not yet produced; drop what was buffered behind."""
        discarded = [inflight.first_offsets() for inflight in self.inflight]
        self._discard_inflight()
        self.positions.put_back(discarded, targets)

    def _discard_inflight(self) -> None:
        """Forget in-flight batches: their results are never produced, and their work is cancelled."""
        for inflight in self.inflight:
            if inflight.future is not None:
                inflight.future.cancel()
        self.inflight.clear()
        self.epoch += 1
        if self.book is not None:
            self.book.discard_unproduced()

    # ------------------------------------------------------------------ outages

    def _on_outage(self, firsts: dict[TP, int], cause: DependencyUnavailable) -> None:
        """A shared dependency is down: not the records' fault. Put them back and pause everything a while."""
        # Earlier in-flight batches of the same partitions are discarded too: go back to the first record
        # not yet produced, and drop (and re-read) everything buffered.
        self._put_back(self.positions.outage_targets(firsts))
        self.buffers.drop()
        self.flow.outage(self.positions.assigned, cause)

    # ------------------------------------------------------------------ rebalances

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            if self.tables is None:
                consumer.incremental_assign(partitions)
            else:
                consumer.assign(partitions)  # the range assignor is eager: this is the whole assignment
            self.positions.assign((tp.topic, tp.partition) for tp in partitions)
            self.flow.on_assign(partitions)
            if self.tables is not None:
                self._restore(partitions)
            self.joined.set()
        except BaseException as exc:
            self.callback_error = exc
        log.info("partitions assigned", extra={"partitions": [f"{t.topic}[{t.partition}]" for t in partitions]})

    def _restore(self, partitions: list[TopicPartition]) -> None:
        """New partitions' tables start empty and are restored before their first batch: until then every topic's
        partition of that number is paused."""
        assert self.tables is not None and self.restorer is not None
        fresh = sorted({tp.partition for tp in partitions} - set(self.tables.partitions))
        for partition in fresh:
            self.tables.assign(partition)
            self.restorer.start(partition)
        restoring = set(self.restorer.jobs)
        self.flow.restoring_pause({(tp.topic, tp.partition) for tp in partitions if tp.partition in restoring})

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
        self._rewind(self.positions.assigned - leaving)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        try:
            # Someone else may own them already: nothing processed for them may be committed.
            if self.eos and self.commits is not None:
                self.commits.abort()
                self._rewind(self.positions.assigned - lost)
            else:
                self._put_back({})
        except BaseException as exc:
            self.callback_error = exc
        finally:
            self._forget(lost)
        log.warning("partitions lost", extra={"partitions": sorted(f"{t}[{p}]" for t, p in lost)})

    def _forget(self, partitions: set[TP]) -> None:
        if self.tables is not None:
            kept = {tp[1] for tp in self.positions.assigned - partitions}
            gone = {tp[1] for tp in partitions} - kept
            if gone:
                assert self.restorer is not None and self.book is not None
                self.restorer.cancel(gone)
                self.book.forget(gone)
                self.tables.revoke(gone)
        self.buffers.drop(partitions)
        if self.commits is not None:
            self.commits.forget(partitions)
        self.flow.forget(partitions)
        self.positions.forget(partitions)
        self.strikes.forget(partitions)


def _skipping(decode: Decoder, raw_topics: set[str]) -> Decoder:
    """``decode``, but records of ``raw_topics`` (source tables' topics) stay bytes: the table decodes them."""

    def decoder(topic: str, value: bytes | None, partition: int, offset: int) -> Any:
        if topic in raw_topics:
            return value
        return decode(topic, value, partition, offset)

    return decoder
