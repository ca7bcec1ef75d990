"""notifier settings: prefix ``NOTIFIER_``, nested blocks with ``__`` (``NOTIFIER_RUNTIME__MAX_BATCH_SIZE``)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar

import orjson
from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.netpolicy import LOOPBACK, includes_loopback, split_networks
from shared.settings import ConsumerServiceSettings
from shared.topics import EVENTS_INFERRED, NOTIFICATIONS_DELIVERED

# Several batches in flight, so a slow endpoint in one batch does not hold the next batch's deliveries. Webhook
# retries wait in the retry levels without using attempts (``counts_attempt=False``), in legs of 5 s, 5 min or
# 1 h (``domain.hop_ms``), so a schedule of hours costs a few legs; ``max_deferral_ms`` (the runtime's limit on
# such waits) defaults to the whole schedule plus an hour, see ``_runtime_defaults_and_limits``.
# Applied to each runtime field not set explicitly (``NOTIFIER_RUNTIME__...`` still wins).
RUNTIME_DEFAULTS: dict[str, object] = {
    "max_batch_size": 256,
    "max_wait_ms": 20,
    "max_inflight_batches": 4,
    "retry_delays_ms": [5_000, 300_000, 3_600_000],
}
# The Standard Webhooks reference schedule after the first, immediate call: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_RETRY_SCHEDULE_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
DEFERRAL_MARGIN_MS = 3_600_000


class NotifierSettings(ConsumerServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")
    service: ClassVar[str] = "notifier"

    port: int = 9104
    name: str = Field(default="notifier", description="Consumer group, and the prefix of its retry/DLQ topics.")
    input_topic: str = EVENTS_INFERRED
    output_topic: str = NOTIFICATIONS_DELIVERED

    connect_timeout_s: float = Field(default=3.0, gt=0, description="TCP (and TLS) connect timeout per call.")
    read_timeout_s: float = Field(default=10.0, gt=0, description="Longest wait for the receiver's answer.")
    max_response_bytes: int = Field(default=4096, ge=0, description="Bytes of a response body read, at most.")
    excerpt_chars: int = Field(default=300, ge=0, description="Response text kept in errors and dead letters.")
    max_redirects: int = Field(
        default=0, ge=0, description="307/308 redirects followed (each target checked like the first); 0: none."
    )
    allow_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Networks webhooks may reach although not public, comma-separated or a JSON list "
        "(e.g. 127.0.0.0/8,::1/128 for development). Refused in production when it includes loopback.",
    )
    max_concurrency: int = Field(default=512, ge=1, description="Calls in flight at once, all endpoints together.")
    max_connections_per_endpoint: int = Field(default=64, ge=1, description="Pooled connections per host.")
    circuit_failures: int = Field(default=5, ge=1, description="Failed calls in a row that open an endpoint's circuit.")
    circuit_cooldown_s: float = Field(default=30.0, gt=0, description="How long an open circuit parks deliveries.")
    retry_schedule_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE_S),
        description="Delays before each retry of a failed call, in seconds, comma-separated or a JSON list; "
        "after the last one the record goes to the DLQ. Retry-After wins when it is later.",
    )
    retry_jitter: float = Field(default=0.1, ge=0, lt=1, description="Each scheduled delay varies by ± this share.")
    batch_deadline_s: float = Field(
        default=30.0, gt=0, description="Deliveries of a batch not started by then are parked, not attempted."
    )
    delivered_ttl_s: int = Field(
        default=7 * 24 * 3600, ge=60, description="How long (event, endpoint) deliveries are remembered."
    )

    def stack_environment(self) -> dict[str, str]:
        # Local webhook receivers live on loopback; only development lets the notifier call them.
        if self.pipeline.env == "development" and not self.allow_networks:
            return {"NOTIFIER_ALLOW_NETWORKS": ",".join(str(net) for net in LOOPBACK)}
        return {}

    @field_validator("allow_networks", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_networks(value)

    @field_validator("retry_schedule_s", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return orjson.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("retry_schedule_s", mode="after")
    @classmethod
    def _schedule(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("NOTIFIER_RETRY_SCHEDULE_S: delays must not be negative")
        return value

    @property
    def retry_schedule_ms(self) -> list[int]:
        return [int(delay * 1000) for delay in self.retry_schedule_s]

    @field_validator("allow_networks", mode="after")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # raises on a malformed entry
        return value

    @model_validator(mode="after")
    def _runtime_defaults_and_limits(self) -> NotifierSettings:
        unset = {k: v for k, v in RUNTIME_DEFAULTS.items() if k not in self.runtime.model_fields_set}
        # A record waits through the whole schedule as one deferral: the runtime must allow that long, or it
        # dead-letters the record (``DeferralExpired``) before its last scheduled retry.
        whole_schedule_ms = sum(self.retry_schedule_ms)
        if "max_deferral_ms" not in self.runtime.model_fields_set:
            unset["max_deferral_ms"] = max(self.runtime.max_deferral_ms, whole_schedule_ms + DEFERRAL_MARGIN_MS)
        elif self.runtime.max_deferral_ms < whole_schedule_ms:
            raise ValueError(
                f"NOTIFIER_RUNTIME__MAX_DEFERRAL_MS ({self.runtime.max_deferral_ms}) is shorter than the retry "
                f"schedule ({whole_schedule_ms} ms): records would reach the DLQ before their last retry"
            )
        self.runtime = self.runtime.model_copy(update=unset)
        nets = [ipaddress.ip_network(e, strict=False) for e in self.allow_networks]
        if self.pipeline.env == "production" and includes_loopback(nets):
            raise ValueError("NOTIFIER_ALLOW_NETWORKS may include loopback only in development")
        if self.batch_deadline_s >= self.runtime.handler_timeout_s:
            raise ValueError("NOTIFIER_BATCH_DEADLINE_S must be below the runtime's handler_timeout_s")
        return self
