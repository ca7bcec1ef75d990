"""The event status as a projection of what Kafka committed, read back through intake's GET."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Producer
from fastapi.testclient import TestClient

from services.intake.app import build
from services.status.adapters.store import StatusStore
from services.status.app import build_runtime
from services.status.domain import StatusUpdate, Topics, update_for
from services.status.settings import StatusSettings
from shared.auth import KeyStore
from shared.codec import EventCodec
from shared.events import EventEnriched, EventInferred, NotificationDelivered
from shared.kafka import GroupProgress, KafkaConnection, bootstrap_topics, produce_and_wait
from shared.results import result_view
from shared.runtime import RuntimeSettings
from shared.settings import PipelineSettings
from shared.status import Stage, StatusRecord, status_key
from shared.topics import TopicSpec, service_topics
from tests.integration.runtime_support import running
from tests.integration.test_intake import event, intake_settings
from tests.integration.test_notifier import LOOPBACK_ALLOWED, notifier_worker
from tests.support.factories import make_event_enriched, make_event_inferred
from tests.support.processes import free_port
from tests.support.receiver import WebhookReceiver


def test_each_committed_stage_shows_in_turn_a_failure_names_its_dlq_and_a_late_stage_moves_nothing_back(
    kafka: KafkaConnection, redis_url: str, registry_url: str, unique: Callable[[str], str]
) -> None:
    received, enriched, inferred, delivered = (unique(n) for n in ("recv", "enr", "inf", "del"))
    inference = unique("inference")
    name = unique("status")
    bootstrap_topics(
        kafka,
        [TopicSpec(t, 1, "k", None) for t in (received, enriched, inferred, delivered)]
        + service_topics(inference, 1)
        + service_topics(name, 1),
    )
    pipeline = PipelineSettings(kafka=kafka, redis_url=redis_url, schema_registry_url=registry_url)
    settings = StatusSettings(
        pipeline=pipeline,
        name=name,
        received_topic=received,
        enriched_topic=enriched,
        inferred_topic=inferred,
        delivered_topic=delivered,
        stages={inference: Stage.INFERRED},
        runtime=RuntimeSettings(exactly_once=False, max_wait_ms=10, commit_interval_ms=100),
    )
    codec = EventCodec.from_settings(pipeline)
    store = StatusStore(redis.Redis.from_url(redis_url), settings.ttl_s)
    keys = KeyStore.from_url(redis_url)
    tenant = unique("acme")
    key, _ = keys.create(tenant, ["events:write", "events:read"], "1000/second")
    producer = Producer(kafka.producer_config())

    def send(topic: str, value: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
        return produce_and_wait(producer, topic, value, f"{tenant}:customer-9".encode(), headers)

    with TestClient(build(intake_settings(kafka, redis_url, registry_url, received))) as client:
        auth = {"X-API-Key": key}

        def status_becomes(wanted: str) -> dict[str, Any]:
            deadline = time.monotonic() + 60
            while True:
                body: dict[str, Any] = client.get("/v1/events/e-42", headers=auth).json()
                if body.get("status") == wanted:
                    return body
                assert time.monotonic() < deadline, f"status {body.get('status')}, wanted {wanted}: {body}"
                time.sleep(0.05)

        def detail_appears(field: str) -> Any:
            deadline = time.monotonic() + 60
            while True:
                body: dict[str, Any] = client.get("/v1/events/e-42", headers=auth).json()
                if body.get(field):
                    return body[field]
                assert time.monotonic() < deadline, f"no {field} yet: {body}"
                time.sleep(0.05)

        with running(build_runtime(settings, codec, store)):
            assert client.post("/v1/events", json=event(event_id="e-42"), headers=auth).status_code == 202
            accepted = status_becomes("accepted")
            assert accepted["stages"]["accepted"]

            common = {"event_id": "e-42", "tenant": tenant, "subject": "customer-9"}
            enriched_event = EventEnriched.model_validate(make_event_enriched(**common))
            record = codec.encode(enriched_event, topic=enriched)
            send(enriched, record.value, list(record.headers))
            assert status_becomes("enriched")["stages"]["enriched"]

            # The model timed out on it once: the retry record is a typed retrying detail with its reason.
            retry = send(
                f"{inference}.retry.1",
                record.value,
                [
                    *record.headers,
                    ("retry.attempt", b"1"),
                    ("retry.due", b"1796170793361"),
                    ("retry.error.type", b"ModelTimeout"),
                    ("retry.error.category", b"timeout"),
                    ("retry.error.message", b"model took over 5s"),
                ],
            )
            retrying = detail_appears("retrying")
            assert retrying == {
                "service": inference,
                "attempt": 1,
                "due": "2026-12-02T00:19:53.361+00:00",
                "reason": "model took over 5s",
                "error_type": "ModelTimeout",
                "category": "timeout",
                "topic": retry.topic,
            }

            # The model failed on it: the dead letter keeps the original headers and adds dlq.*.
            dead = send(
                f"{inference}.dlq",
                record.value,
                [
                    *record.headers,
                    ("dlq.service", b"inference"),
                    ("dlq.error.category", b"model"),
                    ("dlq.error.type", b"ModelError"),
                    ("dlq.error.message", b"input broke the model"),
                ],
            )
            failed = status_becomes("failed")
            assert failed["error"]["dlq"] == f"{dead.topic}/{dead.partition}/{dead.offset}"
            assert failed["error"]["category"] == "model"

            # A replay succeeded: the inferred result moves the failed event on.
            inferred_event = EventInferred.model_validate(make_event_inferred(**common))
            record = codec.encode(inferred_event, topic=inferred)
            send(inferred, record.value, list(record.headers))
            done = status_becomes("inferred")
            assert done["error"] is None and done["retrying"] is None
            assert done["result"] == json.loads(json.dumps(result_view(inferred_event)))

            receipt = NotificationDelivered(
                event_id="e-42",
                tenant=tenant,
                subject="customer-9",
                endpoint="https://hooks.example/x",
                status="delivered",
                delivered_at=datetime.now(UTC),
                type="ticket.created",
            )
            record = codec.encode(receipt, topic=delivered)
            send(delivered, record.value, list(record.headers))
            status_becomes("delivered")

            # A late enriched record (a redelivery) does not move the status back.
            record = codec.encode(enriched_event, topic=enriched)
            late = send(enriched, record.value, list(record.headers))
            # Wait until the status consumer has committed past the late record, then look.
            progress = GroupProgress(kafka, name, enriched, 1)
            deadline = time.monotonic() + 30
            while progress.committed() <= late.offset:
                assert time.monotonic() < deadline, "the status consumer never read the late record"
                time.sleep(0.1)
            progress.close()
            final = client.get("/v1/events/e-42", headers=auth).json()
            assert final["status"] == "delivered"
            assert set(final["stages"]) == {"accepted", "enriched", "inferred", "delivered"}
            assert all(final["stages"].values())


def _notifier_updates(tenant: str, event_id: str) -> dict[str, StatusUpdate]:
    """The records one event's delivery to two endpoints leaves: a receipt each way, and the dead letter."""
    topics = Topics(stages={"dlv": Stage.DELIVERED}, services={"notifier": Stage.DELIVERED})
    ce = [("ce_id", event_id.encode()), ("ce_tenant", tenant.encode())]

    def receipt(endpoint: str, status: str, http_status: int) -> StatusUpdate:
        payload = NotificationDelivered(
            event_id=event_id,
            tenant=tenant,
            subject="s",
            endpoint=endpoint,
            status=status,
            http_status=http_status,
            delivered_at=datetime.now(UTC),
            error=None if status == "delivered" else f"HTTP {http_status}",
        )
        update = update_for(topics, "dlv", 0, 1, ce, 0, payload)
        assert update is not None
        return update

    dlq_headers = [*ce, ("dlq.error.message", b"1 of 2 endpoints refused: https://b.example/h: HTTP 400")]
    dead = update_for(topics, "notifier.dlq", 0, 3, dlq_headers, 0, None)
    assert dead is not None
    return {
        "a_delivered": receipt("https://a.example/h", "delivered", 200),
        "b_failed": receipt("https://b.example/h", "failed", 400),
        "dead": dead,
        "b_delivered": receipt("https://b.example/h", "delivered", 200),
    }


