"""A round trip through the running stack: publish with the event codec, read back as a stock client would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from shared.codec import EventCodec
from shared.events import EventReceived
from shared.kafka import produce_and_wait
from shared.settings import PipelineSettings


def round_trip(settings: PipelineSettings) -> dict[str, Any]:
    """Produce one ``EventReceived`` to ``events.received.v1`` and read that exact record back.

    The write goes through the event codec (key, Avro value, CloudEvents headers, traceparent); the read
    uses the stock Confluent ``AvroDeserializer``, as any downstream consumer would.
    """
    registry = SchemaRegistryClient({"url": settings.schema_registry_url})
    codec = EventCodec.from_settings(settings)
    now = datetime.now(UTC)
    event = EventReceived(
        event_id=f"demo-{uuid.uuid4()}",
        tenant="dev",
        type="ticket.created",
        source="pipeline-demo",
        subject="customer-42",
        occurred_at=now,
        received_at=now,
        text="My invoice was charged twice, please refund",
        attributes={"channel": "demo"},
    )
    record = codec.encode(event)
    kafka = settings.kafka.for_client("pipeline-demo")
    position = produce_and_wait(
        Producer(kafka.producer_config()), record.topic, record.value, record.key, record.headers
    )
    consumer = Consumer(kafka.consumer_config(f"demo-{uuid.uuid4()}"))
    try:
        consumer.assign([TopicPartition(position.topic, position.partition, position.offset)])
        msg = None
        while msg is None:
            msg = consumer.poll(10)
        read_back = AvroDeserializer(registry)(msg.value(), SerializationContext(position.topic, MessageField.VALUE))
        raw_headers: list[tuple[str, bytes]] = msg.headers() or []  # type: ignore[assignment]
        headers = {k: v.decode() for k, v in raw_headers}
    finally:
        consumer.close()
    assert record.value is not None
    return {
        "topic": position.topic,
        "partition": position.partition,
        "offset": position.offset,
        "key": (msg.key() or b"").decode(),
        "schema_id": int.from_bytes(record.value[1:5], "big"),
        "event_id": event.event_id,
        "headers": headers,
        "read_back": read_back,
    }
