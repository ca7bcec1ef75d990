"""Which network addresses a webhook may reach (SSRF rules): used by intake at creation and the notifier per call."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

# Cloud metadata services; all but the last are inside ranges refused anyway, the list names them on purpose.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)


class AddressRefused(Exception):
    """A webhook address this notifier must not call (SSRF protection)."""


def parse_networks(entries: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(e, strict=False) for e in entries]


def split_networks(value: object) -> object:
    """A settings value for a list of networks: comma-separated text or a JSON list become a list."""
    if isinstance(value, str):
        text = value.strip()
        return json.loads(text) if text.startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
    return value


def includes_loopback(networks: Iterable[Network]) -> bool:
    return any(n.version == lo.version and n.overlaps(lo) for n in networks for lo in LOOPBACK)


def check_address(address: Address, allowed: Sequence[Network]) -> None:
    """Refuse loopback, private, link-local, metadata and other non-public addresses, unless allowlisted."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in net for net in allowed):
        return
    if address in METADATA_ADDRESSES:
        raise AddressRefused(f"{address} is a cloud metadata address")
    if not address.is_global or address.is_multicast:
        kind = next(
            (k for k in ("loopback", "private", "link_local", "multicast", "reserved") if getattr(address, f"is_{k}")),
            "not public",
        )
        raise AddressRefused(f"{address} is {kind.replace('_', '-')}")


def check_resolved(host: str, addresses: Iterable[Address], allowed: Sequence[Network]) -> list[Address]:
    """The addresses of ``host`` a webhook may reach; ``AddressRefused`` when none is left."""
    kept: list[Address] = []
    refusals: list[str] = []
    for address in addresses:
        try:
            check_address(address, allowed)
            kept.append(address)
        except AddressRefused as exc:
            refusals.append(str(exc))
    if not kept:
        raise AddressRefused(f"{host} resolves only to refused addresses ({'; '.join(refusals)})")
    return kept


def check_url(url: str) -> None:
    """Only absolute http(s) URLs with a host, no credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused(f"not an absolute http(s) URL: {url[:200]}")
    if parts.username or parts.password:
        raise AddressRefused("URLs with credentials are refused")
