"""Dead letters as data: a DLQ record's coordinates, error and headers, the filter that selects them, page cursors."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message
from pydantic import BaseModel, ConfigDict, Field

from shared import headers as h
from shared.runtime.processing import read_headers
from shared.runtime.routing import header_int


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw is not None else ""


@dataclass(frozen=True)
class DeadLetter:
    """One DLQ record: where it sits, what failed, and the original key, value and headers."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, msg: Message) -> DeadLetter:
        return cls(
            msg.topic() or "",
            msg.partition() or 0,
            msg.offset() or 0,
            msg.timestamp()[1],
            msg.key(),
            msg.value(),
            read_headers(msg),
        )

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key == name:
                return _text(value)
        return ""

    @property
    def coordinates(self) -> str:
        """``topic/partition/offset``: the ledger key and the ``replay.source`` header."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def origin(self) -> str:
        """The event's first failure in this DLQ, ``dlq-topic/topic/partition/offset`` (``dlq.original.*``, which
        a dead letter born of a replay takes from ``replay.original.*``): the ledger key. Scoped by the DLQ,
        because two services may dead-letter the same input record; a record without it is its own origin."""
        topic, partition, offset = (self.header(h.DLQ_ORIGINAL + n) for n in (h.TOPIC, h.PARTITION, h.OFFSET))
        if not (topic and partition and offset):
            return self.coordinates
        return f"{self.topic}/{topic}/{partition}/{offset}"

    @property
    def replays(self) -> int:
        """How many times its origin had been replayed when this dead letter was written (``replay.count``):
        0 for a first failure, N for a record that failed again after its Nth replay."""
        return header_int(self.headers, h.REPLAY_COUNT) or 0

    @property
    def category(self) -> str:
        return self.header(h.DLQ_ERROR_CATEGORY) or "unknown"

    @property
    def error_type(self) -> str:
        return self.header(h.DLQ_ERROR_TYPE) or "unknown"

    @property
    def tenant(self) -> str:
        return self.header(h.CE_TENANT)

    @property
    def event_id(self) -> str:
        return self.header(h.CE_ID)

    @property
    def original_topic(self) -> str:
        return self.header(h.DLQ_ORIGINAL_TOPIC)

    @property
    def failed_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    def summary(self) -> dict[str, Any]:
        """The fields a list shows (no value, no stack trace)."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "failed_at": self.failed_at.isoformat(timespec="milliseconds"),
            "key": _text(self.key),
            "event_id": self.event_id,
            "tenant": self.tenant,
            "category": self.category,
            "error_type": self.error_type,
            "message": self.header(h.DLQ_ERROR_MESSAGE)[:300],
            "original": f"{self.original_topic}/{self.header(h.DLQ_ORIGINAL_PARTITION)}/"
            f"{self.header(h.DLQ_ORIGINAL_OFFSET)}",
            "attempts": header_int(self.headers, h.DLQ_ATTEMPTS) or 0,
            "replays": self.replays,
        }

    def detail(self, value: Any) -> dict[str, Any]:
        """Everything: the summary, every header, the decoded value, the error and its stack trace."""
        return {
            **self.summary(),
            "message": self.header(h.DLQ_ERROR_MESSAGE),
            "stacktrace": self.header(h.DLQ_STACKTRACE),
            "headers": [{"key": k, "value": _text(v)} for k, v in self.headers],
            "value": value,
        }


class DlqFilter(BaseModel):
    """Which dead letters: every condition set must hold."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = Field(default=None, description="Failed at or after (the DLQ record's time).")
    until: datetime | None = Field(default=None, description="Failed before.")
    category: list[str] = Field(default_factory=list, description="Any of these error categories.")
    error_type: list[str] = Field(default_factory=list, description="Any of these error types.")
    key: str | None = Field(default=None, description="Exactly this record key.")
    tenant: str | None = Field(default=None, description="Only this tenant's records (ce_tenant).")
    event_id: str | None = Field(default=None, description="Only this event's dead letters (ce_id).")
    partition: int | None = None
    offset_from: int | None = Field(default=None, ge=0, description="From this offset (inclusive).")
    offset_to: int | None = Field(default=None, ge=0, description="Up to this offset (inclusive).")

    @classmethod
    def from_params(cls, **given: Any) -> DlqFilter:
        """The filter that a query string (the ops API) or a command line (``pipeline dlq``) spells out; a
        parameter left out or None is no condition."""
        return cls.model_validate({name: value for name, value in given.items() if value is not None})

    def matches(self, record: DeadLetter) -> bool:
        if self.partition is not None and record.partition != self.partition:
            return False
        if self.offset_from is not None and record.offset < self.offset_from:
            return False
        if self.offset_to is not None and record.offset > self.offset_to:
            return False
        if self.since is not None and record.timestamp_ms < _ms(self.since):
            return False
        if self.until is not None and record.timestamp_ms >= _ms(self.until):
            return False
        if self.category and record.category not in self.category:
            return False
        if self.error_type and record.error_type not in self.error_type:
            return False
        if self.key is not None and _text(record.key) != self.key:
            return False
        if self.event_id is not None and record.event_id != self.event_id:
            return False
        return self.tenant is None or record.tenant == self.tenant

    def describe(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_defaults=True), sort_keys=True)


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def encode_cursor(partition: int, offset: int) -> str:
    """An opaque page cursor: read on from this partition and offset (earlier partitions are done)."""
    raw = json.dumps({"partition": partition, "offset": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return int(raw["partition"]), int(raw["offset"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a cursor this API wrote: {cursor[:40]!r}") from exc
