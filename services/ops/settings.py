"""ops settings (prefix ``OPS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings
from shared.topics import AUDIT_REPLAYS, CONSUMING_SERVICES, REPLAY_LEDGER


class OpsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="OPS_", extra="ignore")

    port: int = 8010
    key_cache_s: float = Field(default=5.0, ge=0, description="How long a found API key is remembered (0: never).")
    retry_after_s: int = Field(default=1, description="Retry-After on 503.")
    max_page: int = Field(default=200, ge=1, description="Most records one page of a DLQ or the audit returns.")
    default_rate: float | None = Field(default=None, gt=0, description="Replay rate (records/s) when none is given.")
    services: list[str] = Field(
        default_factory=lambda: list(CONSUMING_SERVICES), description="The services whose DLQs ops serves."
    )
    ledger_topic: str = Field(default=REPLAY_LEDGER, description="The compacted replay ledger.")
    audit_topic: str = Field(default=AUDIT_REPLAYS, description="Where every replay run is audited.")
