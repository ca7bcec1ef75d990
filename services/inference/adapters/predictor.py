"""The primary model behind a breaker, the fallback beside it: out-of-memory halving and isolation of bad records."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from prometheus_client import Counter, Gauge

from services.inference.domain import (
    CANARY,
    Backend,
    DeviceFailure,
    ModelFailure,
    Outcome,
    TicketFeatures,
    Triage,
    Triaged,
)
from shared.errors import PipelineError

log = logging.getLogger(__name__)

BREAKER_STATE = Gauge("inference_breaker_state", "0 closed, 1 open (fallback answers), 2 half-open", ["service"])
OOM_SPLITS = Counter("inference_oom_splits_total", "Batches retried in smaller steps after running out of memory")
MODEL_FAILURES = Counter("inference_model_failures_total", "Records that made the model raise", ["model"])
FALLBACK_BATCHES = Counter("inference_fallback_batches_total", "Batches answered by the fallback model", ["reason"])

_DEVICE_ERROR = re.compile(r"CUDA error|CUBLAS_STATUS|CUDNN_STATUS|cuDNN error|device-side assert|NCCL error|HIP error")


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def is_device_failure(exc: BaseException) -> bool:
    accelerator_error = getattr(torch, "AcceleratorError", None)
    return (
        isinstance(exc, DeviceFailure)
        or (accelerator_error is not None and isinstance(exc, accelerator_error))
        or bool(_DEVICE_ERROR.search(str(exc)))
    )


class Breaker:
    """Closed, open for ``reset_s`` after ``failures`` failed batches in a row, then half-open for one try."""

    CLOSED, OPEN, HALF_OPEN = 0, 1, 2

    def __init__(
        self, service: str, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.service = service
        self.failures = failures
        self.reset_s = reset_s
        self.clock = clock
        self.strikes = 0
        self.opened_at: float | None = None
        self.lock = threading.Lock()
        BREAKER_STATE.labels(service).set(self.CLOSED)

    @property
    def state(self) -> int:
        if self.opened_at is None:
            return self.CLOSED
        return self.HALF_OPEN if self.clock() - self.opened_at >= self.reset_s else self.OPEN

    def allows(self) -> bool:
        """May the primary try this batch? (Closed, or half-open: its one try.)"""
        return self.state != self.OPEN

    def success(self) -> None:
        with self.lock:
            if self.opened_at is not None:
                log.info("model breaker closed: the primary answers again", extra={"service": self.service})
            self.strikes = 0
            self.opened_at = None
            BREAKER_STATE.labels(self.service).set(self.CLOSED)

    def failure(self, reason: str) -> None:
        with self.lock:
            self.strikes += 1
            log.warning(
                "model failed a whole batch",
                extra={"service": self.service, "reason": reason, "strikes": self.strikes, "limit": self.failures},
            )
            if self.opened_at is not None or self.strikes >= self.failures:
                self.opened_at = self.clock()
                log.error(
                    "model breaker open: the fallback answers",
                    extra={"service": self.service, "reason": reason, "reset_s": self.reset_s},
                )
            BREAKER_STATE.labels(self.service).set(self.state)

    def trip(self, reason: str) -> None:
        """Open now (the primary could not even load)."""
        with self.lock:
            self.strikes = self.failures
        self.failure(reason)


class Predictor:
    """The primary model behind a breaker, with the fallback model (keywords) beside it.

    Out of device memory, the backend halves its step (and keeps it halved); only a single text that still does
    not fit fails. A device failure is the model's fault: the breaker counts it and the fallback answers the
    whole batch. Any other error is bisected down to the records that raise alone (each a ``ModelFailure`` to
    the DLQ, or the typed error it raised), unless the model fails the canary too: then it is broken, and the
    fallback answers."""

    def __init__(self, primary: Backend | None, fallback: Backend, breaker: Breaker) -> None:
        self.primary = primary
        self.fallback = fallback
        self.breaker = breaker
        if primary is None:
            breaker.trip("the primary model did not load")

    def answering(self) -> Backend:
        """The backend that answers now, if nothing fails."""
        return self.primary if self.primary is not None and self.breaker.allows() else self.fallback

    def prepare(self, texts: Sequence[str]) -> Any:
        """The primary's host-side step (tokenizing), or None when the fallback will answer."""
        backend = self.answering()
        return backend.prepare(texts) if backend is self.primary else None

    def run(self, texts: Sequence[str], features: Sequence[TicketFeatures], prepared: Any = None) -> list[Outcome]:
        """One result per text, in order: an answer, or a ``ModelFailure`` for a text that breaks the model."""
        primary = self.primary
        if not texts:
            return []
        if primary is None or not self.breaker.allows():
            return self._fallback(texts, features, "breaker open")
        try:
            triages = self._run(primary, texts, features, prepared)
        except Exception as exc:
            if is_device_failure(exc):
                self.breaker.failure(f"{type(exc).__name__}: {exc}")
                return self._fallback(texts, features, "device failure")
            results = self._isolate(primary, list(texts), list(features))
            if all(isinstance(r, ModelFailure) for r in results) and not self._answers_canary(primary):
                self.breaker.failure(f"the model fails on every input: {type(exc).__name__}: {exc}")
                return self._fallback(texts, features, "model failing")
            self.breaker.success()
            return results
        self.breaker.success()
        return [Triaged(t, primary) for t in triages]

    def _run(
        self, backend: Backend, texts: Sequence[str], features: Sequence[TicketFeatures], prepared: Any
    ) -> list[Triage]:
        """Run, and on running out of memory shrink the backend's step and run again, down to one text."""
        while True:
            try:
                triages = backend.run(prepared if prepared is not None else backend.prepare(texts), features)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if not backend.shrink():
                    raise
                OOM_SPLITS.inc()
                log.warning("out of device memory: smaller steps", extra={"texts": len(texts)})
                prepared = None
                continue
            if len(triages) != len(texts):
                raise RuntimeError(f"{backend.name} answered {len(triages)} results for {len(texts)} texts")
            return triages

    def _answers_canary(self, backend: Backend) -> bool:
        """Does the model still answer a plain ticket? When every record of a batch fails alone, this tells a
        batch of bad records (to the DLQ) from a broken model (to the fallback)."""
        try:
            self._run(backend, [CANARY], [TicketFeatures()], None)
        except Exception:
            return False
        return True

    def _isolate(self, backend: Backend, texts: list[str], features: list[TicketFeatures]) -> list[Outcome]:
        """Bisect down to the texts that raise alone. Identical errors in both halves prove nothing here
        (two bad records fail with the same message), so it always goes down to single texts."""
        results: list[Outcome | None] = [None] * len(texts)
        stack: list[tuple[int, int]] = [(0, len(texts))]
        while stack:
            start, end = stack.pop()
            try:
                triages = self._run(backend, texts[start:end], features[start:end], None)
            except Exception as exc:
                if end - start == 1 and isinstance(exc, PipelineError):
                    # A typed error for this record (a plugin whose lookup needs a credential raising
                    # DependencyUnavailable, a validation error): routed as it says, not as a model failure.
                    results[start] = exc
                elif end - start == 1:
                    MODEL_FAILURES.labels(backend.name).inc()
                    failure = ModelFailure(f"{backend.name} raised on this record: {type(exc).__name__}: {exc}")
                    failure.__cause__ = exc
                    results[start] = failure
                else:
                    middle = (start + end) // 2
                    stack += [(middle, end), (start, middle)]
                continue
            for i, triage in enumerate(triages):
                results[start + i] = Triaged(triage, backend)
        return [r for r in results if r is not None]

    def _fallback(self, texts: Sequence[str], features: Sequence[TicketFeatures], reason: str) -> list[Outcome]:
        FALLBACK_BATCHES.labels(reason).inc()
        return [Triaged(t, self.fallback) for t in self.fallback.run(self.fallback.prepare(texts), features)]
