"""Which endpoints a redelivery calls (intake's choice, pure): all of the event's, one by URL or by subscription,
and a refusal that names what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.intake.domain import RedeliveryIn, RedeliveryRefused, redelivery_endpoints
from shared.subscriptions import Subscription, endpoints_for

NOW = datetime(2026, 12, 2, tzinfo=UTC)
CALLBACK = "https://cb.example/h"


def sub(sub_id: str, url: str, types: list[str] | None = None, disabled: bool = False) -> Subscription:
    return Subscription(
        id=sub_id,
        url=url,
        event_types=types or ["*"],
        created_at=NOW,
        disabled_at=NOW if disabled else None,
        disabled_reason="410 Gone" if disabled else None,
    )


SUBS = [
    sub("a", "https://a.example/h"),
    sub("alerts", "https://alerts.example/h", ["alert.raised"]),
    sub("off", "https://off.example/h", disabled=True),
    sub("twice", CALLBACK),
]


def choose(**ask: str) -> list[str]:
    endpoints = endpoints_for(CALLBACK, "ticket.created", SUBS)
    return redelivery_endpoints(RedeliveryIn(**ask), "ticket.created", endpoints, SUBS)


def test_the_events_endpoints_are_its_callback_url_then_matching_enabled_subscriptions_each_url_once() -> None:
    found = endpoints_for(CALLBACK, "ticket.created", SUBS)
    assert [(url, s.id if s else None) for url, s in found] == [(CALLBACK, None), ("https://a.example/h", "a")]
    assert [url for url, _ in endpoints_for(None, "alert.raised", SUBS)] == [
        "https://a.example/h",
        "https://alerts.example/h",
        CALLBACK,  # a subscription of the same URL, when the event has no callback_url of its own
    ]


def test_no_body_means_every_endpoint_and_one_can_be_named_by_url_or_subscription() -> None:
    assert choose() == [CALLBACK, "https://a.example/h"]
    assert choose(endpoint=CALLBACK) == [CALLBACK]
    assert choose(subscription_id="a") == ["https://a.example/h"]


@pytest.mark.parametrize(
    ("ask", "status", "words"),
    [
        ({"endpoint": "https://x.example/h"}, 409, "is not an endpoint of this event (its endpoints: https://cb"),
        ({"subscription_id": "nope"}, 404, "no subscription nope"),
        ({"subscription_id": "off"}, 409, "is disabled (410 Gone): PATCH it with enabled true first"),
        ({"subscription_id": "alerts"}, 409, "does not take ticket.created events"),
        ({"subscription_id": "a", "endpoint": CALLBACK}, 422, "either endpoint or subscription_id"),
    ],
)
def test_a_refusal_names_what_is_wrong(ask: dict[str, str], status: int, words: str) -> None:
    with pytest.raises(RedeliveryRefused) as refused:
        choose(**ask)
    assert refused.value.status == status and words in str(refused.value)


def test_an_event_without_endpoints_has_nothing_to_redeliver() -> None:
    with pytest.raises(RedeliveryRefused, match="has no endpoint") as refused:
        redelivery_endpoints(RedeliveryIn(), "ticket.created", [], [])
    assert refused.value.status == 409
