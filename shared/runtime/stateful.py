"""The runtime's side of tables: which batches' state is pending, produced or committed, and restoring a partition's
tables from their changelogs (or a source table's own topic) before its first batch.

The engine begins a ``BatchState`` per partition number per handler call, seals it when the answer is in,
produces its changelog records with the batch's outputs, and applies it to the store once the transaction (or,
at-least-once, the offset commit) succeeded; whatever is rewound is discarded, so a store only ever holds what
Kafka committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]
from prometheus_client import Counter, Gauge

from shared.kafka import KafkaConnection
from shared.runtime.records import InputRecord, PartitionBatch
from shared.runtime.state import BatchState, ChangelogRecord, PartitionTables, Table, Tables

log = logging.getLogger(__name__)

RESTORE_REMAINING = Gauge(
    "runtime_state_restore_remaining_records",
    "Changelog records left to restore before the partition's first batch (0 when none is restoring)",
    ["service", "table"],
)
RESTORED = Counter("runtime_state_restored_records_total", "Changelog records restored", ["service", "table"])
RESTORING = Gauge("runtime_state_restoring_partitions", "Partitions whose tables are being restored", ["service"])
STATE_WRITES = Counter("runtime_state_changelog_records_total", "Changelog records produced", ["service", "table"])

# Turns a source table's record (its key and value bytes, partition and offset) into the value it stores; None
# deletes the key. Raising skips the record (it was routed when it was consumed).
SourceDecoder = Callable[[bytes | None, bytes | None, int, int], Any]


@dataclass(frozen=True)
class SourceTable:
    """A table whose changelog is a compacted input topic of the service: its records update it as they arrive."""

    table: Table[Any]
    topic: str
    decode: SourceDecoder


@dataclass
class Pending:
    """One handler call's state of one partition: sealed when answered, produced with its outputs, then committed."""

    state: BatchState
    produced: bool = False


class CallState:
    """The table state of one handler call (``processing.CallScope``): a savepoint before the call, so a failed
    call's writes are dropped before its bisection, and one around each bisection call."""

    def __init__(self, entries: list[Pending]) -> None:
        self.entries = entries
        self.points = self.before_call()
        self.settled = False

    def before_call(self) -> list[int]:
        return [entry.state.savepoint() for entry in self.entries]

    def after_call(self, points: list[int], ok: bool) -> None:
        for entry, point in zip(self.entries, points, strict=True):
            if ok:
                entry.state.release(point)
            else:
                entry.state.rollback(point)

    def answered(self, ok: bool) -> None:
        self.after_call(self.points, ok)
        self.settled = True

    def seal(self) -> None:
        """The answer (and any bisection) is done: no more writes; the partition's next batch may begin. A call
        never made (every record was a source table's, or undecodable) keeps what was written before it."""
        if not self.settled:
            self.answered(True)
        for entry in self.entries:
            entry.state.seal()


@dataclass
class StateBook:
    """Every partition's pending batch states, in the order they began."""

    tables: Tables
    pending: dict[int, deque[Pending]] = field(default_factory=dict)

    def begin(self, batches: list[PartitionBatch]) -> tuple[list[PartitionBatch], list[Pending]]:
        """One ``BatchState`` per partition number of a handler call, at the stream time of its newest record;
        the batches with it attached."""
        states: dict[int, Pending] = {}
        for batch in batches:
            newest = max(0, max(r.timestamp_ms for r in batch.records))
            entry = states.get(batch.partition)
            if entry is None:
                entry = states[batch.partition] = Pending(self.tables[batch.partition].begin(now_ms=newest))
                self.pending.setdefault(batch.partition, deque()).append(entry)
            else:
                entry.state.advance(newest)
        attached = [PartitionBatch(b.topic, b.partition, b.records, states[b.partition].state) for b in batches]
        return attached, list(states.values())

    @staticmethod
    def changelog(entries: list[Pending]) -> list[ChangelogRecord]:
        """The records to produce with the batch."""
        return [record for entry in entries for record in entry.state.changelog()]

    @staticmethod
    def produced(entries: list[Pending]) -> None:
        """The batch and its changelog records went out (pending the commit): an outage's put-back keeps them.
        Marked only once written, so a batch put back before that (an outage found after settling) is discarded."""
        for entry in entries:
            entry.produced = True

    def committed(self, rewound: Iterable[int] = ()) -> None:
        """The transaction (or the offsets) committed: every produced state becomes the store's, but for the
        partitions rewound (at-least-once: a delivery failed), whose pending states are all thrown away."""
        gone = set(rewound)
        for partition, entries in self.pending.items():
            if partition in gone:
                self._discard(partition, 0)
                continue
            tables = self.tables[partition]
            while entries and entries[0].produced:
                tables.commit(entries.popleft().state)

    def discard_unproduced(self) -> None:
        """In-flight batches were put back (an outage, a hold): their state goes, what is produced stays."""
        for partition, entries in self.pending.items():
            first = next((i for i, e in enumerate(entries) if not e.produced), None)
            if first is not None:
                self._discard(partition, first)

    def discard(self, partitions: Iterable[int] | None = None) -> None:
        """An abort, or a rewind to the committed position: every pending state of these partitions goes."""
        for partition in list(self.pending) if partitions is None else partitions:
            self._discard(partition, 0)

    def _discard(self, partition: int, first: int) -> None:
        entries = self.pending.get(partition)
        if not entries or first >= len(entries):
            return
        if partition in self.tables:
            self.tables[partition].discard(entries[first].state)
        while len(entries) > first:
            entries.pop()

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.pending.pop(partition, None)


