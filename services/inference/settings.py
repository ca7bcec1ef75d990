"""inference settings: prefix ``INFERENCE_``, nested blocks with ``__`` (``INFERENCE_RUNTIME__MAX_BATCH_SIZE``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ConsumerServiceSettings
from shared.topics import EVENTS_ENRICHED, EVENTS_INFERRED


class InferenceSettings(ConsumerServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INFERENCE_", extra="ignore")
    service: ClassVar[str] = "inference"

    port: int = 9103
    input_topic: str = EVENTS_ENRICHED
    output_topic: str = EVENTS_INFERRED
