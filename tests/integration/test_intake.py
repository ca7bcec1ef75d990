"""The intake API against a real broker, Redis and registry: every status code of the contract."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from confluent_kafka import Consumer, Producer, TopicPartition
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from services.intake.app import build
from services.intake.settings import IntakeSettings
from services.notifier.adapters.store import Mark, NotifierStore
from shared.auth import KeyStore
from shared.codec import EventCodec
from shared.events import EventInferred
from shared.kafka import KafkaConnection, create_topic
from shared.settings import PipelineSettings
from shared.status import APPLY_SCRIPT, Stage, apply_args, status_key
from shared.subscriptions import DeliveryAttempt, Subscription, subscriptions_key
from tests.integration.runtime_support import headers, read
from tests.support.factories import make_event_inferred
from tests.support.processes import free_port, start_broker
from tests.support.receiver import WebhookReceiver


@dataclass
class Intake:
    client: TestClient
    topic: str
    tenant: str
    writer: str
    reader: str
    other_tenant: str
    store: KeyStore

    def post(self, body: dict[str, Any], key: str | None = None, extra_headers: dict[str, str] | None = None) -> Any:
        return self.client.post(
            "/v1/events", json=body, headers={"X-API-Key": key or self.writer, **(extra_headers or {})}
        )


def event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "ticket.created",
        "source": "crm",
        "subject": "customer-9",
        "occurred_at": "2026-11-26T10:00:00Z",
        "payload": {"text": "I was charged twice", "order": 123},
    }
    body.update(overrides)
    return body


def intake_settings(
    kafka: KafkaConnection, redis_url: str, registry_url: str, topic: str, **extra: Any
) -> IntakeSettings:
    pipeline = PipelineSettings(kafka=kafka, redis_url=redis_url, schema_registry_url=registry_url)
    return IntakeSettings(pipeline=pipeline, topic=topic, **extra)


@pytest.fixture
def intake(kafka: KafkaConnection, redis_url: str, registry_url: str, unique: Callable[[str], str]) -> Iterator[Intake]:
    topic = unique("events")
    create_topic(kafka, topic, 3)
    store = KeyStore.from_url(redis_url)
    tenant = unique("acme")
    writer, _ = store.create(tenant, ["events:write", "events:read"], "1000/second")
    reader, _ = store.create(tenant, ["events:read"], "1000/second")
    other, _ = store.create(unique("globex"), ["events:write", "events:read"], "1000/second")
    settings = intake_settings(kafka, redis_url, registry_url, topic, max_body_bytes=4096)
    with TestClient(build(settings)) as client:
        yield Intake(client, topic, tenant, writer, reader, other, store)


def test_202_means_the_event_is_in_kafka_with_its_key_and_cloudevents_headers(
    intake: Intake, kafka: KafkaConnection
) -> None:
    answer = intake.post(event(event_id="evt-1"))
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["event_id"] == "evt-1" and body["status"] == "accepted"
    consumer = Consumer(kafka.consumer_config(f"check-{uuid.uuid4()}"))
    consumer.assign([TopicPartition(intake.topic, body["partition"], body["offset"])])
    msg = None
    while msg is None:
        msg = consumer.poll(10)
    consumer.close()
    assert msg.key() == f"{intake.tenant}:customer-9".encode()
    h = headers(msg)
    assert h["ce_id"] == b"evt-1" and h["ce_type"] == b"ticket.created" and h["ce_tenant"] == intake.tenant.encode()
    assert answer.headers["X-RateLimit-Limit"] == "1000"


def test_a_repeated_event_id_answers_200_duplicate_and_is_not_written_again(
    intake: Intake, kafka: KafkaConnection
) -> None:
    first = intake.post(event(event_id="evt-dup"))
    second = intake.post(event(event_id="evt-dup"))
    assert first.status_code == 202 and second.status_code == 200
    assert second.json()["duplicate"] is True
    assert (second.json()["partition"], second.json()["offset"]) == (first.json()["partition"], first.json()["offset"])
    ids = [headers(m)["ce_id"] for m in read(kafka, intake.topic, 1)]
    assert ids.count(b"evt-dup") == 1


def test_a_reused_event_id_with_a_different_body_is_409(intake: Intake) -> None:
    assert intake.post(event(event_id="evt-reuse")).status_code == 202
    other = intake.post(event(event_id="evt-reuse", payload={"text": "something else"}))
    assert other.status_code == 409, other.text
    assert other.headers["content-type"] == "application/problem+json"
    assert "already used with a different body" in other.json()["detail"]
    # The same body is still the plain duplicate, whether the id came in the body or the header.
    assert intake.post(event(), extra_headers={"Idempotency-Key": "evt-reuse"}).status_code == 200


def test_a_batch_item_reusing_an_id_with_a_different_body_is_rejected(intake: Intake) -> None:
    assert intake.post(event(event_id="evt-reuse-b")).status_code == 202
    items = [event(event_id="evt-reuse-b", source="elsewhere"), event(event_id="evt-fresh-b")]
    answer = intake.client.post("/v1/events:batch", json={"events": items}, headers={"X-API-Key": intake.writer})
    assert answer.status_code == 202, answer.text
    first = answer.json()["results"][0]
    assert first["status"] == "rejected" and "already used with a different body" in first["detail"]


def test_an_acceptance_stored_without_a_body_digest_stays_a_duplicate_whatever_the_body(intake: Intake) -> None:
    # As stored before digests existed: the acceptance alone.
    intake.store.redis.set(
        f"idem:{intake.tenant}:evt-old", b'{"event_id": "evt-old", "status": "accepted", "partition": 0, "offset": 5}'
    )
    answer = intake.post(event(event_id="evt-old", payload={"text": "anything"}))
    assert answer.status_code == 200 and answer.json()["duplicate"] is True and answer.json()["offset"] == 5


def deliver(intake: Intake, event_id: str) -> None:
    """Move the event to ``delivered`` as the status consumer does, with its own script."""
    args = apply_args("stage", Stage.DELIVERED, "2026-11-26T10:00:05Z", 3600, {})
    intake.store.redis.eval(APPLY_SCRIPT, 1, status_key(intake.tenant, event_id), *args)


def test_a_duplicate_answers_the_events_current_status(intake: Intake) -> None:
    assert intake.post(event(event_id="evt-done")).status_code == 202
    deliver(intake, "evt-done")
    again = intake.post(event(event_id="evt-done"))
    assert again.status_code == 200 and again.json()["status"] == "delivered" and again.json()["duplicate"] is True


def test_a_batch_of_duplicates_only_is_200_with_each_current_status_and_the_counts(intake: Intake) -> None:
    items = [event(event_id="evt-bd-1"), event(event_id="evt-bd-2")]
    auth = {"X-API-Key": intake.writer}
    assert intake.client.post("/v1/events:batch", json={"events": items}, headers=auth).status_code == 202
    deliver(intake, "evt-bd-2")
    again = intake.client.post("/v1/events:batch", json={"events": items}, headers=auth)
    assert again.status_code == 200, again.text
    body = again.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (0, 2, 0)
    assert [(r["status"], r["current_status"]) for r in body["results"]] == [
        ("duplicate", "accepted"),
        ("duplicate", "delivered"),
    ]


def test_a_batch_with_every_item_rejected_is_422_with_the_items_and_counts(intake: Intake) -> None:
    items = [event(payload={"text": ""}), event(type="Not A Type!")]
    answer = intake.client.post("/v1/events:batch", json={"events": items}, headers={"X-API-Key": intake.writer})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (0, 0, 2)
    assert [r["errors"][0]["loc"] for r in body["results"]] == [
        ["body", "events", 0, "payload", "text"],
        ["body", "events", 1, "type"],
    ]


def test_reads_have_their_own_bucket_and_do_not_use_up_publishing(intake: Intake, unique: Callable[[str], str]) -> None:
    key, _ = intake.store.create(unique("poller"), ["events:write", "events:read"], "2/minute")
    published = [intake.post(event(), key=key) for _ in range(2)]
    assert [p.status_code for p in published] == [202, 202]
    reads = [intake.client.get(f"/v1/events/{published[0].json()['event_id']}", headers={"X-API-Key": key})]
    reads.append(intake.client.get(f"/v1/events/{published[1].json()['event_id']}", headers={"X-API-Key": key}))
    assert [r.status_code for r in reads] == [200, 200]
    assert intake.post(event(), key=key).status_code == 429
    # Reads have the key's rate too, on their own.
    assert intake.client.get("/v1/events/any", headers={"X-API-Key": key}).status_code == 429


def test_the_idempotency_key_header_names_the_event_when_the_body_does_not(intake: Intake) -> None:
    answer = intake.post(event(), extra_headers={"Idempotency-Key": "order-77"})
    assert answer.status_code == 202 and answer.json()["event_id"] == "order-77"
    generated = intake.post(event()).json()["event_id"]
    assert uuid.UUID(generated).version == 7


def test_missing_and_unknown_keys_are_401_and_a_missing_scope_403(intake: Intake) -> None:
    missing = intake.client.post("/v1/events", json=event())
    assert missing.status_code == 401 and missing.headers["content-type"] == "application/problem+json"
    assert intake.client.post("/v1/events", json=event(), headers={"Authorization": "Bearer nope"}).status_code == 401
    forbidden = intake.post(event(), key=intake.reader)
    assert forbidden.status_code == 403 and forbidden.json()["required_scope"] == "events:write"


def test_another_tenants_event_is_404(intake: Intake) -> None:
    intake.post(event(event_id="evt-mine"))
    own = intake.client.get("/v1/events/evt-mine", headers={"X-API-Key": intake.reader})
    assert own.status_code == 200 and own.json()["status"] == "accepted" and own.json()["stages"]["accepted"]
    theirs = intake.client.get("/v1/events/evt-mine", headers={"X-API-Key": intake.other_tenant})
    assert theirs.status_code == 404


def test_a_duplicate_while_the_first_write_is_in_flight_is_409(intake: Intake) -> None:
    intake.store.redis.set(f"idem:{intake.tenant}:evt-busy", b"inflight", ex=30)
    busy = intake.post(event(event_id="evt-busy"))
    assert busy.status_code == 409 and busy.headers["Retry-After"] == "1"


def test_a_body_over_the_limit_is_413_and_not_json_is_415(intake: Intake) -> None:
    big = intake.post(event(payload={"text": "x" * 10_000}))
    assert big.status_code == 413 and big.json()["status"] == 413
    text = intake.client.post(
        "/v1/events", content=b"type=x", headers={"X-API-Key": intake.writer, "Content-Type": "text/plain"}
    )
    assert text.status_code == 415


def test_an_invalid_field_is_422_naming_the_field(intake: Intake) -> None:
    bad = intake.post(event(type="Not A Type!"))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["body", "type"]
    late = intake.post(event(occurred_at="yesterday"))
    assert late.status_code == 422 and late.json()["errors"][0]["loc"] == ["body", "occurred_at"]


def test_a_key_over_its_rate_gets_429_with_headers(intake: Intake, unique: Callable[[str], str]) -> None:
    slow, _ = intake.store.create(unique("slow"), ["events:write"], "2/second")
    answers = [intake.post(event(), key=slow) for _ in range(6)]
    refused = [a for a in answers if a.status_code == 429]
    assert refused, [a.status_code for a in answers]
    wanted = {"retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}
    assert wanted <= {name.lower() for name in refused[0].headers}
    assert intake.post(event()).status_code == 202  # another key is not slowed


def test_a_batch_with_3_invalid_items_among_100_accepts_the_97(intake: Intake, kafka: KafkaConnection) -> None:
    items = [event(event_id=f"b-{i}") for i in range(100)]
    for bad in (7, 50, 99):
        items[bad] = event(event_id=f"b-{bad}", payload={"text": ""})
    answer = intake.client.post("/v1/events:batch", json={"events": items}, headers={"X-API-Key": intake.writer})
    assert answer.status_code == 202, answer.text
    results = answer.json()["results"]
    assert (answer.json()["accepted"], answer.json()["duplicate"], answer.json()["rejected"]) == (97, 0, 3)
    assert [r["index"] for r in results] == list(range(100))
    assert [r["index"] for r in results if r["status"] == "rejected"] == [7, 50, 99]
    assert results[7]["errors"][0]["loc"] == ["body", "events", 7, "payload", "text"]
    ids = Counter(headers(m)["ce_id"] for m in read(kafka, intake.topic, 97))
    assert len(ids) == 97 and max(ids.values()) == 1


def test_16_concurrent_posts_of_one_event_id_write_it_once(intake: Intake, kafka: KafkaConnection) -> None:
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: intake.post(event(event_id="evt-race")), range(16)))
    codes = Counter(a.status_code for a in answers)
    assert codes[202] == 1 and codes[202] + codes[200] + codes[409] == 16, codes
    ids = [headers(m)["ce_id"] for m in read(kafka, intake.topic, 1)]
    assert ids.count(b"evt-race") == 1


def test_kafka_down_is_503_and_never_202(
    redis_url: str, registry_url: str, unique: Callable[[str], str], tmp_path: Path
) -> None:
    port = free_port()
    broker = start_broker(tmp_path / "kafka", port, free_port())
    kafka = KafkaConnection(bootstrap_servers=f"127.0.0.1:{port}")
    topic = unique("events")
    try:
        create_topic(kafka, topic, 1)
        store = KeyStore.from_url(redis_url)
        key, _ = store.create(unique("t"), ["events:write"], "1000/second")
        settings = intake_settings(kafka, redis_url, registry_url, topic, delivery_timeout_ms=3000)
        with TestClient(build(settings)) as client:
            up = client.post("/v1/events", json=event(), headers={"X-API-Key": key})
            assert up.status_code == 202
            broker.stop()
            down = client.post("/v1/events", json=event(event_id="while-down"), headers={"X-API-Key": key})
            assert down.status_code == 503 and down.headers["Retry-After"] == "1"
            # The id was released: a retry after the outage can succeed.
            record = store.verify(key)
            assert record is not None and store.redis.get(f"idem:{record.tenant}:while-down") is None
    finally:
        broker.stop()


def test_subscriptions_are_created_with_a_secret_shown_once_listed_and_deleted(intake: Intake) -> None:
    admin, _ = intake.store.create(intake.tenant, ["subscriptions:write"], "1000/second")
    auth = {"X-API-Key": admin}
    created = intake.client.post(
        "/v1/subscriptions", json={"url": "https://93.184.216.34/x", "event_types": ["ticket.created"]}, headers=auth
    )
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["secret"].startswith("whsec_") and sub["id"].startswith("sub_")
    listed = intake.client.get("/v1/subscriptions", headers=auth).json()["subscriptions"]
    assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
    assert intake.client.get("/v1/subscriptions", headers={"X-API-Key": intake.writer}).status_code == 403
    assert intake.client.delete(f"/v1/subscriptions/{sub['id']}", headers=auth).status_code == 204
    assert intake.client.delete(f"/v1/subscriptions/{sub['id']}", headers=auth).status_code == 404


def test_a_subscription_with_a_bad_url_is_422_naming_it(intake: Intake) -> None:
    admin, _ = intake.store.create(intake.tenant, ["subscriptions:write"], "1000/second")
    bad = intake.client.post(
        "/v1/subscriptions", json={"url": "ftp://x", "event_types": ["*"]}, headers={"X-API-Key": admin}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "url"]
    ftp = intake.client.post(
        "/v1/subscriptions", json={"url": "ftp://hooks.example/x", "event_types": ["*"]}, headers={"X-API-Key": admin}
    )
    assert ftp.status_code == 422 and "http:// or https://" in ftp.json()["detail"]


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://169.254.169.254/latest", "169.254.169.254 is a cloud metadata address"),
        ("http://exa mple.com/", "must not contain spaces or control characters"),
        ("http://bad_host.example/", "is not a valid host name"),
        ("http://user:pw@example.com/", "must not contain credentials"),
        ("https://no-such-host.invalid/", "does not resolve"),
    ],
)
def test_a_subscription_url_breaking_a_rule_is_422_naming_the_rule(intake: Intake, url: str, rule: str) -> None:
    admin, _ = intake.store.create(intake.tenant, ["subscriptions:write"], "1000/second")
    bad = intake.client.post("/v1/subscriptions", json={"url": url, "event_types": ["*"]}, headers={"X-API-Key": admin})
    assert bad.status_code == 422, bad.text
    assert rule in bad.json()["detail"] and bad.json()["errors"][0]["loc"] == ["body", "url"]
    assert intake.client.get("/v1/subscriptions", headers={"X-API-Key": admin}).json()["subscriptions"] == []


def test_a_name_resolving_to_loopback_is_accepted_in_development_as_make_up_allows_it(intake: Intake) -> None:
    admin, _ = intake.store.create(intake.tenant, ["subscriptions:write"], "1000/second")
    created = intake.client.post(
        "/v1/subscriptions", json={"url": "http://localhost:9/x", "event_types": ["*"]}, headers={"X-API-Key": admin}
    )
    assert created.status_code == 201, created.text


def test_subscriptions_above_the_tenant_cap_are_409_naming_the_cap(
    kafka: KafkaConnection, redis_url: str, registry_url: str, unique: Callable[[str], str]
) -> None:
    topic = unique("events")
    create_topic(kafka, topic, 1)
    store = KeyStore.from_url(redis_url)
    admin, _ = store.create(unique("capped"), ["subscriptions:write"], "1000/second")
    auth = {"X-API-Key": admin}
    body = {"url": "https://93.184.216.34/hook", "event_types": ["*"]}
    settings = intake_settings(kafka, redis_url, registry_url, topic, max_subscriptions_per_tenant=2)
    with TestClient(build(settings)) as client:
        made = [client.post("/v1/subscriptions", json=body, headers=auth) for _ in range(2)]
        assert [m.status_code for m in made] == [201, 201], made[-1].text
        over = client.post("/v1/subscriptions", json=body, headers=auth)
        assert over.status_code == 409, over.text
        assert (
            "2 subscriptions" in over.json()["detail"]
            and "INTAKE_MAX_SUBSCRIPTIONS_PER_TENANT" in over.json()["detail"]
        )
        assert client.delete(f"/v1/subscriptions/{made[0].json()['id']}", headers=auth).status_code == 204
        assert client.post("/v1/subscriptions", json=body, headers=auth).status_code == 201


def test_a_full_producer_queue_is_503_never_202(
    kafka: KafkaConnection, redis_url: str, registry_url: str, unique: Callable[[str], str]
) -> None:
    topic = unique("events")
    create_topic(kafka, topic, 1)
    store = KeyStore.from_url(redis_url)
    key, _ = store.create(unique("t"), ["events:write"], "100000/second")
    settings = intake_settings(kafka, redis_url, registry_url, topic, queue_max_messages=1)
    items = [event(event_id=f"q-{i}") for i in range(200)]
    with TestClient(build(settings)) as client:
        answer = client.post("/v1/events:batch", json={"events": items}, headers={"X-API-Key": key})
    results = answer.json()["results"] if answer.status_code == 202 else []
    refused = [r for r in results if r["status"] == "rejected"]
    # A queue of one cannot take 200 records at once: the overflow is refused, not promised.
    assert answer.status_code == 503 or refused, answer.text
    assert all("queue is full" in r["detail"] for r in refused)
    accepted = {r["event_id"] for r in results if r["status"] == "accepted"}
    written = {h for m in read(kafka, topic, len(accepted), timeout=30) if (h := headers(m)["ce_id"].decode())}
    assert written == accepted


def test_redis_down_is_503_with_retry_after(
    kafka: KafkaConnection, registry_url: str, unique: Callable[[str], str]
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = intake_settings(kafka, dead, registry_url, unique("events"))
    with TestClient(build(settings)) as client:
        answer = client.post("/v1/events", json=event(), headers={"X-API-Key": "pk_any"})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    found = WebhookReceiver(free_port()).start()
    yield found
    found.close()


def subscribe(intake: Intake, url: str) -> tuple[dict[str, str], dict[str, Any]]:
    admin, _ = intake.store.create(intake.tenant, ["subscriptions:write"], "1000/second")
    auth = {"X-API-Key": admin}
    made = intake.client.post("/v1/subscriptions", json={"url": url, "event_types": ["ticket.created"]}, headers=auth)
    assert made.status_code == 201, made.text
    return auth, made.json()


def test_patch_re_enables_a_disabled_subscription_and_edits_its_types(intake: Intake, redis_url: str) -> None:
    auth, sub = subscribe(intake, "https://93.184.216.34/x")
    client = redis.Redis.from_url(redis_url)
    raw = client.hget(subscriptions_key(intake.tenant), sub["id"])
    assert isinstance(raw, bytes)
    stored = Subscription.model_validate_json(raw)
    gone = stored.model_copy(update={"disabled_at": datetime.now(UTC), "disabled_reason": "410 Gone"})
    client.hset(subscriptions_key(intake.tenant), sub["id"], gone.model_dump_json())
    path = f"/v1/subscriptions/{sub['id']}"
    answer = intake.client.patch(path, json={"enabled": True, "event_types": ["*"]}, headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["disabled_at"], body["disabled_reason"], body["event_types"]) == (None, None, ["*"])
    assert "secret" not in body
    [listed] = intake.client.get("/v1/subscriptions", headers=auth).json()["subscriptions"]
    assert listed["disabled_at"] is None and listed["url"] == sub["url"]
    assert intake.client.patch(path, json={"enabled": False}, headers=auth).json()["disabled_reason"]


def test_patch_with_a_metadata_url_is_422_and_leaves_the_subscription(intake: Intake) -> None:
    auth, sub = subscribe(intake, "https://93.184.216.34/x")
    path = f"/v1/subscriptions/{sub['id']}"
    bad = intake.client.patch(path, json={"url": "http://169.254.169.254/latest/meta-data"}, headers=auth)
    assert bad.status_code == 422 and "metadata" in bad.json()["detail"]
    assert bad.json()["errors"][0]["loc"] == ["body", "url"]
    assert intake.client.patch(path, json={"url": None}, headers=auth).json()["errors"][0]["loc"] == ["body", "url"]
    assert intake.client.patch(path, json={"secret": "x"}, headers=auth).status_code == 422
    [listed] = intake.client.get("/v1/subscriptions", headers=auth).json()["subscriptions"]
    assert listed["url"] == sub["url"]


def test_another_tenants_subscription_is_404_to_patch_ping_and_list(
    intake: Intake, unique: Callable[[str], str]
) -> None:
    _, sub = subscribe(intake, "https://93.184.216.34/x")
    other, _ = intake.store.create(unique("globex"), ["subscriptions:write"], "1000/second")
    path, auth = f"/v1/subscriptions/{sub['id']}", {"X-API-Key": other}
    assert intake.client.patch(path, json={"enabled": True}, headers=auth).status_code == 404
    assert intake.client.post(f"{path}/test", headers=auth).status_code == 404
    assert intake.client.get(f"{path}/deliveries", headers=auth).status_code == 404


def test_a_test_ping_arrives_signed_with_the_subscriptions_secret(intake: Intake, receiver: WebhookReceiver) -> None:
    auth, sub = subscribe(intake, f"{receiver.url}/hook")
    answer = intake.client.post(f"/v1/subscriptions/{sub['id']}/test", headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["delivered"], body["http_status"], body["error"]) == (True, 200, None) and body["latency_ms"] > 0
    [call] = receiver.calls_to("/hook")
    ping = Webhook(sub["secret"]).verify(call.body, call.headers)
    assert (ping["type"], ping["subscription_id"]) == ("ping", sub["id"]) and ping["sent_at"]


def test_a_ping_to_a_receiver_answering_500_is_200_with_delivered_false(
    intake: Intake, receiver: WebhookReceiver
) -> None:
    receiver.script("/down", [500])
    auth, sub = subscribe(intake, f"{receiver.url}/down")
    body = intake.client.post(f"/v1/subscriptions/{sub['id']}/test", headers=auth).json()
    assert (body["delivered"], body["http_status"]) == (False, 500) and body["error"].startswith("HTTP 500")


def test_deliveries_list_the_notifiers_calls_newest_first_and_at_most_100(intake: Intake, redis_url: str) -> None:
    auth, sub = subscribe(intake, "https://93.184.216.34/x")
    path = f"/v1/subscriptions/{sub['id']}/deliveries"
    assert intake.client.get(path, headers=auth).json() == {"deliveries": []}

    async def record() -> None:
        client = aioredis.Redis.from_url(redis_url)
        store = NotifierStore(client, ttl_s=60)
        for n in range(101):
            attempt = DeliveryAttempt(
                at=datetime.now(UTC),
                event_id=f"e{n}",
                endpoint=sub["url"],
                outcome="delivered" if n % 2 else "retry",
                http_status=200 if n % 2 else 503,
                latency_ms=1.5,
            )
            store.attempt(intake.tenant, sub["id"], attempt)
        await store.mark(intake.tenant, "e0", sub["url"], Mark(state="delivered", at_ms=0))  # flushes the queue
        await client.aclose()

    asyncio.run(record())
    found = intake.client.get(path, headers=auth).json()["deliveries"]
    assert len(found) == 100 and found[0]["event_id"] == "e100" and found[-1]["event_id"] == "e1"
    assert (found[0]["outcome"], found[0]["http_status"], found[0]["latency_ms"]) == ("retry", 503, 1.5)
    assert intake.client.delete(f"/v1/subscriptions/{sub['id']}", headers=auth).status_code == 204
    assert not redis.Redis.from_url(redis_url).exists(f"subs:{intake.tenant}:{sub['id']}:deliveries")


def test_a_redelivery_sends_the_result_record_again_to_the_notifiers_replay_topic_naming_the_endpoints(
    kafka: KafkaConnection, redis_url: str, registry_url: str, unique: Callable[[str], str]
) -> None:
    inferred, replays = unique("inferred"), unique("notifier-replay")
    create_topic(kafka, inferred, 1)
    create_topic(kafka, replays, 1)
    keys = KeyStore.from_url(redis_url)
    tenant = unique("acme")
    admin, _ = keys.create(tenant, ["subscriptions:write"], "1000/second")
    settings = intake_settings(kafka, redis_url, registry_url, unique("events"), redelivery_topic=replays)
    codec = EventCodec.from_settings(settings.pipeline)
    client = redis.Redis.from_url(redis_url)
    result = EventInferred.model_validate(
        make_event_inferred(tenant=tenant, event_id="evt-again", callback_url="https://cb.example/h")
    )
    record = codec.encode(result, topic=inferred)
    producer = Producer(kafka.producer_config())
    sent: list[tuple[str, str | bytes | None]] = [*record.headers, ("replay.id", b"an-earlier-replay")]
    producer.produce(inferred, record.value, record.key, headers=sent)
    assert producer.flush(30) == 0
    sub = Subscription(id="sub_x", url="https://sub.example/h", event_types=["*"], created_at=datetime.now(UTC))
    client.hset(subscriptions_key(tenant), sub.id, sub.model_dump_json())
    auth = {"X-API-Key": admin}
    path = "/v1/events/evt-again/redeliver"
    with TestClient(build(settings)) as api:
        assert api.post(path, headers=auth).status_code == 404  # no such event yet
        client.hset(status_key(tenant, "evt-again"), mapping={"status": "enriched"})
        early = api.post(path, headers=auth)
        assert early.status_code == 409 and "has no result yet (status enriched)" in early.json()["detail"]
        client.hset(
            status_key(tenant, "evt-again"), mapping={"status": "delivered", "result_position": f"{inferred}/0/7"}
        )
        gone = api.post(path, headers=auth)
        assert gone.status_code == 410 and f"{inferred}/0/7 is no longer in Kafka" in gone.json()["detail"]
        client.hset(status_key(tenant, "evt-again"), "result_position", f"{inferred}/0/0")
        bad = api.post(path, headers=auth, json={"endpoint": "https://other.example/h"})
        assert (
            bad.status_code == 409
            and "its endpoints: https://cb.example/h, https://sub.example/h" in bad.json()["detail"]
        )
        assert api.post(path, headers=auth, content=b"[").status_code == 415
        answer = api.post(path, headers=auth, json={"subscription_id": "sub_x"})
        assert answer.status_code == 202, answer.text
        everything = api.post(path, headers=auth)
        assert everything.status_code == 202
    body = answer.json()
    assert body["endpoints"] == ["https://sub.example/h"] and body["result_from"] == f"{inferred}/0/0"
    assert everything.json()["endpoints"] == ["https://cb.example/h", "https://sub.example/h"]
    one, both = read(kafka, replays, 2)
    assert (one.key(), one.value()) == (record.key, record.value)
    found = headers(one)
    assert found["redelivery.id"] == body["redelivery_id"].encode()
    assert json.loads(found["redelivery.endpoints"]) == ["https://sub.example/h"]
    assert found["ce_id"] == b"evt-again" and "replay.id" not in found  # the result's headers, not an old replay's
    assert json.loads(headers(both)["redelivery.endpoints"]) == ["https://cb.example/h", "https://sub.example/h"]
