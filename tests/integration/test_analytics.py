"""The analytics worker (faust) as its own process over the real broker, registry and Redis: windows filled from known
events, and after a ``kill -9`` and a restart the served windows equal a recount from the topics."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from confluent_kafka import Consumer, Producer
from prometheus_client.parser import text_string_to_metric_families

from services.analytics.adapters.faust_app import repartition_topic
from services.analytics.domain import recount
from services.analytics.settings import AnalyticsSettings
from shared.analytics import CategoryFigures, DeliveryFigures, WindowStats, combine, read_stats
from shared.codec import EventCodec
from shared.events import EventInferred, NotificationDelivered
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.settings import REPO_ROOT
from shared.topics import TopicSpec
from tests.support.factories import make_event_inferred
from tests.support.kafka import read, wait_consumed
from tests.support.processes import Process, free_port, spawn, wait_http_ready
from tests.support.workers import running

# The hour before this one: whole, in one 1h window, and well inside the 1m windows' 2 h horizon.
BASE = datetime.fromtimestamp((int(time.time()) // 3600 - 1) * 3600, UTC)
BASE_S = int(BASE.timestamp())


@dataclass
class Analytics:
    """A worker over topics of its own, with a producer for its inputs and the suite's Redis to read."""

    name: str
    inferred: str
    delivered: str
    codec: EventCodec
    producer: Producer
    reader: Consumer
    tenant: str
    kafka: KafkaConnection
    registry_url: str
    redis_url: str
    logs: Path
    port: int = 0
    process: Process | None = None

    def start(self) -> Process:
        """Start the worker (again: the same name and instance, so it takes its partitions back at once)."""
        self.port = free_port()
        self.process = spawn(
            [sys.executable, "-m", "services.analytics.app"],
            self.logs / "worker.log",
            env={
                "ANALYTICS_NAME": self.name,
                "ANALYTICS_PORT": str(self.port),
                "ANALYTICS_INFERRED_TOPIC": self.inferred,
                "ANALYTICS_DELIVERED_TOPIC": self.delivered,
                "ANALYTICS_RUNTIME__COMMIT_INTERVAL_MS": "100",
                "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
                "PIPELINE_SCHEMA_REGISTRY_URL": self.registry_url,
                "PIPELINE_REDIS_URL": self.redis_url,
                "PIPELINE_STATE_DIR": str(self.logs / "state"),
            },
        )
        # Ready means partitions assigned and tables recovered.
        wait_http_ready(f"http://127.0.0.1:{self.port}/readyz", self.process, timeout=120)
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.popen.pid, signal.SIGKILL)
        self.process.popen.wait(30)

    def send(self, events: list[EventInferred | NotificationDelivered]) -> None:
        for event in events:
            topic = self.inferred if isinstance(event, EventInferred) else self.delivered
            record = self.codec.encode(event, topic=topic)
            self.producer.produce(topic, record.value, record.key, headers=list(record.headers))
        assert self.producer.flush(30) == 0

    def send_raw(self, topic: str, key: bytes, value: bytes) -> None:
        self.producer.produce(topic, value, key)
        assert self.producer.flush(30) == 0

    def stats(self, window: str, count: int = 200) -> list[WindowStats]:
        async def fetch() -> list[WindowStats]:
            client = aioredis.Redis.from_url(self.redis_url)
            try:
                return await read_stats(client, self.tenant, window, count)
            finally:
                await client.aclose()

        return asyncio.run(fetch())

    def windows(self) -> dict[tuple[str, str, int], Any]:
        return {(s.tenant, s.window, s.start): comparable(s) for window in ("1m", "1h") for s in self.stats(window)}

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    def settle(self, timeout: float = 90.0) -> None:
        """Until the worker has committed everything written to its inputs, then every snapshot the first stage sent
        for them (sent before the inputs' commit): each window's last figures are in Redis."""
        wait_consumed(self.kafka, self.name, [self.inferred, self.delivered], timeout=timeout)
        wait_consumed(self.kafka, self.name, [repartition_topic(AnalyticsSettings(name=self.name))], timeout=timeout)


