"""The notifier worker as its own process against real receivers on loopback: signatures, retries, refusals,
410, SSRF, replays, redirects, and a receiver down for an outage beside a healthy one."""

from __future__ import annotations

import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.notifier.adapters.store import Mark, marks_key
from shared.auth import TenantSecrets, new_signing_secret, secrets_key
from shared.codec import EventCodec
from shared.errors import DeserializationError
from shared.events import EventInferred
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.results import result_view
from shared.settings import REPO_ROOT
from shared.subscriptions import Subscription, subscriptions_key
from shared.topics import RETRY_LEVELS, TopicSpec, dlq_topic, replay_topic, retry_topic, service_topics
from tests.support.factories import make_event_inferred
from tests.support.kafka import headers as read_headers
from tests.support.kafka import wait_consumed
from tests.support.processes import Process, free_port, spawn, wait_for, wait_http_ready
from tests.support.receiver import WebhookReceiver
from tests.support.workers import platform_env, running
from tests.unit.test_notifier_domain import independent_check

# Short waits so the tests run in seconds: 3 retries over 1.4 s (legs through levels of the same delays); 5 failed
# calls open a circuit for 2 s.
WORKER_ENV = {
    "NOTIFIER_RUNTIME__RETRY_DELAYS_MS": "[200, 400, 800]",
    "NOTIFIER_RUNTIME__COMMIT_INTERVAL_MS": "100",
    "NOTIFIER_RUNTIME__MAX_DEFERRAL_MS": "600000",
    "NOTIFIER_CIRCUIT_FAILURES": "5",
    "NOTIFIER_CIRCUIT_COOLDOWN_S": "2",
    "NOTIFIER_RETRY_SCHEDULE_S": "0.2,0.4,0.8",
    "NOTIFIER_CONNECT_TIMEOUT_S": "2",
    "NOTIFIER_READ_TIMEOUT_S": "5",
    "NOTIFIER_MAX_REDIRECTS": "1",
}
LOOPBACK_ALLOWED = {"NOTIFIER_ALLOW_NETWORKS": '["127.0.0.0/8", "::1/128"]'}


