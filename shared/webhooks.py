"""Signed webhook calls as the notifier and intake's test ping make them: Standard Webhooks signing, and a
resolver that never hands out an address a webhook must not reach (SSRF)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Sequence

from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from shared.auth import SECRET_PREFIX
from shared.netpolicy import Network, check_resolved


def signing_secrets(own: str | None, tenant_secrets: Sequence[str]) -> tuple[str, ...]:
    """The secrets a subscription's calls are signed with: its own secret, else the tenant's."""
    return (own,) if own else tuple(tenant_secrets)


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64-decoded part after ``whsec_``."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(message_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> str:
    """``webhook-signature``: ``v1,<base64 HMAC-SHA256 of id.timestamp.body>`` per secret, space-separated
    (two during a rotation's grace period, so a receiver with either secret verifies)."""
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_key(s), signed, hashlib.sha256).digest()).decode() for s in secrets
    )


def request_headers(message_id: str, body: bytes, secrets: Sequence[str], now: float | None = None) -> dict[str, str]:
    timestamp = int(now if now is not None else time.time())
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(message_id, timestamp, body, secrets),
        "idempotency-key": message_id,
        "user-agent": "pipeline-notifier/1",
    }


class GuardedResolver(ThreadedResolver):
    """The system resolver, minus every address a webhook must not reach."""

    def __init__(self, allowed: Sequence[Network]) -> None:
        super().__init__()
        self.allowed = list(allowed)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        # Checked here, where the name resolves, so it cannot pass a check and then connect elsewhere (DNS
        # rebinding); literal addresses never reach a resolver: callers check them before connecting.
        found = await super().resolve(host, port, family)
        kept = set(check_resolved(host, [ipaddress.ip_address(entry["host"]) for entry in found], self.allowed))
        return [entry for entry in found if ipaddress.ip_address(entry["host"]) in kept]