def test_in_any_order_a_dead_letter_and_a_delivery_make_partially_delivered_and_a_replay_delivered(
    redis_url: str, unique: Callable[[str], str]
) -> None:
    client = redis.Redis.from_url(redis_url)
    store = StatusStore(client, 600)
    tenant = unique("acme")
    for n, order in enumerate(
        (["a_delivered", "b_failed", "dead"], ["dead", "b_failed", "a_delivered"], ["b_failed", "dead", "a_delivered"])
    ):
        updates = _notifier_updates(tenant, f"e{n}")
        store.apply([updates[name] for name in order])
        record = StatusRecord.read(client.hgetall(status_key(tenant, f"e{n}")))
        assert record is not None and record.status == "partially_delivered", order
        assert record.error is not None and record.error["dlq"] == "notifier.dlq/0/3"
        assert record.endpoints["https://a.example/h"]["status"] == "delivered"
        # The failed receipt outranks the dead letter's words: its HTTP status and attempts stay.
        assert record.endpoints["https://b.example/h"] == {
            "status": "failed",
            "at": record.endpoints["https://b.example/h"]["at"],
            "attempts": 1,
            "http_status": 400,
            "reason": "HTTP 400",
        }
        # A replay delivers the refused endpoint: the event moves on to delivered, and the error goes.
        store.apply([updates["b_delivered"]])
        record = StatusRecord.read(client.hgetall(status_key(tenant, f"e{n}")))
        assert record is not None and record.status == "delivered" and record.error is None
        # A late dead letter of the earlier pass moves nothing back.
        store.apply([updates["dead"], updates["b_failed"]])
        record = StatusRecord.read(client.hgetall(status_key(tenant, f"e{n}")))
        assert record is not None and record.status == "delivered" and record.error is None

    # Every endpoint refused: failed; receipts only, none failed: delivered.
    updates = _notifier_updates(tenant, "none")
    store.apply([updates["b_failed"], updates["dead"]])
    assert client.hget(status_key(tenant, "none"), "status") == b"failed"
    updates = _notifier_updates(tenant, "all")
    store.apply([updates["a_delivered"], updates["b_delivered"]])
    assert client.hget(status_key(tenant, "all"), "status") == b"delivered"


