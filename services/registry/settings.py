"""Registry settings (prefix ``REGISTRY_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore")

    port: int = 8081
    topic: str = "_schemas"
    default_compatibility: str = "BACKWARD"
    write_timeout_s: float = 10.0
