"""enrichment settings: prefix ``ENRICHMENT_``, nested with ``__`` (``ENRICHMENT_RUNTIME__COMMIT_INTERVAL_MS``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.runtime import RuntimeSettings
from shared.settings import ConsumerServiceSettings
from shared.topics import CUSTOMERS_PROFILE, EVENTS_ENRICHED, EVENTS_RECEIVED


def _runtime() -> RuntimeSettings:
    # Cleaning a ticket costs tens of microseconds: larger batches than the runtime's default spread the per-batch
    # work (a transaction, a changelog write per subject) over more events.
    return RuntimeSettings(max_batch_size=500, max_wait_ms=20)


class EnrichmentSettings(ConsumerServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ENRICHMENT_", extra="ignore", env_nested_delimiter="__")
    service: ClassVar[str] = "enrichment"

    port: int = 9102
    name: str = Field(
        default="enrichment",
        description="The consumer group, the prefix of its retry/dlq/replay topics and of its tables' changelogs "
        "(<name>.activity.changelog, <name>.seen.changelog).",
    )
    input_topic: str = EVENTS_RECEIVED
    output_topic: str = EVENTS_ENRICHED
    profiles_topic: str = Field(
        default=CUSTOMERS_PROFILE, description="Compacted and co-partitioned with the input: the profiles table."
    )
    max_text_chars: int = Field(default=4000, ge=16, description="Texts are cut to this after redaction.")
    runtime: RuntimeSettings = Field(default_factory=_runtime)
