"""The MiniLM encoder (offline), the committed heads, and the training data they come from."""

from __future__ import annotations

import json

import pytest
import torch

from services.inference.adapters.encoder import DIMENSIONS, Encoder
from services.inference.adapters.minilm import HEADS, TriageModel
from services.inference.domain import CATEGORIES, PRIORITIES, KeywordModel
from tools.training import DATA, generate
from tools.training.evaluate import load_tickets, score


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder()


@pytest.fixture(scope="module")
def model(encoder: Encoder) -> TriageModel:
    return TriageModel(encoder)


def test_the_encoder_loads_offline_and_gives_unit_length_embeddings(encoder: Encoder) -> None:
    vectors = encoder.embed(["My parcel never arrived.", "The package was not delivered.", "I love your app!"])
    assert vectors.shape == (3, DIMENSIONS)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    # A paraphrase sits closer than an unrelated text: a real embedding, not noise.
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.2


def test_embeddings_do_not_depend_on_batch_neighbours(encoder: Encoder) -> None:
    """Sorting by length and padding must not change a text's vector."""
    alone = encoder.embed(["short one"])
    together = encoder.embed(["a much longer text that forces padding onto the short one", "short one"])
    assert torch.allclose(alone[0], together[1], atol=1e-4)


def test_the_committed_heads_answer_with_distributions_and_a_weights_version(model: TriageModel) -> None:
    (result,) = model.predict(["I was charged twice for my subscription this month"])
    assert set(result.category.scores) == set(CATEGORIES) and set(result.priority.scores) == set(PRIORITIES)
    assert sum(result.category.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.category.label == "billing"
    assert len(model.version) == 12 and HEADS.exists()


def test_minilm_beats_the_keyword_baseline_on_the_held_out_writer(model: TriageModel) -> None:
    tickets = load_tickets(DATA / "heldout.jsonl")
    texts, truth = [t["text"] for t in tickets], [t["category"] for t in tickets]
    minilm = score(truth, [r.category.label for r in model.predict(texts)], CATEGORIES)
    keywords = score(truth, [r.category.label for r in KeywordModel().predict(texts)], CATEGORIES)
    assert minilm.macro_f1 > keywords.macro_f1


def test_the_committed_training_files_are_what_the_generator_writes() -> None:
    for name, plan in generate.PLANS.items():
        rows = [row for writer, per_need, seed in plan for row in generate.build(writer, per_need, seed)]
        committed = [json.loads(line) for line in (DATA / name).read_text().splitlines()]
        assert committed == rows, name


def test_the_held_out_writer_shares_no_sentence_with_the_training_writers() -> None:
    assert {w for w, _, _ in generate.PLANS["train.jsonl"]} == set(generate.TRAINING_WRITERS)
    held_out = {n.text for n in generate.WRITER_B}
    assert not held_out & {n.text for n in generate.WRITER_A + generate.WRITER_C + generate.WRITER_D}
    b, trained = generate.VOICES["B"], [generate.VOICES[w] for w in generate.TRAINING_WRITERS]
    for part in ("openings", "context", "urgency", "asides", "closings"):
        assert not {x for x in getattr(b, part) if x and x[0]} & {
            x for v in trained for x in getattr(v, part) if x and x[0]
        }, part
    assert {n.category for n in generate.WRITER_B} == set(CATEGORIES)
