"""A lean open-loop HTTP/1.1 load generator (asyncio streams on uvloop, keep-alive pool).

httpx spends several times the server's CPU per request, and on a 2-core machine the client then sets the
ceiling for both the server under test and its baseline. This client writes prepared request bytes and reads
only the status line, the headers and ``Content-Length`` bytes of body, so the servers are what is measured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> int:
        self.writer.write(request)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed by the server")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


class _Pool:
    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self.idle: list[_Connection] = []
        self.opened = 0
        self.freed = asyncio.Condition()

    async def acquire(self) -> _Connection:
        async with self.freed:
            while not self.idle and self.opened >= self.size:
                await self.freed.wait()
            if self.idle:
                return self.idle.pop()
            self.opened += 1
        try:
            return _Connection(*await asyncio.open_connection(self.host, self.port))
        except OSError:
            async with self.freed:
                self.opened -= 1
                self.freed.notify()
            raise

    async def release(self, connection: _Connection | None) -> None:
        async with self.freed:
            if connection is None:
                self.opened -= 1
            else:
                self.idle.append(connection)
            self.freed.notify()

    def close(self) -> None:
        for connection in self.idle:
            connection.close()


@dataclass
class Point:
    """One offered rate: what was served, and the latency from each request's scheduled time."""

    offered_per_s: int
    total: int
    elapsed_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    codes: dict[int, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        ok = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(ok[min(len(ok) - 1, int(p * len(ok)))] * 1000, 2) if ok else None

        return {
            "offered_per_s": self.offered_per_s,
            "served_per_s": round(len(ok) / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "ok_fraction": round(len(ok) / self.total, 3) if self.total else 0.0,
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "codes": self.codes,
        }


def request_bytes(host: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> bytes:
    payload = orjson.dumps(body)
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
    ]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


async def _open_loop(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    body: Callable[[int], dict[str, Any]],
    rate: int,
    seconds: float,
    connections: int,
    timeout_s: float,
) -> Point:
    pool = _Pool(host, port, connections)
    point = Point(rate, int(rate * seconds))
    start = time.perf_counter() + 0.1

    async def one(i: int) -> None:
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        request = request_bytes(host, path, headers, body(i))
        try:
            connection = await pool.acquire()
        except OSError:
            point.codes[0] = point.codes.get(0, 0) + 1
            return
        try:
            status = await asyncio.wait_for(connection.exchange(request), timeout_s)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
            point.codes[0] = point.codes.get(0, 0) + 1
            connection.close()
            await pool.release(None)
            return
        await pool.release(connection)
        point.codes[status] = point.codes.get(status, 0) + 1
        if status < 300:
            point.latencies.append(time.perf_counter() - due)

    await asyncio.gather(*(one(i) for i in range(point.total)))
    point.elapsed_s = time.perf_counter() - start
    pool.close()
    return point


def open_loop(
    url_host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    body: Callable[[int], dict[str, Any]],
    rate: int,
    seconds: float,
    connections: int = 256,
    timeout_s: float = 5.0,
) -> dict[str, Any]:
    """Offer ``rate`` POSTs per second for ``seconds`` (each leaves at its scheduled time whether or not earlier
    ones have answered) over at most ``connections`` keep-alive connections; summarise what came back."""
    point = uvloop.run(_open_loop(url_host, port, path, headers, body, rate, seconds, connections, timeout_s))
    return point.summary()
