"""Inference end to end through Kafka against the model alone, in the same run, on the same texts.

- **model alone**: ``tools.model_speed reference`` on the benchmark's texts, batched as the service batches
  them (merged batches of ``--batch-size``, the service's CPU default of 512, chunks of 32, heads included), same
  dtype (fp32: what ``INFERENCE_DTYPE=auto`` measures as faster on this CPU). Measured before, between and after
  the service's passes; the ratio takes the best service pass over the best model run, since this shared machine
  swings by tens of percent from minute to minute.
- **service**: the inference worker (``python -m services.inference.app``, exactly-once, its own topics, the
  result cache off so that every event meets the model) on a backlog of ``--events`` enriched events, written
  while it is already running: events/s from the first event's timestamp to the last result's. Then fresh events
  at a fixed arrival rate, 100% and 50% of that saturation, with latency from the moment an event is produced to
  the moment a ``read_committed`` reader receives its result (p50/p99).
- **sweep**: ``max_batch_size`` from 1 up: events/s on a backlog, and p99 at the 50% arrival rate of the default.
- **processes**: the backlog again with ``--processes`` N worker processes in one group (cores/N threads each).
- **baseline**: a consumer that handles one message at a time in fp32 (``model_speed naive``).

Texts are the committed training tickets, each with a unique reference number (no two alike). Needs the stack
(``make up``: Kafka, Redis, the registry). Prints JSON with the ratios and writes a PNG of the sweep to
``loadtest/results/`` (and ``--plot-copy``, e.g. ``docs/bench/``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer

from loadtest.bench_enrichment import stamps_of
from shared.codec import EventCodec
from shared.events import EventEnriched
from shared.headers import CE_ID
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.settings import REPO_ROOT, PipelineSettings
from shared.topics import TopicSpec, service_topics
from tests.support.factories import make_event_enriched

PARTITIONS = 12
RESULTS = REPO_ROOT / "loadtest" / "results"
Process = subprocess.Popen[bytes]
TRAINING = REPO_ROOT / "tools" / "training" / "data" / "train.jsonl"


def texts(count: int, offset: int) -> list[str]:
    tickets = [json.loads(line)["text"] for line in TRAINING.read_text().splitlines() if line]
    return [f"{tickets[i % len(tickets)]} (ref {offset + i})" for i in range(count)]


class Bench:
    def __init__(self, settings: PipelineSettings, run_id: str) -> None:
        self.settings = settings
        self.kafka: KafkaConnection = settings.kafka
        self.run_id = run_id
        self.codec = EventCodec.from_settings(settings)
        self.producer = Producer(self.kafka.producer_config(**{"linger.ms": "5"}))
        self.topics: list[str] = []
        self.next_id = 0

    def topic(self, role: str) -> str:
        name = f"bench-inf-{role}-{self.run_id}"
        bootstrap_topics(self.kafka, [TopicSpec(name, PARTITIONS, "tenant:subject", None)])
        self.topics.append(name)
        return name

    def record(self, topic: str, text: str) -> tuple[str, Any]:
        event_id = f"b-{self.next_id}"
        self.next_id += 1
        event = EventEnriched.model_validate(
            make_event_enriched(event_id=event_id, subject=f"c{self.next_id % 500}", text=text)
        )
        return event_id, self.codec.encode(event, topic=topic)

    def fill(self, topic: str, items: list[str]) -> None:
        for text in items:
            _, record = self.record(topic, text)
            self._produce(topic, record)
        self.producer.flush(60)

    def _produce(self, topic: str, record: Any) -> None:
        while True:
            try:
                self.producer.produce(topic, record.value, record.key, headers=list(record.headers))
                return
            except BufferError:
                self.producer.poll(0.05)

    def paced(self, source: str, out: str, rate: float, seconds: float) -> dict[str, float]:
        """Produce fresh events at ``rate``/s for ``seconds``; latency from produce to a read_committed receipt."""
        sent: dict[str, float] = {}
        received: dict[str, float] = {}
        reader = Consumer(self.kafka.consumer_config(f"bench-lat-{uuid.uuid4().hex}"))
        reader.subscribe([out])
        stop = threading.Event()

        got = [0]

        def read() -> None:
            while not (stop.is_set() and (got[0] >= len(sent) or time.monotonic() > deadline)):
                for msg in reader.consume(500, 0.1):
                    if msg.error() is not None:
                        continue
                    headers: Any = dict(msg.headers() or [])
                    event_id = headers[CE_ID].decode()
                    if event_id in sent and event_id not in received:  # earlier phases' results are skipped
                        received[event_id] = time.time()
                        got[0] += 1

        deadline = float("inf")
        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        items = texts(int(rate * seconds), self.next_id)
        started = time.monotonic()
        for i, text in enumerate(items):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            event_id, record = self.record(source, text)
            sent[event_id] = time.time()
            self._produce(source, record)
            self.producer.poll(0)
        self.producer.flush(30)
        deadline = time.monotonic() + 120
        stop.set()
        thread.join(130)
        reader.close()
        latencies = sorted((received[i] - t) * 1000 for i, t in sent.items() if i in received)
        if len(latencies) < len(sent):
            raise RuntimeError(f"{len(sent) - len(latencies)} of {len(sent)} events got no result")
        return {
            "rate": round(rate, 1),
            "events": len(sent),
            "p50_ms": round(latencies[len(latencies) // 2], 1),
            "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        }

    def service(self, source: str, out: str, batch: int, port: int, processes: int = 1) -> list[Process]:
        """``processes`` worker processes in one group (instances 0..N-1, ports port+10*i), once all are ready."""
        name = f"bench-inference-{self.run_id}-{batch}-{len(self.topics)}"
        bootstrap_topics(self.kafka, service_topics(name))
        self.topics += [spec.name for spec in service_topics(name)]
        procs = []
        for i in range(processes):
            env = {
                **os.environ,
                "INFERENCE_NAME": name,
                "INFERENCE_INSTANCE": str(i),
                "INFERENCE_PORT": str(port + 10 * i),
                "INFERENCE_PROCESSES": str(processes),
                "INFERENCE_INPUT_TOPIC": source,
                "INFERENCE_OUTPUT_TOPIC": out,
                "INFERENCE_DTYPE": "float32",
                "INFERENCE_CACHE_ENABLED": "false",
                "INFERENCE_JSON_MIRROR": "false",  # the model's pace is measured, and only its own topics exist
                "INFERENCE_RUNTIME__MAX_BATCH_SIZE": str(batch),
                "PIPELINE_LOG_LEVEL": "WARNING",
            }
            command = [sys.executable, "-m", "services.inference.app"]
            procs.append(subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + 120
        for i, proc in enumerate(procs):
            while True:  # ready: model loaded and partitions assigned
                try:
                    if httpx.get(f"http://127.0.0.1:{port + 10 * i}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    stop(procs)
                    raise RuntimeError("the inference service did not become ready")
                time.sleep(0.2)
        return procs

    def saturation(
        self, events: int, batch: int, port: int, processes: int = 1
    ) -> tuple[float, list[Process], str, str]:
        """Events/s of a fresh service on a backlog of ``events``; the service keeps running for paced phases."""
        source, out = self.topic(f"in-{batch}-{len(self.topics)}"), self.topic(f"out-{batch}-{len(self.topics)}")
        procs = self.service(source, out, batch, port, processes)
        self.fill(source, texts(events, self.next_id))
        # From the first event written (the service is already running) to the last result: the first batch's
        # model time counts too, as it does for the model alone.
        first_in, _ = stamps_of(self.kafka, source, events, 60)
        _, last_out = stamps_of(self.kafka, out, events, 900)
        return events / (last_out - first_in), procs, source, out

    def cleanup(self) -> None:
        self.kafka.admin().delete_topics(self.topics)


def stop(procs: list[Process]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def helper(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "tools.model_speed", *args], cwd=REPO_ROOT, check=True, capture_output=True
    )
    answer: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return answer


def plot(sweep: list[dict[str, Any]], model_rate: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [s["max_batch_size"] for s in sweep]
    fig, left = plt.subplots(figsize=(7, 4.2))
    left.plot(sizes, [s["events_per_s"] for s in sweep], "o-", color="tab:blue", label="service events/s")
    left.axhline(model_rate, color="tab:blue", linestyle=":", label="model alone, texts/s")
    left.set_xscale("log", base=2)
    left.set_xlabel("max_batch_size")
    left.set_ylabel("events/s (backlog)")
    right = left.twinx()
    right.plot(sizes, [s["p99_ms"] for s in sweep], "s--", color="tab:red", label="p99 ms at the fixed rate")
    right.set_ylabel("p99 latency, ms")
    right.set_yscale("log")
    lines = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.legend(lines, labels, loc="center right", fontsize=8)
    left.set_title("inference service: throughput and p99 by max_batch_size (CPU)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000, help="backlog for the saturation runs")
    parser.add_argument("--seconds", type=float, default=20.0, help="each fixed-rate phase")
    parser.add_argument("--sweep", type=int, nargs="*", default=[1, 8, 32, 128, 512])
    parser.add_argument("--naive-events", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2, help="backlog passes of the main run, model runs between")
    parser.add_argument(
        "--processes", type=int, nargs="*", default=[2], help="also run the backlog with N processes (1 thread each)"
    )
    parser.add_argument("--batch-size", type=int, default=512, help="max_batch_size of the main run (the CPU default)")
    parser.add_argument("--plot-copy", type=Path, default=None, help="also copy the PNG here (e.g. docs/bench)")
    args = parser.parse_args()
    settings = PipelineSettings()
    bench = Bench(settings, uuid.uuid4().hex[:6])
    port = 9190
    try:
        texts_file = RESULTS / "inference_texts.jsonl"
        texts_file.parent.mkdir(parents=True, exist_ok=True)
        texts_file.write_text("".join(json.dumps(t) + "\n" for t in texts(args.events, 10_000_000)))
        reference = ["reference", "--texts-file", str(texts_file), "--batch-size", str(args.batch_size)]
        models = [helper(*reference, "--model-batch-size", "32")]
        rates = []
        for _ in range(args.repeats - 1):  # earlier passes: throughput only, on fresh topics and processes
            first_rate, procs, _, _ = bench.saturation(args.events, args.batch_size, port)
            stop(procs)
            rates.append(first_rate)
            models.append(helper(*reference, "--model-batch-size", "32"))
        rate, procs, source, out = bench.saturation(args.events, args.batch_size, port)
        rates.append(rate)
        try:
            at_full = bench.paced(source, out, rate, args.seconds)
            at_half = bench.paced(source, out, rate / 2, args.seconds)
        finally:
            stop(procs)
        sweep = []
        for size in args.sweep:
            size_rate, procs, source, out = bench.saturation(max(args.events // 2, size * 4), size, port)
            try:
                half = bench.paced(source, out, rate / 2, args.seconds)
            finally:
                stop(procs)
            sweep.append({"max_batch_size": size, "events_per_s": round(size_rate, 1), "p99_ms": half["p99_ms"]})
        processes = {"1": round(max(rates), 1)}
        for count in args.processes:
            many_rate, procs, _, _ = bench.saturation(args.events, args.batch_size, port, count)
            stop(procs)
            processes[str(count)] = round(many_rate, 1)
        naive_source, naive_out = bench.topic("naive-in"), bench.topic("naive-out")
        bench.fill(naive_source, texts(args.naive_events, bench.next_id))
        naive = helper("naive", "--source", naive_source, "--out", naive_out, "--count", str(args.naive_events))
        # The model again at the end: this machine is shared, and the better of the two is the fairer reference.
        models.append(helper(*reference, "--model-batch-size", "32"))
    finally:
        bench.cleanup()
    png = RESULTS / "inference_batch_sweep.png"
    model_rate = max(m["texts_per_s"] for m in models)
    best = max(rates)
    plot(sweep, model_rate, png)
    if args.plot_copy is not None:
        args.plot_copy.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, args.plot_copy / png.name)
    report = {
        "benchmark": "inference",
        "device": models[0]["device"],
        "dtype": models[0]["dtype"],
        "events": args.events,
        "model_alone_texts_per_s": [m["texts_per_s"] for m in models],
        "service_events_per_s": [round(r, 1) for r in rates],
        "ratio_service_to_model": round(best / model_rate, 3),
        "goal": 0.85,
        "latency_at_saturation": at_full,
        "latency_at_half_saturation": at_half,
        "one_at_a_time_fp32_events_per_s": naive["records_per_s"],
        "ratio_service_to_one_at_a_time": round(best / naive["records_per_s"], 2),
        "sweep": sweep,
        "events_per_s_by_processes": processes,
        "plot": str(png.relative_to(REPO_ROOT)),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