def comparable(stats: WindowStats) -> tuple[dict[str, Any], dict[str, Any]]:
    categories = {c: f.model_dump() for c, f in stats.categories.items() if f != CategoryFigures()}
    return categories, stats.delivery.model_dump()


@contextmanager
def analytics_worker(kafka: KafkaConnection, registry_url: str, redis_url: str, logs: Path) -> Iterator[Analytics]:
    """Topics of its own (12 partitions, like production), a worker process, and the clients to drive it."""
    suffix = uuid.uuid4().hex[:8]
    inferred, delivered = f"inferred-{suffix}", f"delivered-{suffix}"
    bootstrap_topics(kafka, [TopicSpec(t, 12, "tenant:subject", None) for t in (inferred, delivered)])
    worker = Analytics(
        name=f"analytics-{suffix}",
        inferred=inferred,
        delivered=delivered,
        codec=EventCodec.connect(registry_url, REPO_ROOT / "schemas"),
        producer=Producer(kafka.producer_config()),
        reader=Consumer(kafka.consumer_config(f"reader-{suffix}")),
        tenant=f"acme-{suffix}",
        kafka=kafka,
        registry_url=registry_url,
        redis_url=redis_url,
        logs=logs,
    )
    with running(worker, logs / "worker.log") as started:
        yield started


def tail(worker: Analytics) -> str:
    return worker.process.tail() if worker.process else ""


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def result(tenant: str, event_id: str, seconds: float, label: str, confidence: float, **fields: Any) -> EventInferred:
    return EventInferred.model_validate(
        make_event_inferred(
            tenant=tenant,
            event_id=event_id,
            subject=fields.pop("subject", f"customer-{event_id}"),
            inferred_at=at(seconds),
            category={"label": label, "confidence": confidence, "scores": {label: confidence}},
            **fields,
        )
    )


def receipt(
    tenant: str, event_id: str, seconds: float, status: str, latency_ms: float, subject: str = ""
) -> NotificationDelivered:
    return NotificationDelivered(
        event_id=event_id,
        tenant=tenant,
        subject=subject or f"customer-{event_id}",
        endpoint="https://hooks.example/x",
        status=status,
        http_status={"delivered": 204, "failed": 500, "gone": 410}[status],
        delivered_at=at(seconds),
        latency_ms=latency_ms,
        type="ticket.created",
    )


@pytest.fixture
def analytics(kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path: Path) -> Iterator[Analytics]:
    with analytics_worker(kafka, registry_url, redis_url, tmp_path) as worker:
        yield worker


