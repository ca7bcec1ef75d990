"""The event codec: a typed event to a Kafka record (key, Avro value, CloudEvents headers) and back again.

Headers follow the CloudEvents Kafka protocol binding in binary mode (``ce_*`` attributes, ``content-type``
for the data), plus W3C ``traceparent``. Each stage names its own ``ce_type`` from the publisher's
(``ticket.created`` -> ``ticket.created.enriched`` -> ``ticket.created.inferred``) and its own ``ce_source``,
so ``(source, id)`` stays unique per CloudEvent while ``id`` stays the event id end to end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from shared import headers as h
from shared.errors import DeserializationError
from shared.events import (
    EVENT_TYPES,
    AvroRecord,
    CustomerProfile,
    EventEnriched,
    EventInferred,
    EventReceived,
    NotificationDelivered,
)
from shared.runtime.records import Headers, Output
from shared.serde import AvroSerde
from shared.topics import TOPICS
from shared.tracing import TraceContext

if TYPE_CHECKING:
    from shared.settings import PipelineSettings

SPECVERSION = "1.0"
CONTENT_TYPE_AVRO = "application/vnd.confluent.avro"
SOURCES = {
    "enrichment": "/pipeline/enrichment",
    "inference": "/pipeline/inference",
    "notifier": "/pipeline/notifier",
}
_READ = frozenset((*h.CE_ALL, h.TRACEPARENT, h.CONTENT_TYPE))
_TYPES_BY_SCHEMA = {t.schema_name: t for t in EVENT_TYPES}
# The topic each event type lives on: the first event topic whose value schema is that type's.
_TOPIC_OF = {spec.value_schema: spec.name for spec in reversed(TOPICS) if spec.value_schema}


def rfc3339(moment: datetime) -> str:
    """A UTC timestamp to the millisecond (what Avro's timestamp-millis keeps), ``Z``-suffixed."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class CloudEventContext:
    """The CloudEvents attributes of one record, and its trace."""

    id: str
    source: str
    type: str
    time: datetime
    subject: str
    tenant: str
    trace: TraceContext | None = None
    content_type: str = CONTENT_TYPE_AVRO
    specversion: str = SPECVERSION

    @property
    def key(self) -> bytes:
        """The partition key: ``tenant:subject`` (``tenant:customer_id`` for a profile)."""
        return f"{self.tenant}:{self.subject}".encode()

    def headers(self) -> Headers:
        headers: Headers = [
            (h.CE_SPECVERSION, self.specversion.encode()),
            (h.CE_ID, self.id.encode()),
            (h.CE_SOURCE, self.source.encode()),
            (h.CE_TYPE, self.type.encode()),
            (h.CE_TIME, rfc3339(self.time).encode()),
        ]
        # CloudEvents: an optional attribute, when present, must not be empty.
        if self.subject:
            headers.append((h.CE_SUBJECT, self.subject.encode()))
        if self.tenant:
            headers.append((h.CE_TENANT, self.tenant.encode()))
        headers.append((h.CONTENT_TYPE, self.content_type.encode()))
        if self.trace is not None:
            headers.append((h.TRACEPARENT, self.trace.header().encode()))
        return headers

    @classmethod
    def from_headers(cls, headers: Sequence[tuple[str, bytes]]) -> CloudEventContext | None:
        """Read the binary-mode attributes; ``None`` when one we need is missing or unreadable."""
        found = {k: v.decode("utf-8", errors="replace") for k, v in headers if k in _READ}
        if any(name not in found for name in h.CE_REQUIRED):
            return None
        try:
            # RFC 3339 allows a lowercase "t" and "z"; fromisoformat does not.
            time = datetime.fromisoformat(found[h.CE_TIME].upper())
        except ValueError:
            return None
        return cls(
            id=found[h.CE_ID],
            source=found[h.CE_SOURCE],
            type=found[h.CE_TYPE],
            time=time,
            subject=found.get(h.CE_SUBJECT, ""),
            tenant=found.get(h.CE_TENANT, ""),
            trace=TraceContext.parse(found.get(h.TRACEPARENT)),
            content_type=found.get(h.CONTENT_TYPE, CONTENT_TYPE_AVRO),
            specversion=found[h.CE_SPECVERSION],
        )


def cloudevent_of(event: AvroRecord, trace: TraceContext | None = None) -> CloudEventContext:
    """The CloudEvents attributes an event carries at its stage, with ``trace`` (none by default)."""
    match event:
        case EventReceived():
            return CloudEventContext(
                event.event_id, event.source, event.type, event.occurred_at, event.subject, event.tenant, trace
            )
        case EventEnriched():
            return CloudEventContext(
                event.event_id,
                SOURCES["enrichment"],
                f"{event.type}.enriched",
                event.occurred_at,
                event.subject,
                event.tenant,
                trace,
            )
        case EventInferred():
            return CloudEventContext(
                event.event_id,
                SOURCES["inference"],
                f"{event.type}.inferred",
                event.occurred_at,
                event.subject,
                event.tenant,
                trace,
            )
        case NotificationDelivered():
            # One receipt per endpoint, all with the event's id: the source names the endpoint's
            # subscription, so (source, id) stays unique per receipt.
            return CloudEventContext(
                event.event_id,
                f"{SOURCES['notifier']}/{event.subscription_id or 'callback'}",
                f"{event.type or 'event'}.delivered",
                event.delivered_at,
                event.subject,
                event.tenant,
                trace,
            )
        case CustomerProfile():
            version = int(event.updated_at.timestamp() * 1000)
            return CloudEventContext(
                f"{event.customer_id}@{version}",
                "/customers",
                "customer.profile.updated",
                event.updated_at,
                event.customer_id,
                event.tenant,
                trace,
            )
    raise TypeError(f"{type(event).__name__} is not a tenant event the codec knows")


@dataclass(frozen=True)
class DecodedEvent:
    """A consumed record as a typed event plus its CloudEvents context."""

    event: AvroRecord
    context: CloudEventContext


class EventCodec:
    """Typed events to Kafka records and back, through the shared Avro serde."""

    def __init__(self, serde: AvroSerde) -> None:
        self.serde = serde

    @classmethod
    def connect(cls, registry_url: str, schemas_dir: Path) -> EventCodec:
        """A codec over the registry at ``registry_url`` (``mock://<name>`` for an in-memory one)."""
        return cls(AvroSerde.connect(registry_url, schemas_dir))

    @classmethod
    def from_settings(cls, pipeline: PipelineSettings) -> EventCodec:
        """The codec every service builds: the configured registry and the repository's schemas."""
        return cls.connect(pipeline.schema_registry_url, pipeline.schemas_dir)

    @staticmethod
    def topic_of(event_type: type[AvroRecord]) -> str:
        return _TOPIC_OF[event_type.schema_name]

    def encode(self, event: AvroRecord, *, topic: str | None = None, trace: TraceContext | None = None) -> Output:
        """Build the record for ``event``: key, Avro value and headers.

        ``trace`` is the incoming span (from the record or request this event came from): the output keeps
        its trace id under a new span id. Without one, a new trace starts here.
        """
        topic = topic or self.topic_of(type(event))
        context = cloudevent_of(event, trace.child() if trace is not None else TraceContext.start())
        value = self.serde.encode(topic, event.to_avro(), event.schema_name)
        return Output(topic, value, context.key, context.headers())

    def decode(
        self,
        topic: str,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
        partition: int | None = None,
        offset: int | None = None,
        event_type: type[AvroRecord] | None = None,
    ) -> DecodedEvent:
        """Read a record back; a record without CloudEvents headers (written by a bare producer) still decodes.

        ``event_type`` names the type for topics outside the topic registry (tests, benchmarks).
        """
        event = self.decode_value(topic, value, partition, offset, event_type)
        context = CloudEventContext.from_headers(headers)
        if context is None:
            trace = next((TraceContext.parse(v) for k, v in headers if k == h.TRACEPARENT), None)
            context = cloudevent_of(event, trace)
        return DecodedEvent(event, context)

    def decode_value(
        self,
        topic: str,
        value: bytes | None,
        partition: int | None = None,
        offset: int | None = None,
        event_type: type[AvroRecord] | None = None,
    ) -> AvroRecord:
        """The runtime's decoder: a record's value to its typed event, or a ``DeserializationError``."""
        schema_name = event_type.schema_name if event_type is not None else self.serde.reader_schema(topic)
        if schema_name is None or schema_name not in _TYPES_BY_SCHEMA:
            raise DeserializationError(
                f"topic {topic} carries no typed event", topic=topic, partition=partition, offset=offset
            )
        record: Any = self.serde.decode(topic, value, partition, offset, schema_name)
        try:
            return _TYPES_BY_SCHEMA[schema_name].from_avro(record)
        except ValidationError as exc:
            raise DeserializationError(
                f"decoded record is not a valid {schema_name}: {exc.error_count()} errors, first: "
                f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}",
                topic=topic,
                partition=partition,
                offset=offset,
            ) from exc
