"""Runtime throughput: exactly-once and at-least-once against a bare confluent-kafka consume->produce loop.

All three decode and re-encode the same Avro records (EventReceived) with the shared serde, on the
running stack (`make up`), in one run, so the ratios hold on a noisy shared machine. Prints JSON.
Each mode gets fresh output topics and consumer groups, and the best of --rounds runs counts; the clock
starts at the first record consumed and stops when every input is processed and committed (runtime) or
acknowledged (bare loop).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer, Producer

from loadtest.harness import fill, run_until_committed
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.runtime import Output, PartitionBatch, Runtime, RuntimeSettings
from shared.serde import AvroSerde
from shared.settings import PipelineSettings
from shared.topics import TopicSpec, service_topics
from tests.support.factories import make_event_received

PARTITIONS = 6


def bare_loop(kafka: KafkaConnection, serde: AvroSerde, source: str, out: str, total: int) -> float:
    consumer = Consumer(
        kafka.consumer_config(f"bench-bare-{uuid.uuid4().hex[:6]}", **{"enable.auto.offset.store": True})
    )
    producer = Producer(kafka.producer_config())
    consumer.subscribe([source])
    done = 0
    started: float | None = None
    while done < total:
        for msg in consumer.consume(500, 0.1):
            if msg.error():
                continue
            started = started or time.perf_counter()
            record = serde.decode(source, msg.value(), msg.partition(), msg.offset(), schema_name="EventReceived")
            value = serde.encode(out, record, schema_name="EventReceived")
            while True:
                try:
                    producer.produce(out, value=value, key=msg.key())
                    break
                except BufferError:
                    producer.poll(0.05)
            done += 1
        producer.poll(0)
    producer.flush(60)
    consumer.commit(asynchronous=False)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return elapsed


def runtime_run(
    kafka: KafkaConnection, serde: AvroSerde, source: str, out: str, total: int, eos: bool, commit_interval_ms: int
) -> tuple[float, float]:
    """Seconds until every input is committed, and until the handler has answered for every input."""
    service = f"bench-{'eos' if eos else 'alo'}-{uuid.uuid4().hex[:6]}"
    bootstrap_topics(kafka, service_topics(service, 1))
    first: list[float] = []
    handled = [0, 0.0]

    def decode(topic: str, value: bytes | None, partition: int, offset: int) -> object:
        return serde.decode(topic, value, partition, offset, schema_name="EventReceived")

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        if not first:
            first.append(time.perf_counter())
        handled[0] += sum(len(b.records) for b in batches)
        if handled[0] >= total:
            handled[1] = time.perf_counter()
        return [
            [Output(out, serde.encode(out, r.payload, schema_name="EventReceived"), r.key)]
            for b in batches
            for r in b.records
        ]

    settings = RuntimeSettings(
        exactly_once=eos, max_batch_size=500, max_wait_ms=20, commit_interval_ms=commit_interval_ms
    )
    runtime = Runtime(service, kafka, [source], handle, settings, decode=decode)
    done = run_until_committed(runtime, kafka, source, PARTITIONS, total)
    return done - first[0], handled[1] - first[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=150_000)
    parser.add_argument("--rounds", type=int, default=3, help="Best of this many runs per mode.")
    args = parser.parse_args()
    settings = PipelineSettings()
    kafka = settings.kafka.for_client("bench-runtime")
    serde = AvroSerde.connect(settings.schema_registry_url, settings.schemas_dir)
    run_id = uuid.uuid4().hex[:6]
    source = f"bench-in-{run_id}"
    created = [source]
    bootstrap_topics(kafka, [TopicSpec(source, PARTITIONS, "k", None)])
    fill(
        kafka,
        source,
        args.records,
        lambda i: serde.encode(source, make_event_received(text=f"ticket {i}"), schema_name="EventReceived"),
    )
    # Mode name -> (exactly-once, commit interval); the bare loop commits once at the end.
    modes = {
        "exactly_once@200ms": (True, 200),
        "exactly_once@1000ms": (True, 1000),
        "at_least_once@200ms": (False, 200),
        "at_least_once@1000ms": (False, 1000),
    }
    best = {"bare": 0.0, **{mode: 0.0 for mode in modes}}
    best_handled = {mode: 0.0 for mode in modes}
    try:
        for round_no in range(args.rounds):
            for mode in best:
                out = f"bench-out-{mode.replace('@', '-')}-{run_id}-{round_no}"
                created.append(out)
                bootstrap_topics(kafka, [TopicSpec(out, PARTITIONS, "k", None)])
                if mode == "bare":
                    seconds = bare_loop(kafka, serde, source, out, args.records)
                else:
                    eos, interval = modes[mode]
                    seconds, handled_s = runtime_run(kafka, serde, source, out, args.records, eos, interval)
                    best_handled[mode] = max(best_handled[mode], args.records / handled_s)
                best[mode] = max(best[mode], args.records / seconds)
    finally:
        kafka.admin().delete_topics(created)
    report = {
        "benchmark": "runtime",
        "records": args.records,
        "rounds": args.rounds,
        "partitions": PARTITIONS,
        "records_per_s": {k: round(v) for k, v in best.items()},
        "ratios_vs_bare": {mode: round(best[mode] / best["bare"], 3) for mode in modes},
        # The same runs, clocked when the handler had answered for the last input: without the wait for the
        # last commit interval, which the bare loop (one commit at the end) does not pay.
        "handled_records_per_s": {k: round(v) for k, v in best_handled.items()},
        "handled_ratios_vs_bare": {mode: round(best_handled[mode] / best["bare"], 3) for mode in modes},
        "goal": {"exactly_once_vs_bare": 0.85, "at_least_once_vs_bare": 0.9},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
