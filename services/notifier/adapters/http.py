"""Webhook calls: one pooled aiohttp session, with SSRF checks on every address it connects to."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

from services.notifier.domain import WebhookReply, parse_retry_after
from services.notifier.settings import NotifierSettings
from shared.netpolicy import AddressRefused, Network, check_address, check_url
from shared.webhooks import GuardedResolver

REDIRECTS_FOLLOWED = (307, 308)  # the only redirects that keep a POST and its body


@dataclass(frozen=True)
class HttpLimits:
    connect_timeout_s: float
    read_timeout_s: float
    max_response_bytes: int
    excerpt_chars: int
    max_redirects: int
    max_connections: int
    max_connections_per_endpoint: int


class WebhookClient:
    """POSTs signed bodies; answers a ``WebhookReply`` for anything the receiver or the network did, and raises
    ``AddressRefused`` for an address it must not call."""

    def __init__(self, limits: HttpLimits, allowed: Sequence[Network]) -> None:
        self.limits = limits
        self.allowed = list(allowed)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        # Created on first use, on the loop that will use it (the runtime's handler loop).
        if self._session is None:
            limits = self.limits
            connector = aiohttp.TCPConnector(
                limit=limits.max_connections,
                limit_per_host=limits.max_connections_per_endpoint,
                resolver=GuardedResolver(self.allowed),
                ttl_dns_cache=10,
            )
            timeout = aiohttp.ClientTimeout(
                total=limits.connect_timeout_s + limits.read_timeout_s,
                connect=limits.connect_timeout_s,
                sock_read=limits.read_timeout_s,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, auto_decompress=False, skip_auto_headers=("User-Agent",)
            )
        return self._session

    def check(self, url: str) -> None:
        """The checks possible before connecting: the URL's form, and a literal address."""
        check_url(url)
        host = urlsplit(url).hostname or ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return  # a name: checked where it is resolved
        check_address(address, self.allowed)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[WebhookReply, float]:
        """One delivery (following allowed redirects); the answer and the seconds it took."""
        started = time.perf_counter()
        for _hop in range(self.limits.max_redirects + 1):
            self.check(url)
            answer, location = await self._call(url, body, headers)
            if location is None:
                return answer, time.perf_counter() - started
            url = urljoin(url, location)
        return answer, time.perf_counter() - started

    async def _call(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[WebhookReply, str | None]:
        try:
            async with self.session().post(url, data=body, headers=headers, allow_redirects=False) as response:
                raw = await response.content.read(self.limits.max_response_bytes)
                excerpt = raw.decode("utf-8", "replace")[: self.limits.excerpt_chars].strip()
                answer = WebhookReply(response.status, parse_retry_after(response.headers.get("Retry-After")), excerpt)
                location = response.headers.get("Location")
                follow = self.limits.max_redirects > 0 and response.status in REDIRECTS_FOLLOWED and location
                return answer, location if follow else None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                raise exc.os_error from None
            return WebhookReply(None, error=_describe(exc)), None
        except (TimeoutError, aiohttp.ClientError) as exc:
            return WebhookReply(None, error=_describe(exc)), None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def limits_of(settings: NotifierSettings) -> HttpLimits:
    return HttpLimits(
        settings.connect_timeout_s,
        settings.read_timeout_s,
        settings.max_response_bytes,
        settings.excerpt_chars,
        settings.max_redirects,
        settings.max_concurrency,
        settings.max_connections_per_endpoint,
    )
