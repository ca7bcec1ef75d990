"""A dozen realistic support tickets through the running stack (intake -> enrichment -> inference), each
result printed as a row: category, priority, confidence, needs_review and the model that answered."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from services.intake.settings import IntakeSettings
from shared.codec import EventCodec
from shared.events import EventInferred
from shared.kafka import end_offsets
from shared.settings import PipelineSettings
from shared.topics import EVENTS_INFERRED

TICKETS = [
    "Hello, my card got charged twice for the June invoice (order 48213). Can you refund the extra one? Thanks, Priya",
    "Since this morning every export to CSV fails with 'internal error 500'. We need the report for an audit today!!",
    "hi i cant log in anymore, it says my account is locked after too many attempts. pls unlock. - tom",
    "The parcel with our new keyboards arrived with the box crushed and two keys missing. What now?",
    "Someone changed the email on our admin account last night and it was not us. Please freeze it immediately.",
    "Could you tell me whether you have an office in Lisbon? Just curious, no rush.",
    "Our whole team gets a blank page on the dashboard since your update an hour ago. Production is down for 40 users.",
    "I'd like to switch from the monthly to the yearly plan, and will the unused days be credited?",
    "Tracking number ZX-55120 has said 'in transit' for 12 days. Was it lost?",
    "Please add my colleague ana@example.com as a second admin on our workspace.",
    "We received a login alert from an IP in another country. Was our password leaked? Need answer ASAP.",
    "Love the new dark mode, great job! (no question, just feedback)",
]


def run(settings: PipelineSettings, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """Post the tickets to intake, then read their results from ``events.inferred.v1`` (read_committed)."""
    kafka = settings.kafka.for_client("pipeline-triage-demo")
    codec = EventCodec.from_settings(settings)
    consumer = Consumer(kafka.consumer_config(f"triage-demo-{uuid.uuid4().hex}"))
    ends = end_offsets(kafka, [EVENTS_INFERRED])[EVENTS_INFERRED]
    consumer.assign([TopicPartition(EVENTS_INFERRED, p, offset) for p, offset in ends.items()])
    run_id = uuid.uuid4().hex[:6]
    wanted: dict[str, str] = {}
    intake = f"http://127.0.0.1:{IntakeSettings().port}"
    headers = {"Authorization": f"Bearer {settings.dev_api_key}"}
    with httpx.Client(base_url=intake, headers=headers, timeout=10) as client:
        for n, text in enumerate(TICKETS):
            event_id = f"triage-demo-{run_id}-{n:02d}"
            body = {
                "event_id": event_id,
                "type": "ticket.created",
                "source": "helpdesk-demo",
                "subject": f"customer-{n}",
                "payload": {"text": text},
            }
            response = client.post("/v1/events", json=body)
            response.raise_for_status()
            wanted[event_id] = text
    found: dict[str, EventInferred] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < len(wanted) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            event = codec.decode(EVENTS_INFERRED, msg.value(), event_type=EventInferred).event
            if isinstance(event, EventInferred) and event.event_id in wanted:
                found[event.event_id] = event
    finally:
        consumer.close()
    rows = []
    for event_id, text in wanted.items():
        result = found.get(event_id)
        rows.append({"event_id": event_id, "text": text, "result": result})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    header = f"{'ticket':<46} {'category':<10} {'priority':<8} {'conf':>5} {'review':<6} model"
    lines = [header, "-" * len(header)]
    for row in rows:
        text = row["text"] if len(row["text"]) <= 45 else row["text"][:44] + "…"
        result: EventInferred | None = row["result"]
        if result is None:
            lines.append(f"{text:<46} (no result in time)")
            continue
        lines.append(
            f"{text:<46} {result.category.label:<10} {result.priority.label:<8} {result.category.confidence:>5.2f} "
            f"{'yes' if result.needs_review else 'no':<6} {result.model.name}@{result.model.version}"
            + (" (cached)" if result.cached else "")
        )
    return "\n".join(lines)
