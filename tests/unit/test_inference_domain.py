"""Inference's pure rules: which model version already answered an event, and the result cache's keys and values."""

from __future__ import annotations

import json

import pytest

from services.inference.domain import Label, Triage, answered_version, cache_key, dump_triage, load_triage


def test_the_answered_version_is_read_from_the_status_records_result() -> None:
    result = json.dumps({"model": {"name": "minilm-triage", "version": "b38c473e8ff1"}, "category": "billing"})
    assert answered_version(result) == "b38c473e8ff1"
    assert answered_version(result.encode()) == "b38c473e8ff1"


@pytest.mark.parametrize(
    "raw",
    [None, b"", "not json", "[1, 2]", '{"model": null}', '{"model": "minilm"}', '{"model": {"version": 3}}', "{}"],
)
def test_a_missing_or_unreadable_result_names_no_version(raw: bytes | str | None) -> None:
    assert answered_version(raw) is None


def test_cache_keys_name_the_model_version_and_ignore_whitespace() -> None:
    assert cache_key("v1", "my  invoice\nis wrong ") == cache_key("v1", "my invoice is wrong")
    assert cache_key("v1", "my invoice is wrong") != cache_key("v2", "my invoice is wrong")
    assert cache_key("v1", "x").startswith("inference:cache:v1:")


def test_a_cached_triage_reads_back_as_it_was_written() -> None:
    triage = Triage(Label("billing", 0.75, {"billing": 0.75, "other": 0.25}), Label("high", 0.5, {"high": 0.5}))
    assert load_triage(dump_triage(triage)) == triage
