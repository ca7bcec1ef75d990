"""The triage model alone, without Kafka: texts/s by dtype and batch size, its reference and the naive baseline."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from services.inference.adapters.backends import DTYPES, BackendOptions, load_backend, resolve_device
from services.inference.adapters.encoder import Encoder
from tools.training import DATA
from tools.training.evaluate import load_tickets


def rate(encoder: Encoder, texts: list[str], batch_size: int, repeats: int) -> float:
    encoder.embed(texts[: batch_size * 2], batch_size=batch_size)  # warm-up: allocator, kernels
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.embed(texts, batch_size=batch_size)
        best = max(best, len(texts) / (time.perf_counter() - started))
    return best


def main() -> None:
    commands = {"reference": reference, "naive": naive}
    if len(sys.argv) > 1 and sys.argv[1] in commands:
        commands[sys.argv[1]](sys.argv[2:])
    else:
        model(sys.argv[1:])


def reference(argv: list[str]) -> None:
    """The model alone on the benchmark's own texts, batched exactly as the service batches them (merged batches
    of ``--batch-size``, tokenized, bucketed by length and run in chunks of ``--model-batch-size``, heads
    included), at ``--dtype``: the reference ``loadtest.bench_inference`` measures the service against."""
    parser = argparse.ArgumentParser(prog="model_speed reference", description=reference.__doc__)
    parser.add_argument("--texts-file", type=Path, required=True, help="one JSON string per line")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--model-batch-size", type=int, default=64)
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    texts = [json.loads(line) for line in args.texts_file.read_text().splitlines() if line]
    device = resolve_device("auto")
    model = load_backend("minilm", BackendOptions(device, DTYPES[args.dtype], args.model_batch_size))

    def one_pass(items: list[str]) -> None:
        for start in range(0, len(items), args.batch_size):
            chunk = items[start : start + args.batch_size]
            model.run(model.prepare(chunk))

    one_pass(texts[: args.batch_size * 2])  # warm-up
    best = 0.0
    for _ in range(args.repeats):
        started = time.perf_counter()
        one_pass(texts)
        best = max(best, len(texts) / (time.perf_counter() - started))
    report = {"device": device, "dtype": args.dtype, "texts": len(texts), "texts_per_s": round(best, 1)}
    sys.stdout.write(json.dumps(report) + "\n")


def naive(argv: list[str]) -> None:
    """The baseline to beat: a consumer that takes one message at a time (decode, the model in fp32 on its one
    text, produce the result, wait for the acknowledgement, commit). Prints its records/s."""
    from confluent_kafka import Consumer, Producer

    from shared.codec import EventCodec
    from shared.events import EventEnriched, EventInferred, ModelRef, Prediction
    from shared.settings import PipelineSettings

    parser = argparse.ArgumentParser(prog="model_speed naive", description=naive.__doc__)
    parser.add_argument("--source", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    settings = PipelineSettings()
    codec = EventCodec.from_settings(settings)
    model = load_backend("minilm", BackendOptions("cpu", torch.float32, 1))
    config = settings.kafka.consumer_config(f"naive-{args.source}", **{"enable.auto.commit": "false"})
    consumer = Consumer(config)
    consumer.subscribe([args.source])
    producer = Producer(settings.kafka.producer_config())
    done, started = 0, 0.0
    while done < args.count:
        msg = consumer.poll(1.0)
        if msg is None or msg.error() is not None:
            continue
        if not started:
            started = time.perf_counter()
        event: Any = codec.decode_value(args.source, msg.value(), msg.partition(), msg.offset(), EventEnriched)
        [triage] = model.run(model.prepare([event.text]))
        result = EventInferred(
            event_id=event.event_id,
            tenant=event.tenant,
            type=event.type,
            subject=event.subject,
            occurred_at=event.occurred_at,
            category=Prediction(label=triage.category.label, confidence=triage.category.confidence),
            priority=Prediction(label=triage.priority.label, confidence=triage.priority.confidence),
            model=ModelRef(name=model.name, version=model.version),
            inferred_at=datetime.now(UTC),
        )
        record = codec.encode(result, topic=args.out)
        producer.produce(args.out, record.value, record.key, headers=list(record.headers))
        producer.flush(30)
        consumer.commit(message=msg, asynchronous=False)
        done += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    sys.stdout.write(json.dumps({"records": done, "records_per_s": round(done / elapsed, 1)}) + "\n")


def model(argv: list[str]) -> None:
    """The encoder alone at fp32 and bf16 over the training tickets, by batch size, and the tokenizer on its
    own: each figure the best of ``--repeats`` timed passes after a warm-up. Prints JSON with the bf16/fp32
    ratio. ``python -m loadtest.bench_model`` runs it."""
    parser = argparse.ArgumentParser(prog="model_speed", description=model.__doc__)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    texts = [t["text"] for t in load_tickets(DATA / "train.jsonl")][: args.texts]
    results: dict[str, dict[str, float]] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        encoder = Encoder(device=args.device, dtype=dtype)
        results[name] = {str(b): round(rate(encoder, texts, b, args.repeats), 1) for b in args.batch_sizes}
    started = time.perf_counter()
    for _ in range(args.repeats):
        encoder.tokenize(texts)
    tokenize = args.repeats * len(texts) / (time.perf_counter() - started)
    report = {
        "benchmark": "model",
        "device": args.device,
        "threads": torch.get_num_threads(),
        "texts": len(texts),
        "texts_per_s": results,
        "bf16_over_fp32": {b: round(results["bf16"][b] / results["fp32"][b], 2) for b in results["fp32"]},
        "tokenizer_texts_per_s": round(tokenize),
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
