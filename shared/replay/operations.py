"""What an SRE does with a DLQ: summarize it, browse it, plan a replay and execute it, safely."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from confluent_kafka import KafkaException, Producer

from shared import headers as h
from shared.codec import EventCodec
from shared.errors import PipelineError
from shared.events import ReplayAudit, ReplayLedgerEntry
from shared.kafka import KafkaConnection
from shared.replay.records import DeadLetter, DlqFilter, decode_cursor, encode_cursor
from shared.replay.scan import partitions_of, read_records, record_at, watermarks
from shared.runtime.routing import header_int
from shared.topics import AUDIT_REPLAYS, CONSUMING_SERVICES, REPLAY_LEDGER, dlq_topic, replay_topic

ReplayOutcome = Literal["done", "partial", "refused", "dry_run"]
# A ledger entry's header: its count, read without decoding the value.
SAMPLES = 5


@dataclass(frozen=True)
class ReplayTopics:
    """Where replays keep their books (tests point these at topics of their own)."""

    ledger: str = REPLAY_LEDGER
    audit: str = AUDIT_REPLAYS


@dataclass
class DlqSummary:
    topic: str
    total: int = 0
    by_category: Counter[str] = field(default_factory=Counter)
    by_error_type: Counter[str] = field(default_factory=Counter)
    by_hour: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    oldest: DeadLetter | None = None
    newest: DeadLetter | None = None
    replayed: int = 0
    refailed: int = 0

    def add(self, record: DeadLetter, replayed: bool = False) -> None:
        self.total += 1
        self.replayed += replayed
        # Failed again after a replay, and not replayed since: a plain replay leaves it alone.
        self.refailed += record.replays > 0 and not replayed
        self.by_category[record.category] += 1
        self.by_error_type[record.error_type] += 1
        hour = record.failed_at.replace(minute=0, second=0, microsecond=0).isoformat()
        self.by_hour[hour][record.category] += 1
        if self.oldest is None or record.timestamp_ms < self.oldest.timestamp_ms:
            self.oldest = record
        if self.newest is None or record.timestamp_ms >= self.newest.timestamp_ms:
            self.newest = record

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "total": self.total,
            "replayed": self.replayed,
            "pending": self.total - self.replayed,
            "refailed": self.refailed,
            "by_category": dict(self.by_category.most_common()),
            "by_error_type": dict(self.by_error_type.most_common()),
            "by_hour": {hour: dict(counts) for hour, counts in sorted(self.by_hour.items())},
            "oldest": self.oldest.summary() if self.oldest else None,
            "newest": self.newest.summary() if self.newest else None,
        }


def summarize(
    kafka: KafkaConnection, topic: str, where: DlqFilter | None = None, ledger: dict[str, int] | None = None
) -> DlqSummary:
    """Counts by category, error type and hour, the oldest and newest record (of those ``where`` selects), and
    with the ``ledger``, how many were replayed and how many failed again after a replay."""
    summary = DlqSummary(topic)
    for record in read_records(kafka, topic):
        if where is None or where.matches(record):
            summary.add(record, ledger is not None and replayed_since(ledger, record))
    return summary


def times_replayed(ledger: dict[str, int], record: DeadLetter) -> int:
    """How many times the ledger says ``record``'s origin was replayed. Entries written before the ledger was
    keyed by origin name the dead letter itself, so those count too."""
    return max(ledger.get(record.origin, 0), ledger.get(record.coordinates, 0))


def replayed_since(ledger: dict[str, int], record: DeadLetter) -> bool:
    """Whether ``record``'s origin was replayed after ``record`` was written (a first failure: ever)."""
    return times_replayed(ledger, record) > record.replays


def dlq_topics(kafka: KafkaConnection, services: Sequence[str] = CONSUMING_SERVICES) -> list[tuple[str, str]]:
    """(service, DLQ topic) of every service (default: every consuming service) whose DLQ exists."""
    found = []
    for service in services:
        try:
            partitions_of(kafka, dlq_topic(service))
        except LookupError:
            continue
        found.append((service, dlq_topic(service)))
    return found