@dataclass
class Notifier:
    """A worker over its own topics, a producer of results, a read_committed reader of receipts."""

    kafka: KafkaConnection
    name: str
    inferred: str
    delivered: str
    codec: EventCodec
    deserializer: AvroDeserializer
    producer: Producer
    reader: Consumer
    redis: redis.Redis
    tenant: str
    secret: str
    env: dict[str, str]
    logs: Path
    process: Process | None = None
    port: int = 0
    receipts_seen: list[dict[str, Any]] = field(default_factory=list)

    def start(self, **env: str) -> Process:
        self.port = free_port()
        self.process = spawn(
            [sys.executable, "-m", "services.notifier.app"],
            self.logs / f"{self.name}.log",
            env={
                "NOTIFIER_NAME": self.name,
                "NOTIFIER_PORT": str(self.port),
                "NOTIFIER_INPUT_TOPIC": self.inferred,
                "NOTIFIER_OUTPUT_TOPIC": self.delivered,
                "PIPELINE_STATE_DIR": str(self.logs / "state"),
                **WORKER_ENV,
                **self.env,
                **env,
            },
        )
        wait_http_ready(f"http://127.0.0.1:{self.port}/readyz", self.process, timeout=90)
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def new_tenant(self) -> None:
        """A fresh tenant with its own signing secret: no subscription of an earlier test reaches this one."""
        self.tenant, self.secret = f"acme-{uuid.uuid4().hex[:8]}", new_signing_secret()
        self.redis.set(secrets_key(self.tenant), TenantSecrets(current=self.secret).model_dump_json())

    def event(self, event_id: str | None = None, **overrides: Any) -> EventInferred:
        fields = make_event_inferred(
            tenant=self.tenant, event_id=event_id or f"e-{uuid.uuid4().hex[:10]}", type="ticket.created"
        )
        return EventInferred.model_validate({**fields, **overrides})

    def send(
        self, events: list[EventInferred], topic: str | None = None, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        for event in events:
            record = self.codec.encode(event, topic=self.inferred)
            sent: list[tuple[str, str | bytes | None]] = [*record.headers, *headers]
            self.producer.produce(topic or self.inferred, record.value, record.key, headers=sent)
        assert self.producer.flush(30) == 0

    def subscribe(self, url: str, event_types: list[str] | None = None, secret: str | None = None) -> Subscription:
        sub = Subscription(
            id=uuid.uuid4().hex[:12],
            url=url,
            event_types=event_types or ["*"],
            created_at=datetime.now(UTC),
            secret=secret,
        )
        self.redis.hset(subscriptions_key(self.tenant), sub.id, sub.model_dump_json())
        return sub

    def receipts(self, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0) -> list[dict[str, Any]]:
        """Every committed receipt so far (stock AvroDeserializer), polling until ``until`` holds."""
        deadline = time.monotonic() + timeout
        while not until(self.receipts_seen) and time.monotonic() < deadline:
            msg = self.reader.poll(0.2)
            if msg is not None and msg.error() is None:
                self.receipts_seen.append(self.decode(msg))
        return self.receipts_seen

    def decode(self, msg: Message) -> dict[str, Any]:
        value: Any = self.deserializer(msg.value(), SerializationContext(msg.topic() or "", MessageField.VALUE))
        return dict(value)

    def wait_idle(self) -> None:
        """Until the worker has handled every record written to its input, retry and replay topics so far."""
        topics = [self.inferred, *(retry_topic(self.name, n) for n in range(1, RETRY_LEVELS + 1))]
        wait_consumed(self.kafka, self.name, [*topics, replay_topic(self.name)])

    def dead_letters(self, event_ids: set[str], timeout: float = 60.0) -> dict[str, Message]:
        """The committed dead letters of these events (the DLQ also holds earlier tests' records)."""
        found = dead_letters_in(self.kafka, dlq_topic(self.name), self.codec, timeout, until=event_ids)
        assert set(found) >= event_ids, f"dead letters of {sorted(event_ids - set(found))} missing"
        return {i: found[i] for i in event_ids}

    def dead_letter(self, event_id: str) -> dict[str, bytes]:
        return read_headers(self.dead_letters({event_id})[event_id])


def dead_letters_in(
    kafka: KafkaConnection, topic: str, codec: EventCodec, timeout: float, until: set[str] | None = None
) -> dict[str, Message]:
    """Dead letters by event id, read_committed, until ``until`` are all found (or ``timeout`` passes)."""
    consumer = Consumer(kafka.consumer_config(f"dlq-{uuid.uuid4().hex}", **{"isolation.level": "read_committed"}))
    consumer.subscribe([topic])
    found: dict[str, Message] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (until is not None and set(found) >= until):
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            try:
                event = codec.decode_value(topic, msg.value(), event_type=EventInferred)
            except DeserializationError:
                continue  # a dead letter of bytes no one could decode (its own test's)
            assert isinstance(event, EventInferred)
            found[event.event_id] = msg
    consumer.close()
    return found


@contextmanager
def notifier_worker(
    kafka: KafkaConnection, registry_url: str, redis_url: str, logs: Path, **env: str
) -> Iterator[Notifier]:
    suffix = uuid.uuid4().hex[:8]
    name = f"notifier-{suffix}"
    inferred, delivered = f"inf-{suffix}", f"dlv-{suffix}"
    bootstrap_topics(
        kafka, [TopicSpec(t, 4, "tenant:subject", None) for t in (inferred, delivered)] + service_topics(name, 4)
    )
    codec = EventCodec.connect(registry_url, REPO_ROOT / "schemas")
    reader = Consumer(kafka.consumer_config(f"reader-{suffix}", **{"isolation.level": "read_committed"}))
    reader.subscribe([delivered])
    client = redis.Redis.from_url(redis_url)
    worker = Notifier(
        kafka,
        name,
        inferred,
        delivered,
        codec,
        AvroDeserializer(SchemaRegistryClient({"url": registry_url})),
        Producer(kafka.producer_config()),
        reader,
        client,
        "",
        "",
        {**platform_env(kafka, registry_url, redis_url), **env},
        logs,
    )
    worker.new_tenant()
    with running(worker, logs / f"{name}.log") as started:
        yield started


@pytest.fixture(scope="module")
def notifier(
    kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Notifier]:
    with notifier_worker(kafka, registry_url, redis_url, tmp_path_factory.mktemp("notifier"), **LOOPBACK_ALLOWED) as w:
        yield w


@pytest.fixture(autouse=True)
def fresh_tenant(request: pytest.FixtureRequest) -> None:
    if "notifier" in request.fixturenames:
        request.getfixturevalue("notifier").new_tenant()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    # One receiver per test: a circuit is per endpoint (host and port), so tests do not share one.
    found = WebhookReceiver(free_port()).start()
    yield found
    found.close()


def for_event(event_id: str, count: int = 1) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda seen: sum(r["event_id"] == event_id for r in seen) >= count


def test_a_delivery_is_signed_verifiable_with_standardwebhooks_and_independently_and_leaves_a_receipt(
    notifier: Notifier, receiver: WebhookReceiver
) -> None:
    event = notifier.event(callback_url=f"{receiver.url}/hook")
    notifier.send([event])
    receipts = notifier.receipts(for_event(event.event_id))
    [call] = receiver.calls_to("/hook")
    assert call.headers["webhook-id"] == call.headers["idempotency-key"] == event.event_id
    payload = Webhook(notifier.secret).verify(call.body, call.headers)
    assert payload["event_id"] == event.event_id and payload["subject"] == event.subject
    assert payload["result"] == result_view(event) and payload["trace_id"]
    assert independent_check(notifier.secret, call.headers, call.body)
    tampered = call.body.replace(event.event_id.encode(), b"e-forged")
    with pytest.raises(WebhookVerificationError):
        Webhook(notifier.secret).verify(tampered, call.headers)
    assert not independent_check(notifier.secret, call.headers, tampered)
    [receipt] = [r for r in receipts if r["event_id"] == event.event_id]
    assert receipt["status"] == "delivered" and receipt["http_status"] == 200
    assert receipt["endpoint"] == f"{receiver.url}/hook" and receipt["subscription_id"] is None


def test_a_subscription_with_its_own_secret_is_signed_with_it_through_a_resolved_hostname(
    notifier: Notifier, receiver: WebhookReceiver
) -> None:
    own = new_signing_secret()
    sub = notifier.subscribe(f"http://localhost:{receiver.port}/sub", ["ticket.created"], own)
    other = notifier.subscribe(f"http://localhost:{receiver.port}/other", ["alert.raised"])
    event = notifier.event()
    notifier.send([event])
    receipts = notifier.receipts(for_event(event.event_id))
    [call] = receiver.calls_to("/sub")
    Webhook(own).verify(call.body, call.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(notifier.secret).verify(call.body, call.headers)
    assert receiver.calls_to("/other") == [] and other.id not in {r["subscription_id"] for r in receipts}
    assert [r["subscription_id"] for r in receipts if r["event_id"] == event.event_id] == [sub.id]


def test_two_503s_then_a_200_give_three_calls_with_one_webhook_id_and_one_success(
    notifier: Notifier, receiver: WebhookReceiver
) -> None:
    receiver.script("/flaky", [503, 503, 200])
    event = notifier.event(callback_url=f"{receiver.url}/flaky")
    notifier.send([event])
    notifier.receipts(for_event(event.event_id))
    wait_for(lambda: len(receiver.calls_to("/flaky")) >= 3, "three calls")
    notifier.wait_idle()  # a fourth call would come from a record still to handle: none is left
    calls = receiver.calls_to("/flaky")
    assert len(calls) == 3
    assert {c.headers["webhook-id"] for c in calls} == {event.event_id}
    successes = [r for r in notifier.receipts_seen if r["event_id"] == event.event_id]
    assert [(r["status"], r["http_status"], r["attempts"]) for r in successes] == [("delivered", 200, 3)]


def test_one_subjects_results_reach_a_healthy_endpoint_in_order_while_others_go_concurrently(
    notifier: Notifier, receiver: WebhookReceiver
) -> None:
    receiver.script("/ordered", [200], delay_s=0.02)
    events = [
        notifier.event(subject=f"customer-{'ordered' if n % 2 == 0 else n}", callback_url=f"{receiver.url}/ordered")
        for n in range(120)
    ]
    notifier.send(events)
    wait_for(lambda: len(receiver.calls_to("/ordered")) >= len(events), "every delivery")
    ordered = [e.event_id for e in events if e.subject == "customer-ordered"]
    arrived = [c.headers["webhook-id"] for c in receiver.calls_to("/ordered")]
    assert [i for i in arrived if i in set(ordered)] == ordered
    assert len(arrived) == len(events)


def test_undecodable_bytes_are_dead_lettered_and_the_next_result_is_delivered(
    notifier: Notifier, receiver: WebhookReceiver
) -> None:
    notifier.producer.produce(notifier.inferred, b"\x00\x00\x00\x00\x01garbage", b"acme:customer-x")
    assert notifier.producer.flush(30) == 0
    event = notifier.event(callback_url=f"{receiver.url}/after")
    notifier.send([event])
    notifier.receipts(for_event(event.event_id))
    dead = read_all_dlq(notifier)
    assert any(read_headers(m)["dlq.error.category"] == b"deserialization" for m in dead)
    assert [c.headers["webhook-id"] for c in receiver.calls_to("/after")] == [event.event_id]


def read_all_dlq(notifier: Notifier) -> list[Message]:
    consumer = Consumer(notifier.kafka.consumer_config(f"dlq-{uuid.uuid4().hex}"))
    consumer.subscribe([dlq_topic(notifier.name)])
    found: list[Message] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
        read_headers(m).get("dlq.error.category") == b"deserialization" for m in found
    ):
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            found.append(msg)
    consumer.close()
    return found


def test_a_400_gets_one_call_and_the_record_is_dead_lettered_with_the_status_and_excerpt(
    notifier: Notifier, receiver: WebhookReceiver
) -> None:
    receiver.script("/strict", [400], body=b'{"error": "unknown field priority"}')
    event = notifier.event(callback_url=f"{receiver.url}/strict")
    notifier.send([event])
    headers = notifier.dead_letter(event.event_id)
    assert headers["dlq.error.category"] == b"delivery"
    assert b"HTTP 400" in headers["dlq.error.message"] and b"unknown field priority" in headers["dlq.error.message"]
    notifier.wait_idle()
    assert len(receiver.calls_to("/strict")) == 1
    # The refusal's receipt went out with the dead letter, in the same transaction.
    [receipt] = [r for r in notifier.receipts(for_event(event.event_id)) if r["event_id"] == event.event_id]
    assert (receipt["status"], receipt["http_status"]) == ("failed", 400) and "HTTP 400" in receipt["error"]


def test_after_the_last_retry_a_failing_endpoint_is_dead_lettered_with_the_last_status(
    notifier: Notifier, receiver: WebhookReceiver
) -> None:
    receiver.script("/broken", [500], body=b"database is on fire")
    event = notifier.event(callback_url=f"{receiver.url}/broken")
    notifier.send([event])
    headers = notifier.dead_letter(event.event_id)
    assert headers["dlq.error.category"] == b"delivery"
    assert b"HTTP 500: database is on fire" in headers["dlq.error.message"]
    assert b"call 4, the retry schedule's last" in headers["dlq.error.message"]
    assert len(receiver.calls_to("/broken")) == 4  # the first call and three retries


def test_retry_after_is_honoured(notifier: Notifier, receiver: WebhookReceiver) -> None:
    receiver.script("/busy", [429, 200], headers={"Retry-After": "1"})
    event = notifier.event(callback_url=f"{receiver.url}/busy")
    notifier.send([event])
    notifier.receipts(for_event(event.event_id))
    first, second = receiver.calls_to("/busy")
    # Retry-After: 1 s, later than the schedule's 200 ms: it wins (carried as legs of 800 and 200 ms).
    assert second.at - first.at >= 0.95


def test_410_gone_disables_the_subscription_after_one_call_without_a_dead_letter(
    notifier: Notifier, receiver: WebhookReceiver
) -> None:
    receiver.script("/gone", [410])
    sub = notifier.subscribe(f"{receiver.url}/gone")
    try:
        first = notifier.event()
        notifier.send([first])
        [receipt] = [r for r in notifier.receipts(for_event(first.event_id)) if r["event_id"] == first.event_id]
        assert (receipt["status"], receipt["http_status"], receipt["subscription_id"]) == ("gone", 410, sub.id)
        notifier.wait_idle()
        assert first.event_id not in dead_letters_in(notifier.kafka, dlq_topic(notifier.name), notifier.codec, 3)
        stored = Subscription.model_validate_json(
            notifier.redis.hget(subscriptions_key(notifier.tenant), sub.id) or b""
        )
        assert stored.disabled_at is not None and stored.disabled_reason == "410 Gone"
        second = notifier.event()
        notifier.send([second])
        notifier.receipts(lambda seen: False, timeout=2)
        assert len(receiver.calls_to("/gone")) == 1
    finally:
        notifier.redis.hdel(subscriptions_key(notifier.tenant), sub.id)


def test_a_307_to_a_metadata_address_is_refused_and_one_to_the_same_receiver_followed(
    notifier: Notifier, receiver: WebhookReceiver
) -> None:
    receiver.script("/moved", [307], headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    receiver.script("/old", [308], headers={"Location": "/new"})
    evil, fine = (
        notifier.event(callback_url=f"{receiver.url}/moved"),
        notifier.event(callback_url=f"{receiver.url}/old"),
    )
    notifier.send([evil, fine])
    dead = notifier.dead_letter(evil.event_id)
    assert b"169.254.169.254" in dead["dlq.error.message"] and dead["dlq.error.category"] == b"delivery"
    notifier.receipts(for_event(fine.event_id))
    assert len(receiver.calls_to("/new")) == 1 and len(receiver.calls_to("/moved")) == 1


def test_replaying_delivered_records_makes_no_second_call(notifier: Notifier, receiver: WebhookReceiver) -> None:
    events = [notifier.event(callback_url=f"{receiver.url}/once") for _ in range(5)]
    notifier.send(events)
    notifier.receipts(lambda seen: all(for_event(e.event_id)(seen) for e in events))
    replay = [("replay.id", b"r-1"), ("replay.source", b"notifier.dlq/0/1"), ("replay.count", b"1")]
    notifier.send(events, topic=replay_topic(notifier.name), headers=replay)
    # The receipts come again (a replay cannot tell a lost receipt from a committed one); the calls do not.
    notifier.receipts(lambda seen: all(for_event(e.event_id, 2)(seen) for e in events))
    assert Counter(c.headers["webhook-id"] for c in receiver.calls_to("/once")) == {e.event_id: 1 for e in events}


def test_ssrf_targets_are_refused_without_the_allowlist_and_dead_lettered_as_permanent(
    kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    targets = [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        f"http://[::1]:{receiver.port}/hook",
        f"http://localhost:{receiver.port}/hook",
    ]
    with notifier_worker(kafka, registry_url, redis_url, tmp_path) as worker:
        events = [worker.event(callback_url=url) for url in targets]
        worker.send(events)
        dead = worker.dead_letters({e.event_id for e in events})
    by_url = {}
    for event in events:
        headers = read_headers(dead[event.event_id])
        assert headers["dlq.error.category"] == b"delivery" and headers["dlq.attempts"] == b"1"
        by_url[event.callback_url] = headers["dlq.error.message"].decode()
    assert set(by_url) == set(targets)
    assert re.search(r"10\.0\.0\.1 is private", by_url[targets[0]])
    assert "metadata" in by_url[targets[1]]
    assert "::1 is loopback" in by_url[targets[2]]
    assert re.search(r"localhost resolves only to refused addresses.*is loopback", by_url[targets[3]])
    assert receiver.calls == []


# Far longer than the retry ladder (200/400/800 ms, which it would exhaust without deferral) and the circuit's 2 s
# cool-down (so probes fail during it).
OUTAGE_S = 20.0
OUTAGE_EVENTS, BEFORE_OUTAGE = 500, 50


def test_a_receiver_down_for_an_outage_loses_nothing_and_the_healthy_one_stays_on_time(
    notifier: Notifier, tmp_path: Path
) -> None:
    down, healthy = WebhookReceiver(free_port()).start(), WebhookReceiver(free_port()).start()
    subs = [notifier.subscribe(f"{down.url}/a"), notifier.subscribe(f"{healthy.url}/b")]
    events = [notifier.event(subject=f"customer-{n % 20}") for n in range(OUTAGE_EVENTS)]
    # All but the first events are sent inside the outage, the last over 5 s before its end.
    interval = (OUTAGE_S - 10) / (OUTAGE_EVENTS - BEFORE_OUTAGE)
    sent_at: dict[str, float] = {}
    outage: dict[str, float] = {}

    def produce() -> None:
        for i, event in enumerate(events):
            if i == BEFORE_OUTAGE:
                down.stop()
                outage["start"] = time.time()
            sent_at[event.event_id] = time.time()
            notifier.send([event])
            time.sleep(interval)

    try:
        producer = threading.Thread(target=produce)
        producer.start()
        wait_for(lambda: "start" in outage, "the outage to start")
        metrics = f"http://127.0.0.1:{notifier.port}/metrics"
        state = f'notifier_circuit_state{{endpoint="http://127.0.0.1:{down.port}"}} 2.0'
        wait_for(lambda: state in httpx.get(metrics).text, "the down endpoint's circuit to open", 30)
        producer.join(120)
        remaining = OUTAGE_S - (time.time() - outage["start"])
        assert remaining > 5, "the producer took longer than the outage"
        on_time = {c.headers["webhook-id"] for c in healthy.calls_to("/b")}
        time.sleep(remaining)
        down.start()
        outage["end"] = time.time()
        ids = {e.event_id for e in events}
        wait_for(lambda: {c.headers["webhook-id"] for c in down.calls_to("/a")} >= ids, "every event at /a", 120)
        # The healthy receiver had every event before the outage ended (all were sent > 5 s before its end).
        lags = sorted(
            c.at - sent_at[c.headers["webhook-id"]] for c in healthy.calls_to("/b") if c.headers["webhook-id"] in ids
        )
        late = ids - on_time - {c.headers["webhook-id"] for c in healthy.calls_to("/b") if c.at < outage["end"]}
        assert not late, f"{len(late)} healthy deliveries waited for the outage; lag p50 {lags[len(lags) // 2]:.2f}s"
        assert Counter(c.headers["webhook-id"] for c in healthy.calls_to("/b")) == dict.fromkeys(ids, 1)
        assert Counter(c.headers["webhook-id"] for c in down.calls_to("/a")) == dict.fromkeys(ids, 1)
        assert not set(dead_letters_in(notifier.kafka, dlq_topic(notifier.name), notifier.codec, 3)) & ids
    finally:
        for sub in subs:
            notifier.redis.hdel(subscriptions_key(notifier.tenant), sub.id)
        down.close()
        healthy.close()


def calls_made(worker: Notifier, event_id: str) -> int:
    """The calls the notifier made for ``event_id``, by its own count (the endpoint's mark in Redis)."""
    marks = worker.redis.hvals(marks_key(worker.tenant, event_id))
    return max((Mark.model_validate_json(raw).attempts for raw in marks), default=0)


def test_a_receiver_down_longer_than_the_first_three_retries_gets_its_result_once_back_without_a_dead_letter(
    kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path: Path
) -> None:
    down = WebhookReceiver(free_port())  # not started: connection refused
    schedule = {"NOTIFIER_RETRY_SCHEDULE_S": "0.2,0.4,0.8,5"}
    try:
        with notifier_worker(kafka, registry_url, redis_url, tmp_path, **LOOPBACK_ALLOWED, **schedule) as worker:
            event = worker.event(callback_url=f"{down.url}/back")
            worker.send([event])
            # The first call and the three short retries (0.2 + 0.4 + 0.8 s) all fail: the notifier's mark for
            # the endpoint counts them; the receiver comes back while the fourth retry (after 5 s) waits.
            wait_for(lambda: calls_made(worker, event.event_id) >= 4, "four failed calls", timeout=60)
            down.start()
            [receipt] = [r for r in worker.receipts(for_event(event.event_id), 30) if r["event_id"] == event.event_id]
            assert (receipt["status"], receipt["attempts"]) == ("delivered", 5)  # the fourth retry, after 5 s
            assert [c.headers["webhook-id"] for c in down.calls_to("/back")] == [event.event_id]
            worker.wait_idle()
            assert event.event_id not in dead_letters_in(worker.kafka, dlq_topic(worker.name), worker.codec, 3)
    finally:
        down.close()
