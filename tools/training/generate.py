"""Builds the labelled triage tickets (``data/train.jsonl``, ``data/heldout.jsonl``) from the writers' sentences."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.training import DATA

SENTENCES = Path(__file__).parent / "sentences"
PRIORITY_ORDER = ("low", "normal", "high", "urgent")


@dataclass(frozen=True)
class Need:
    category: str
    text: str
    priority: str = "normal"


@dataclass(frozen=True)
class Voice:
    openings: list[str]
    context: list[str]
    urgency: list[tuple[str, str | None]]
    asides: list[tuple[str, str]]
    closings: list[str]
    typos: float
    quote: str


def _read(name: str) -> Any:
    return json.loads((SENTENCES / name).read_text(encoding="utf-8"))


def needs_of(rows_by_category: dict[str, list[str | list[str]]]) -> list[Need]:
    """A writer's needs in file order: a row is its text, or [text, priority] when that is not ``normal``."""
    return [
        Need(category, row) if isinstance(row, str) else Need(category, row[0], row[1])
        for category, rows in rows_by_category.items()
        for row in rows
    ]


def voice_of(frames: dict[str, Any]) -> Voice:
    return Voice(
        openings=list(frames["openings"]),
        context=list(frames["context"]),
        urgency=[(text, raised) for text, raised in frames["urgency"]],
        asides=[(text, topic) for text, topic in frames["asides"]],
        closings=list(frames["closings"]),
        typos=float(frames["typos"]),
        quote=frames["quote"],
    )


WRITERS = {writer: _read(f"writer_{writer.lower()}.json") for writer in "ABCD"}
WRITER_A = needs_of(WRITERS["A"]["needs"])
WRITER_B = needs_of(WRITERS["B"]["needs"])
WRITER_C = needs_of(WRITERS["C"]["needs"])
WRITER_D = needs_of(WRITERS["D"]["needs"])
VOICES = {writer: voice_of(sentences["voice"]) for writer, sentences in WRITERS.items()}
_FILLERS = _read("fillers.json")
NAMES: list[str] = _FILLERS["names"]
SLOTS: dict[str, list[str]] = _FILLERS["slots"]


def fill(text: str, rng: random.Random) -> str:
    return text.format(**{slot: rng.choice(values) for slot, values in SLOTS.items()})


def typo(text: str, rng: random.Random, rate: float) -> str:
    """Swap neighbouring letters in a few words, as a hurried writer does."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if len(word) > 4 and word.isalpha() and rng.random() < rate:
            j = rng.randrange(1, len(word) - 2)
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    return " ".join(words)


def ticket(need: Need, writer: str, rng: random.Random) -> dict[str, str]:
    voice = VOICES[writer]
    # Training writers borrow each other's frames half the time, so that style says nothing about the label.
    mixable = [VOICES[w] for w in TRAINING_WRITERS] if writer in TRAINING_WRITERS else []

    def frame() -> Voice:
        return rng.choice(mixable) if mixable and rng.random() < 0.5 else voice

    opening = rng.choice(frame().openings)
    context = rng.choice(frame().context)
    urgency, raised = rng.choice(frame().urgency)
    asides = [text for text, topic in frame().asides if topic != need.category]
    aside = rng.choice(asides) if asides and rng.random() < 0.35 else ""
    closing = rng.choice(frame().closings).format(name=rng.choice(NAMES))
    core = fill(need.text, rng)
    parts = [opening, core, context, aside, urgency] if rng.random() < 0.5 else [opening, context, aside, core, urgency]
    text = " ".join(p for p in parts if p)
    if voice.typos:
        text = typo(text, rng, voice.typos)
    if voice.quote and rng.random() < 0.3:
        text += voice.quote
    if closing:
        text += "\n\n" + closing
    priority = need.priority
    if raised is not None:
        if raised == "low":
            priority = "low" if need.priority in ("low", "normal") else need.priority
        elif PRIORITY_ORDER.index(raised) > PRIORITY_ORDER.index(priority):
            priority = raised
    return {"text": text.strip(), "category": need.category, "priority": priority, "writer": writer}


# Each file: (writer, tickets per need, seed) in order.
PLANS = {
    "train.jsonl": [("A", 12, 7), ("C", 10, 5), ("D", 8, 3)],
    "heldout.jsonl": [("B", 5, 11)],
}
TRAINING_WRITERS = ("A", "C", "D")


def build(writer: str, per_need: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pool = {"A": WRITER_A, "B": WRITER_B, "C": WRITER_C, "D": WRITER_D}[writer]
    rows = [ticket(need, writer, rng) for need in pool for _ in range(per_need)]
    rng.shuffle(rows)
    return rows


def write(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def main(out: Path = DATA) -> None:
    for name, plan in PLANS.items():
        write(out / name, [row for writer, per_need, seed in plan for row in build(writer, per_need, seed)])


if __name__ == "__main__":
    main()
