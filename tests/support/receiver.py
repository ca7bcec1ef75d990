"""A real webhook receiver on loopback, for tests and benchmarks: aiohttp in a thread of its own.

Each path answers from a script (a list of statuses, the last one repeated), records every call, and can be
taken down and brought back on the same port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived


@dataclass
class Script:
    statuses: list[int]
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0


class WebhookReceiver:
    def __init__(self, port: int, default_status: int = 200, record: bool = True) -> None:
        self.port = port
        self.default_status = default_status
        self.record = record
        self.calls: list[Call] = []
        self.count = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.scripts: dict[str, Script] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"receiver-{port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(
        self,
        path: str,
        statuses: Sequence[int],
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        delay_s: float = 0.0,
    ) -> None:
        """``path`` answers these statuses in turn (the last one from then on); each call is recorded and answered
        after a random wait of up to ``delay_s``."""
        with self._lock:
            self.scripts[path] = Script(list(statuses), headers or {}, body, delay_s)

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path == "/_stats" and request.method in ("GET", "DELETE"):
            if request.method == "DELETE":
                with self._lock:
                    self.count, self.first_at, self.last_at = 0, 0.0, 0.0
            return web.json_response(self.stats())
        body = await request.read()
        script = self.scripts.get(request.path)
        if script is not None and script.delay_s:
            # A receiver that takes a variable time per call: calls in flight together are recorded in any order.
            await asyncio.sleep(random.uniform(0, script.delay_s))
        with self._lock:
            now = time.time()
            self.count += 1
            self.first_at = self.first_at or now
            self.last_at = now
            if self.record:
                headers = {k.lower(): v for k, v in request.headers.items()}
                self.calls.append(Call(request.path, headers, body, now))
            if script is None:
                return web.Response(status=self.default_status)
            status = script.statuses.pop(0) if len(script.statuses) > 1 else script.statuses[0]
        return web.Response(status=status, headers=script.headers, body=script.body)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True).start()
        self._runner = runner

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> WebhookReceiver:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until ``start`` again."""
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def stats(self) -> dict[str, float]:
        """Calls so far and when the first and the last came (``GET /_stats``; ``DELETE /_stats`` resets)."""
        with self._lock:
            return {"count": self.count, "first_at": self.first_at, "last_at": self.last_at}

    def calls_to(self, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path == path]


def main() -> None:
    """A receiver process for benchmarks: every path answers ``--status`` and nothing is recorded."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--status", type=int, default=204)
    args = parser.parse_args()
    receiver = WebhookReceiver(args.port, args.status, record=False).start()
    print(json.dumps({"listening": receiver.url}), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
