"""intake's metrics. Kept out of ``app``: a worker process re-runs the main module under another name, and a
metric defined there would register twice."""

from __future__ import annotations

from prometheus_client import Counter

EVENTS = Counter(
    "intake_events_total", "Events by outcome: accepted, duplicate, in_flight, invalid, unavailable", ["outcome"]
)