def test_windows_and_metrics_are_filled_from_known_results_and_receipts(analytics: Analytics) -> None:
    t = analytics.tenant
    minilm = {"name": "minilm-triage", "version": "v1"}
    keywords = {"name": "keywords", "version": "rules-1"}
    analytics.send(
        [
            result(t, "e1", 10, "billing", 0.875, model=minilm),
            result(t, "e2", 20, "billing", 0.375, needs_review=True, model=keywords),
            result(t, "e3", 90, "technical", 0.625, cached=True, model=minilm),
            result(t, "e4", 30, "technical", 1.0, model=minilm),
            result(t, "e5", 3599, "account", 0.5, model=minilm),
        ]
    )
    analytics.send_raw(analytics.delivered, f"{t}:customer-e1".encode(), b"\x07not avro")  # skipped, counted
    analytics.send(
        [
            receipt(t, "e1", 70, "delivered", 120),
            receipt(t, "e2", 80, "delivered", 80),  # escalated: delivered, not auto-resolved
            receipt(t, "e3", 100, "failed", 900),
            receipt(t, "e3", 130, "gone", 15),  # another endpoint
            receipt(t, "e3", 200, "delivered", 300),  # its first delivery: auto-resolved here
            receipt(t, "e5", 3605, "delivered", 50),  # in the next hour: auto-resolved there
        ]
    )
    hist = [0] * 10
    billing = CategoryFigures(
        events=2, needs_review=1, confidence_sum=1.25, histogram=bump(hist, 8, 3), fallback=1, auto_resolved=1
    )
    technical = CategoryFigures(events=2, confidence_sum=1.625, histogram=bump(hist, 6, 9), cached=1, auto_resolved=1)
    account = CategoryFigures(events=1, confidence_sum=0.5, histogram=bump(hist, 5))
    hour = DeliveryFigures(delivered=3, failed=1, gone=1, latency_sum_ms=500, latency_count=3)
    expected_hour = ({"account": account, "billing": billing, "technical": technical}, hour)
    expected_next = (
        {"account": CategoryFigures(auto_resolved=1)},
        DeliveryFigures(delivered=1, latency_sum_ms=50, latency_count=1),
    )
    minute_1 = (
        {
            "billing": CategoryFigures(auto_resolved=1),
            "technical": CategoryFigures(events=1, confidence_sum=0.625, histogram=bump(hist, 6), cached=1),
        },
        DeliveryFigures(delivered=2, failed=1, latency_sum_ms=200, latency_count=2),
    )

    def hours() -> list[WindowStats]:
        return analytics.stats("1h")

    deadline = time.monotonic() + 90
    while [comparable(s) for s in hours()] != [dumped(expected_hour), dumped(expected_next)]:
        assert time.monotonic() < deadline, f"1h windows: {hours()}\n{tail(analytics)}"
        time.sleep(0.2)
    analytics.settle()
    first, second = hours()
    assert (first.start, second.start) == (BASE_S, BASE_S + 3600)
    minutes = {s.start: comparable(s) for s in analytics.stats("1m")}
    assert minutes[BASE_S + 60] == dumped(minute_1)
    assert sorted(minutes) == [BASE_S, BASE_S + 60, BASE_S + 120, BASE_S + 180, BASE_S + 3540, BASE_S + 3600]
    # The ops API's figures for the hour: every category together, with the rates.
    totals = combine([first])
    assert (totals.figures.events, totals.escalations, totals.auto_resolved) == (5, 1, 2)
    assert totals.rates.needs_review_share == pytest.approx(0.2)
    assert totals.rates.webhook_success_rate == pytest.approx(0.6)
    assert totals.rates.mean_delivery_latency_ms == pytest.approx(500 / 3)
    # The process's own counters: every record once.
    m = analytics.metric
    assert m("analytics_events_total", tenant=t, category="billing") == 2
    assert m("analytics_needs_review_total", tenant=t, category="billing") == 1
    assert m("analytics_fallback_total", tenant=t, category="billing") == 1
    assert m("analytics_cache_hits_total", tenant=t, category="technical") == 1
    assert m("analytics_confidence_count", tenant=t, category="technical") == 2
    assert m("analytics_confidence_bucket", tenant=t, category="technical", le="0.8") == 1
    for category in ("billing", "technical", "account"):
        assert m("analytics_auto_resolved_total", tenant=t, category=category) == 1
    assert m("analytics_deliveries_total", tenant=t, status="delivered") == 4
    assert m("analytics_deliveries_total", tenant=t, status="failed") == 1
    assert m("analytics_deliveries_total", tenant=t, status="gone") == 1
    assert m("analytics_delivery_latency_seconds_count", tenant=t) == 4
    assert m("analytics_delivery_latency_seconds_sum", tenant=t) == pytest.approx(0.55)
    assert m("analytics_undecodable_total", topic=analytics.delivered) == 1


def bump(histogram: list[int], *buckets: int) -> list[int]:
    out = list(histogram)
    for bucket in buckets:
        out[bucket] += 1
    return out


