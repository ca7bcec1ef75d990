"""enrichment settings: prefix ``ENRICHMENT_``, nested blocks with ``__`` (``ENRICHMENT_RUNTIME__MAX_BATCH_SIZE``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ConsumerServiceSettings
from shared.topics import CUSTOMERS_PROFILE, EVENTS_ENRICHED, EVENTS_RECEIVED


class EnrichmentSettings(ConsumerServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ENRICHMENT_", extra="ignore")
    service: ClassVar[str] = "enrichment"

    port: int = 9102
    input_topic: str = EVENTS_RECEIVED
    output_topic: str = EVENTS_ENRICHED
    profiles_topic: str = CUSTOMERS_PROFILE
