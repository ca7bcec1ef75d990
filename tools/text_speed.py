"""Text cleaning and redaction: enrichment's ``normalise`` against its reference and a bare whitespace pass.

Times three functions over the 120 hand-written evaluation tickets (``shared/data/tickets-eval.jsonl``), each
ticket --repeat times per round, best of --rounds, the three taking turns within each round: ``normalise`` as it
is; the reference in ``tools/text_reference.py`` (the same scans without the fast paths of issue 22, the
"before"); and a bare ``" ".join(text.split())``, the least any cleaning costs. Everything is measured in this
run (the machine is shared and noisy), so the ratios are what to compare between runs, not the microseconds.
Needs no broker; checks that ``normalise`` and the reference agree on every ticket before timing them. Prints
JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from services.enrichment.text import normalise
from tools.text_reference import eval_texts, reference_normalise

LIMIT = 4000  # the enrichment default (ENRICHMENT_MAX_TEXT_CHARS): no ticket is cut


def bare(text: str, limit: int) -> str:
    """Whitespace collapsed, nothing else: the floor for anything that cleans a text."""
    return " ".join(text.split())


def best_us_per_text(
    fns: dict[str, Callable[[str, int], object]], texts: list[str], repeat: int, rounds: int
) -> dict[str, float]:
    """Best of ``rounds`` for each function, in microseconds per text. The functions take turns within each round,
    so a burst of load elsewhere slows all of them rather than one; best-of keeps the quietest round of each."""
    for fn in fns.values():
        for text in texts:  # warm-up: regex caches, the allocator
            fn(text, LIMIT)
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            started = time.perf_counter()
            for _ in range(repeat):
                for text in texts:
                    fn(text, LIMIT)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: seconds / (repeat * len(texts)) * 1e6 for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=10, help="passes over the tickets per round")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    texts = eval_texts()
    differing = [i for i, text in enumerate(texts) if normalise(text, LIMIT) != reference_normalise(text, LIMIT)]
    if differing:
        raise SystemExit(f"normalise differs from the reference on tickets {differing}")
    us = best_us_per_text(
        {"bare": bare, "reference": reference_normalise, "normalise": normalise}, texts, args.repeat, args.rounds
    )
    sys.stdout.write(
        json.dumps(
            {
                "benchmark": "text",
                "tickets": len(texts),
                "mean_chars": round(sum(map(len, texts)) / len(texts), 1),
                "repeat": args.repeat,
                "rounds": args.rounds,
                "us_per_ticket": {k: round(v, 2) for k, v in us.items()},
                "ratios": {
                    "normalise_vs_bare": round(us["normalise"] / us["bare"], 2),
                    "reference_vs_bare": round(us["reference"] / us["bare"], 2),
                    "reference_vs_normalise": round(us["reference"] / us["normalise"], 2),
                },
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
