"""Model backends by name (``minilm``, ``keywords`` or a plugin ``module:factory``), and the device and dtype."""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from services.inference.adapters.predictor import Breaker, Predictor
from services.inference.domain import Backend, KeywordModel
from services.inference.settings import InferenceSettings

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DeviceName = Literal["auto", "cpu", "cuda"]
DtypeName = Literal["auto", "float32", "bfloat16", "float16"]
# 64 of the training tickets: what the CPU dtype measurement at startup runs (one JSON string per line).
CALIBRATION = Path(__file__).parent / "calibration.jsonl"


@dataclass(frozen=True)
class BackendOptions:
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    batch_size: int = 64


def resolve_device(name: DeviceName) -> str:
    """``auto``: CUDA when this machine has it, otherwise the CPU."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("INFERENCE_DEVICE=cuda, but torch sees no CUDA device")
    return name


def resolve_dtype(name: DtypeName, device: str, measure: Callable[[torch.dtype], float] | None = None) -> torch.dtype:
    """``auto``: bf16 on a GPU that has it (else fp16); on the CPU, bf16 only where ``measure`` (texts/s of the
    real model at one dtype) finds it faster than fp32 on this machine, else fp32."""
    if name != "auto":
        return DTYPES[name]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if measure is None:
        return torch.float32
    fp32, bf16 = measure(torch.float32), measure(torch.bfloat16)
    chosen = torch.bfloat16 if bf16 > fp32 * 1.1 else torch.float32
    log.info(
        "dtype measured at startup",
        extra={"fp32_texts_per_s": round(fp32, 1), "bf16_texts_per_s": round(bf16, 1), "dtype": str(chosen)},
    )
    return chosen


def calibration_texts() -> list[str]:
    return [json.loads(line) for line in CALIBRATION.read_text(encoding="utf-8").splitlines() if line]


def measure_minilm(texts: Sequence[str], batch_size: int) -> Callable[[torch.dtype], float]:
    """Texts/s of the MiniLM encoder on the CPU at a dtype: one warm-up pass, then the best of two."""

    def measure(dtype: torch.dtype) -> float:
        from services.inference.adapters.encoder import Encoder

        encoder = Encoder("cpu", dtype)
        encoder.embed(texts, batch_size)
        best = 0.0
        for _ in range(2):
            started = time.perf_counter()
            encoder.embed(texts, batch_size)
            best = max(best, len(texts) / (time.perf_counter() - started))
        return best

    return measure


def load_backend(spec: str, options: BackendOptions) -> Backend:
    """The backend ``spec`` names: ``minilm``, ``keywords``, or ``package.module:factory`` for a plugin (the
    factory gets the options and returns the backend; tests select theirs this way, so the service has no test
    branches)."""
    if spec == "minilm":
        from services.inference.adapters.encoder import Encoder
        from services.inference.adapters.minilm import TriageModel

        return TriageModel(Encoder(options.device, options.dtype), batch_size=options.batch_size)
    if spec == "keywords":
        return KeywordModel()
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"model {spec!r} is neither 'minilm', 'keywords' nor 'package.module:factory'")
    factory = getattr(importlib.import_module(module_name), attribute)
    backend = factory(options)
    if not isinstance(backend, Backend):
        raise TypeError(f"{spec} returned a {type(backend).__name__}, which lacks the Backend methods")
    return backend


def load_predictor(settings: InferenceSettings, device: str, model_batch_size: int) -> tuple[Predictor, torch.dtype]:
    """The configured primary and fallback behind a breaker, and the dtype they run at; a primary that cannot load
    leaves the fallback answering, with the breaker open."""
    measure = None
    if settings.model == "minilm" and settings.dtype == "auto" and device == "cpu":
        measure = measure_minilm(calibration_texts(), 32)
    dtype = resolve_dtype(settings.dtype, device, measure)
    options = BackendOptions(device, dtype, model_batch_size)
    primary: Backend | None
    try:
        primary = load_backend(settings.model, options)
    except Exception:
        log.exception("primary model did not load; the fallback answers", extra={"model": settings.model})
        primary = None
    fallback = load_backend(settings.fallback_model, options)
    breaker = Breaker(settings.name, settings.breaker_failures, settings.breaker_reset_s)
    return Predictor(primary, fallback, breaker), dtype
