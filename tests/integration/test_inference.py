"""The inference worker as its own process over the real broker, Redis and registry: exactly one result per
event (read_committed, stock AvroDeserializer), also across a kill -9; poison records to the DLQ; the cache;
no second result on a replay; the breaker's fallback; readiness while the model loads."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from services.status.adapters.store import StatusStore
from services.status.domain import Topics, update_for
from shared.codec import EventCodec
from shared.events import EventEnriched, EventInferred
from shared.headers import CE_ID, DLQ_ERROR_CATEGORY, DLQ_ERROR_MESSAGE
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.runtime.processing import read_headers
from shared.settings import REPO_ROOT
from shared.topics import TopicSpec, dlq_topic, replay_topic, service_topics
from tests.integration.test_enrichment import read_dlq
from tests.plugins import POISON
from tests.support.factories import make_event_enriched
from tests.support.processes import Process, free_port, spawn, wait_http_ready
from tests.support.workers import platform_env, running
from tools.training import DATA
from tools.training.evaluate import load_tickets

TEXTS = [t["text"] for t in load_tickets(DATA / "train.jsonl")]


@dataclass
class Inference:
    """A worker over its own topics, a producer of enriched events and a read_committed reader of results."""

    name: str
    enriched: str
    inferred: str
    codec: EventCodec
    deserializer: AvroDeserializer
    producer: Producer
    reader: Consumer
    tenant: str
    env: dict[str, str]
    logs: Path
    process: Process | None = None
    port: int = 0
    mirror: str = ""  # its JSON mirror of the results (tests/integration/test_json_mirror.py reads it)

    def start(self, ready: bool = True, **env: str) -> Process:
        """Start the worker (again: same name and instance, so it fences its predecessor's transactions)."""
        self.port = free_port()
        self.process = spawn(
            [sys.executable, "-m", "services.inference.app"],
            self.logs / "worker.log",
            env={
                "INFERENCE_NAME": self.name,
                "INFERENCE_PORT": str(self.port),
                "INFERENCE_INPUT_TOPIC": self.enriched,
                "INFERENCE_OUTPUT_TOPIC": self.inferred,
                "INFERENCE_DTYPE": "float32",
                "INFERENCE_RUNTIME__RETRY_DELAYS_MS": "[200, 400, 800]",
                "INFERENCE_RUNTIME__COMMIT_INTERVAL_MS": "100",
                "PIPELINE_STATE_DIR": str(self.logs / "state"),
                **self.env,
                **env,
            },
        )
        path = "readyz" if ready else "healthz"
        wait_http_ready(f"http://127.0.0.1:{self.port}/{path}", self.process, timeout=120)
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def event(self, n: int, text: str | None = None, **overrides: Any) -> EventEnriched:
        fields = make_event_enriched(
            tenant=self.tenant,
            subject=f"customer-{n % 37}",
            event_id=f"e-{n:05d}",
            text=text if text is not None else f"{TEXTS[n % len(TEXTS)]} (ref {n})",
            callback_url=f"https://hooks.example/{n}",
        )
        return EventEnriched.model_validate({**fields, **overrides})

    def send(self, events: list[EventEnriched], topic: str | None = None) -> None:
        for event in events:
            record = self.codec.encode(event, topic=self.enriched)
            self.producer.produce(topic or self.enriched, record.value, record.key, headers=list(record.headers))
        assert self.producer.flush(30) == 0

    def results(self, wanted: set[str], timeout: float = 180.0, grace: float = 3.0) -> list[dict[str, Any]]:
        """Committed results, decoded by the stock deserializer, until every wanted id came and ``grace``
        seconds passed without another (repeats included): the caller judges."""
        found: list[dict[str, Any]] = []
        missing = set(wanted)
        deadline = time.monotonic() + timeout
        quiet_until: float | None = None
        while time.monotonic() < (quiet_until or deadline):
            msg = self.reader.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            found.append(self.decode(msg))
            missing.discard(found[-1]["event_id"])
            if not missing:
                quiet_until = time.monotonic() + grace
        return found

    def decode(self, msg: Message) -> dict[str, Any]:
        value: Any = self.deserializer(msg.value(), SerializationContext(msg.topic() or "", MessageField.VALUE))
        return dict(value)


@contextmanager
def inference_worker(
    kafka: KafkaConnection, registry_url: str, redis_url: str, logs: Path, start: bool = True, **env: str
) -> Iterator[Inference]:
    """Topics of its own (12 partitions, like production), a worker process, and the clients to drive it."""
    suffix = uuid.uuid4().hex[:8]
    name = f"inference-{suffix}"
    enriched, inferred, mirror = f"enr-{suffix}", f"inf-{suffix}", f"inf-json-{suffix}"
    bootstrap_topics(
        kafka, [TopicSpec(t, 12, "tenant:subject", None) for t in (enriched, inferred, mirror)] + service_topics(name)
    )
    codec = EventCodec.connect(registry_url, REPO_ROOT / "schemas")
    reader = Consumer(kafka.consumer_config(f"reader-{suffix}", **{"isolation.level": "read_committed"}))
    reader.subscribe([inferred])
    worker = Inference(
        name,
        enriched,
        inferred,
        codec,
        AvroDeserializer(SchemaRegistryClient({"url": registry_url})),
        Producer(kafka.producer_config()),
        reader,
        f"acme-{suffix}",
        {**platform_env(kafka, registry_url, redis_url), "INFERENCE_JSON_MIRROR_TOPIC": mirror, **env},
        logs,
        mirror=mirror,
    )
    with running(worker, logs / "worker.log", start) as started:
        yield started


@pytest.fixture(scope="module")
def inference(
    kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Inference]:
    with inference_worker(kafka, registry_url, redis_url, tmp_path_factory.mktemp("inference")) as worker:
        yield worker


def assert_exactly_one_each(results: list[dict[str, Any]], ids: set[str]) -> None:
    counts = Counter(r["event_id"] for r in results)
    assert set(counts) == ids, f"missing {sorted(ids - set(counts))[:10]}, unexpected {sorted(set(counts) - ids)[:10]}"
    repeated = {i: n for i, n in counts.items() if n > 1}
    assert not repeated, f"{len(repeated)} events have more than one result: {list(repeated.items())[:10]}"


def test_2000_events_get_exactly_one_result_each_with_every_field(inference: Inference) -> None:
    events = [inference.event(n) for n in range(2000)]
    inference.send(events)
    results = inference.results({e.event_id for e in events})
    assert_exactly_one_each(results, {e.event_id for e in events})
    by_id = {r["event_id"]: r for r in results}
    for event in events[:50]:
        result = by_id[event.event_id]
        assert result["source"] == event.source and result["callback_url"] == event.callback_url
        assert result["model"]["name"] == "minilm-triage" and len(result["model"]["version"]) == 12
        assert result["category"]["label"] in result["category"]["scores"]
        assert abs(sum(result["category"]["scores"].values()) - 1) < 1e-3
        assert set(result["priority"]["scores"]) == {"low", "normal", "high", "urgent"}
        assert result["needs_review"] == (result["category"]["confidence"] < 0.5)
        assert result["cached"] is False and result["latency_ms"] > 0
    # The model reads the text: a sample of the training tickets comes out with its own category.
    labels = {t["text"]: t["category"] for t in load_tickets(DATA / "train.jsonl")}
    agree = [by_id[e.event_id]["category"]["label"] == labels[TEXTS[n % len(TEXTS)]] for n, e in enumerate(events)]
    assert sum(agree) / len(agree) > 0.8


def test_a_kill_9_mid_run_still_gives_exactly_one_result_per_event(
    kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path: Path
) -> None:
    # The model is not what this checks: the keyword model, at a CPU model's pace.
    with inference_worker(
        kafka, registry_url, redis_url, tmp_path, INFERENCE_MODEL="tests.plugins:slow_keywords"
    ) as worker:
        events = [worker.event(n) for n in range(2000)]
        worker.send(events[:1000])
        seen: list[dict[str, Any]] = []
        while len(seen) < 300:  # under way: some results committed, more in flight
            msg = worker.reader.poll(0.2)
            if msg is not None and msg.error() is None:
                seen.append(worker.decode(msg))
        assert worker.process is not None
        os.kill(worker.process.popen.pid, signal.SIGKILL)
        worker.process.popen.wait(30)
        worker.send(events[1000:])
        worker.start()
        ids = {e.event_id for e in events}
        seen += worker.results(ids - {r["event_id"] for r in seen})
    assert_exactly_one_each(seen, ids)


def test_records_that_break_the_model_go_to_the_dlq_and_no_other_is_lost(
    kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path: Path
) -> None:
    with inference_worker(kafka, registry_url, redis_url, tmp_path, INFERENCE_MODEL="tests.plugins:poisoned") as w:
        events = [w.event(n, text=f"{POISON} {n}" if n % 10 == 3 else None) for n in range(60)]
        w.send(events)
        w.producer.produce(w.enriched, b"\x00\x00\x00\x00\x07not avro", f"{w.tenant}:x".encode())
        assert w.producer.flush(30) == 0
        good = {e.event_id for e in events if POISON not in e.text}
        results = w.results(good)
        assert_exactly_one_each(results, good)
        dead = read_dlq(kafka, dlq_topic(w.name), 7)
    headers: list[Any] = [dict(m.headers() or []) for m in dead]
    model_failures = sorted(h[CE_ID].decode() for h in headers if h[DLQ_ERROR_CATEGORY] == b"model")
    assert model_failures == sorted(e.event_id for e in events if POISON in e.text)
    assert [h[DLQ_ERROR_CATEGORY] for h in headers].count(b"deserialization") == 1
    for h in headers:
        if h[DLQ_ERROR_CATEGORY] == b"model":
            assert b"this input breaks the model" in h[DLQ_ERROR_MESSAGE]


def test_a_repeated_text_is_answered_from_the_cache(inference: Inference) -> None:
    first = inference.event(90_001, text="My invoice shows a double charge for March, please refund one.")
    inference.send([first])
    [answer] = inference.results({first.event_id}, grace=0)
    second = inference.event(90_002, text="My  invoice shows a double charge for March, please refund one.")
    inference.send([second])
    [cached] = inference.results({second.event_id}, grace=0)
    assert (answer["cached"], cached["cached"]) == (False, True)
    assert cached["category"] == answer["category"] and cached["model"] == answer["model"]
    metrics = httpx.get(f"http://127.0.0.1:{inference.port}/metrics").text
    assert 'inference_cache_lookups_total{result="hit",service="' in metrics


def test_a_replay_of_an_answered_event_adds_no_second_result(inference: Inference, redis_url: str) -> None:
    event = inference.event(90_100)
    inference.send([event])
    msg = None
    while msg is None:
        polled = inference.reader.poll(0.5)
        if polled is not None and polled.error() is None:
            msg = polled
    # The status consumer's projection of that committed result, applied by its own code.
    result = inference.codec.decode(inference.inferred, msg.value(), event_type=EventInferred).event
    update = update_for(
        Topics({inference.inferred: "inferred"}, {}),
        inference.inferred,
        msg.partition() or 0,
        msg.offset() or 0,
        read_headers(msg),
        0,
        result,
    )
    assert update is not None
    StatusStore(redis.Redis.from_url(redis_url), 3600).apply([update])
    inference.send([event], topic=replay_topic(inference.name))
    later = inference.event(90_101)
    inference.send([later])
    results = inference.results({later.event_id})
    assert [r["event_id"] for r in results] == [later.event_id]


def test_a_broken_device_trips_the_breaker_and_the_fallback_answers(
    kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path: Path
) -> None:
    with inference_worker(
        kafka,
        registry_url,
        redis_url,
        tmp_path,
        INFERENCE_MODEL="tests.plugins:broken_device",
        INFERENCE_BREAKER_FAILURES="1",
    ) as worker:
        events = [worker.event(n) for n in range(30)]
        worker.send(events)
        results = worker.results({e.event_id for e in events})
        metrics = httpx.get(f"http://127.0.0.1:{worker.port}/metrics").text
    assert_exactly_one_each(results, {e.event_id for e in events})
    assert {r["model"]["name"] for r in results} == {"keywords"}
    assert f'inference_breaker_state{{service="{worker.name}"}} 1.0' in metrics


def test_readiness_is_503_until_the_model_has_loaded(
    kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with inference_worker(
        kafka, registry_url, redis_url, tmp_path, start=False, INFERENCE_MODEL="tests.plugins:gated"
    ) as worker:
        worker.start(ready=False, TEST_MODEL_GATE=str(gate))
        ready = httpx.get(f"http://127.0.0.1:{worker.port}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"]["model"] == {"ok": False, "error": "RuntimeError: model not loaded yet"} | {
            "ms": ready.json()["checks"]["model"]["ms"]
        }
        gate.touch()
        assert worker.process is not None
        wait_http_ready(f"http://127.0.0.1:{worker.port}/readyz", worker.process, timeout=60)
        event = worker.event(1)
        worker.send([event])
        [result] = worker.results({event.event_id}, grace=0)
        assert result["model"]["name"] == "keywords"
