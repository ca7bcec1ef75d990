"""The triage model alone, without Kafka: texts/s by dtype and batch size, and the tokenizer on its own
(``python -m loadtest.bench_model`` runs it; it lives here because only the service imports its model).

The reference the inference service will be measured against (same texts, same batching). Texts are the training
tickets (about 40 to 70 tokens). Each figure is the best of ``--repeats`` timed passes after a warm-up pass. Prints JSON
with the bf16/fp32 ratio per batch size, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from services.inference.encoder import Encoder
from services.inference.evaluation import load_tickets
from services.inference.training.generate import HERE


def rate(encoder: Encoder, texts: list[str], batch_size: int, repeats: int) -> float:
    encoder.embed(texts[: batch_size * 2], batch_size=batch_size)  # warm-up: allocator, kernels
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.embed(texts, batch_size=batch_size)
        best = max(best, len(texts) / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    texts = [t["text"] for t in load_tickets(HERE / "train.jsonl")][: args.texts]
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
