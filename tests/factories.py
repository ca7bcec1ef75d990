"""Factories for test data: build an event with overrides instead of keeping JSON fixtures."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


def make_event_received(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    event: dict[str, Any] = {
        "event_id": f"evt-{uuid.uuid4().hex[:12]}",
        "tenant": "acme",
        "type": "ticket.created",
        "source": "helpdesk",
        "subject": "customer-7",
        "occurred_at": now,
        "received_at": now,
        "text": "The export button returns a 500 error",
        "attributes": {"channel": "email"},
        "payload_json": "{}",
        "callback_url": None,
    }
    event.update(overrides)
    return event
