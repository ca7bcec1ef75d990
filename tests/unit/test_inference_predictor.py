"""The predictor without Kafka: out-of-memory halving, isolation of model-breaking records, and the breaker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from services.inference.adapters.backends import BackendOptions, load_backend, resolve_dtype
from services.inference.adapters.predictor import Breaker, Predictor, is_device_failure
from services.inference.domain import Backend, KeywordModel, Label, ModelFailure, TicketFeatures, Triage, Triaged
from services.inference.settings import InferenceSettings
from shared.errors import DependencyUnavailable


class Scripted:
    """A backend that answers 'technical' for every text, raises on texts containing 'POISON', runs out of
    memory on steps above ``fits`` texts or on a 'HUGE' text, and fails like a broken device while ``broken``."""

    name = "scripted"
    version = "v1"
    uses_features = False

    def __init__(self, fits: int = 1_000, step: int = 64) -> None:
        self.fits = fits
        self.step = step
        self.broken = False
        self.failing = False  # raises on every input, as a model with corrupt weights does
        self.calls: list[int] = []

    def prepare(self, texts: Sequence[str]) -> list[str]:
        return list(texts)

    def run(self, prepared: list[str], features: Sequence[TicketFeatures] | None = None) -> list[Triage]:
        self.calls.append(len(prepared))
        if self.broken:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if min(self.step, len(prepared)) > self.fits or any("HUGE" in t for t in prepared):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if self.failing or any("POISON" in t for t in prepared):
            raise ValueError("input the model cannot take")
        label = Label("technical", 0.9, {"technical": 0.9})
        return [Triage(label, Label("normal", 0.8, {"normal": 0.8})) for _ in prepared]

    def shrink(self) -> bool:
        if self.step <= 1:
            return False
        self.step //= 2
        return True


def features(n: int) -> list[TicketFeatures]:
    return [TicketFeatures()] * n


def make(backend: Scripted, clock: list[float] | None = None, failures: int = 2) -> Predictor:
    now = clock if clock is not None else [0.0]
    return Predictor(backend, KeywordModel(), Breaker("test", failures, 30.0, clock=lambda: now[0]))


def test_scripted_and_builtin_backends_have_the_backend_shape() -> None:
    assert isinstance(Scripted(), Backend)
    assert isinstance(load_backend("keywords", BackendOptions()), Backend)


def test_records_that_break_the_model_fail_alone_and_the_rest_of_the_batch_is_answered() -> None:
    backend = Scripted()
    predictor = make(backend)
    texts = [f"ticket {i}" for i in range(16)]
    texts[3] = "POISON one"
    texts[12] = "POISON two"
    results = predictor.run(texts, features(16))
    failed = [i for i, r in enumerate(results) if isinstance(r, ModelFailure)]
    assert failed == [3, 12]
    assert all(isinstance(r, Triaged) and r.backend is backend for i, r in enumerate(results) if i not in failed)
    assert results[3].category == "model"  # type: ignore[union-attr]
    assert predictor.breaker.state == Breaker.CLOSED


def test_a_batch_of_nothing_but_bad_records_goes_to_the_dlq_while_the_model_answers_a_plain_ticket() -> None:
    predictor = make(Scripted(), failures=1)
    results = predictor.run(["POISON a", "POISON b"], features(2))
    assert all(isinstance(r, ModelFailure) for r in results)
    [single] = predictor.run(["POISON"], features(1))
    assert isinstance(single, ModelFailure)
    assert predictor.breaker.state == Breaker.CLOSED


def test_a_model_that_fails_on_every_input_counts_against_the_breaker_and_the_fallback_answers() -> None:
    backend = Scripted()
    backend.failing = True
    predictor = make(backend, failures=1)
    [result] = predictor.run(["my invoice is wrong"], features(1))
    assert isinstance(result, Triaged) and result.backend.name == "keywords"
    assert predictor.breaker.state == Breaker.OPEN


def test_out_of_memory_halves_the_step_and_keeps_it_halved() -> None:
    backend = Scripted(fits=16, step=64)
    predictor = make(backend)
    results = predictor.run([f"t{i}" for i in range(100)], features(100))
    assert all(isinstance(r, Triaged) and r.backend is backend for r in results)
    assert backend.step == 16
    backend.calls.clear()
    predictor.run([f"t{i}" for i in range(10)], features(10))
    assert backend.calls == [10]  # the next batch runs at once: no new out-of-memory


def test_a_single_text_that_never_fits_fails_alone() -> None:
    backend = Scripted(step=4)
    [result] = make(backend).run(["HUGE"], features(1))
    assert isinstance(result, ModelFailure)
    assert "OutOfMemoryError" in str(result)


def test_device_failures_trip_the_breaker_then_a_half_open_try_closes_it() -> None:
    clock = [0.0]
    backend = Scripted()
    predictor = make(backend, clock, failures=2)
    backend.broken = True
    for _ in range(2):
        answers = predictor.run(["my invoice is wrong", "x"], features(2))
        assert all(isinstance(a, Triaged) and a.backend.name == "keywords" for a in answers)
    assert predictor.breaker.state == Breaker.OPEN
    backend.calls.clear()
    predictor.run(["while open"], features(1))
    assert backend.calls == []  # open: the primary is not even tried
    assert predictor.answering().name == "keywords"
    assert predictor.prepare(["x"]) is None
    clock[0] = 31.0
    assert predictor.breaker.state == Breaker.HALF_OPEN
    backend.broken = False
    [answer] = predictor.run(["recovered"], features(1))
    assert isinstance(answer, Triaged) and answer.backend is backend
    assert predictor.breaker.state == Breaker.CLOSED


def test_a_failed_half_open_try_opens_the_breaker_again_at_once() -> None:
    clock = [0.0]
    backend = Scripted()
    predictor = make(backend, clock, failures=3)
    predictor.breaker.trip("test")
    clock[0] = 31.0
    backend.broken = True
    predictor.run(["a", "b"], features(2))
    assert predictor.breaker.state == Breaker.OPEN


def test_a_primary_that_did_not_load_leaves_the_fallback_answering() -> None:
    predictor = Predictor(None, KeywordModel(), Breaker("test", 3, 30.0))
    [answer] = predictor.run(["I was charged twice"], features(1))
    assert isinstance(answer, Triaged) and answer.backend.name == "keywords"


def test_device_failures_are_recognised_by_type_or_message() -> None:
    assert is_device_failure(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_device_failure(ValueError("too many tokens"))


def test_dtype_auto_on_the_cpu_takes_bf16_only_where_measured_faster() -> None:
    assert resolve_dtype("auto", "cpu", {torch.float32: 100.0, torch.bfloat16: 45.0}.__getitem__) == torch.float32
    assert resolve_dtype("auto", "cpu", {torch.float32: 100.0, torch.bfloat16: 240.0}.__getitem__) == torch.bfloat16
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16


def test_batch_defaults_follow_the_device_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, chunk = InferenceSettings(instance=0).batching_for("cpu")
    assert (runtime.max_batch_size, runtime.max_inflight_batches, chunk) == (512, 2, 32)
    runtime, chunk = InferenceSettings(instance=0).batching_for("cuda")
    assert (runtime.max_batch_size, chunk) == (2048, 512)
    monkeypatch.setenv("INFERENCE_RUNTIME__MAX_BATCH_SIZE", "300")
    runtime, _ = InferenceSettings(instance=0).batching_for("cuda")
    assert (runtime.max_batch_size, runtime.max_wait_ms, runtime.max_inflight_batches) == (300, 5, 2)


def test_a_plugin_is_loaded_from_its_module_and_checked() -> None:
    with pytest.raises(ValueError, match="neither"):
        load_backend("nonsense", BackendOptions())
    with pytest.raises(TypeError, match="lacks"):
        load_backend("builtins:repr", BackendOptions())
    backend: Any = load_backend("tests.unit.test_inference_predictor:scripted", BackendOptions())
    assert backend.name == "scripted"


def scripted(options: BackendOptions) -> Scripted:
    return Scripted(step=options.batch_size)


class CredentialLookup(Scripted):
    """Raises a typed dependency error for texts that need a lookup whose credential has expired."""

    def run(self, prepared: list[str], features: Sequence[TicketFeatures] | None = None) -> list[Triage]:
        if any("NEEDS-CRM" in t for t in prepared):
            raise DependencyUnavailable("CRM credential expired")
        return super().run(prepared, features)


def test_a_typed_error_raised_for_a_record_is_its_result_not_a_model_failure() -> None:
    predictor = make(CredentialLookup())
    results = predictor.run(["a", "NEEDS-CRM b", "c"], features(3))
    assert isinstance(results[0], Triaged) and isinstance(results[2], Triaged)
    assert isinstance(results[1], DependencyUnavailable) and predictor.breaker.allows()