def dumped(expected: tuple[dict[str, CategoryFigures], DeliveryFigures]) -> tuple[dict[str, Any], dict[str, Any]]:
    return {c: f.model_dump() for c, f in sorted(expected[0].items())}, expected[1].model_dump()


def traffic(tenant: str, first: int, last: int, rng: random.Random) -> list[EventInferred | NotificationDelivered]:
    """Results over 20 subjects and ten minutes, some answered twice (a replay through the fallback), most with
    receipts: delivered, failed then delivered, gone. Confidences in eighths and whole latencies: their sums are
    exact in any order, so the served windows must equal the recount to the last bit."""
    events: list[EventInferred | NotificationDelivered] = []
    for n in range(first, last):
        event_id, subject = f"e-{n:04d}", f"subject-{n % 20}"
        seconds = rng.uniform(0, 600)
        label = rng.choice(["billing", "technical", "account", "shipping"])
        model = {"name": "keywords", "version": "r"} if n % 7 == 0 else {"name": "minilm-triage", "version": "v"}
        answer = dict(subject=subject, needs_review=rng.random() < 0.3, cached=n % 5 == 0, model=model)
        events.append(result(tenant, event_id, seconds, label, rng.randint(1, 8) / 8, **answer))
        if n % 11 == 0:
            events.append(result(tenant, event_id, seconds + 1, label, 0.5, subject=subject, model=model))
        outcome = rng.random()
        if outcome < 0.6:
            events.append(receipt(tenant, event_id, seconds + 2, "delivered", rng.randint(5, 500), subject))
        elif outcome < 0.8:
            events.append(receipt(tenant, event_id, seconds + 2, "failed", rng.randint(5, 500), subject))
            events.append(receipt(tenant, event_id, seconds + 40, "delivered", rng.randint(5, 500), subject))
        elif outcome < 0.9:
            events.append(receipt(tenant, event_id, seconds + 2, "gone", rng.randint(5, 500), subject))
    return events


def recounted(kafka: KafkaConnection, worker: Analytics) -> dict[tuple[str, str, int], Any]:
    """Every window straight from the topics (read_committed, each partition in offset order), without the worker."""
    results = [
        worker.codec.decode_value(worker.inferred, m.value(), event_type=EventInferred)
        for m in sorted(read(kafka, worker.inferred), key=lambda m: (m.partition(), m.offset()))
    ]
    receipts = []
    for m in sorted(read(kafka, worker.delivered), key=lambda m: (m.partition(), m.offset())):
        receipts.append(worker.codec.decode_value(worker.delivered, m.value(), event_type=NotificationDelivered))
    windows = recount(
        [r for r in results if isinstance(r, EventInferred)],
        [r for r in receipts if isinstance(r, NotificationDelivered)],
        AnalyticsSettings().fallback_model,
    )
    return {key: comparable(stats) for key, stats in windows.items() if key[0] == worker.tenant}


def test_after_a_kill_9_and_a_restart_the_windows_equal_a_recount_from_the_topics(
    analytics: Analytics, kafka: KafkaConnection
) -> None:
    rng = random.Random(22)
    analytics.send(traffic(analytics.tenant, 0, 300, rng))
    # Kill it under way: some windows written, more records (and their table writes and snapshots) in flight.
    deadline = time.monotonic() + 60
    while sum(c.events for s in analytics.stats("1h") for c in s.categories.values()) < 40:
        assert time.monotonic() < deadline, tail(analytics)
        time.sleep(0.05)
    analytics.kill()
    analytics.send(traffic(analytics.tenant, 300, 450, rng))
    analytics.start()
    analytics.settle()
    expected = recounted(kafka, analytics)
    assert sum(len(c) for c, _ in expected.values()) > 0
    found = analytics.windows()
    assert found == expected, {k: (v, found.get(k)) for k, v in expected.items() if found.get(k) != v}
