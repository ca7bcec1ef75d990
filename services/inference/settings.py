"""inference settings: prefix ``INFERENCE_``, nested blocks with ``__`` (``INFERENCE_RUNTIME__MAX_BATCH_SIZE``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from shared.runtime.settings import RuntimeSettings
from shared.settings import ConsumerServiceSettings
from shared.topics import EVENTS_ENRICHED, EVENTS_INFERRED, EVENTS_INFERRED_JSON


class Batching(BaseModel):
    """Defaults for one kind of device: the runtime's merged batch, and the chunk the encoder runs at once."""

    max_batch_size: int
    max_wait_ms: int
    model_batch_size: int
    # Two batches in flight: the next one is tokenized while the model runs this one.
    max_inflight_batches: int = 2


# What is not set explicitly takes the device's default (``batching_for``): ``INFERENCE_RUNTIME__MAX_BATCH_SIZE=512``
# still wins on either device.
CPU = Batching(max_batch_size=512, max_wait_ms=20, model_batch_size=32)
GPU = Batching(max_batch_size=2048, max_wait_ms=5, model_batch_size=512)
DEFAULTED = ("max_batch_size", "max_wait_ms", "max_inflight_batches")


class InferenceSettings(ConsumerServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INFERENCE_", extra="ignore")
    service: ClassVar[str] = "inference"

    port: int = 9103
    name: str = Field(default="inference", description="Consumer group, and the prefix of its retry/DLQ topics.")
    input_topic: str = EVENTS_ENRICHED
    output_topic: str = EVENTS_INFERRED
    json_mirror: bool = Field(
        default=True, description="Also write each result as JSON to json_mirror_topic, in the same transaction."
    )
    json_mirror_topic: str = EVENTS_INFERRED_JSON
    model: str = Field(
        default="minilm", description="The primary model: 'minilm', 'keywords', or a plugin 'package.module:factory'."
    )
    fallback_model: str = Field(default="keywords", description="What answers while the primary is broken.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: CUDA if present, else CPU.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="auto: bf16 (or fp16) on a GPU; on the CPU, measured at startup (bf16 only where faster).",
    )
    model_batch_size: int | None = Field(
        default=None, ge=1, description="Texts the encoder runs at once (CPU 32, GPU 512); halved on out-of-memory."
    )
    review_threshold: float = Field(
        default=0.5, ge=0, le=1, description="needs_review is set when the category confidence is below this."
    )
    cache_enabled: bool = True
    cache_ttl_s: int = Field(default=24 * 3600, ge=1, description="How long a cached result (by text) is kept.")
    breaker_failures: int = Field(default=3, ge=1, description="Failed batches in a row that open the breaker.")
    breaker_reset_s: float = Field(default=30.0, gt=0, description="How long the fallback answers before a retry.")
    processes: int = Field(
        default=1, ge=1, description="Consumer processes `make up` runs (instances 0..N-1, ports port+10*i)."
    )
    threads: int | None = Field(
        default=None, ge=1, description="torch threads per process; default: the CPU cores over `processes`."
    )

    def torch_threads(self, cores: int) -> int:
        return self.threads or max(1, cores // self.processes)

    def batching_for(self, device: str) -> tuple[RuntimeSettings, int]:
        """The runtime settings and the encoder chunk for ``device``: explicit values, else that device's defaults."""
        defaults = GPU if device == "cuda" else CPU
        explicit = self.runtime.model_fields_set
        update = {key: getattr(defaults, key) for key in DEFAULTED if key not in explicit}
        runtime = self.runtime.model_copy(update=update)
        return runtime, self.model_batch_size or defaults.model_batch_size
