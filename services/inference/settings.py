"""inference settings (prefix ``INFERENCE_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class InferenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INFERENCE_", extra="ignore")

    port: int = 9103
