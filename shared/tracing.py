"""W3C Trace Context (``traceparent``): keep the incoming trace id, give every hop a new span id."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# Ids need to be unique, not secret (W3C Trace Context asks for randomness, not for a CSPRNG; OpenTelemetry's SDK
# draws them the same way): the module's Mersenne Twister, seeded from the OS (again in a forked child), where
# ``secrets`` makes a system call per id, which had cost enrichment ~5 % of its time.


def _hex_id(bits: int) -> str:
    while True:
        value = random.getrandbits(bits)
        if value:  # all zeros is the spec's invalid id
            return f"{value:0{bits // 4}x}"


_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceContext:
    """One span of a trace: ``00-<trace id>-<span id>-<flags>`` on the wire."""

    trace_id: str
    span_id: str
    flags: str = "01"

    @classmethod
    def start(cls) -> TraceContext:
        """A new trace, for an event that arrived without one."""
        return cls(_hex_id(128), _hex_id(64))

    @classmethod
    def parse(cls, header: bytes | str | None) -> TraceContext | None:
        """Read a ``traceparent`` header; ``None`` when it is absent or invalid (the spec says: start anew)."""
        if header is None:
            return None
        text = (header.decode("ascii", errors="replace") if isinstance(header, bytes) else header).strip()
        if len(text) > 55 and text[55] == "-" and text[:2] != "00":
            text = text[:55]  # a later version may append fields; its first four are ours to read
        match = _TRACEPARENT.match(text)  # lowercase only: the spec says uppercase hex is invalid
        if match is None:
            return None
        version, trace_id, span_id, flags = match.groups()
        if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
            return None
        return cls(trace_id, span_id, flags)

    def child(self) -> TraceContext:
        """The next hop: the same trace, a new span."""
        return TraceContext(self.trace_id, _hex_id(64), self.flags)

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"
