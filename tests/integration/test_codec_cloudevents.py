"""Our records, read back by the official CloudEvents SDK (Kafka binding, binary mode) and stock Confluent serde."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from shared.codec import CONTENT_TYPE_AVRO, EventCodec
from shared.events import EventEnriched, EventReceived
from shared.kafka import KafkaConnection, create_topic, produce_and_wait
from shared.settings import PipelineSettings
from shared.tracing import TraceContext
from tests.support.factories import make_event_enriched, make_event_received


class ConfluentAvroFormat(JSONFormat):
    """The SDK's format for our data: Confluent-framed Avro, read with the stock ``AvroDeserializer``."""

    def __init__(self, registry: SchemaRegistryClient, topic: str) -> None:
        self.deserialize = AvroDeserializer(registry)
        self.context = SerializationContext(topic, MessageField.VALUE)

    def read_data(self, body: bytes, datacontenttype: str | None) -> Any:
        assert datacontenttype == CONTENT_TYPE_AVRO
        return self.deserialize(body, self.context)


def consume_one(kafka: KafkaConnection, topic: str, partition: int, offset: int) -> Any:
    consumer = Consumer(kafka.consumer_config(f"ce-{topic}"))
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        msg = None
        while msg is None:
            msg = consumer.poll(10)
        assert msg.error() is None
        return msg
    finally:
        consumer.close()


@pytest.mark.parametrize(
    ("event", "ce_type"),
    [
        (EventReceived.model_validate(make_event_received(callback_url="https://hooks.test/a")), "ticket.created"),
        (EventEnriched.model_validate(make_event_enriched()), "ticket.created.enriched"),
    ],
    ids=["received", "enriched"],
)
def test_the_cloudevents_sdk_reads_our_records(
    kafka: KafkaConnection,
    registry_url: str,
    unique: Callable[[str], str],
    event: EventReceived | EventEnriched,
    ce_type: str,
) -> None:
    topic = unique("ce")
    create_topic(kafka, topic)
    codec = EventCodec.connect(registry_url, PipelineSettings().schemas_dir)
    registry = SchemaRegistryClient({"url": registry_url})  # the CloudEvents SDK's side: the stock client
    incoming = TraceContext.start()
    record = codec.encode(event, topic=topic, trace=incoming)
    position = produce_and_wait(Producer(kafka.producer_config()), topic, record.value, record.key, record.headers)
    msg = consume_one(kafka, topic, position.partition, position.offset)

    raw_headers: list[tuple[str, bytes]] = msg.headers()
    message = KafkaMessage(headers=dict(raw_headers), key=msg.key(), value=msg.value())
    cloudevent = from_binary(message, ConfluentAvroFormat(registry, topic))

    expected = codec.decode(topic, msg.value(), raw_headers, event_type=type(event))
    assert cloudevent.get_specversion() == "1.0"
    assert cloudevent.get_id() == expected.context.id == event.event_id
    assert cloudevent.get_source() == expected.context.source
    assert cloudevent.get_type() == ce_type
    assert cloudevent.get_time() == event.occurred_at
    assert cloudevent.get_subject() == event.subject
    assert cloudevent.get_extension("tenant") == event.tenant
    assert cloudevent.get_extension("partitionkey") == f"{event.tenant}:{event.subject}"
    assert cloudevent.get_datacontenttype() == CONTENT_TYPE_AVRO
    data = cloudevent.get_data()
    assert isinstance(data, dict)
    assert type(event).from_avro(data) == event
    trace = TraceContext.parse(dict(raw_headers)["traceparent"])
    assert trace is not None and trace.trace_id == incoming.trace_id
