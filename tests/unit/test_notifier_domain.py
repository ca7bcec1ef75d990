"""The notifier's pure rules: Standard Webhooks signatures (checked with the official package and by hand),
answers and their verdicts, Retry-After, the retry schedule, circuits, SSRF address checks and who gets a result."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.notifier.domain import (
    AddressRefused,
    Circuit,
    CircuitState,
    WebhookReply,
    body_of,
    check_address,
    check_url,
    hop_ms,
    origin,
    parse_networks,
    parse_retry_after,
    request_headers,
    retry_delay_ms,
    subscription_matches,
    targets_for,
)
from services.notifier.settings import NotifierSettings
from shared.auth import new_signing_secret
from shared.events import EventInferred
from shared.subscriptions import Subscription
from tests.support.factories import make_event_inferred


def independent_check(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's side, written from the spec: HMAC-SHA256 over ``id.timestamp.body`` with the decoded key."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        part.split(",", 1)[0] == "v1" and hmac.compare_digest(part.split(",", 1)[1], expected)
        for part in headers["webhook-signature"].split(" ")
    )


def event(**overrides: object) -> EventInferred:
    return EventInferred.model_validate({**make_event_inferred(), **overrides})


def test_a_signed_delivery_verifies_with_the_official_package_and_the_independent_check() -> None:
    secret = new_signing_secret()
    body = body_of(event(event_id="evt-1"), "0af7651916cd43dd8448eb211c80319c")
    headers = request_headers("evt-1", body, [secret])
    assert Webhook(secret).verify(body, headers)["event_id"] == "evt-1"
    assert independent_check(secret, headers, body)
    assert headers["idempotency-key"] == headers["webhook-id"] == "evt-1"


def test_a_tampered_body_fails_both_checks() -> None:
    secret = new_signing_secret()
    body = body_of(event(), None)
    headers = request_headers("evt-1", body, [secret])
    tampered = body.replace(b'"needs_review":false', b'"needs_review":true')
    assert tampered != body
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, headers)
    assert not independent_check(secret, headers, tampered)


def test_during_a_rotation_both_secrets_sign_and_either_verifies() -> None:
    old, new = new_signing_secret(), new_signing_secret()
    body = body_of(event(), None)
    headers = request_headers("evt-2", body, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
        assert independent_check(secret, headers, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_signing_secret()).verify(body, headers)


def test_the_body_carries_the_result_ids_and_time_for_ordering() -> None:
    import orjson

    document = orjson.loads(body_of(event(subject="customer-9"), "abc"))
    assert document["subject"] == "customer-9" and document["trace_id"] == "abc"
    assert document["type"].endswith(".inferred") and document["occurred_at"]
    assert set(document["result"]) >= {"category", "priority", "needs_review", "model"}


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (301, "permanent"),
        (400, "permanent"),
        (404, "permanent"),
        (408, "retry"),
        (410, "gone"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (None, "retry"),
    ],
)
def test_answer_verdicts(status: int | None, verdict: str) -> None:
    assert WebhookReply(status, error=None if status else "timeout").verdict == verdict


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    now = time.time()
    when = format_datetime(datetime.fromtimestamp(now, UTC) + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(when, now) == pytest.approx(30, abs=1)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


SCHEDULE_MS = [5_000, 300_000, 1_800_000]


def test_the_delay_before_retry_n_is_the_schedules_nth_entry_with_small_jitter() -> None:
    rng = random.Random(1)
    for retry, entry in enumerate(SCHEDULE_MS, start=1):
        values = [retry_delay_ms(retry, SCHEDULE_MS, None, 10**9, 0.1, rng) for _ in range(200)]
        assert all(v is not None and entry * 0.9 <= v <= entry * 1.1 for v in values)
        assert len(set(values)) > 50  # jittered, not one fixed delay
    assert retry_delay_ms(2, SCHEDULE_MS, None, 10**9, 0.0) == 300_000


def test_after_the_schedules_last_entry_there_is_no_retry() -> None:
    assert retry_delay_ms(len(SCHEDULE_MS) + 1, SCHEDULE_MS, None, 10**9) is None
    assert retry_delay_ms(1, [], None, 10**9) is None


def test_retry_after_wins_only_when_it_is_later_than_the_schedule() -> None:
    assert retry_delay_ms(1, SCHEDULE_MS, 60, 10**9, 0.0) == 60_000
    assert retry_delay_ms(2, SCHEDULE_MS, 60, 10**9, 0.0) == 300_000


def test_a_delay_is_capped_by_the_longest_deferral() -> None:
    assert retry_delay_ms(1, SCHEDULE_MS, 10 * 86_400, 3_600_000, 0.0) == 3_600_000


def test_a_long_wait_goes_in_legs_of_the_longest_level_that_fits() -> None:
    ladder = [5_000, 300_000, 3_600_000]
    assert hop_ms(36_000_000, ladder) == 3_600_000
    assert hop_ms(1_800_000, ladder) == 300_000
    assert hop_ms(7_000, ladder) == 5_000
    assert hop_ms(3_000, ladder) == 3_000  # shorter than every level: the wait itself
    assert hop_ms(-5, ladder) == 0


def test_the_schedule_setting_reads_a_comma_separated_list_or_json() -> None:
    from services.notifier.settings import NotifierSettings

    def settings(**fields: object) -> NotifierSettings:
        return NotifierSettings.model_validate(fields)

    assert settings(retry_schedule_s="0.2, 0.4,0.8").retry_schedule_ms == [200, 400, 800]
    assert settings(retry_schedule_s="[1, 2]").retry_schedule_ms == [1000, 2000]
    default = NotifierSettings()
    assert default.retry_schedule_s == [5, 300, 1800, 7200, 18000, 36000, 36000]
    # The runtime must let a record wait through the whole schedule, or it would dead-letter it early.
    assert default.runtime.max_deferral_ms >= sum(default.retry_schedule_ms)
    with pytest.raises(ValueError, match="shorter than the retry schedule"):
        settings(retry_schedule_s="60,60", runtime={"max_deferral_ms": 60_000})
    with pytest.raises(ValueError, match="negative"):
        settings(retry_schedule_s="5,-1")


def test_a_circuit_opens_after_failures_in_a_row_and_one_probe_decides_after_the_cooldown() -> None:
    circuit = Circuit(threshold=3, cooldown_s=10)
    for t in (0, 1):
        circuit.record(False, t, probe=False)
    assert circuit.state(2) is CircuitState.CLOSED
    circuit.record(True, 2, probe=False)  # a success resets the count
    for t in (3, 4, 5):
        circuit.record(False, t, probe=False)
    assert circuit.state(6) is CircuitState.OPEN and circuit.admit(6) == (False, False)
    assert circuit.remaining_s(6) == pytest.approx(9)
    assert circuit.admit(16) == (True, True)  # the probe
    assert circuit.admit(16) == (False, False)  # others wait for it
    circuit.record(False, 16.5, probe=True)
    assert circuit.state(17) is CircuitState.OPEN  # failed probe: open again
    assert circuit.admit(27) == (True, True)
    circuit.record(True, 27, probe=True)
    assert circuit.state(27) is CircuitState.CLOSED and circuit.admit(27) == (True, False)


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.3.4",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(AddressRefused):
        check_address(ipaddress.ip_address(address), [])


def test_public_addresses_pass_and_the_allowlist_admits_loopback() -> None:
    check_address(ipaddress.ip_address("93.184.216.34"), [])
    check_address(ipaddress.ip_address("2606:4700::1111"), [])
    allowed = parse_networks(["127.0.0.0/8", "::1/128"])
    check_address(ipaddress.ip_address("127.0.0.1"), allowed)
    check_address(ipaddress.ip_address("::1"), allowed)
    with pytest.raises(AddressRefused):
        check_address(ipaddress.ip_address("10.0.0.1"), allowed)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http:///path", "https://user:pw@example.com/", "hooks"])
def test_malformed_or_credentialed_urls_are_refused(url: str) -> None:
    with pytest.raises(AddressRefused):
        check_url(url)


def test_loopback_in_the_allowlist_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_ENV", "production")
    monkeypatch.setenv("PIPELINE_DEV_API_KEY", "pk_" + "x" * 40)
    with pytest.raises(ValueError, match="loopback only in development"):
        NotifierSettings(instance=0, allow_networks=["127.0.0.1/32"])
    assert NotifierSettings(instance=0, allow_networks=["10.20.0.0/16"]).allow_networks == ["10.20.0.0/16"]


def test_targets_are_the_callback_then_matching_live_subscriptions_each_url_once() -> None:
    tenant_secret, own = new_signing_secret(), new_signing_secret()
    now = datetime.now(UTC)
    subs = [
        Subscription(id="a", url="https://a.example/h", event_types=["*"], created_at=now, secret=own),
        Subscription(id="b", url="https://b.example/h", event_types=["ticket.created"], created_at=now),
        Subscription(id="c", url="https://c.example/h", event_types=["alert.raised"], created_at=now),
        Subscription(id="d", url="https://d.example/h", event_types=["*"], created_at=now, disabled_at=now),
        Subscription(id="e", url="https://cb.example/x", event_types=["*"], created_at=now),
    ]
    found = targets_for(event(type="ticket.created", callback_url="https://cb.example/x"), subs, [tenant_secret])
    assert [(t.url, t.subscription_id) for t in found] == [
        ("https://cb.example/x", None),
        ("https://a.example/h", "a"),
        ("https://b.example/h", "b"),
    ]
    assert found[0].secrets == (tenant_secret,) and found[1].secrets == (own,) and found[2].secrets == (tenant_secret,)
    assert origin("https://A.example/h?x=1") == "https://a.example:443"


def test_a_subscription_matches_its_types_or_any_with_a_star_and_nothing_once_disabled() -> None:
    now = datetime.now(UTC)
    typed = Subscription(id="t", url="https://t.example/h", event_types=["ticket.created"], created_at=now)
    star = Subscription(id="s", url="https://s.example/h", event_types=["*"], created_at=now)
    assert subscription_matches(typed, "ticket.created") and not subscription_matches(typed, "alert.raised")
    assert subscription_matches(star, "alert.raised")
    assert not subscription_matches(star.model_copy(update={"disabled_at": now}), "alert.raised")


def test_make_up_lets_the_notifier_reach_loopback_only_in_development(monkeypatch: pytest.MonkeyPatch) -> None:
    assert NotifierSettings(instance=0).stack_environment() == {"NOTIFIER_ALLOW_NETWORKS": "127.0.0.0/8,::1/128"}
    assert NotifierSettings(instance=0, allow_networks=["10.0.0.0/8"]).stack_environment() == {}
    monkeypatch.setenv("PIPELINE_ENV", "production")
    monkeypatch.setenv("PIPELINE_DEV_API_KEY", "pk_" + "x" * 40)
    assert NotifierSettings(instance=0).stack_environment() == {}
