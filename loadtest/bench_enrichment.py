"""Enrichment throughput: the faust worker against a bare aiokafka consume→produce loop on the same data.

Both read the same pre-filled topic (12 partitions, EventReceived in Avro with realistic texts, some PII, 500
subjects) and write every record once more. The bare loop decodes and re-encodes each value with the shared
serde and nothing else; the worker cleans, redacts, joins its profile table and counts per-subject activity
(one changelog write per event). Throughput is records over the span between the first and the last output
record's timestamp, so neither process's start-up (faust's boot, the group join) counts.

Needs the stack (`make up`: Kafka and the registry). Prints JSON with the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, TopicPartition

from loadtest.harness import fill
from shared.codec import EventCodec
from shared.events import EventReceived
from shared.kafka import KafkaConnection, bootstrap_topics, end_offsets
from shared.settings import REPO_ROOT, PipelineSettings
from shared.topics import TopicSpec, service_topics
from tests.support.factories import make_event_received

PARTITIONS = 12
TEXTS = [
    "Hi, I was charged twice for order 88123, card 4111 1111 1111 1111. Please refund. Thanks, Ann (ann@example.com)",
    "<p>The export button returns a <b>500 error</b> since this morning.</p> Call me on +44 20 7946 0958.",
    "Cannot log in after the password reset; the 2FA code never arrives. My IP is 192.168.10.4.",
    "Where is my parcel? Tracking says delivered but nothing here. Order 55012.",
]


def span_of(kafka: KafkaConnection, topic: str, total: int, timeout_s: float) -> float:
    """Wait until ``topic`` holds ``total`` records; return the seconds between its first and last timestamps."""
    first, last = stamps_of(kafka, topic, total, timeout_s)
    return last - first


def stamps_of(kafka: KafkaConnection, topic: str, total: int, timeout_s: float) -> tuple[float, float]:
    """Wait until ``topic`` holds ``total`` records; return its first and last record timestamps (seconds)."""
    deadline = time.monotonic() + timeout_s

    def held() -> int:
        return sum(end_offsets(kafka, [topic]).get(topic, {}).values())

    while held() < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic}: {held()} of {total} records")
        time.sleep(0.5)
    consumer = Consumer(kafka.consumer_config(f"bench-span-{uuid.uuid4().hex}"))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    first, last, seen = float("inf"), 0.0, 0
    while seen < total:
        for msg in consumer.consume(1000, 1.0):
            if msg.error() is None:
                stamp = msg.timestamp()[1] / 1000
                first, last, seen = min(first, stamp), max(last, stamp), seen + 1
    consumer.close()
    return first, last


async def bare_loop(settings: PipelineSettings, source: str, out: str, total: int) -> None:
    """Consume, decode, re-encode and produce every record; commit after each batch's sends are acknowledged."""
    codec = EventCodec.from_settings(settings)
    servers = settings.kafka.bootstrap_servers
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=servers,
        group_id=f"bench-bare-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True, linger_ms=5)
    await consumer.start()
    await producer.start()
    done = 0
    try:
        while done < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            futures = []
            for records in batches.values():
                for msg in records:
                    event: Any = codec.decode_value(source, msg.value, msg.partition, msg.offset, EventReceived)
                    value = codec.serde.encode(out, event.to_avro(), "EventReceived")
                    futures.append(await producer.send(out, value, key=msg.key, headers=list(msg.headers)))
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
                done += len(futures)
    finally:
        await consumer.stop()
        await producer.stop()


def run_worker(settings: PipelineSettings, source: str, out: str, name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ENRICHMENT_NAME": name,
        "ENRICHMENT_PORT": "0",
        "ENRICHMENT_INPUT_TOPIC": source,
        "ENRICHMENT_OUTPUT_TOPIC": out,
        "ENRICHMENT_PROFILES_TOPIC": f"{name}-profiles",
        "PIPELINE_LOG_LEVEL": "WARNING",
    }
    bootstrap_topics(
        settings.kafka, [TopicSpec(f"{name}-profiles", PARTITIONS, "k", None, compacted=True), *service_topics(name)]
    )
    return subprocess.Popen(
        [sys.executable, "-m", "services.enrichment.app"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    settings = PipelineSettings()
    kafka = settings.kafka
    run_id = uuid.uuid4().hex[:6]
    source, out_bare, out_worker = (f"bench-enr-{n}-{run_id}" for n in ("in", "bare", "worker"))
    bootstrap_topics(kafka, [TopicSpec(t, PARTITIONS, "k", None) for t in (source, out_bare, out_worker)])
    codec = EventCodec.from_settings(settings)

    def value_of(i: int) -> bytes:
        event = EventReceived.model_validate(
            make_event_received(event_id=f"b-{i}", subject=f"c{i % 500}", text=TEXTS[i % len(TEXTS)])
        )
        return codec.encode(event, topic=source).value or b""

    fill(kafka, source, args.records, value_of)
    asyncio.run(bare_loop(settings, source, out_bare, args.records))
    bare_span = span_of(kafka, out_bare, args.records, 60)
    name = f"bench-enrichment-{run_id}"
    worker = run_worker(settings, source, out_worker, name)
    try:
        worker_span = span_of(kafka, out_worker, args.records, 600)
    finally:
        worker.terminate()
        worker.wait(60)
    topics = [source, out_bare, out_worker, f"{name}-profiles", f"{name}-profiles-changelog"]
    topics += [f"{name}-activity-changelog"] + [spec.name for spec in service_topics(name)]
    kafka.admin().delete_topics(topics)
    bare_rate, worker_rate = args.records / bare_span, args.records / worker_span
    print(
        json.dumps(
            {
                "benchmark": "enrichment",
                "records": args.records,
                "partitions": PARTITIONS,
                "bare_aiokafka_records_per_s": round(bare_rate),
                "enrichment_records_per_s": round(worker_rate),
                "ratio": round(worker_rate / bare_rate, 3),
                "goal": 0.5,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