def test_two_endpoints_one_answering_400_the_status_names_it_and_is_not_delivered(
    kafka: KafkaConnection,
    redis_url: str,
    registry_url: str,
    unique: Callable[[str], str],
    tmp_path: Path,
) -> None:
    receiver = WebhookReceiver(free_port()).start()
    receiver.script("/strict", [400], body=b'{"error": "unknown field priority"}')
    try:
        with notifier_worker(kafka, registry_url, redis_url, tmp_path, **LOOPBACK_ALLOWED) as notifier:
            received, enriched, inferred = (unique(n) for n in ("recv", "enr", "inf"))
            name = unique("status")
            bootstrap_topics(
                kafka, [TopicSpec(t, 1, "k", None) for t in (received, enriched, inferred)] + service_topics(name, 1)
            )
            pipeline = PipelineSettings(kafka=kafka, redis_url=redis_url, schema_registry_url=registry_url)
            settings = StatusSettings(
                pipeline=pipeline,
                name=name,
                received_topic=received,
                enriched_topic=enriched,
                inferred_topic=inferred,
                delivered_topic=notifier.delivered,
                stages={notifier.name: Stage.DELIVERED},
                runtime=RuntimeSettings(exactly_once=False, max_wait_ms=10, commit_interval_ms=100),
            )
            store = StatusStore(redis.Redis.from_url(redis_url), settings.ttl_s)
            key, _ = KeyStore.from_url(redis_url).create(notifier.tenant, ["events:read"], "1000/second")
            ok, strict = f"{receiver.url}/ok", f"{receiver.url}/strict"
            notifier.subscribe(ok)
            event_ = notifier.event(callback_url=strict)
            with (
                TestClient(build(intake_settings(kafka, redis_url, registry_url, received))) as client,
                running(build_runtime(settings, EventCodec.from_settings(pipeline), store)),
            ):
                notifier.send([event_])
                deadline = time.monotonic() + 60
                while True:
                    answer = client.get(f"/v1/events/{event_.event_id}", headers={"X-API-Key": key})
                    body: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
                    if len(body.get("endpoints") or {}) == 2 and body.get("error"):
                        break
                    assert time.monotonic() < deadline, f"no outcome for both endpoints: {answer.text}"
                    time.sleep(0.1)
        assert body["status"] == "partially_delivered"
        assert body["stages"]["delivered"]
        delivered, refused = body["endpoints"][ok], body["endpoints"][strict]
        assert (delivered["status"], delivered["http_status"], delivered["attempts"]) == ("delivered", 200, 1)
        assert (refused["status"], refused["http_status"], refused["attempts"]) == ("failed", 400, 1)
        assert "HTTP 400" in refused["reason"] and "unknown field priority" in refused["reason"]
        assert body["error"]["category"] == "delivery" and body["error"]["dlq"].startswith(f"{notifier.name}.dlq/")
        assert len(receiver.calls_to("/strict")) == 1 and len(receiver.calls_to("/ok")) == 1
    finally:
        receiver.close()
