"""ops settings (prefix ``OPS_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class OpsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="OPS_", extra="ignore")

    port: int = 8010
