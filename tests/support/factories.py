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


def make_event_enriched(**overrides: Any) -> dict[str, Any]:
    received = make_event_received()
    received.pop("payload_json")
    event: dict[str, Any] = {
        **received,
        "pii_counts": {"EMAIL": 1},
        "truncated": False,
        "customer": {"tier": "gold", "plan": "pro", "region": "eu"},
        "profile_found": True,
        "events_1h": 2,
        "events_24h": 5,
        "seconds_since_previous": 42.0,
        "enriched_at": received["received_at"],
    }
    event.update(overrides)
    return event


def make_event_inferred(**overrides: Any) -> dict[str, Any]:
    received = make_event_received()
    event: dict[str, Any] = {
        key: received[key] for key in ("event_id", "tenant", "type", "subject", "occurred_at", "source")
    }
    event.update(
        {
            "category": {"label": "technical", "confidence": 0.9, "scores": {"technical": 0.9, "billing": 0.1}},
            "priority": {"label": "high", "confidence": 0.7, "scores": {"high": 0.7, "normal": 0.3}},
            "needs_review": False,
            "model": {"name": "minilm-triage", "version": "test"},
            "cached": False,
            "inferred_at": received["received_at"],
            "latency_ms": 3.5,
            "callback_url": None,
        }
    )
    event.update(overrides)
    return event


def make_customer_profile(**overrides: Any) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "tenant": "acme",
        "customer_id": "customer-7",
        "tier": "gold",
        "plan": "pro",
        "region": "eu",
        "updated_at": datetime.now(UTC).replace(microsecond=0),
        "attributes": {},
    }
    profile.update(overrides)
    return profile