@dataclass
class _Job:
    partition: int
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class Restorer:
    """Restores partitions' tables in a thread of its own, one partition at a time, with a consumer that joins no
    group (``read_committed``, so aborted writes never come back): each changelog from its start to its last
    stable offset; a source table's topic up to the group's committed offset (what follows is consumed as usual).
    """

    def __init__(
        self,
        service: str,
        kafka: KafkaConnection,
        tables: Tables,
        sources: dict[str, SourceTable],
        timeout_s: float = 60.0,
        chunk: int = 10_000,
    ) -> None:
        self.service = service
        self.kafka = kafka
        self.tables = tables
        self.sources = sources
        self.timeout_s = timeout_s
        self.chunk = chunk
        self.jobs: dict[int, _Job] = {}
        self.queue: deque[_Job] = deque()
        self.finished: deque[int] = deque()
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.stopping = False
        self.thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        return bool(self.jobs)

    def start(self, partition: int) -> None:
        """Restore ``partition``'s (fresh, empty) tables; ``take_finished`` names it once done."""
        job = _Job(partition)
        with self.lock:
            self.jobs[partition] = job
            self.queue.append(job)
            RESTORING.labels(self.service).set(len(self.jobs))
            if self.thread is None:
                self.thread = threading.Thread(target=self._serve, name=f"{self.service}-restore", daemon=True)
                self.thread.start()
            self.wake.notify()

    def cancel(self, partitions: Iterable[int]) -> None:
        """Revoked while restoring: stop, and wait until the thread no longer touches the partition's tables."""
        waiting: list[_Job] = []
        with self.lock:
            for partition in partitions:
                job = self.jobs.pop(partition, None)
                if job is None:
                    continue
                job.cancelled.set()
                if job in self.queue:
                    self.queue.remove(job)  # never started: nothing to wait for
                    job.done.set()
                else:
                    waiting.append(job)
            RESTORING.labels(self.service).set(len(self.jobs))
        for job in waiting:
            job.done.wait(self.timeout_s)

    def take_finished(self) -> list[int]:
        """Partitions restored since the last call (their tables ready for batches)."""
        with self.lock:
            done = list(self.finished)
            self.finished.clear()
            return done

    def close(self) -> None:
        with self.lock:
            self.stopping = True
            for job in self.jobs.values():
                job.cancelled.set()
            self.wake.notify()
        if self.thread is not None:
            self.thread.join(self.timeout_s)

    # ------------------------------------------------------------------ the thread

    def _serve(self) -> None:
        consumer: Consumer | None = None
        try:
            while True:
                with self.lock:
                    while not self.queue and not self.stopping:
                        self.wake.wait()
                    if self.stopping:
                        return
                    job = self.queue.popleft()
                if consumer is None:
                    consumer = Consumer(
                        self.kafka.consumer_config(
                            self.service,  # the group's id, to read its committed offsets; it never subscribes
                            **{
                                "enable.auto.commit": False,
                                "enable.partition.eof": True,
                                "isolation.level": "read_committed",
                                "fetch.wait.max.ms": 50,
                                # librdkafka pauses fetching for a second once 100k records are queued: a
                                # million-key changelog hit that again and again (8 s to restore, not 3).
                                "fetch.queue.backoff.ms": 10,
                            },
                        )
                    )
                self._run(consumer, job)
        finally:
            if consumer is not None:
                consumer.close()

    def _run(self, consumer: Consumer, job: _Job) -> None:
        started = time.monotonic()
        while not job.cancelled.is_set():
            try:
                restored = self._restore(consumer, job)
            except (KafkaException, TimeoutError, RuntimeError) as exc:
                job.error = str(exc)
                log.warning(
                    "restore failed; starting the partition again",
                    extra={"service": self.service, "partition": job.partition, "error": str(exc)[:300]},
                )
                if job.partition in self.tables and not job.cancelled.is_set():
                    self.tables.assign(job.partition)  # empty again: a restore is all or nothing
                job.cancelled.wait(1.0)
                continue
            if restored is not None:
                log.info(
                    "tables restored",
                    extra={
                        "service": self.service,
                        "partition": job.partition,
                        "records": restored,
                        "seconds": round(time.monotonic() - started, 3),
                    },
                )
                with self.lock:
                    if self.jobs.get(job.partition) is job:
                        del self.jobs[job.partition]
                        self.finished.append(job.partition)
                    RESTORING.labels(self.service).set(len(self.jobs))
            break
        job.done.set()

    def _restore(self, consumer: Consumer, job: _Job) -> int | None:
        """Every table of the partition; None when cancelled on the way."""
        partition = job.partition
        tables: PartitionTables = self.tables[partition]
        total = 0
        for name, topic in self.tables.topics.items():
            source = self.sources.get(name)
            tp = TopicPartition(topic, partition)
            if source is not None:
                committed = consumer.committed([tp], timeout=self.timeout_s)[0].offset
                low, _ = consumer.get_watermark_offsets(tp, timeout=self.timeout_s, cached=False)
                start, end = low, max(committed, 0)
            else:
                start, end = self._bounds(tp)
            if end <= start:
                continue
            records = self._read(consumer, tp, start, end, job, name)
            if source is None:
                count = tables.restore(name, ((key, value) for key, value, _ in records))
            else:
                count = tables.restore(name, _decoded(records, source, partition))
            if job.cancelled.is_set():
                return None
            total += count
            RESTORE_REMAINING.labels(self.service, name).set(0)
        return total

    def _bounds(self, tp: TopicPartition) -> tuple[int, int]:
        """The changelog partition's first offset and last stable offset (what ``read_committed`` can reach)."""
        admin = self.kafka.admin(quiet=True)
        found: list[int] = []
        for spec in (OffsetSpec.earliest(), OffsetSpec.latest()):  # type: ignore[no-untyped-call]
            futures = admin.list_offsets(
                {TopicPartition(tp.topic, tp.partition): spec},
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=self.timeout_s,
            )
            found.append(next(iter(futures.values())).result(self.timeout_s).offset)
        return found[0], found[1]

    def _read(
        self, consumer: Consumer, tp: TopicPartition, start: int, end: int, job: _Job, name: str
    ) -> Iterator[tuple[bytes, bytes | None, int]]:
        """(key, value, offset) of every committed record in [start, end), in offset order. The end of the
        partition (for ``read_committed``, its last stable offset) ends it too: control records hold offsets."""
        consumer.assign([TopicPartition(tp.topic, tp.partition, start)])
        deadline = time.monotonic() + self.timeout_s
        gauge = RESTORE_REMAINING.labels(self.service, name)
        counter = RESTORED.labels(self.service, name)
        gauge.set(end - start)
        last = start - 1
        try:
            while not job.cancelled.is_set():
                # A short wait: a partition's last, short batch must not sit out a long one (fetch.wait.max.ms is
                # 50 ms); a stalled read still ends at the deadline.
                batch = consumer.consume(self.chunk, 0.05)
                if not batch:
                    if time.monotonic() > deadline:
                        where = f"{tp.topic}[{tp.partition}]"
                        raise TimeoutError(f"{where}: no progress towards offset {end} in {self.timeout_s}s")
                    continue
                deadline = time.monotonic() + self.timeout_s
                ended, read = False, 0
                for msg in batch:
                    error = msg.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            raise RuntimeError(f"reading {tp.topic}[{tp.partition}]: {error}")
                        ended = True
                        continue
                    offset = msg.offset() or 0
                    if offset >= end:
                        ended = True
                        break
                    last, read = offset, read + 1
                    key = msg.key()
                    if key is not None:
                        yield key, msg.value(), offset
                    ended = ended or offset >= end - 1
                counter.inc(read)
                gauge.set(max(0, end - last - 1))
                if ended:
                    return
        finally:
            consumer.unassign()


