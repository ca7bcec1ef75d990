"""Pipelined handlers: throughput with fixed off-thread work per batch at max_inflight_batches 1, 2 and 4.

The handler hands each batch to a worker thread that sleeps a fixed time (standing in for a GPU kernel
that releases the GIL) and returns a Future, as the inference service does. With one batch in flight the
runtime waits for each; with more, the next batches are decoded and submitted while earlier ones run.
Runs against the stack (`make up`); prints JSON with ratios against max_inflight_batches=1 of the same run.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from loadtest.harness import fill, run_until_committed
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.runtime import Output, PartitionBatch, RecordResult, Runtime, RuntimeSettings
from shared.settings import PipelineSettings
from shared.topics import TopicSpec, service_topics

PARTITIONS = 6


def run(kafka: KafkaConnection, source: str, out: str, total: int, inflight: int, work_ms: float, batch: int) -> float:
    service = f"bench-pipe-{inflight}-{uuid.uuid4().hex[:6]}"
    bootstrap_topics(kafka, service_topics(service, 1))
    pool = ThreadPoolExecutor(max(1, inflight))
    first: list[float] = []

    def work(batches: Sequence[PartitionBatch]) -> Sequence[RecordResult]:
        time.sleep(work_ms / 1000)  # the "model": fixed time per batch, off the runtime's thread
        return [[Output(out, r.value, r.key)] for b in batches for r in b.records]

    def handle(batches: Sequence[PartitionBatch]) -> Future[Sequence[RecordResult]]:
        if not first:
            first.append(time.perf_counter())
        return pool.submit(work, batches)

    settings = RuntimeSettings(
        max_batch_size=batch, max_wait_ms=5, commit_interval_ms=200, max_inflight_batches=inflight
    )
    done = run_until_committed(Runtime(service, kafka, [source], handle, settings), kafka, source, PARTITIONS, total)
    pool.shutdown()
    return done - first[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--work-ms", type=float, default=20.0, help="Off-thread work per batch.")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    kafka = PipelineSettings().kafka.for_client("bench-pipeline")
    run_id = uuid.uuid4().hex[:6]
    source = f"bench-pipe-in-{run_id}"
    created = [source]
    bootstrap_topics(kafka, [TopicSpec(source, PARTITIONS, "k", None)])
    fill(kafka, source, args.records, lambda i: b"x" * 200)
    best: dict[int, float] = {1: 0.0, 2: 0.0, 4: 0.0}
    try:
        for round_no in range(args.rounds):
            for inflight in best:
                out = f"bench-pipe-out-{inflight}-{run_id}-{round_no}"
                created.append(out)
                bootstrap_topics(kafka, [TopicSpec(out, PARTITIONS, "k", None)])
                seconds = run(kafka, source, out, args.records, inflight, args.work_ms, args.batch)
                best[inflight] = max(best[inflight], args.records / seconds)
    finally:
        kafka.admin().delete_topics(created)
    ideal = 1000 / args.work_ms * args.batch
    print(
        json.dumps(
            {
                "benchmark": "pipelined handler",
                "records": args.records,
                "batch": args.batch,
                "work_ms_per_batch": args.work_ms,
                "rounds": args.rounds,
                "records_per_s": {f"max_inflight_batches={k}": round(v) for k, v in best.items()},
                "ratio_vs_inflight_1": {f"max_inflight_batches={k}": round(v / best[1], 3) for k, v in best.items()},
                "serial_model_bound_records_per_s": round(ideal),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
