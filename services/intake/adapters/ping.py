"""A subscription's test ping: one signed POST, with the notifier's SSRF rules and no redirects."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import aiohttp

from services.intake.domain import PingAnswer
from shared.netpolicy import Address, AddressRefused, Network, check_address, check_url
from shared.webhooks import GuardedResolver

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 4096


async def ping(url: str, body: bytes, headers: dict[str, str], allowed: Sequence[Network]) -> PingAnswer:
    """POST ``body`` to ``url``; whatever the receiver or the network did is the answer, never an exception."""
    started = time.perf_counter()

    def answer(status: int | None, error: str | None) -> PingAnswer:
        delivered = status is not None and 200 <= status < 300
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        return PingAnswer(delivered=delivered, http_status=status, latency_ms=latency_ms, error=error)

    try:
        check_url(url)
        literal = _literal(urlsplit(url).hostname or "")
        # A name is checked by the resolver, each address it resolves to, where it connects.
        if literal is not None:
            check_address(literal, allowed)
    except AddressRefused as exc:
        return answer(None, f"address refused: {exc}")
    # A session per ping: pings are rare, and nothing is left open between requests.
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allowed), use_dns_cache=False, force_close=True)
    timeout = aiohttp.ClientTimeout(
        total=CONNECT_TIMEOUT_S + READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S
    )
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=timeout, auto_decompress=False, skip_auto_headers=("User-Agent",)
            ) as session,
            session.post(url, data=body, headers=headers, allow_redirects=False) as response,
        ):
            excerpt = (await response.content.read(MAX_RESPONSE_BYTES)).decode("utf-8", "replace")[:200].strip()
            if 200 <= response.status < 300:
                return answer(response.status, None)
            error = f"HTTP {response.status}: {excerpt}" if excerpt else f"HTTP {response.status}"
            return answer(response.status, error)
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, AddressRefused):
            return answer(None, f"address refused: {exc.os_error}")
        return answer(None, f"no answer: {exc}")
    except TimeoutError:
        return answer(None, f"no answer within {CONNECT_TIMEOUT_S:g} s to connect and {READ_TIMEOUT_S:g} s to read")
    except aiohttp.ClientError as exc:
        return answer(None, f"no answer: {str(exc) or type(exc).__name__}")


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
