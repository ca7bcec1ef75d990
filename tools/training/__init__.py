"""Training data, training script and evaluation report of the triage heads."""

from pathlib import Path

# The generated tickets: ``train.jsonl`` (writers A, C and D) and ``heldout.jsonl`` (writer B).
DATA = Path(__file__).parent / "data"
