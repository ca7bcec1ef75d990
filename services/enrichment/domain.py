"""What enrichment computes for one event: the per-subject activity, the profile join, the ``EventEnriched``. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.errors import PermanentError
from shared.events import CustomerSummary, EventEnriched, EventReceived

from .text import normalise

# Per-minute counts over 24 h in one table entry per subject: exact sliding sums at one changelog write per event,
# where faust's hopping windows would write every overlapping window and tumbling ones reset on the hour.
HOUR_MINUTES = 60
DAY_MINUTES = 24 * 60


class EmptyText(PermanentError):
    """Nothing is left of the text after cleaning: there is nothing to infer from."""

    category = "validation"


@dataclass(frozen=True)
class Activity:
    """A subject's counts as of one event (that event included) and the gap since its previous event."""

    events_1h: int
    events_24h: int
    seconds_since_previous: float | None
    duplicate: bool

    def seen(self) -> list[Any]:
        """What the seen table keeps of a counted event: what to report again for a repeat of it."""
        return [self.events_1h, self.events_24h, self.seconds_since_previous]

    @classmethod
    def repeat(cls, seen: list[Any]) -> Activity:
        """A repeat of an event counted before: what it reported then, marked a duplicate."""
        return cls(int(seen[0]), int(seen[1]), seen[2], duplicate=True)


def record_activity(state: dict[str, Any] | None, at: datetime) -> tuple[dict[str, Any], Activity]:
    """Count an event received ``at`` into its subject's ``state``; returns the state to store and what to report.

    ``state`` is JSON-able: ``m`` (minute -> count) and ``last`` (epoch seconds of the newest event). Minutes older
    than 24 h are dropped. ``state`` is updated in place (it is stored right after). Whether the event was counted
    before is the caller's to know (the seen table, keyed by event id): a repeat is reported with
    ``Activity.repeat`` and never reaches this function, so the output is idempotent by event id.
    """
    if state is None:
        state = {"m": {}, "last": None}
    state.pop("ids", None)  # the seen ids lived here before they had a table of their own
    minutes: dict[str, int] = state["m"]
    last: float | None = state.get("last")
    now_s = at.timestamp()
    minute = int(now_s // 60)
    key = str(minute)
    minutes[key] = minutes.get(key, 0) + 1
    newest = max(minute, int(last // 60) if last is not None else minute)
    horizon = newest - DAY_MINUTES
    if any(int(m) <= horizon for m in minutes):  # prune only when something has expired
        for m in [m for m in minutes if int(m) <= horizon]:
            del minutes[m]
    hour_from = minute - HOUR_MINUTES
    day_from = minute - DAY_MINUTES
    events_1h = events_24h = 0
    for m, count in minutes.items():
        value = int(m)
        if day_from < value <= minute:
            events_24h += count
            if value > hour_from:
                events_1h += count
    activity = Activity(events_1h, events_24h, None if last is None else max(0.0, now_s - last), duplicate=False)
    state["last"] = now_s if last is None else max(last, now_s)
    return state, activity


def profile_entry(record: dict[str, Any]) -> dict[str, str]:
    """What the profiles table keeps of a ``CustomerProfile``: the fields the join adds."""
    return {"tier": record.get("tier", "standard"), "plan": record.get("plan", ""), "region": record.get("region", "")}


def enrich(
    event: EventReceived,
    profile: dict[str, str] | None,
    activity: Activity,
    max_text_chars: int,
    now: datetime | None = None,
) -> EventEnriched:
    """The received event, normalised and redacted, joined with its profile and activity."""
    text = normalise(event.text, max_text_chars)
    if not text.text:
        raise EmptyText("the text is empty after cleaning (HTML, control characters, whitespace)")
    return EventEnriched(
        event_id=event.event_id,
        tenant=event.tenant,
        type=event.type,
        source=event.source,
        subject=event.subject,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        text=text.text,
        attributes=event.attributes,
        callback_url=event.callback_url,
        pii_counts=text.pii_counts,
        truncated=text.truncated,
        customer=CustomerSummary(**profile) if profile is not None else None,
        profile_found=profile is not None,
        events_1h=activity.events_1h,
        events_24h=activity.events_24h,
        seconds_since_previous=activity.seconds_since_previous,
        enriched_at=now or datetime.now(UTC),
    )