@dataclass
class Page:
    records: list[dict[str, Any]]
    next_cursor: str | None


def browse(
    kafka: KafkaConnection,
    codec: EventCodec | None,
    topic: str,
    where: DlqFilter,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """One page of matching dead letters (with decoded values when a codec is given), and the cursor of the next
    page (None at the end). A page reads only as far as it needs; a cursor names where to read on from."""
    first_partition, first_offset = decode_cursor(cursor) if cursor else (0, 0)
    found: list[dict[str, Any]] = []
    partitions = [p for p in partitions_of(kafka, topic) if p >= first_partition]
    start = {first_partition: first_offset}
    for record in read_records(kafka, topic, start=start, partitions=partitions, ordered=True):
        if not where.matches(record):
            continue
        found.append(record.detail(decode_value(codec, record)) if codec is not None else record.summary())
        if len(found) >= limit:
            return Page(found, encode_cursor(record.partition, record.offset + 1))
    return Page(found, None)


def show(kafka: KafkaConnection, codec: EventCodec | None, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """One dead letter in full: headers, decoded value, error and stack trace."""
    record = record_at(kafka, topic, partition, offset)
    if record is None:
        raise LookupError(f"no record at {topic}/{partition}/{offset}")
    return record.detail(decode_value(codec, record))


def decode_value(codec: EventCodec | None, record: DeadLetter) -> Any:
    """The value decoded through the registry with the schema of ``dlq.original.topic``, as JSON-ready data;
    for bytes that do not decode (a deserialization dead letter), why not, and the bytes' length."""
    if codec is None:
        return None
    try:
        decoded = codec.serde.decode(record.original_topic or record.topic, record.value)
    except Exception as exc:
        return {"undecodable": str(exc)[:300], "bytes": len(record.value or b"")}
    return json.loads(json.dumps(decoded, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


@dataclass
class ReplayPlan:
    """The exact DLQ coordinates a filter selects, with counts and samples."""

    service: str
    dlq_topic: str
    target_topic: str
    where: DlqFilter
    offsets: dict[int, list[int]] = field(default_factory=dict)
    by_category: Counter[str] = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)
    include_refailed: bool = False
    # Left out: records that failed again after a replay (origin -> how many replays), unless included.
    refailed: dict[str, int] = field(default_factory=dict)
    refailed_samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(len(o) for o in self.offsets.values())

    def take(self, record: DeadLetter) -> None:
        """Add a record the filter matched: to the plan, or to the refailed left out (one per origin)."""
        if record.replays and not self.include_refailed:
            self.refailed[record.origin] = max(record.replays, self.refailed.get(record.origin, 0))
            if len(self.refailed_samples) < SAMPLES:
                self.refailed_samples.append(record.summary())
            return
        self.offsets.setdefault(record.partition, []).append(record.offset)
        self.by_category[record.category] += 1
        if len(self.samples) < SAMPLES:
            self.samples.append(record.summary())

    def refailed_by_replays(self) -> dict[int, int]:
        """How many left-out records failed again after 1 replay, after 2, ..."""
        return dict(sorted(Counter(self.refailed.values()).items()))

    def describe_refailed(self) -> str:
        """``3 failed again after replay 1 time, 1 after 2 times`` (empty when none was left out)."""
        parts = [f"{n} after {times} time{'s' if times > 1 else ''}" for times, n in self.refailed_by_replays().items()]
        return f"{len(self.refailed)} failed again after replay: " + ", ".join(parts) if parts else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "dlq_topic": self.dlq_topic,
            "target_topic": self.target_topic,
            "filter": self.where.model_dump(mode="json", exclude_defaults=True),
            "selected": self.total,
            "by_category": dict(self.by_category.most_common()),
            "partitions": {str(p): [o[0], o[-1], len(o)] for p, o in sorted(self.offsets.items()) if o},
            "samples": self.samples,
            "include_refailed": self.include_refailed,
            "refailed": len(self.refailed),
            "refailed_by_replays": {str(times): n for times, n in self.refailed_by_replays().items()},
            "refailed_samples": self.refailed_samples,
        }


def plan(
    kafka: KafkaConnection, service: str, where: DlqFilter, limit: int | None = None, include_refailed: bool = False
) -> ReplayPlan:
    """Select the dead letters to replay: every record of ``<service>.dlq`` that ``where`` matches (the first
    ``limit`` of them, partition by partition). A record that failed again after a replay is left out and
    listed (one per origin, with its replay count) unless ``include_refailed``: replaying it again by default
    would loop."""
    topic = dlq_topic(service)
    chosen = ReplayPlan(service, topic, replay_topic(service), where, include_refailed=include_refailed)
    for record in read_records(kafka, topic, ordered=limit is not None):
        if limit is not None and chosen.total >= limit:
            break
        if where.matches(record):
            chosen.take(record)
    return chosen


@dataclass
class ReplayResult:
    replay_id: str
    outcome: ReplayOutcome
    selected: int
    replayed: int = 0
    skipped: int = 0
    failed: int = 0
    error: str | None = None
    refailed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "replay_id": self.replay_id,
            "outcome": self.outcome,
            "selected": self.selected,
            "replayed": self.replayed,
            "skipped": self.skipped,
            "failed": self.failed,
            "refailed": self.refailed,
            "error": self.error,
        }


@dataclass(frozen=True)
class ReplayOptions:
    requested_by: str = ""
    rate: float | None = None
    keep_headers: bool = False
    force: bool = False
    dry_run: bool = False
    chunk: int = 500
    transaction_timeout_ms: int = 60_000


Progress = Callable[[int, int], None]


def replay_headers(
    record: DeadLetter, replay_id: str, count: int, keep_dlq: bool
) -> list[tuple[str, str | bytes | None]]:
    """The original headers (``dlq.*`` only when kept; earlier ``replay.*`` replaced) plus this replay's."""
    kept: list[tuple[str, str | bytes | None]] = []
    # The first topic the record came from, so a replayed record that fails again still names it.
    original: list[tuple[str, str | bytes | None]] = []
    for name, value in record.headers:
        if name.startswith(h.DLQ_PREFIX):
            if name.startswith(h.DLQ_ORIGINAL) and value:
                original.append((h.REPLAY_ORIGINAL + name[len(h.DLQ_ORIGINAL) :], value))
            if keep_dlq:
                kept.append((name, value))
        elif not name.startswith(h.REPLAY_PREFIX):
            kept.append((name, value))
    kept += [
        (h.REPLAY_ID, replay_id.encode()),
        (h.REPLAY_SOURCE, record.coordinates.encode()),
        (h.REPLAY_COUNT, str(count).encode()),
    ]
    return kept + original


def read_ledger(kafka: KafkaConnection, topic: str, codec: EventCodec) -> dict[str, int]:
    """Replay counts by DLQ coordinates, from the compacted ledger (the latest entry per record). Each entry
    also carries its count in a ``count`` header, read without decoding the value; the value is the record."""
    counts: dict[str, int] = {}
    try:
        records = read_records(kafka, topic)
        for record in records:
            key = (record.key or b"").decode()
            if record.value is None:
                counts.pop(key, None)
                continue
            count = header_int(record.headers, h.LEDGER_COUNT)
            if count is None:
                entry = codec.decode_value(topic, record.value, event_type=ReplayLedgerEntry)
                assert isinstance(entry, ReplayLedgerEntry)
                count = entry.count
            counts[key] = count
    except LookupError:
        return counts
    return counts


def execute(
    kafka: KafkaConnection,
    codec: EventCodec,
    chosen: ReplayPlan,
    options: ReplayOptions,
    topics: ReplayTopics = ReplayTopics(),
    progress: Progress | None = None,
    replay_id: str | None = None,
) -> ReplayResult:
    """Replay ``chosen`` (or, with ``dry_run``, only audit what would go).

    Each selected dead letter's key, value and original headers go to ``<service>.replay`` (the ``dlq.*``
    headers dropped unless kept, ``replay.*`` added), and in the same Kafka transaction a ledger entry per
    record to the compacted ledger: a record in the ledger was replayed, a record not in it was not, whatever
    happened to the process. Running a replay again skips what the ledger holds (so an interrupted run
    resumes, and a finished one is refused) unless forced. Every execution and dry run leaves a
    ``ReplayAudit`` record.
    """
    replay_id = replay_id or f"rp-{uuid.uuid4().hex[:12]}"
    started = datetime.now(UTC)
    result = ReplayResult(replay_id, "dry_run", chosen.total, refailed=len(chosen.refailed))
    producer: Producer | None = None
    try:
        if options.dry_run:
            # What a run would skip, from the ledger as it is now: a dry run tells the truth about a second run.
            _pending(kafka, codec, chosen, options, topics, result)
            return result
        # One transactional id per service: a new run fences (and so aborts) what a killed one left open,
        # before it reads the ledger.
        producer = Producer(
            kafka.producer_config(
                **{
                    "transactional.id": f"pipeline-replay-{chosen.service}",
                    "transaction.timeout.ms": options.transaction_timeout_ms,
                }
            )
        )
        producer.init_transactions(30)
        pending = _pending(kafka, codec, chosen, options, topics, result)
        result.outcome = "done"
        _write(producer, codec, chosen, pending, replay_id, options, topics, result, progress)
        if result.selected and result.skipped == result.selected:
            result.outcome = "refused"
        if not result.selected and result.refailed:
            # Everything the filter matched failed again after a replay: say no, and say why (the caller
            # names include_refailed), rather than report a run that did nothing as done.
            result.outcome = "refused"
        return result
    except (KafkaException, PipelineError, RuntimeError, TimeoutError) as exc:
        result.outcome = "partial"
        result.error = f"{type(exc).__name__}: {exc}"[:500]
        result.failed = max(0, result.selected - result.replayed - result.skipped)
        return result
    finally:
        _audit(kafka, codec, chosen, options, topics, result, started)


def _pending(
    kafka: KafkaConnection,
    codec: EventCodec,
    chosen: ReplayPlan,
    options: ReplayOptions,
    topics: ReplayTopics,
    result: ReplayResult,
) -> list[tuple[DeadLetter, int]]:
    """The planned records to write, each with its replay count; those the ledger says are done are counted in
    ``result.skipped``. Keyed by origin: a first failure is done once its origin was replayed, a record that
    failed again after its Nth replay once the origin was replayed more than N times; one origin goes once a run."""
    ledger = read_ledger(kafka, topics.ledger, codec)
    wanted = {(p, o) for p, offsets in chosen.offsets.items() for o in offsets}
    pending: list[tuple[DeadLetter, int]] = []
    origins: set[str] = set()
    for record in _selected(kafka, chosen):
        if (record.partition, record.offset) not in wanted:
            continue
        before = times_replayed(ledger, record)
        if (before > record.replays and not options.force) or record.origin in origins:
            result.skipped += 1
            continue
        origins.add(record.origin)
        pending.append((record, max(before, record.replays) + 1))
    return pending


def _selected(kafka: KafkaConnection, chosen: ReplayPlan) -> Iterator[DeadLetter]:
    """The planned records read again: each partition only between its first and last planned offset."""
    start = {p: offsets[0] for p, offsets in chosen.offsets.items() if offsets}
    stop = {p: offsets[-1] + 1 for p, offsets in chosen.offsets.items() if offsets}
    if start:
        yield from read_records(kafka, chosen.dlq_topic, start=start, partitions=sorted(start), stop=stop)


def _write(
    producer: Producer,
    codec: EventCodec,
    chosen: ReplayPlan,
    pending: list[tuple[DeadLetter, int]],
    replay_id: str,
    options: ReplayOptions,
    topics: ReplayTopics,
    result: ReplayResult,
    progress: Progress | None,
) -> None:
    chunk = max(1, min(options.chunk, int(options.rate) if options.rate else options.chunk))
    began = time.monotonic()
    for i in range(0, len(pending), chunk):
        part = pending[i : i + chunk]
        producer.begin_transaction()
        try:
            for record, count in part:
                producer.produce(
                    chosen.target_topic,
                    record.value,
                    record.key,
                    headers=replay_headers(record, replay_id, count, options.keep_headers),
                )
                # The ledger entry's Avro record, built as a dict: one per replayed record, no model needed. It
                # names the dead letter replayed; its key is the origin, the same for every dead letter of it.
                entry = {
                    "replay_id": replay_id,
                    "replayed_at": datetime.now(UTC),
                    "dlq_topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "count": count,
                }
                ledger_value = codec.serde.encode(topics.ledger, entry, ReplayLedgerEntry.schema_name)
                producer.produce(
                    topics.ledger,
                    ledger_value,
                    record.origin.encode(),
                    headers=[(h.LEDGER_COUNT, str(count).encode())],
                )
                producer.poll(0)
            producer.commit_transaction(60)
        except KafkaException:
            producer.abort_transaction(30)
            raise
        result.replayed += len(part)
        if progress is not None:
            progress(result.replayed + result.skipped, result.selected)
        if options.rate:
            ahead = result.replayed / options.rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)


