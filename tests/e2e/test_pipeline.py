"""The whole stack (``pipeline up``): an event posted to intake goes through enrichment and
inference to its webhooks, signed, and its status ends at ``delivered``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from standardwebhooks.webhooks import Webhook

from services.inference.domain import CATEGORIES
from shared.auth import TenantSecrets, secrets_key
from tests.support.processes import free_port
from tests.support.receiver import WebhookReceiver

pytestmark = pytest.mark.e2e


def _delivered(intake: str, auth: dict[str, str], event_id: str, timeout: float = 180) -> dict[str, Any]:
    """The event's status once ``delivered`` (the first event waits for the model to load)."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline and status.get("status") != "delivered":
        status = httpx.get(f"{intake}/v1/events/{event_id}", headers=auth).json()
        time.sleep(0.5)
    assert status.get("status") == "delivered", status
    return status


def test_an_event_reaches_its_callback_and_subscription_signed_and_ends_delivered(
    stack: dict[str, str], tmp_path: Path
) -> None:
    intake = f"http://127.0.0.1:{stack['INTAKE_PORT']}"
    auth = {"Authorization": f"Bearer {os.environ.get('PIPELINE_DEV_API_KEY', 'dev-key-change-me')}"}
    receiver = WebhookReceiver(free_port()).start()
    try:
        sub = httpx.post(
            f"{intake}/v1/subscriptions",
            headers=auth,
            json={"url": f"http://localhost:{receiver.port}/sub", "event_types": ["ticket.created"]},
        ).json()
        accepted = httpx.post(
            f"{intake}/v1/events",
            headers=auth,
            json={
                "type": "ticket.created",
                "source": "e2e",
                "subject": "customer-1",
                "payload": {"text": "I was charged twice for my invoice this month, please refund one"},
                "callback_url": f"{receiver.url}/callback",
            },
        )
        assert accepted.status_code == 202, accepted.text
        event_id = accepted.json()["event_id"]
        status = _delivered(intake, auth, event_id)
        assert set(status["stages"]) == {"accepted", "enriched", "inferred", "delivered"}
        client = redis.Redis.from_url(stack["PIPELINE_REDIS_URL"])
        tenant_secret = TenantSecrets.model_validate_json(client.get(secrets_key("dev")) or b"").current
        calls = {c.path: c for c in receiver.calls}
        assert set(calls) == {"/sub", "/callback"}
        for path, secret in (("/sub", sub["secret"]), ("/callback", tenant_secret)):
            body = Webhook(secret).verify(calls[path].body, calls[path].headers)
            assert body["event_id"] == event_id and body["result"]["category"]["label"] in CATEGORIES
    finally:
        receiver.close()


def test_a_delivered_result_is_redelivered_to_the_endpoint_asked_for_signed_again(stack: dict[str, str]) -> None:
    intake = f"http://127.0.0.1:{stack['INTAKE_PORT']}"
    auth = {"Authorization": f"Bearer {os.environ.get('PIPELINE_DEV_API_KEY', 'dev-key-change-me')}"}
    receiver = WebhookReceiver(free_port()).start()
    try:
        sub = httpx.post(
            f"{intake}/v1/subscriptions", headers=auth, json={"url": f"{receiver.url}/sub", "event_types": ["*"]}
        ).json()
        accepted = httpx.post(
            f"{intake}/v1/events",
            headers=auth,
            json={
                "type": "alert.raised",
                "source": "e2e",
                "payload": {"text": "The export job has failed three nights in a row"},
                "callback_url": f"{receiver.url}/callback",
            },
        )
        event_id = accepted.json()["event_id"]
        first = _delivered(intake, auth, event_id)["endpoints"][f"{receiver.url}/sub"]
        redeliver = f"{intake}/v1/events/{event_id}/redeliver"
        unknown = httpx.post(redeliver, headers=auth, json={"endpoint": "https://elsewhere.example/h"})
        assert unknown.status_code == 409 and "is not an endpoint of this event" in unknown.json()["detail"]
        assert httpx.post(f"{intake}/v1/events/no-such-event/redeliver", headers=auth).status_code == 404
        answer = httpx.post(redeliver, headers=auth, json={"subscription_id": sub["id"]})
        assert answer.status_code == 202, answer.text
        assert answer.json()["endpoints"] == [f"{receiver.url}/sub"]
        assert answer.headers["location"] == f"/v1/events/{event_id}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(receiver.calls_to("/sub")) < 2:
            time.sleep(0.2)
        once, again = receiver.calls_to("/sub")
        assert Webhook(sub["secret"]).verify(again.body, again.headers) == Webhook(sub["secret"]).verify(
            once.body, once.headers
        )
        assert len(receiver.calls_to("/callback")) == 1  # not asked for: not called again
        # The status follows the redelivery's receipt: the subscription's delivery is the new one.
        deadline = time.monotonic() + 30
        latest = first
        while time.monotonic() < deadline and latest == first:
            latest = httpx.get(f"{intake}/v1/events/{event_id}", headers=auth).json()["endpoints"][
                f"{receiver.url}/sub"
            ]
            time.sleep(0.2)
        assert latest["status"] == "delivered" and latest["at"] > first["at"], (first, latest)
    finally:
        receiver.close()
