"""Typed events, named in the past tense; a contract test checks them against ``schemas/*.avsc``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field


class AvroRecord(BaseModel):
    """An event whose fields mirror one Avro record schema."""

    schema_name: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        return self.model_dump(mode="python")

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> AvroRecord:
        return cls.model_validate(record)


class _EventCore(AvroRecord):
    """The fields an event keeps from intake through enrichment, in schema order."""

    event_id: str
    tenant: str
    type: str
    source: str
    subject: str
    occurred_at: datetime
    received_at: datetime
    text: str
    attributes: dict[str, str] = Field(default_factory=dict)


class EventReceived(_EventCore):
    schema_name: ClassVar[str] = "EventReceived"

    payload_json: str = "{}"
    callback_url: str | None = None


class CustomerProfile(AvroRecord):
    schema_name: ClassVar[str] = "CustomerProfile"

    tenant: str
    customer_id: str
    tier: str = "standard"
    plan: str = ""
    region: str = ""
    updated_at: datetime
    attributes: dict[str, str] = Field(default_factory=dict)


class CustomerSummary(BaseModel):
    tier: str = "standard"
    plan: str = ""
    region: str = ""


class EventEnriched(_EventCore):
    schema_name: ClassVar[str] = "EventEnriched"

    callback_url: str | None = None
    pii_counts: dict[str, int] = Field(default_factory=dict)
    truncated: bool = False
    customer: CustomerSummary | None = None
    profile_found: bool = False
    events_1h: int = 0
    events_24h: int = 0
    seconds_since_previous: float | None = None
    enriched_at: datetime


class Prediction(BaseModel):
    label: str
    confidence: float
    scores: dict[str, float] = Field(default_factory=dict)


class ModelRef(BaseModel):
    name: str
    version: str


class EventInferred(AvroRecord):
    schema_name: ClassVar[str] = "EventInferred"

    event_id: str
    tenant: str
    type: str
    subject: str
    occurred_at: datetime
    category: Prediction
    priority: Prediction
    needs_review: bool = False
    model: ModelRef
    cached: bool = False
    inferred_at: datetime
    latency_ms: float = 0.0
    source: str = ""
    callback_url: str | None = None


class NotificationDelivered(AvroRecord):
    schema_name: ClassVar[str] = "NotificationDelivered"

    event_id: str
    tenant: str
    subject: str
    endpoint: str
    subscription_id: str | None = None
    status: str
    http_status: int | None = None
    attempts: int = 1
    delivered_at: datetime
    latency_ms: float = 0.0
    error: str | None = None
    type: str = ""


class ReplayAudit(AvroRecord):
    schema_name: ClassVar[str] = "ReplayAudit"

    replay_id: str
    service: str
    dlq_topic: str
    target_topic: str
    requested_by: str = ""
    filters_json: str = "{}"
    dry_run: bool = False
    force: bool = False
    keep_headers: bool = False
    started_at: datetime
    finished_at: datetime
    selected: int = 0
    replayed: int = 0
    skipped: int = 0
    failed: int = 0
    outcome: str = "done"
    error: str | None = None


class ReplayLedgerEntry(AvroRecord):
    schema_name: ClassVar[str] = "ReplayLedgerEntry"

    replay_id: str
    replayed_at: datetime
    dlq_topic: str = ""
    partition: int = 0
    offset: int = 0
    count: int = 1


EVENT_TYPES: tuple[type[AvroRecord], ...] = (
    EventReceived,
    CustomerProfile,
    EventEnriched,
    EventInferred,
    NotificationDelivered,
    ReplayAudit,
    ReplayLedgerEntry,
)