def _audit(
    kafka: KafkaConnection,
    codec: EventCodec,
    chosen: ReplayPlan,
    options: ReplayOptions,
    topics: ReplayTopics,
    result: ReplayResult,
    started: datetime,
) -> None:
    audit = ReplayAudit(
        replay_id=result.replay_id,
        service=chosen.service,
        dlq_topic=chosen.dlq_topic,
        target_topic=chosen.target_topic,
        requested_by=options.requested_by,
        filters_json=chosen.where.describe(),
        dry_run=options.dry_run,
        force=options.force,
        keep_headers=options.keep_headers,
        started_at=started,
        finished_at=datetime.now(UTC),
        selected=result.selected,
        replayed=result.replayed,
        skipped=result.skipped,
        failed=result.failed,
        outcome=result.outcome,
        error=result.error,
    )
    producer = Producer(kafka.producer_config())
    value = codec.serde.encode(topics.audit, audit.to_avro(), audit.schema_name)
    producer.produce(topics.audit, value, result.replay_id.encode())
    if producer.flush(30) != 0:
        raise RuntimeError(f"the audit record of {result.replay_id} was not acknowledged")


def audit_page(
    kafka: KafkaConnection, codec: EventCodec, topic: str, before: int | None, limit: int
) -> tuple[list[ReplayAudit], int | None]:
    """Up to ``limit`` audit records older than offset ``before`` (default: the newest), newest first, and the
    cursor of the page after (None at the oldest). Only that window is read."""
    try:
        partitions_of(kafka, topic)
    except LookupError:
        return [], None
    low, high = watermarks(kafka, topic, 0)
    end = high if before is None else max(low, min(before, high))
    first = max(low, end - limit)
    runs = []
    for record in read_records(kafka, topic, start={0: first}, partitions=[0], stop={0: end}):
        audit = codec.decode_value(topic, record.value, event_type=ReplayAudit)
        assert isinstance(audit, ReplayAudit)
        runs.append(audit)
    runs.reverse()
    return runs, first if first > low else None


def read_audit(kafka: KafkaConnection, codec: EventCodec, topic: str = AUDIT_REPLAYS) -> list[ReplayAudit]:
    """Every replay audit record, oldest first."""
    found = []
    try:
        for record in read_records(kafka, topic):
            audit = codec.decode_value(topic, record.value, event_type=ReplayAudit)
            assert isinstance(audit, ReplayAudit)
            found.append(audit)
    except LookupError:
        return []
    return found
