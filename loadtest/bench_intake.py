"""Intake throughput and latency, open loop, against baselines measured in the same run.

1. Single events: POST /v1/events at constant arrival rates (open loop: each request leaves at its scheduled
   time whether or not earlier ones have answered; latency counts from the scheduled time), against a no-op
   FastAPI endpoint on the same server settings. The sustained rate is the highest offered rate that was
   served (≥ 95 % answered 2xx) with p99 under 1 s.
2. Batches of 100: POST /v1/events:batch from concurrent clients, against a bare confluent-kafka producer loop
   writing the same Avro records in groups of 100 and waiting for each group's acknowledgements.

Needs the stack (`make up`: Kafka, Redis, registry); starts its own intake and no-op servers on free ports.
Prints JSON and writes a PNG of p50/p99 latency against the offered rate to loadtest/results/.
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
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Producer

from loadtest.http_load import open_loop
from shared.auth import KeyStore
from shared.codec import EventCodec
from shared.events import EventReceived
from shared.kafka import DeliveryReports, bootstrap_topics
from shared.settings import REPO_ROOT, PipelineSettings
from shared.topics import TopicSpec
from tests.support.factories import make_event_received

RESULTS = REPO_ROOT / "loadtest" / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(module: str, port: int, topic: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "INTAKE_PORT": str(port), "INTAKE_TOPIC": topic, "PIPELINE_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", module], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.post(f"http://127.0.0.1:{port}/v1/events", json={}, timeout=1).status_code < 600:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{module} did not start")
        time.sleep(0.2)


def body(i: int) -> dict[str, Any]:
    return {
        "event_id": f"bench-{uuid.uuid4().hex}",
        "type": "ticket.created",
        "source": "bench",
        "subject": f"customer-{i % 500}",
        "payload": {"text": f"The export button returns a 500 error ({i})"},
    }


def sustained(points: list[dict[str, Any]]) -> int:
    good = [p["offered_per_s"] for p in points if p["ok_fraction"] >= 0.95 and (p["p99_ms"] or 1e9) < 1000]
    return max(good, default=0)


async def batches(url: str, headers: dict[str, str], clients: int, seconds: float) -> float:
    """Events per second through POST /v1/events:batch (100 per request) from ``clients`` closed-loop clients."""
    done = 0
    async with httpx.AsyncClient(timeout=60) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                response = await client.post(url, json={"events": [body(i) for i in range(100)]}, headers=headers)
                if response.status_code == 202:
                    done += sum(1 for r in response.json()["results"] if r["status"] == "accepted")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return done / (time.perf_counter() - started)


def bare_producer(settings: PipelineSettings, topic: str, seconds: float) -> float:
    """The same Avro records through a bare producer, 100 at a time, each group acknowledged before the next."""
    codec = EventCodec.from_settings(settings)
    producer = Producer(settings.kafka.for_client("bench-bare").producer_config(**{"compression.type": "lz4"}))
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        reports = DeliveryReports(keep_acked=False)
        for i in range(100):
            event = EventReceived.model_validate(
                make_event_received(event_id=f"bare-{uuid.uuid4().hex}", subject=f"c{i}")
            )
            record = codec.encode(event, topic=topic)
            producer.produce(topic, record.value, record.key, headers=list(record.headers), on_delivery=reports)
        producer.flush(30)
        done += 100 - len(reports.failures)
    return done / (time.perf_counter() - started)


def plot(curves: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        rates = [p["offered_per_s"] for p in points]
        axis.plot(rates, [p["p50_ms"] or float("nan") for p in points], marker="o", label=f"{name} p50")
        axis.plot(rates, [p["p99_ms"] or float("nan") for p in points], marker="x", linestyle="--", label=f"{name} p99")
    axis.set_xlabel("offered requests/s (open loop)")
    axis.set_ylabel("latency ms")
    axis.set_yscale("log")
    axis.legend()
    axis.set_title("POST /v1/events: intake vs a no-op endpoint")
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="250,500,750,1000,1500,2000,3000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch-clients", type=int, default=4)
    args = parser.parse_args()
    settings = PipelineSettings()
    topic = f"bench-intake-{uuid.uuid4().hex[:6]}"
    bootstrap_topics(settings.kafka, [TopicSpec(topic, 12, "tenant:subject", None)])
    key, record = KeyStore.from_url(settings.redis_url).create("bench", ["events:write"], "1000000/second")
    headers = {"Authorization": f"Bearer {key}"}
    intake_port, noop_port = free_port(), free_port()
    servers = [
        start_server("services.intake.app", intake_port, topic),
        start_server("loadtest.noop_app", noop_port, topic),
    ]
    rates = [int(r) for r in args.rates.split(",")]
    curves: dict[str, list[dict[str, Any]]] = {"no-op": [], "intake": []}
    try:
        for rate in rates:
            for name, port in (("no-op", noop_port), ("intake", intake_port)):
                point = open_loop("127.0.0.1", port, "/v1/events", headers, body, rate, args.seconds)
                curves[name].append(point)
        batch_rate = asyncio.run(
            batches(f"http://127.0.0.1:{intake_port}/v1/events:batch", headers, args.batch_clients, args.seconds * 2)
        )
        bare_rate = bare_producer(settings, topic, args.seconds * 2)
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
        KeyStore.from_url(settings.redis_url).revoke(record.id)
        settings.kafka.admin().delete_topics([topic])
    RESULTS.mkdir(parents=True, exist_ok=True)
    png = RESULTS / "intake_latency.png"
    plot(curves, png)
    intake_sustained, noop_sustained = sustained(curves["intake"]), sustained(curves["no-op"])
    print(
        json.dumps(
            {
                "benchmark": "intake",
                "seconds_per_rate": args.seconds,
                "single": curves,
                "sustained_per_s": {"intake": intake_sustained, "no-op": noop_sustained},
                "sustained_ratio": round(intake_sustained / noop_sustained, 3) if noop_sustained else None,
                "batch_events_per_s": round(batch_rate),
                "bare_producer_events_per_s": round(bare_rate),
                "batch_ratio": round(batch_rate / bare_rate, 3) if bare_rate else None,
                "goal": {"sustained_ratio": 0.6, "batch_ratio": 0.5},
                "plot": str(png.relative_to(REPO_ROOT)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
