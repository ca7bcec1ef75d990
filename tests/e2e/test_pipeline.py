"""The whole stack (``pipeline up``): an event posted to intake goes through enrichment and
inference to its webhooks, signed, and its status ends at ``delivered``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
import redis
from standardwebhooks.webhooks import Webhook

from services.inference.domain import CATEGORIES
from shared.auth import TenantSecrets, secrets_key
from tests.support.processes import free_port
from tests.support.receiver import WebhookReceiver

pytestmark = pytest.mark.e2e


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
        deadline = time.monotonic() + 180  # the first event waits for the model to load
        status: dict[str, object] = {}
        while time.monotonic() < deadline and status.get("status") != "delivered":
            status = httpx.get(f"{intake}/v1/events/{event_id}", headers=auth).json()
            time.sleep(0.5)
        assert status.get("status") == "delivered", status
        assert set(status["stages"]) == {"accepted", "enriched", "inferred", "delivered"}  # type: ignore[call-overload]
        client = redis.Redis.from_url(stack["PIPELINE_REDIS_URL"])
        tenant_secret = TenantSecrets.model_validate_json(client.get(secrets_key("dev")) or b"").current
        calls = {c.path: c for c in receiver.calls}
        assert set(calls) == {"/sub", "/callback"}
        for path, secret in (("/sub", sub["secret"]), ("/callback", tenant_secret)):
            body = Webhook(secret).verify(calls[path].body, calls[path].headers)
            assert body["event_id"] == event_id and body["result"]["category"]["label"] in CATEGORIES
    finally:
        receiver.close()
