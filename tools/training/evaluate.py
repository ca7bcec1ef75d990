"""Scoring a triage model on labelled tickets: accuracy, per-label precision/recall/F1, macro-F1, confusion matrix."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.inference.domain import CATEGORIES, PRIORITIES, KeywordModel
from shared.settings import REPO_ROOT

EVAL_SET = REPO_ROOT.parent / "shared" / "data" / "tickets-eval.jsonl"


@dataclass(frozen=True)
class Scores:
    labels: tuple[str, ...]
    accuracy: float
    macro_f1: float
    per_label: dict[str, dict[str, float]]
    confusion: list[list[int]]  # rows: the true label, columns: the predicted one, both in ``labels`` order

    def as_dict(self) -> dict[str, object]:
        return {
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "per_label": {k: {m: round(v, 4) for m, v in s.items()} for k, s in self.per_label.items()},
            "labels": list(self.labels),
            "confusion": self.confusion,
        }

    def markdown(self, title: str) -> str:
        lines = [f"**{title}**: accuracy {self.accuracy:.3f}, macro-F1 {self.macro_f1:.3f}", ""]
        lines.append("| true \\ predicted | " + " | ".join(self.labels) + " |")
        lines.append("|---" * (len(self.labels) + 1) + "|")
        for label, row in zip(self.labels, self.confusion, strict=True):
            lines.append(f"| {label} | " + " | ".join(str(n) for n in row) + " |")
        return "\n".join(lines)


def score(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> Scores:
    """Scores of ``predicted`` against ``truth``. A label never predicted and never true counts F1 0 in the
    macro average only if it is true somewhere; labels absent from both are left out of the average."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true labels but {len(predicted)} predictions")
    index = {label: i for i, label in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    for t, p in zip(truth, predicted, strict=True):
        confusion[index[t]][index[p]] += 1
    per_label: dict[str, dict[str, float]] = {}
    for label, i in index.items():
        tp = confusion[i][i]
        predicted_n = sum(row[i] for row in confusion)
        true_n = sum(confusion[i])
        if predicted_n == 0 and true_n == 0:
            continue
        precision = tp / predicted_n if predicted_n else 0.0
        recall = tp / true_n if true_n else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": float(true_n)}
    accuracy = sum(confusion[i][i] for i in range(len(labels))) / len(truth) if truth else 0.0
    macro = sum(s["f1"] for s in per_label.values()) / len(per_label) if per_label else 0.0
    return Scores(tuple(labels), accuracy, macro, per_label, confusion)


def load_tickets(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    """Score the keyword baseline on the hand-written evaluation set (never trained on): JSON, then markdown."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data", type=Path, default=EVAL_SET)
    args = parser.parse_args(argv)
    tickets = load_tickets(args.data)
    results = KeywordModel().predict([t["text"] for t in tickets])
    category = score([t["category"] for t in tickets], [r.category.label for r in results], CATEGORIES)
    priority = score([t["priority"] for t in tickets], [r.priority.label for r in results], PRIORITIES)
    report = {"model": KeywordModel.name, "tickets": len(tickets), "category": category.as_dict()}
    report["priority"] = priority.as_dict()
    sys.stdout.write(json.dumps(report, indent=2) + "\n\n")
    sys.stdout.write(category.markdown("keywords, category") + "\n\n" + priority.markdown("keywords, priority") + "\n")


if __name__ == "__main__":
    main()
