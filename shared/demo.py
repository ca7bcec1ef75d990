"""A round trip through the running stack with the stock Confluent Avro serde, as an upstream client would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from shared.kafka import consumer_config, producer_config
from shared.schemas import SchemaCatalog
from shared.settings import PipelineSettings
from shared.topics import EVENTS_RECEIVED


def round_trip(settings: PipelineSettings) -> dict[str, Any]:
    """Produce one ``EventReceived`` to ``events.received.v1`` and read that exact record back."""
    registry = SchemaRegistryClient({"url": settings.schema_registry_url})
    catalog = SchemaCatalog(settings.schemas_dir)
    serializer = AvroSerializer(registry, catalog.text("EventReceived"))
    deserializer = AvroDeserializer(registry)
    now = datetime.now(UTC)
    event_id = f"demo-{uuid.uuid4()}"
    record = {
        "event_id": event_id,
        "tenant": "dev",
        "type": "ticket.created",
        "source": "pipeline-demo",
        "subject": "customer-42",
        "occurred_at": now,
        "received_at": now,
        "text": "My invoice was charged twice, please refund",
        "attributes": {"channel": "demo"},
        "payload_json": "{}",
        "callback_url": None,
    }
    context = SerializationContext(EVENTS_RECEIVED, MessageField.VALUE)
    value = serializer(record, context)
    delivered: dict[str, Any] = {}

    def on_delivery(error: Any, msg: Any) -> None:
        delivered.update(error=error, partition=msg.partition(), offset=msg.offset())

    producer = Producer(producer_config(settings.kafka_bootstrap_servers))
    producer.produce(
        EVENTS_RECEIVED,
        key=b"dev:customer-42",
        value=value,
        on_delivery=on_delivery,
        headers={
            "ce_id": event_id,
            "ce_type": "ticket.created",
            "ce_specversion": "1.0",
            "content-type": "application/vnd.confluent.avro",
        },
    )
    producer.flush(30)
    if delivered.get("error") is not None or "offset" not in delivered:
        raise RuntimeError(f"produce failed: {delivered}")
    consumer = Consumer(consumer_config(settings.kafka_bootstrap_servers, f"demo-{uuid.uuid4()}"))
    try:
        consumer.assign([TopicPartition(EVENTS_RECEIVED, delivered["partition"], delivered["offset"])])
        msg = None
        while msg is None:
            msg = consumer.poll(10)
        read_back = deserializer(msg.value(), context)
    finally:
        consumer.close()
    schema_id = int.from_bytes(value[1:5], "big")
    return {
        "topic": EVENTS_RECEIVED,
        "partition": delivered["partition"],
        "offset": delivered["offset"],
        "schema_id": schema_id,
        "event_id": event_id,
        "read_back": read_back,
    }
