"""Model plugins that tests select by configuration (``INFERENCE_MODEL=tests.plugins:<factory>``), so the
service itself has no test branches."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.inference.adapters.backends import BackendOptions, load_backend
from services.inference.domain import TicketFeatures, Triage
from shared.errors import RetryableError

POISON = "POISON-PILL"


class Poisoned:
    """A real model (the keyword model unless named), except that it raises on any text that contains ``POISON``."""

    def __init__(self, options: BackendOptions, inner: str = "keywords") -> None:
        self.inner = load_backend(inner, options)
        self.name = self.inner.name
        self.version = self.inner.version
        self.uses_features = self.inner.uses_features

    def prepare(self, texts: Sequence[str]) -> tuple[list[str], Any]:
        return list(texts), self.inner.prepare(texts)

    def run(self, prepared: tuple[list[str], Any], features: Sequence[TicketFeatures] | None = None) -> list[Triage]:
        texts, inner = prepared
        if any(POISON in t for t in texts):
            raise ValueError("this input breaks the model")
        return self.inner.run(inner, features)

    def shrink(self) -> bool:
        return self.inner.shrink()


class BrokenDevice:
    """A model whose device fails on every batch, as a GPU does after an illegal memory access."""

    name = "broken-device"
    version = "0"
    uses_features = False

    def prepare(self, texts: Sequence[str]) -> list[str]:
        return list(texts)

    def run(self, prepared: list[str], features: Sequence[TicketFeatures] | None = None) -> list[Triage]:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def shrink(self) -> bool:
        return False


def poisoned(options: BackendOptions) -> Poisoned:
    return Poisoned(options)


class SlowKeywords(Poisoned):
    """The keyword model at a CPU model's pace (2 ms a text), so that a run has batches in flight to kill."""

    def run(self, prepared: tuple[list[str], Any], features: Sequence[TicketFeatures] | None = None) -> list[Triage]:
        time.sleep(0.002 * len(prepared[0]))
        return super().run(prepared, features)


def slow_keywords(options: BackendOptions) -> SlowKeywords:
    return SlowKeywords(options)


def broken_device(options: BackendOptions) -> BrokenDevice:
    return BrokenDevice()


def gated(options: BackendOptions) -> Any:
    """The keyword model, loaded only once the file ``$TEST_MODEL_GATE`` exists (a slow model load)."""
    gate = Path(os.environ["TEST_MODEL_GATE"])
    while not gate.exists():
        time.sleep(0.05)
    return load_backend("keywords", options)


CREDENTIAL_MARK = "NEEDS-CRM-LOOKUP"


class ExpiringCredential(Poisoned):
    """The real MiniLM model, whose marked inputs need a lookup with a credential: while the file
    ``$TEST_CREDENTIAL_EXPIRED`` exists, they fail with ``RetryableError(category="dependency")``."""

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options, inner="minilm")

    def run(self, prepared: tuple[list[str], Any], features: Sequence[TicketFeatures] | None = None) -> list[Triage]:
        texts, inner = prepared
        if Path(os.environ["TEST_CREDENTIAL_EXPIRED"]).exists() and any(CREDENTIAL_MARK in t for t in texts):
            raise RetryableError("CRM credential expired (HTTP 401 from the lookup)", category="dependency")
        return self.inner.run(inner, features)


def expiring_credential(options: BackendOptions) -> ExpiringCredential:
    return ExpiringCredential(options)
