"""DLQ replay throughput against a bare consume→produce copy loop over the same records, in the same run.

- **records**: ``--records`` dead letters (default 50,000) in a 12-partition DLQ of a bench service, each with
  the key, a ~400-byte value and the headers (original and ``dlq.*``) the runtime's router writes.
- **bare loop**: one confluent-kafka consumer reading the DLQ from the start and one idempotent producer
  writing every record (key, value, headers) to a copy topic, flushed at the end. No filter, no ledger.
- **replay**: ``shared.replay`` as the CLI runs it: ``plan`` (a scan with a filter that selects everything) and
  ``execute`` (records read again, ``dlq.*`` headers dropped and ``replay.*`` added, written to
  ``<service>.replay`` with a ledger entry each, in transactions of 500), with a ledger of the run's own (the
  first pass finds it empty, the second finds the first's 50,000 entries). ``--force`` on every pass after
  the first, so each pass writes the same.

Passes alternate and each side's best counts. Needs the stack (``make up``). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from shared.codec import EventCodec
from shared.kafka import KafkaConnection, bootstrap_topics, end_offsets
from shared.replay.operations import ReplayOptions, ReplayTopics, execute, plan
from shared.replay.records import DlqFilter
from shared.settings import PipelineSettings
from shared.topics import TopicSpec, dlq_topic, replay_topic

PARTITIONS = 12


def fill(kafka: KafkaConnection, topic: str, total: int) -> None:
    producer = Producer(kafka.producer_config(**{"linger.ms": 20, "compression.type": "lz4"}))
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_type", b"ticket.created.enriched"),
        ("ce_tenant", b"acme"),
        ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("dlq.original.topic", b"events.enriched.v1"),
        ("dlq.original.partition", b"3"),
        ("dlq.service", b"inference"),
        ("dlq.error.category", b"dependency"),
        ("dlq.error.type", b"RetryableError"),
        ("dlq.error.message", b"CRM credential expired"),
        ("dlq.stacktrace", b"Traceback (most recent call last):\n" * 20),
        ("dlq.attempts", b"4"),
    ]
    value = os.urandom(400)
    for i in range(total):
        producer.produce(
            topic,
            value,
            f"acme:customer-{i % 5000}".encode(),
            headers=[*headers, ("ce_id", f"e-{i}".encode()), ("dlq.original.offset", str(i).encode())],
        )
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0


def bare_copy(kafka: KafkaConnection, source: str, target: str, total: int) -> float:
    started = time.perf_counter()
    consumer = Consumer(
        kafka.consumer_config(
            f"bench-copy-{uuid.uuid4().hex}", **{"enable.auto.commit": False, "enable.partition.eof": True}
        )
    )
    consumer.assign([TopicPartition(source, p, 0) for p in range(PARTITIONS)])
    producer = Producer(kafka.producer_config(**{"linger.ms": 20}))
    copied, ended = 0, 0
    while copied < total and ended < PARTITIONS:
        for msg in consumer.consume(1000, 1.0):
            error = msg.error()
            if error is not None:
                ended += error.code() == KafkaError._PARTITION_EOF
                continue
            while True:
                try:
                    producer.produce(target, msg.value(), msg.key(), headers=msg.headers())
                    break
                except BufferError:
                    producer.poll(0.05)
            copied += 1
        producer.poll(0)
    assert producer.flush(120) == 0
    consumer.close()
    return copied / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    settings = PipelineSettings()
    kafka = settings.kafka
    codec = EventCodec.from_settings(settings)
    service = f"bench-replay-{uuid.uuid4().hex[:6]}"
    source, copy = dlq_topic(service), f"{service}.copy"
    # A ledger and an audit topic of the run's own: the ledger is read whole by every replay, and the shared
    # one holds every earlier run's entries.
    topics = ReplayTopics(ledger=f"{service}.ledger", audit=f"{service}.audit")
    bootstrap_topics(
        kafka,
        [TopicSpec(t, PARTITIONS, "k", None) for t in (source, replay_topic(service), copy)]
        + [
            TopicSpec(topics.ledger, 1, "dlq-topic/partition/offset", None, compacted=True),
            TopicSpec(topics.audit, 1, "replay id", None),
        ],
    )
    fill(kafka, source, args.records)
    total = sum(end_offsets(kafka, [source])[source].values())
    bare, replay, execute_only = [], [], []
    for n in range(args.repeats):
        bare.append(bare_copy(kafka, source, copy, total))
        started = time.perf_counter()
        chosen = plan(kafka, service, DlqFilter(category=["dependency"]))
        planned = time.perf_counter()
        result = execute(kafka, codec, chosen, ReplayOptions(requested_by="bench", force=n > 0), topics)
        finished = time.perf_counter()
        assert result.outcome == "done" and result.replayed == total, result
        replay.append(total / (finished - started))
        execute_only.append(total / (finished - planned))
    report: dict[str, Any] = {
        "bench": "replay",
        "records": total,
        "bare_copy_per_s": [round(r) for r in bare],
        "replay_per_s": [round(r) for r in replay],
        "replay_execute_only_per_s": [round(r) for r in execute_only],
        "ratio_replay_over_bare": round(max(replay) / max(bare), 3),
        "ratio_execute_over_bare": round(max(execute_only) / max(bare), 3),
        "aim": 0.5,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
