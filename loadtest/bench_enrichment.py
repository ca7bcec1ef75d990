"""Enrichment throughput: the worker (exactly-once, tables in memory, then on disk) against a bare confluent-kafka
consume→decode→encode→produce loop on the same data, in one run.

All read the same pre-filled topic (12 partitions, EventReceived in Avro with realistic texts, some PII, 500
subjects) and write every record once more. The bare loop decodes and re-encodes each value with the shared
serde and nothing else; the worker cleans, redacts, joins its profile table and counts per-subject activity
(a changelog write per subject per batch, in its transactions). Throughput is records over the span between the
first and the last output record's timestamp, so no process's start-up (the group join) counts.

Needs the stack (`make up`: Kafka and the registry). Prints JSON with the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

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


def bare_loop(settings: PipelineSettings, source: str, out: str, total: int) -> None:
    """Consume, decode, re-encode and produce every record with confluent-kafka (the runtime's client); commit once
    everything is acknowledged."""
    serde = EventCodec.from_settings(settings).serde
    kafka = settings.kafka
    consumer = Consumer(
        kafka.consumer_config(f"bench-bare-{uuid.uuid4().hex[:6]}", **{"enable.auto.offset.store": True})
    )
    producer = Producer(kafka.producer_config(**{"linger.ms": 5}))
    consumer.subscribe([source])
    done = 0
    while done < total:
        for msg in consumer.consume(500, 0.1):
            if msg.error():
                continue
            record = serde.decode(source, msg.value(), msg.partition(), msg.offset(), schema_name="EventReceived")
            value = serde.encode(out, record, schema_name="EventReceived")
            while True:
                try:
                    producer.produce(out, value=value, key=msg.key(), headers=msg.headers())
                    break
                except BufferError:
                    producer.poll(0.05)
            done += 1
        producer.poll(0)
    producer.flush(60)
    consumer.commit(asynchronous=False)
    consumer.close()


def run_worker(settings: PipelineSettings, source: str, out: str, name: str, store: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ENRICHMENT_RUNTIME__STATE__STORE": store,
        "PIPELINE_STATE_DIR": f"/tmp/{name}",
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
    bare_loop(settings, source, out_bare, args.records)
    bare_rate = args.records / span_of(kafka, out_bare, args.records, 60)
    rates: dict[str, float] = {}
    topics = [source, out_bare]
    for store in ("memory", "disk"):
        name, out = f"bench-enrichment-{store}-{run_id}", f"{out_worker}-{store}"
        bootstrap_topics(kafka, [TopicSpec(out, PARTITIONS, "k", None)])
        worker = run_worker(settings, source, out, name, store)
        try:
            rates[store] = args.records / span_of(kafka, out, args.records, 600)
        finally:
            worker.terminate()
            worker.wait(60)
        topics += [out, f"{name}-profiles", f"{name}.activity.changelog", f"{name}.seen.changelog"] + [
            s.name for s in service_topics(name)
        ]
    kafka.admin().delete_topics(topics)
    print(
        json.dumps(
            {
                "benchmark": "enrichment",
                "records": args.records,
                "partitions": PARTITIONS,
                "bare_confluent_records_per_s": round(bare_rate),
                "enrichment_memory_records_per_s": round(rates["memory"]),
                "enrichment_disk_records_per_s": round(rates["disk"]),
                "ratio_memory": round(rates["memory"] / bare_rate, 3),
                "ratio_disk": round(rates["disk"] / bare_rate, 3),
                "goal": 0.5,
                "floor": 0.35,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
