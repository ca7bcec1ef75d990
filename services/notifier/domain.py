"""The notifier's rules, without I/O: who gets a result, the signed request, what a reply means, retries, circuits."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import IntEnum
from typing import Literal
from urllib.parse import urlsplit

import orjson

from shared.events import EventInferred

# The SSRF rules live in shared/ (intake checks subscriptions with them too); named here for the notifier's code.
from shared.netpolicy import METADATA_ADDRESSES as METADATA_ADDRESSES
from shared.netpolicy import Address as Address
from shared.netpolicy import AddressRefused as AddressRefused
from shared.netpolicy import Network as Network
from shared.netpolicy import check_address as check_address
from shared.netpolicy import check_url as check_url
from shared.netpolicy import parse_networks as parse_networks
from shared.results import result_document
from shared.subscriptions import Subscription, endpoints_for
from shared.subscriptions import subscription_matches as subscription_matches

# The signing is shared with intake's test ping (``shared/webhooks.py``); named here for the notifier's code.
from shared.webhooks import request_headers as request_headers
from shared.webhooks import secret_key as secret_key
from shared.webhooks import signature as signature
from shared.webhooks import signing_secrets


@dataclass(frozen=True)
class Target:
    """One endpoint that should receive one event's result, and the secrets that sign the call."""

    url: str
    secrets: tuple[str, ...]
    subscription_id: str | None = None

    @property
    def endpoint(self) -> str:
        """The circuit's unit: scheme, host and port (paths of one server share its health)."""
        return origin(self.url)


def origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def targets_for(
    event: EventInferred, subscriptions: Iterable[Subscription], tenant_secrets: Sequence[str]
) -> list[Target]:
    """The event's own ``callback_url`` (signed with the tenant's secrets), then each matching subscription
    (signed with its own secret, else the tenant's). One URL is called once, even when named twice."""
    return [
        Target(url, tuple(tenant_secrets))
        if sub is None
        else Target(url, signing_secrets(sub.secret, tenant_secrets), sub.id)
        for url, sub in endpoints_for(event.callback_url, event.type, subscriptions)
    ]


def body_of(event: EventInferred, trace_id: str | None) -> bytes:
    """The JSON a receiver gets: the result, plus the event id, type, subject, time and trace id."""
    return orjson.dumps(result_document(event, trace_id))


Verdict = Literal["delivered", "retry", "permanent", "gone"]


@dataclass(frozen=True)
class WebhookReply:
    """What came back from one call: an HTTP status, or no answer at all (``error``)."""

    status: int | None
    retry_after_s: float | None = None
    excerpt: str = ""
    error: str | None = None

    @property
    def verdict(self) -> Verdict:
        if self.status is None:
            return "retry"  # network error or timeout
        if 200 <= self.status < 300:
            return "delivered"
        if self.status == 410:
            return "gone"
        if self.status == 429 or self.status >= 500 or self.status == 408:
            return "retry"
        return "permanent"  # other 4xx, and 3xx: webhooks are not redirected by default

    def describe(self) -> str:
        if self.status is None:
            return f"no answer: {self.error}"
        text = f"HTTP {self.status}"
        return f"{text}: {self.excerpt}" if self.excerpt else text


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    now = now if now is not None else time.time()
    return max(0.0, moment.timestamp() - now)


def retry_delay_ms(
    retry: int,
    schedule_ms: Sequence[int],
    retry_after_s: float | None,
    cap_ms: int,
    jitter: float = 0.1,
    rng: random.Random | None = None,
) -> int | None:
    """The wait before retry ``retry`` (1-based): the schedule's entry, jittered by ±``jitter``, or the
    receiver's ``Retry-After`` when that is later; at most ``cap_ms``. None after the last entry: give up."""
    if retry < 1 or retry > len(schedule_ms):
        return None
    delay = schedule_ms[retry - 1] * (rng or random).uniform(1 - jitter, 1 + jitter)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s * 1000)
    return int(max(0, min(delay, cap_ms)))


def hop_ms(wait_ms: int, ladder_ms: Sequence[int]) -> int:
    """One leg of a wait carried through the runtime's retry levels: the longest level delay that fits in it,
    else the wait itself (shorter than every level). A leg of a level's full delay is never held behind a
    record due later in that level, so a wait of hours costs a few legs and ends within the shortest level."""
    fitting = [d for d in ladder_ms if 0 < d <= wait_ms]
    return max(fitting) if fitting else max(0, wait_ms)


class CircuitState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass
class Circuit:
    """One endpoint's breaker: ``threshold`` failed calls in a row open it for ``cooldown_s``; then one call
    (the probe) may try; its success closes it, its failure opens it again."""

    threshold: int
    cooldown_s: float
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    def state(self, now: float) -> CircuitState:
        if self.opened_at is None:
            return CircuitState.CLOSED
        if now - self.opened_at < self.cooldown_s or self.probing:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def admit(self, now: float) -> tuple[bool, bool]:
        """May a call go out now, and is it the probe?"""
        state = self.state(now)
        if state is CircuitState.CLOSED:
            return True, False
        if state is CircuitState.HALF_OPEN:
            self.probing = True
            return True, True
        return False, False

    def remaining_s(self, now: float) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown_s - (now - self.opened_at))

    def record(self, ok: bool, now: float, probe: bool) -> None:
        if probe:
            self.probing = False
        if ok:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if probe or self.failures >= self.threshold:
            self.opened_at = now


@dataclass
class Circuits:
    """The breakers of every endpoint this process calls."""

    threshold: int
    cooldown_s: float
    by_endpoint: dict[str, Circuit] = field(default_factory=dict)

    def of(self, endpoint: str) -> Circuit:
        circuit = self.by_endpoint.get(endpoint)
        if circuit is None:
            circuit = self.by_endpoint[endpoint] = Circuit(self.threshold, self.cooldown_s)
        return circuit
