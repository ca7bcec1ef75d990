"""The enrichment worker (on the runtime, with tables) as its own process over the real broker and registry: join,
counts, DLQ."""

from __future__ import annotations

import struct
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer

from shared.codec import EventCodec
from shared.events import CustomerProfile, EventEnriched, EventReceived
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.settings import REPO_ROOT
from shared.topics import TopicSpec, dlq_topic, service_topics
from tests.support.factories import make_event_received
from tests.support.kafka import wait_consumed
from tests.support.processes import Process, free_port, spawn, wait_http_ready
from tests.support.workers import running


@dataclass
class Enrichment:
    """A worker over its own topics, with a producer for its inputs and a read_committed reader of its output."""

    name: str
    received: str
    enriched: str
    profiles: str
    codec: EventCodec
    producer: Producer
    reader: Consumer
    tenant: str
    kafka_bootstrap: str
    registry_url: str
    logs: Path
    env: dict[str, str]
    process: Process | None = None
    last_message: Message | None = None
    traces: dict[str, bytes] = field(default_factory=dict)
    partial: list[EventEnriched] = field(default_factory=list)
    at_end: set[int] = field(default_factory=set)  # output partitions the reader has read to their end offset

    def start(self, ready: bool = True) -> Process:
        """Start the worker (again: same name and instance, so it fences its predecessor's transactions)."""
        port = free_port()
        self.process = spawn(
            [sys.executable, "-m", "services.enrichment.app"],
            self.logs / "worker.log",
            env={
                "ENRICHMENT_NAME": self.name,
                "ENRICHMENT_PORT": str(port),
                "ENRICHMENT_INPUT_TOPIC": self.received,
                "ENRICHMENT_OUTPUT_TOPIC": self.enriched,
                "ENRICHMENT_PROFILES_TOPIC": self.profiles,
                "ENRICHMENT_RUNTIME__RETRY_DELAYS_MS": "[200, 400, 800]",
                "ENRICHMENT_RUNTIME__COMMIT_INTERVAL_MS": "100",
                "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
                "PIPELINE_SCHEMA_REGISTRY_URL": self.registry_url,
                "PIPELINE_STATE_DIR": str(self.logs / "state"),
                **self.env,
            },
        )
        # Ready means partitions assigned and tables recovered; without the registry, alive is all it can be.
        path = "readyz" if ready else "healthz"
        wait_http_ready(f"http://127.0.0.1:{port}/{path}", self.process, timeout=120)
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def send_event(self, **overrides: Any) -> EventReceived:
        event = EventReceived.model_validate(make_event_received(tenant=self.tenant, **overrides))
        record = self.codec.encode(event, topic=self.received)
        self.traces[event.event_id] = dict(record.headers)["traceparent"].split(b"-")[1]
        self.producer.produce(self.received, record.value, record.key, headers=list(record.headers))
        assert self.producer.flush(30) == 0
        return event

    def sent_trace_id(self, event_id: str) -> bytes:
        return self.traces[event_id]

    def send_events(self, events: list[EventReceived]) -> None:
        for event in events:
            record = self.codec.encode(event, topic=self.received)
            self.producer.produce(self.received, record.value, record.key, headers=list(record.headers))
        assert self.producer.flush(30) == 0

    def poll(self, timeout: float) -> Message | None:
        """The next committed output record, or None after ``timeout`` (or at a partition's end)."""
        msg = self.reader.poll(timeout)
        if msg is None:
            return None
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                self.at_end.add(msg.partition() or 0)
            return None
        self.at_end.discard(msg.partition() or 0)
        return msg

    def poll_output(self) -> EventEnriched | None:
        """The next committed output, decoded, or None after a short wait (or at a partition's end)."""
        msg = self.poll(0.2)
        if msg is None:
            return None
        event = self.codec.decode(self.enriched, msg.value(), event_type=EventEnriched).event
        assert isinstance(event, EventEnriched)
        return event

    def read_to_end(self) -> bool:
        """Whether the reader stands at the end offset of every partition of the output topic."""
        assigned = {tp.partition for tp in self.reader.assignment()}
        return bool(assigned) and assigned <= self.at_end

    def collect(self, count: int, timeout: float = 120.0, to_end: bool = True) -> list[EventEnriched]:
        """Committed outputs until ``count`` arrived and (unless ``to_end`` is off) every partition is read to its
        end offset: a repeat already committed is among them."""
        found: list[EventEnriched] = []
        self.partial = found  # what a failed collect did see, for its diagnosis
        deadline = time.monotonic() + timeout
        while not (len(found) >= count and (not to_end or self.read_to_end())):
            if time.monotonic() > deadline:
                tail = self.process.tail() if self.process else ""
                raise AssertionError(f"{len(found)} of {count} enriched records in {timeout}s\n{tail}")
            event = self.poll_output()
            if event is not None:
                found.append(event)
        return found

    def collect_ids(self, wanted: set[str], timeout: float = 120.0) -> list[EventEnriched]:
        """Committed outputs until every id of ``wanted`` came (or ``timeout``) and every partition is read to its
        end offset; all of them, repeats included. Returns what it has at the deadline: the caller judges."""
        found: list[EventEnriched] = []
        missing = set(wanted)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (missing or not self.read_to_end()):
            event = self.poll_output()
            if event is None:
                continue
            found.append(event)
            missing.discard(event.event_id)
        return found

    def send_raw(self, key: bytes, value: bytes) -> None:
        self.producer.produce(self.received, value, key)
        assert self.producer.flush(30) == 0

    def send_profile(self, customer_id: str, **fields: Any) -> None:
        profile = CustomerProfile(tenant=self.tenant, customer_id=customer_id, updated_at=datetime.now(UTC), **fields)
        value = self.codec.serde.encode(self.profiles, profile.to_avro(), "CustomerProfile")
        self.producer.produce(self.profiles, value, f"{self.tenant}:{customer_id}".encode())
        assert self.producer.flush(30) == 0

    def next_output(self, event_id: str, timeout: float = 60.0) -> EventEnriched:
        """The enriched record of ``event_id`` (read_committed), skipping others."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.poll(0.5)
            if msg is None:
                continue
            event = self.codec.decode(self.enriched, msg.value(), event_type=EventEnriched).event
            assert isinstance(event, EventEnriched)
            if event.event_id == event_id:
                self.last_message = msg
                return event
        tail = self.process.tail() if self.process else ""
        raise AssertionError(f"no enriched record for {event_id} in {timeout}s\n{tail}")


def read_dlq(
    kafka: KafkaConnection, topic: str, count: int, timeout: float = 60.0, of: str | None = None
) -> list[Message]:
    """``count`` dead letters of ``topic`` (those of input topic ``of`` only, when given)."""
    consumer = Consumer(kafka.consumer_config(f"dlq-{uuid.uuid4().hex}", **{"isolation.level": "read_committed"}))
    consumer.subscribe([topic])
    found: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if (
            msg is not None
            and msg.error() is None
            and (of is None or ("dlq.original.topic", of.encode()) in (msg.headers() or []))
        ):
            found.append(msg)
    consumer.close()
    assert len(found) >= count, f"{topic}: {len(found)} of {count} dead letters"
    return found


@contextmanager
def enrichment_worker(
    kafka_bootstrap: str, kafka: KafkaConnection, registry_url: str, logs: Path, start: bool = True, **env: str
) -> Iterator[Enrichment]:
    """Topics of its own (12 partitions, like production), a worker process, and the clients to drive it."""
    suffix = uuid.uuid4().hex[:8]
    name = f"enrichment-{suffix}"
    topics = {"received": f"recv-{suffix}", "enriched": f"enr-{suffix}", "profiles": f"prof-{suffix}"}
    bootstrap_topics(
        kafka,
        [TopicSpec(t, 12, "tenant:subject", None) for t in (topics["received"], topics["enriched"])]
        + [TopicSpec(topics["profiles"], 12, "tenant:customer_id", None, compacted=True)]
        + service_topics(name),
    )
    codec = EventCodec.connect(registry_url, REPO_ROOT / "schemas")
    reader = Consumer(
        kafka.consumer_config(f"reader-{suffix}", **{"isolation.level": "read_committed", "enable.partition.eof": True})
    )
    reader.subscribe([topics["enriched"]])
    worker = Enrichment(
        name,
        topics["received"],
        topics["enriched"],
        topics["profiles"],
        codec,
        Producer(kafka.producer_config(**{"compression.type": "lz4"})),  # as intake writes
        reader,
        f"acme-{suffix}",
        kafka_bootstrap,
        registry_url,
        logs,
        env,
    )
    with running(worker, logs / "worker.log", start) as started:
        yield started


@pytest.fixture(scope="module")
def enrichment(
    kafka_bootstrap: str, kafka: KafkaConnection, registry_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Enrichment]:
    with enrichment_worker(kafka_bootstrap, kafka, registry_url, tmp_path_factory.mktemp("enrichment")) as worker:
        yield worker


def test_text_is_cleaned_and_redacted_and_the_record_keeps_key_and_trace(enrichment: Enrichment) -> None:
    sent = enrichment.send_event(
        subject="cust-text",
        text="<p>Card 4111 1111 1111 1111, mail me: ann@example.com</p>",
        callback_url="https://h/x",
    )
    out = enrichment.next_output(sent.event_id)
    msg = enrichment.last_message
    assert msg is not None and msg.key() == f"{enrichment.tenant}:cust-text".encode()
    headers: Any = dict(msg.headers() or [])
    assert headers["ce_type"] == b"ticket.created.enriched" and headers["ce_id"] == sent.event_id.encode()
    assert headers["traceparent"].split(b"-")[1] == enrichment.sent_trace_id(sent.event_id)
    assert out.text == "Card [CARD], mail me: [EMAIL]"
    assert out.pii_counts == {"card": 1, "email": 1}
    assert out.callback_url == "https://h/x" and out.source == sent.source


def test_the_profile_join_and_a_later_profile_update(enrichment: Enrichment, kafka: KafkaConnection) -> None:
    enrichment.send_profile("cust-1", tier="gold", plan="pro", region="eu")
    wait_for_profiles(kafka, enrichment)
    with_profile = enrichment.next_output(enrichment.send_event(subject="cust-1").event_id)
    assert with_profile.profile_found and with_profile.customer is not None
    assert (with_profile.customer.tier, with_profile.customer.plan, with_profile.customer.region) == (
        "gold",
        "pro",
        "eu",
    )
    without = enrichment.next_output(enrichment.send_event(subject="cust-none").event_id)
    assert without.profile_found is False and without.customer is None

    enrichment.send_profile("cust-1", tier="platinum", plan="enterprise", region="us")
    wait_for_profiles(kafka, enrichment)
    updated = enrichment.next_output(enrichment.send_event(subject="cust-1").event_id)
    assert updated.customer is not None and updated.customer.tier == "platinum"


def wait_for_profiles(kafka: KafkaConnection, enrichment: Enrichment) -> None:
    """The observable that a profile reached the table: the worker committed its offset (the profiles topic is the
    table's changelog, and the table's state commits with the offset)."""
    wait_consumed(kafka, enrichment.name, [enrichment.profiles])


def test_counts_per_subject_count_each_event_id_once(enrichment: Enrichment) -> None:
    first = enrichment.send_event(subject="cust-count", event_id="c-1")
    assert enrichment.next_output(first.event_id).events_1h == 1
    second = enrichment.send_event(subject="cust-count", event_id="c-2")
    out = enrichment.next_output(second.event_id)
    assert (out.events_1h, out.events_24h) == (2, 2) and out.seconds_since_previous is not None
    again = enrichment.send_event(subject="cust-count", event_id="c-1")  # a redelivery of the first
    repeated = enrichment.next_output(again.event_id)  # says what it said the first time, and counts nothing
    assert (repeated.events_1h, repeated.events_24h, repeated.seconds_since_previous) == (1, 1, None)
    third = enrichment.send_event(subject="cust-count", event_id="c-3")
    assert enrichment.next_output(third.event_id).events_1h == 3


def test_garbage_empty_text_and_unknown_schema_id_are_dead_lettered_and_the_next_event_comes_out(
    enrichment: Enrichment, kafka: KafkaConnection
) -> None:
    subject = "cust-bad"
    key = f"{enrichment.tenant}:{subject}".encode()
    enrichment.send_raw(key, b"\x07not avro at all")
    empty = enrichment.send_event(subject=subject, text="<p> \x00 </p>")
    enrichment.send_raw(key, struct.pack(">bI", 0, 987654) + b"\x02")
    good = enrichment.send_event(subject=subject)
    assert enrichment.next_output(good.event_id).event_id == good.event_id
    letters = read_dlq(kafka, dlq_topic(enrichment.name), 3)
    by_category: dict[str, list[dict[str, bytes]]] = {}
    for msg in letters:
        pairs: Any = msg.headers() or []
        headers = {str(k): v if isinstance(v, bytes) else b"" for k, v in pairs}
        by_category.setdefault(headers["dlq.error.category"].decode(), []).append(headers)
    assert len(by_category["deserialization"]) == 2
    assert len(by_category["validation"]) == 1
    assert by_category["validation"][0]["ce_id"] == empty.event_id.encode()
    for headers in (h for group in by_category.values() for h in group):
        for name in ("dlq.original.topic", "dlq.original.partition", "dlq.original.offset", "dlq.service"):
            assert name in headers
        assert headers["dlq.original.topic"] == enrichment.received.encode()


def test_a_profile_that_does_not_decode_is_dead_lettered_and_the_table_keeps_the_last_good_one(
    enrichment: Enrichment, kafka: KafkaConnection
) -> None:
    enrichment.send_profile("cust-p", tier="gold")
    key = f"{enrichment.tenant}:cust-p".encode()
    enrichment.producer.produce(enrichment.profiles, b"\x07not avro at all", key)
    assert enrichment.producer.flush(30) == 0
    wait_for_profiles(kafka, enrichment)  # committed past the bad record: it did not block the partition
    out = enrichment.next_output(enrichment.send_event(subject="cust-p").event_id)
    assert out.customer is not None and out.customer.tier == "gold"
    [letter] = read_dlq(kafka, dlq_topic(enrichment.name), 1, of=enrichment.profiles)
    pairs: Any = letter.headers() or []
    headers = {str(k): v for k, v in pairs}
    assert headers["dlq.error.category"] == b"deserialization"
    assert headers["dlq.original.topic"] == enrichment.profiles.encode()
    assert letter.key() == key and letter.value() == b"\x07not avro at all"
    # A later good profile still updates the table.
    enrichment.send_profile("cust-p", tier="platinum")
    wait_for_profiles(kafka, enrichment)
    later = enrichment.next_output(enrichment.send_event(subject="cust-p").event_id)
    assert later.customer is not None and later.customer.tier == "platinum"
