"""Trains the triage heads on frozen MiniLM embeddings and writes the evaluation report (``make train``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from services.inference.adapters.encoder import Encoder
from services.inference.adapters.minilm import HEADS, Heads, TriageModel
from services.inference.domain import CATEGORIES, PRIORITIES, KeywordModel
from tools.training import DATA
from tools.training.evaluate import EVAL_SET, Scores, load_tickets, score

REPORT = Path(__file__).parent / "REPORT.md"
PROTOTYPES = {
    "billing": "a billing question: invoice, charge, refund, subscription price or payment",
    "technical": "a technical problem: software bug, error message, crash, API or integration failure",
    "account": "an account problem: login, password reset, locked out, two-factor, users and seats",
    "shipping": "a shipping problem: parcel delivery, tracking, courier, customs, damaged item or return",
    "security": "a security incident: hacked account, fraud, phishing, unauthorized login or purchase",
    "other": "something else: praise, feature request, partnership, press or general feedback",
}


def train_heads(
    embeddings: torch.Tensor,
    categories: torch.Tensor,
    priorities: torch.Tensor,
    epochs: int,
    seed: int,
    lr: float = 0.005,
    weight_decay: float = 0.01,
) -> Heads:
    """Full-batch AdamW with weight decay on cross-entropy, classes weighted by inverse frequency."""
    torch.manual_seed(seed)
    heads = Heads(embeddings.shape[1], CATEGORIES, PRIORITIES)
    optimiser = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=weight_decay)

    def weights(targets: torch.Tensor, n: int) -> torch.Tensor:
        counts = torch.bincount(targets, minlength=n).float().clamp(min=1)
        return counts.sum() / (n * counts)

    category_loss = torch.nn.CrossEntropyLoss(weight=weights(categories, len(CATEGORIES)))
    priority_loss = torch.nn.CrossEntropyLoss(weight=weights(priorities, len(PRIORITIES)))
    for _ in range(epochs):
        optimiser.zero_grad()
        category_logits, priority_logits = heads(embeddings)
        loss = category_loss(category_logits, categories) + priority_loss(priority_logits, priorities)
        loss.backward()
        optimiser.step()
    return heads.eval()


def zero_shot(encoder: Encoder, embeddings: torch.Tensor) -> list[str]:
    prototypes = encoder.embed([PROTOTYPES[c] for c in CATEGORIES])
    return [CATEGORIES[i] for i in (embeddings @ prototypes.T).argmax(dim=1).tolist()]


def evaluate(
    tickets: Sequence[dict[str, str]], embeddings: torch.Tensor, encoder: Encoder, model: TriageModel
) -> dict[str, dict[str, Scores]]:
    texts = [t["text"] for t in tickets]
    true_c, true_p = [t["category"] for t in tickets], [t["priority"] for t in tickets]
    keywords = KeywordModel().predict(texts)
    with torch.inference_mode():
        category_logits, priority_logits = model.heads(embeddings)
    trained_c = [CATEGORIES[i] for i in category_logits.argmax(dim=1).tolist()]
    trained_p = [PRIORITIES[i] for i in priority_logits.argmax(dim=1).tolist()]
    return {
        "category": {
            "keywords": score(true_c, [k.category.label for k in keywords], CATEGORIES),
            "minilm zero-shot": score(true_c, zero_shot(encoder, embeddings), CATEGORIES),
            "minilm + trained heads": score(true_c, trained_c, CATEGORIES),
        },
        "priority": {
            "keywords": score(true_p, [k.priority.label for k in keywords], PRIORITIES),
            "minilm + trained heads": score(true_p, trained_p, PRIORITIES),
        },
    }


def report(results: dict[str, dict[str, dict[str, Scores]]], sizes: dict[str, int], version: str) -> str:
    lines = [
        "# Triage model: evaluation report",
        "",
        "Written by `make train` (`python -m tools.training.train`). The heads train on "
        f"`train.jsonl` only ({sizes['train']} tickets by writers A, C and D). Nothing below was trained on. "
        f"`heldout.jsonl` has {sizes['heldout']} tickets by writer B: other sentences, typos, quoted replies. "
        f"`tickets-eval.jsonl` has {sizes['eval']} hand-written tickets (`shared/data/`). "
        f"Model version `{version}`.",
        "",
    ]
    for set_name, heads in results.items():
        lines += [f"## {set_name}", "", "| head | model | accuracy | macro-F1 |", "|---|---|---|---|"]
        for head, models in heads.items():
            for model, s in models.items():
                lines.append(f"| {head} | {model} | {s.accuracy:.3f} | {s.macro_f1:.3f} |")
        lines.append("")
        for head in ("category", "priority"):
            lines += [heads[head]["minilm + trained heads"].markdown(f"minilm + trained heads, {head}"), ""]
        lines += [heads["category"]["keywords"].markdown("keywords, category"), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Train on ``train.jsonl`` only (writers A, C and D); score the keyword baseline, MiniLM zero-shot (cosine
    similarity to a description of each label) and MiniLM with the trained heads on two sets never trained on:
    ``heldout.jsonl`` (writer B) and the hand-written ``tickets-eval.jsonl``. Writes the heads and ``REPORT.md``.
    Seeded: a rerun gives the same scores (the weights, and so the version, can differ in their last bits)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--eval", type=Path, default=EVAL_SET)
    args = parser.parse_args(argv)
    started = time.monotonic()
    encoder = Encoder()
    train, heldout, hand = (load_tickets(p) for p in (DATA / "train.jsonl", DATA / "heldout.jsonl", args.eval))
    embedded = {
        name: encoder.embed([t["text"] for t in rows])
        for name, rows in (("train", train), ("heldout", heldout), ("eval", hand))
    }
    heads = train_heads(
        embedded["train"],
        torch.tensor([CATEGORIES.index(t["category"]) for t in train]),
        torch.tensor([PRIORITIES.index(t["priority"]) for t in train]),
        args.epochs,
        args.seed,
        args.lr,
        args.weight_decay,
    )
    heads.save(HEADS)
    model = TriageModel(encoder, HEADS)
    results = {
        "heldout.jsonl (writer B)": evaluate(heldout, embedded["heldout"], encoder, model),
        "tickets-eval.jsonl (hand-written)": evaluate(hand, embedded["eval"], encoder, model),
    }
    sizes = {"train": len(train), "heldout": len(heldout), "eval": len(hand)}
    REPORT.write_text(report(results, sizes, model.version))
    summary = {
        set_name: {head: {m: round(s.accuracy, 3) for m, s in models.items()} for head, models in heads_.items()}
        for set_name, heads_ in results.items()
    }
    summary_out = {"version": model.version, "seconds": round(time.monotonic() - started, 1), "accuracy": summary}
    sys.stdout.write(json.dumps(summary_out, indent=2) + "\n")


if __name__ == "__main__":
    main()
