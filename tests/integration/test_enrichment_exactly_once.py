"""enrichment exactly once through repeated crashes (issue 22): 2,000 events for 20 subjects, three ``kill -9``s
(one while the restarted worker restores its tables), every event once in the committed output and the activity
table equal to a recount of the input."""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, IsolationLevel, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]
from prometheus_client.parser import text_string_to_metric_families

import tests.integration.test_enrichment as enrichment_module
from services.enrichment.domain import record_activity
from shared.events import EventEnriched, EventReceived
from shared.headers import CE_ID
from shared.kafka import KafkaConnection
from shared.runtime.state import changelog_topic
from shared.runtime.state.partition import TIME_BYTES, stamp
from tests.integration.test_enrichment import Enrichment, enrichment_worker
from tests.support.factories import make_event_received
from tests.support.kafka import read, wait_consumed
from tests.support.processes import free_port

log = logging.getLogger(__name__)

SUBJECTS = [f"subject-{n:02d}" for n in range(20)]
EVENTS = 2000  # 100 per subject
STEP = EVENTS // 5  # each kill comes after at least this much more progress (20 %)
PARTITIONS = 12  # enrichment_worker's topics
# Extra changelog records, for keys no event has, all in the partition restored last (a restart restores its
# partitions in order, one at a time): a restore of two seconds or more, while the partitions restored before it
# process already. That is the window the kill during a restore aims at.
FILLER = 600_000
FILLER_PARTITION = PARTITIONS - 1
# The kill during a restore lands with the filler partition partly restored: this many records of it read at least,
# and this many left (more than the restorer reads in the moment the kill takes).
RESTORE_MARGIN = FILLER // 10
COMMIT_INTERVAL_MS = 500
# Events sent ahead of the outputs (see ``Traffic``).
AHEAD = STEP // 2


@dataclass(frozen=True)
class RestoreGauges:
    """The worker's own account of its restore (``/metrics``)."""

    partitions: int  # runtime_state_restoring_partitions
    remaining: int  # runtime_state_restore_remaining_records, summed over tables