def _decoded(
    records: Iterator[tuple[bytes, bytes | None, int]], source: SourceTable, partition: int
) -> Iterator[tuple[bytes, bytes | None]]:
    """A source topic's records as the table stores them (the codec's bytes); an undecodable one is skipped."""
    codec = source.table.codec
    for key, value, offset in records:
        try:
            decoded = source.decode(key, value, partition, offset)
        except Exception as exc:
            log.warning(
                "source record skipped in a restore",
                extra={"position": f"{source.topic}[{partition}]@{offset}", "error": f"{type(exc).__name__}: {exc}"},
            )
            continue
        yield key, None if decoded is None else codec.encode(decoded)


def apply_source(batch: PartitionBatch, source: SourceTable) -> list[list[Any] | BaseException]:
    """A source topic's batch: each record updates the table (a tombstone, or a value decoded to None, deletes);
    no outputs. A record that does not decode is answered with its error, which routes it (the DLQ)."""
    assert batch.state is not None
    view = batch.state.table(source.table)
    answers: list[list[Any] | BaseException] = []
    for record in batch.records:
        answers.append(_apply(view, record, source))
    return answers


def _apply(view: Any, record: InputRecord, source: SourceTable) -> list[Any] | BaseException:
    if record.key is None:
        return []  # a record without a key names no row
    try:
        value = (
            None if record.value is None else source.decode(record.key, record.value, record.partition, record.offset)
        )
    except Exception as exc:
        return exc
    if value is None:
        view.delete(record.key)
    else:
        view.put(record.key, value)
    return []
