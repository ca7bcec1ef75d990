"""The keyword baseline's rules and output shape, and the evaluation arithmetic."""

from __future__ import annotations

import pytest

from services.inference.domain import CATEGORIES, PRIORITIES, KeywordModel, TicketFeatures, classify_priority
from tools.training.evaluate import score


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("I was charged twice for my subscription, please refund one invoice", "billing"),
        ("The export button returns a 500 error since this morning", "technical"),
        ("I'm locked out after the password reset and the 2FA code never arrives", "account"),
        ("Where is my parcel? DHL tracking says delivered but nothing here", "shipping"),
        ("Someone logged in from an unrecognized device and I got a reset email I did not request", "security"),
        ("Love the product, great job! Would be nice to have a dark mode", "other"),
        ("hello", "other"),
    ],
)
def test_the_rules_pick_the_category_the_labelling_rules_give(text: str, category: str) -> None:
    assert KeywordModel().predict([text])[0].category.label == category


def test_every_answer_is_a_distribution_over_every_label() -> None:
    (result,) = KeywordModel().predict(["My card was charged but the parcel never arrived"])
    for label, labels in ((result.category, CATEGORIES), (result.priority, PRIORITIES)):
        assert set(label.scores) == set(labels)
        assert sum(label.scores.values()) == pytest.approx(1.0)
        assert label.confidence == max(label.scores.values()) == label.scores[label.label]


def test_a_text_matching_nothing_is_other_with_low_confidence() -> None:
    category = KeywordModel().predict(["lorem ipsum dolor"])[0].category
    assert category.label == "other" and category.confidence < 0.5


def test_priority_rises_with_legal_threats_and_outages_and_falls_for_questions() -> None:
    assert classify_priority("Our lawyer will take legal action if this is not fixed immediately").label == "urgent"
    assert classify_priority("Just a question: do you offer a discount for nonprofits? No rush").label == "low"
    assert classify_priority("The invoice address is wrong").label == "normal"


def test_enterprise_customers_and_repeated_writing_raise_priority() -> None:
    text = "The export cannot finish"
    plain = classify_priority(text).scores["high"]
    assert classify_priority(text, TicketFeatures(tier="enterprise", events_1h=5)).scores["high"] > plain


def test_scores_match_a_hand_count() -> None:
    truth = ["a", "a", "a", "b", "b", "c"]
    predicted = ["a", "a", "b", "b", "c", "c"]
    s = score(truth, predicted, ["a", "b", "c"])
    assert s.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert s.accuracy == pytest.approx(4 / 6)
    # a: p=1, r=2/3, f1=0.8; b: p=1/2, r=1/2, f1=0.5; c: p=1/2, r=1, f1=2/3
    assert s.per_label["a"]["f1"] == pytest.approx(0.8)
    assert s.per_label["b"]["f1"] == pytest.approx(0.5)
    assert s.per_label["c"]["f1"] == pytest.approx(2 / 3)
    assert s.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_labels_absent_from_truth_and_predictions_leave_the_macro_average_alone() -> None:
    s = score(["a", "b"], ["a", "b"], ["a", "b", "unused"])
    assert s.macro_f1 == 1.0 and "unused" not in s.per_label


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="2 true labels but 1 predictions"):
        score(["a", "b"], ["a"], ["a", "b"])