@dataclass
class Traffic:
    """The events, sent as their outputs come out, and the outputs committed so far (the worker's read_committed
    reader).

    ``until`` keeps ``AHEAD`` events sent and not yet out (the worker always has work in flight, and no wave outruns
    a kill's threshold by much), and sends no more than ``limit`` in all.
    """

    worker: Enrichment
    events: list[EventReceived]
    limit: int = EVENTS
    sent: int = 0
    ids: set[str] = field(default_factory=set)

    @property
    def count(self) -> int:
        return len(self.ids)

    def until(self, done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Send and read until ``done`` holds; fail naming ``what`` (with the worker's log) at the deadline, or
        when the worker dies on its own."""
        deadline = time.monotonic() + timeout
        process = self.worker.process
        assert process is not None
        while not done():
            if process.popen.poll() is not None:
                raise AssertionError(f"{what}: the worker exited with {process.popen.returncode}\n{process.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout}s ({self.count} out)\n{process.tail()}")
            self.send_due()
            self.read_available()

    def send_due(self) -> None:
        upto = min(self.limit, self.count + AHEAD)
        if upto - self.sent >= AHEAD // 10 or (upto == self.limit and upto > self.sent):
            self.send_to(upto)

    def send_to(self, upto: int) -> None:
        if upto > self.sent:
            self.worker.send_events(self.events[self.sent : upto])
            self.sent = upto

    def read_available(self) -> None:
        """What the reader has now (waiting a moment for the first), a bounded drain: ``done`` may cost a round
        trip or two, so it is asked once per drain, and still soon after a threshold is crossed."""
        msg = self.worker.poll(0.05)
        for _ in range(AHEAD):
            if msg is None:
                return
            self.ids.add(output_id(msg))
            msg = self.worker.poll(0)
        if msg is not None:
            self.ids.add(output_id(msg))

    def in_transaction(self, kafka: KafkaConnection) -> bool:
        """Whether an open transaction holds outputs the worker produced: a kill now aborts them.

        The high watermarks first, then the last stable offsets: a last stable offset below the earlier high
        watermark is an open transaction that had records before the first answer and is still open at the second.
        """
        admin = kafka.admin(quiet=True)
        ends: list[dict[int, int]] = []
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        for isolation in (IsolationLevel.READ_UNCOMMITTED, IsolationLevel.READ_COMMITTED):
            asked = {TopicPartition(self.worker.enriched, p): latest for p in range(PARTITIONS)}
            answers = admin.list_offsets(asked, isolation_level=isolation, request_timeout=10)
            ends.append({tp.partition: future.result(10).offset for tp, future in answers.items()})
        high, stable = ends
        return any(stable[p] < high[p] for p in high)


def output_id(msg: Message) -> str:
    """An output's event id, from its CloudEvents header (no decode needed)."""
    pairs: Any = msg.headers() or []
    return next(bytes(v).decode() for k, v in pairs if k == CE_ID)


def events_for(tenant: str, received_from: datetime) -> list[EventReceived]:
    """Event ``i`` is the ``i // 20``-th of subject ``i % 20``, received one second after event ``i - 1``: a
    subject's 100 events span 33 minutes (one 1 h window, several minute buckets) in the order they are sent."""
    events: list[EventReceived] = []
    for i in range(EVENTS):
        at = received_from + timedelta(seconds=i)
        fields = make_event_received(
            tenant=tenant, subject=SUBJECTS[i % len(SUBJECTS)], event_id=f"x-{i:04d}", occurred_at=at, received_at=at
        )
        events.append(EventReceived.model_validate(fields))
    return events


def fill_changelog(kafka: KafkaConnection, topic: str, tenant: str) -> None:
    """``FILLER`` live entries (stamped now, so nothing expires them) in the changelog's ``FILLER_PARTITION``."""
    producer = Producer(
        kafka.producer_config(
            **{"linger.ms": 50, "compression.type": "lz4", "queue.buffering.max.messages": FILLER + 1000}
        )
    )
    value = stamp(int(time.time() * 1000), orjson.dumps({"m": {}, "last": None}))
    for n in range(FILLER):
        producer.produce(topic, value, f"{tenant}:filler-{n}".encode(), partition=FILLER_PARTITION)
    assert producer.flush(60) == 0


def restore_gauges(port: int, service: str) -> RestoreGauges | None:
    """The restore gauges the worker on ``port`` reports; None while its server does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    values: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("service") == service:
                values[sample.name] += sample.value
    return RestoreGauges(
        int(values["runtime_state_restoring_partitions"]), int(values["runtime_state_restore_remaining_records"])
    )


def kill_9(worker: Enrichment) -> None:
    assert worker.process is not None
    os.kill(worker.process.popen.pid, signal.SIGKILL)
    worker.process.popen.wait(30)


def latest_values(kafka: KafkaConnection, topic: str, keys: set[bytes]) -> dict[bytes, bytes | None]:
    """The last committed value of each of ``keys`` in ``topic`` (None: a tombstone), read to the end of every
    partition; the filler is read past, not kept."""
    conf = {"isolation.level": "read_committed", "enable.partition.eof": True, "enable.auto.commit": False}
    consumer = Consumer(kafka.consumer_config(f"latest-{uuid.uuid4().hex}", **conf))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    found: dict[bytes, bytes | None] = {}
    at_end: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while len(at_end) < PARTITIONS:
            assert time.monotonic() < deadline, f"{topic}: {len(at_end)} of {PARTITIONS} partitions read to the end"
            for msg in consumer.consume(10_000, 0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition() or 0)
                    continue
                at_end.discard(msg.partition() or 0)
                key = msg.key()
                if key in keys:
                    found[key] = msg.value()
    finally:
        consumer.close()
    return found


def recount(worker: Enrichment, kafka: KafkaConnection) -> tuple[dict[bytes, Any], dict[bytes, Any]]:
    """Each subject's activity from an empty state, its events fed through ``record_activity`` in input order (the
    order of its partition of the input topic), as the changelog would hold it (a JSON round trip); and what each
    event reported, as the seen table keeps it."""
    state: dict[bytes, dict[str, Any] | None] = defaultdict(lambda: None)
    seen: dict[bytes, list[Any]] = {}
    by_partition = sorted(read(kafka, worker.received, EVENTS), key=lambda m: (m.partition(), m.offset()))
    for msg in by_partition:
        event = worker.codec.decode(worker.received, msg.value(), event_type=EventReceived).event
        assert isinstance(event, EventReceived)
        key = f"{event.tenant}:{event.subject}".encode()
        event_key = key + f":{event.event_id}".encode()
        if event_key not in seen:
            state[key], counted = record_activity(state[key], event.received_at)
            seen[event_key] = counted.seen()
    return (
        {key: orjson.loads(orjson.dumps(value)) for key, value in state.items()},
        {key: orjson.loads(orjson.dumps(value)) for key, value in seen.items()},
    )


@pytest.fixture
def ports(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The ports ``Enrichment.start`` hands its workers, last one last: the only way to the worker's /metrics."""
    handed: list[int] = []

    def recording() -> int:
        port = free_port()
        handed.append(port)
        return port

    monkeypatch.setattr(enrichment_module, "free_port", recording)
    yield handed


def test_three_kill_9s_one_during_a_restore_leave_every_event_once_and_the_state_equal_to_a_recount(
    kafka_bootstrap: str, kafka: KafkaConnection, registry_url: str, tmp_path: Path, ports: list[int]
) -> None:
    # Transactions that stay open a while (enrichment_worker's 100 ms, times five): a kill finds outputs in one
    # whenever events flow, not only in the moment between a batch and its commit.
    env = {"ENRICHMENT_RUNTIME__COMMIT_INTERVAL_MS": str(COMMIT_INTERVAL_MS)}
    with enrichment_worker(kafka_bootstrap, kafka, registry_url, tmp_path, start=False, **env) as worker:
        changelog = changelog_topic(worker.name, "activity")  # the worker creates it as it first starts
        received_from = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
        traffic = Traffic(worker, events_for(worker.tenant, received_from))
        kills: list[str] = []  # what each kill interrupted, for the failure messages

        def kill_after(more: int, what: str, when: Callable[[], bool]) -> None:
            """Kill once ``more`` outputs came out since the last kill and ``when`` holds: it is asked on every
            turn, and only the kill follows its answer."""
            threshold = traffic.count + more
            assert threshold < EVENTS, f"{what}: no events left to interrupt after {kills}"
            traffic.until(lambda: when() and traffic.count >= threshold, f"{what} after {kills}")
            kill_9(worker)
            kills.append(f"{what}: {traffic.count} out, {traffic.sent} sent")

        def in_transaction() -> bool:
            return traffic.in_transaction(kafka)

        # 1: a kill mid-run, with outputs in an open transaction, once 20 % came out.
        worker.start()
        kill_after(STEP, "mid-run", in_transaction)

        # 2: a kill during the restart's restore, with the filler partition partly restored, once 20 % more came
        # out of the partitions restored before it. Their events are waiting as it starts (20 % more even if half of
        # them were the filler partition's), and no more come: the last kill needs events left to interrupt.
        fill_changelog(kafka, changelog, worker.tenant)
        traffic.limit = traffic.count + 2 * STEP
        traffic.send_to(traffic.limit)
        worker.start(ready=False)
        gauges: list[RestoreGauges] = []

        def restoring() -> bool:
            found = restore_gauges(ports[-1], worker.name)
            if found is None:
                return False
            gauges.append(found)
            if found.partitions == 0 and len(gauges) > 1 and gauges[-2].partitions > 0:
                raise AssertionError(
                    f"the restore ended before the kill ({traffic.count} out, {traffic.sent} sent): more FILLER?"
                )
            return found.partitions > 0 and RESTORE_MARGIN <= found.remaining <= FILLER - RESTORE_MARGIN

        kill_after(STEP, "during a restore", restoring)
        kills[-1] += f", {gauges[-1]}"
        traffic.limit = EVENTS

        # 3: a kill mid-run again, 20 % later.
        worker.start(ready=False)
        kill_after(STEP, "mid-run", in_transaction)

        # The last run: restored, it takes the rest.
        worker.start()
        wanted = {e.event_id for e in traffic.events}
        traffic.until(lambda: traffic.ids >= wanted, "every event out after the last restart", timeout=120)
        # Everything consumed is committed with its outputs and state: a fresh reader now sees all there will be.
        wait_consumed(kafka, worker.name, [worker.received])
        outputs: list[EventEnriched] = []
        for msg in read(kafka, worker.enriched, EVENTS):
            event = worker.codec.decode(worker.enriched, msg.value(), event_type=EventEnriched).event
            assert isinstance(event, EventEnriched)
            outputs.append(event)
        keys = {f"{worker.tenant}:{s}".encode() for s in SUBJECTS}
        stored = latest_values(kafka, changelog, keys)
        expected, expected_seen = recount(worker, kafka)
        seen_keys = {f"{worker.tenant}:{e.subject}:{e.event_id}".encode() for e in traffic.events}
        stored_seen = latest_values(kafka, changelog_topic(worker.name, "seen"), seen_keys)
        everything = read(kafka, worker.enriched, EVENTS, isolation="read_uncommitted")
        log.info("kills: %s; outputs aborted: %d", kills, len(everything) - len(outputs))

    copies = Counter(e.event_id for e in outputs)
    assert {i: n for i, n in copies.items() if n != 1} == {}, f"events out more than once; kills: {kills}"
    assert set(copies) == wanted, f"{len(wanted - set(copies))} events never came out; kills: {kills}"
    counts: dict[str, list[int]] = defaultdict(list)
    for out in outputs:
        counts[out.subject].append(out.events_1h)
    assert {s: sorted(c) for s, c in counts.items()} == {s: list(range(1, 101)) for s in SUBJECTS}, kills
    # The whole entry, not just its counts: the minute buckets and the newest time. Only the write-time prefix is
    # left out: the stream time the last batch ran at, which no recount of the input has.
    assert all(stored.get(key) is not None for key in keys), f"a subject's entry is missing; kills: {kills}"
    restored = {key: orjson.loads(value[TIME_BYTES:]) for key, value in stored.items() if value is not None}
    assert restored == expected, kills
    # Every event is in the seen table with what it reported, as a recount has it; and each output said what the
    # seen table recorded for it, in the same transaction.
    assert all(stored_seen.get(key) is not None for key in seen_keys), f"an event's entry is missing; kills: {kills}"
    reports = {key: orjson.loads(value[TIME_BYTES:]) for key, value in stored_seen.items() if value is not None}
    assert reports == expected_seen, kills
    for out in outputs:
        reported = reports[f"{out.tenant}:{out.subject}:{out.event_id}".encode()]
        assert [out.events_1h, out.events_24h, out.seconds_since_previous] == reported, out.event_id
    # And the kills did abort transactions with outputs in them (what exactly once is about), or this proved little.
    assert len(everything) > len(outputs), f"no kill aborted an output; kills: {kills}"
