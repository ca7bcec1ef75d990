"""enrichment settings (prefix ``ENRICHMENT_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class EnrichmentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ENRICHMENT_", extra="ignore")

    port: int = 9102
