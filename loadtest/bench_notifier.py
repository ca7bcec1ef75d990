"""Notifier deliveries/s against a bare async HTTP client loop to the same fast receiver, in the same run.

- **receiver**: ``python -m tests.support.receiver`` in its own process on loopback, answering 204 at once;
  it counts calls and stamps the first and the last (``/_stats``), and both rates are read from it.
- **bare loop**: one aiohttp session (the notifier's client library), ``--concurrency`` POSTs in flight of
  the same JSON body a delivery carries, no signing, no Kafka, no Redis.
- **notifier**: the worker (``python -m services.notifier.app``, exactly-once, its own topics, loopback
  allowlisted) on a backlog of ``--events`` results, each with a ``callback_url`` at the receiver, written
  while it is already running: deliveries/s from the first call to the last. It signs each call, checks
  Redis for earlier deliveries, records each 2xx in Redis, and writes a receipt per delivery to Kafka.

Passes alternate (bare, notifier, bare, notifier, ...) and each side's best counts, since this shared
machine swings from minute to minute. Needs the stack (``make up``: Kafka, Redis, the registry). Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

import aiohttp
import httpx
import orjson
import redis
from confluent_kafka import Producer

from shared.auth import TenantSecrets, new_signing_secret, secrets_key
from shared.codec import EventCodec
from shared.events import EventInferred
from shared.kafka import bootstrap_topics
from shared.settings import REPO_ROOT, PipelineSettings
from shared.topics import TopicSpec, service_topics
from tests.support.factories import make_event_inferred

PARTITIONS = 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready in {timeout}s")


def reset(receiver: str) -> None:
    httpx.delete(f"{receiver}/_stats")


def rate_at(receiver: str, total: int, timeout: float) -> float:
    """Calls/s seen by the receiver from its first call to its ``total``-th."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = httpx.get(f"{receiver}/_stats").json()
        if stats["count"] >= total:
            return float((stats["count"] - 1) / max(1e-9, stats["last_at"] - stats["first_at"]))
        time.sleep(0.05)
    raise TimeoutError(f"receiver saw {stats['count']} of {total} calls in {timeout}s")


async def bare_loop(url: str, body: bytes, total: int, concurrency: int) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        left = iter(range(total))

        async def worker() -> None:
            for _ in left:
                async with session.post(url, data=body, headers={"content-type": "application/json"}) as response:
                    await response.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


class NotifierPass:
    """One worker process on fresh topics, and a producer of results addressed to the receiver."""

    def __init__(
        self, settings: PipelineSettings, codec: EventCodec, receiver: str, run: str, processes: int = 1
    ) -> None:
        self.settings, self.codec, self.receiver = settings, codec, receiver
        self.name = f"bench-notifier-{run}"
        self.source, self.out = f"{self.name}-in", f"{self.name}-out"
        bootstrap_topics(
            settings.kafka,
            [TopicSpec(t, PARTITIONS, "tenant:subject", None) for t in (self.source, self.out)]
            + service_topics(self.name),
        )
        self.tenant = f"bench-{run}"
        redis.Redis.from_url(settings.redis_url).set(
            secrets_key(self.tenant), TenantSecrets(current=new_signing_secret()).model_dump_json()
        )
        self.processes: list[subprocess.Popen[bytes]] = []
        for instance in range(processes):
            port = free_port()
            env = {
                **os.environ,
                "NOTIFIER_NAME": self.name,
                "NOTIFIER_INSTANCE": str(instance),
                "NOTIFIER_PORT": str(port),
                "NOTIFIER_INPUT_TOPIC": self.source,
                "NOTIFIER_OUTPUT_TOPIC": self.out,
                "NOTIFIER_ALLOW_NETWORKS": '["127.0.0.0/8"]',
                "PIPELINE_LOG_LEVEL": "WARNING",
            }
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "services.notifier.app"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL
                )
            )
            wait_ready(f"http://127.0.0.1:{port}/readyz")

    def run(self, total: int, offset: int) -> float:
        # Encoded before the pass, so the bench's own Avro work does not compete with the worker for the CPU.
        records = []
        for i in range(total):
            event = EventInferred.model_validate(
                make_event_inferred(
                    tenant=self.tenant,
                    event_id=f"b-{offset + i}",
                    subject=f"customer-{i % 500}",
                    callback_url=f"{self.receiver}/hook",
                )
            )
            records.append(self.codec.encode(event, topic=self.source))
        reset(self.receiver)
        producer = Producer(self.settings.kafka.producer_config())
        for i, record in enumerate(records):
            producer.produce(self.source, record.value, record.key, headers=list(record.headers))
            if i % 1000 == 0:
                producer.poll(0)
        producer.flush(60)
        return rate_at(self.receiver, total, timeout=300)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64, help="the bare loop's POSTs in flight")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1, help="notifier processes in one group")
    args = parser.parse_args()
    settings = PipelineSettings()
    codec = EventCodec.from_settings(settings)
    port = free_port()
    receiver_proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.receiver", "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
    )
    receiver = f"http://127.0.0.1:{port}"
    # A body of the size and shape a delivery carries (the bench may not import a service's code).
    body = orjson.dumps({**make_event_inferred(), "trace_id": uuid.uuid4().hex}, default=str)
    bare: list[float] = []
    service: list[float] = []
    notifier: NotifierPass | None = None
    try:
        wait_ready(f"{receiver}/_stats")
        notifier = NotifierPass(settings, codec, receiver, uuid.uuid4().hex[:6], args.processes)
        notifier.run(500, 0)  # warm: connections, registry lookups
        for n in range(args.repeats):
            reset(receiver)
            asyncio.run(bare_loop(f"{receiver}/hook", body, args.events, args.concurrency))
            bare.append(rate_at(receiver, args.events, timeout=60))
            service.append(notifier.run(args.events, (n + 1) * 1_000_000))
    finally:
        if notifier is not None:
            notifier.stop()
        receiver_proc.terminate()
        receiver_proc.wait(10)
    result: dict[str, Any] = {
        "bench": "notifier",
        "events": args.events,
        "bare_loop_per_s": [round(r, 1) for r in bare],
        "notifier_per_s": [round(r, 1) for r in service],
        "bare_loop_best_per_s": round(max(bare), 1),
        "notifier_best_per_s": round(max(service), 1),
        "ratio_notifier_over_bare": round(max(service) / max(bare), 3),
        "aim": 0.6,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
