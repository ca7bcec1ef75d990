"""intake's rules for a subscription: its URL (scheme, host, SSRF) and its event types, checked at creation."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from services.intake.domain import SubscriptionIn, SubscriptionPatch, UrlRefused, patched, ping_body, subscription_url
from services.intake.settings import IntakeSettings
from shared.netpolicy import LOOPBACK, AddressRefused, check_resolved, parse_networks
from shared.subscriptions import Subscription

NONE_ALLOWED: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []


def refusal(url: str, env: str = "development", allowed: object = None) -> str:
    with pytest.raises(UrlRefused) as caught:
        subscription_url(url, env, NONE_ALLOWED if allowed is None else allowed)  # type: ignore[arg-type]
    return str(caught.value)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://169.254.169.254/latest", "169.254.169.254 is a cloud metadata address"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
        ("https://10.1.2.3/hook", "10.1.2.3 is private"),
        ("http://127.0.0.1:9000/hook", "127.0.0.1 is loopback"),
        ("http://[::1]/", "::1 is loopback"),
    ],
)
def test_a_literal_address_the_notifier_refuses_is_refused_naming_why(url: str, rule: str) -> None:
    assert rule in refusal(url)


def test_loopback_is_accepted_when_allowed_and_private_still_refused() -> None:
    allowed = list(LOOPBACK)
    assert subscription_url("http://127.0.0.1:9000/hook", "development", allowed).url == "http://127.0.0.1:9000/hook"
    assert subscription_url("http://[::1]:9/x", "development", allowed).host == "[::1]"
    assert "is private" in refusal("http://10.0.0.1/", allowed=allowed)
    assert "metadata" in refusal("http://169.254.169.254/", allowed=parse_networks(["10.0.0.0/8"]))


def test_credentials_in_the_url_are_refused() -> None:
    assert "credentials" in refusal("http://user:pw@example.com/")
    assert "credentials" in refusal("https://token@example.com/")


@pytest.mark.parametrize(
    "url", ["http://ex ample.com/", "http://example.com/a b", "http://exa\x01mple.com/", "http://x.com/\n"]
)
def test_spaces_and_control_characters_are_refused(url: str) -> None:
    assert "spaces or control characters" in refusal(url)


@pytest.mark.parametrize("url", ["http://a_b.example/", "http://-a.example/", "http://%65x.example/", "http://a..b/"])
def test_a_host_that_is_not_a_valid_host_name_is_refused(url: str) -> None:
    assert "is not a valid host name" in refusal(url)


def test_an_internationalized_host_is_stored_in_its_punycode_form() -> None:
    found = subscription_url("https://exämple.com/hook?x=1", "production", NONE_ALLOWED)
    assert found.url == "https://xn--exmple-cua.com/hook?x=1" and found.host == "xn--exmple-cua.com"
    assert subscription_url("https://xn--exmple-cua.com/", "production", NONE_ALLOWED).host == "xn--exmple-cua.com"


def test_a_host_name_is_lowercased_and_keeps_its_port() -> None:
    found = subscription_url("HTTPS://Hooks.Example.COM:8443/p", "production", NONE_ALLOWED)
    assert (found.url, found.port, found.address) == ("https://hooks.example.com:8443/p", 8443, None)


def test_a_missing_host_or_a_bad_port_is_refused() -> None:
    assert "must name a host" in refusal("https:///path")
    assert "invalid port" in refusal("https://example.com:99999/")


def test_development_accepts_http_and_says_production_requires_https() -> None:
    assert subscription_url("http://example.com/", "development", NONE_ALLOWED).port == 80
    message = refusal("ftp://example.com/")
    assert "http:// or https://" in message and "production requires https://" in message


def test_production_accepts_https_only_and_says_so() -> None:
    message = refusal("http://example.com/", env="production")
    assert "https://" in message and "production accepts https only" in message and "http://" not in message
    assert "production accepts https only" in refusal("ftp://example.com/", env="production")


def test_a_name_that_resolves_only_to_refused_addresses_is_refused() -> None:
    addresses = [ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("169.254.169.254")]
    with pytest.raises(AddressRefused, match="resolves only to refused addresses"):
        check_resolved("internal.example", addresses, [])
    mixed = [*addresses, ipaddress.ip_address("93.184.216.34")]
    assert check_resolved("mixed.example", mixed, []) == [ipaddress.ip_address("93.184.216.34")]


@pytest.mark.parametrize("types", [["*"], ["ticket.created"], ["ticket.created", "order_paid", "a-b.c"]])
def test_star_and_exact_event_types_are_accepted(types: list[str]) -> None:
    assert SubscriptionIn(url="https://example.com/", event_types=types).event_types == types


@pytest.mark.parametrize("types", [[], ["ticket.*"], ["Ticket.Created"], ["*.created"], [".x"], ["a b"]])
def test_an_empty_list_patterns_and_malformed_types_are_refused(types: list[str]) -> None:
    with pytest.raises(ValidationError):
        SubscriptionIn(url="https://example.com/", event_types=types)


def test_a_pattern_refusal_says_only_star_and_exact_types_match() -> None:
    with pytest.raises(ValidationError, match=r"patterns such as ticket\.\* are not supported"):
        SubscriptionIn(url="https://example.com/", event_types=["ticket.*"])


def test_intake_allows_loopback_in_development_by_default() -> None:
    assert IntakeSettings().webhook_networks() == list(LOOPBACK)
    assert IntakeSettings(webhook_allow_networks=["10.0.0.0/8"]).webhook_networks() == parse_networks(["10.0.0.0/8"])
    assert IntakeSettings().max_subscriptions_per_tenant == 50


def test_intake_allows_no_loopback_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_ENV", "production")
    monkeypatch.setenv("PIPELINE_DEV_API_KEY", "pk_" + "x" * 40)
    assert IntakeSettings().webhook_networks() == []
    with pytest.raises(ValidationError, match="loopback only in development"):
        IntakeSettings(webhook_allow_networks=["127.0.0.0/8"])


def test_an_unbalanced_ipv6_bracket_is_refused_not_an_error() -> None:
    assert "not a valid URL" in refusal("https://['")


def sub(**overrides: object) -> Subscription:
    fields: dict[str, object] = {"id": "sub_1", "url": "https://a.example/h", "event_types": ["a"]}
    return Subscription.model_validate({"created_at": datetime(2026, 1, 1, tzinfo=UTC), **fields, **overrides})


def test_a_patch_with_enabled_true_clears_the_410_and_keeps_what_it_does_not_name() -> None:
    gone = sub(disabled_at=datetime(2026, 1, 2, tzinfo=UTC), disabled_reason="410 Gone")
    edited = patched(gone, SubscriptionPatch(enabled=True), None, datetime.now(UTC))
    assert (edited.disabled_at, edited.disabled_reason, edited.url, edited.event_types) == (
        None,
        None,
        "https://a.example/h",
        ["a"],
    )


def test_a_patch_with_enabled_false_disables_by_hand_and_types_are_deduplicated() -> None:
    now = datetime.now(UTC)
    edited = patched(sub(), SubscriptionPatch(enabled=False, event_types=["b", "a", "b"]), "https://b.example/", now)
    assert (edited.disabled_at, edited.event_types, edited.url) == (now, ["a", "b"], "https://b.example/")


@pytest.mark.parametrize("body", [{"url": None}, {"enabled": None}, {"event_types": []}, {"secret": "whsec_x"}])
def test_a_patch_refuses_null_empty_and_unknown_fields(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SubscriptionPatch.model_validate(body)


def test_a_ping_body_names_its_type_subscription_and_time() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert orjson.loads(ping_body("sub_1", now)) == {
        "type": "ping",
        "subscription_id": "sub_1",
        "sent_at": "2026-01-01T00:00:00+00:00",
    }
