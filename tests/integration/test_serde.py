"""The shared serde against a real registry and real Kafka records."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from shared.errors import DependencyUnavailable, DeserializationError
from shared.kafka import KafkaConnection, create_topic
from shared.schemas import SchemaCatalog
from shared.serde import AvroSerde
from shared.settings import PipelineSettings
from tests.support.factories import make_event_received

SCHEMAS = PipelineSettings().schemas_dir
CATALOG = SchemaCatalog(SCHEMAS)  # the stock serializer's writer schema


def serde(url: str) -> AvroSerde:
    return AvroSerde.connect(url, SCHEMAS)


def test_shared_serde_output_reads_with_the_stock_deserializer(registry_url: str, unique: Callable[[str], str]) -> None:
    topic = unique("t")
    event = make_event_received()
    data = serde(registry_url).encode(topic, event, schema_name="EventReceived")
    back = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))(
        data, SerializationContext(topic, MessageField.VALUE)
    )
    assert back == event


def test_stock_serializer_output_reads_with_the_shared_serde(registry_url: str, unique: Callable[[str], str]) -> None:
    topic = unique("t")
    event = make_event_received(callback_url="https://example.test/cb")
    data = AvroSerializer(SchemaRegistryClient({"url": registry_url}), CATALOG.text("EventReceived"))(
        event, SerializationContext(topic, MessageField.VALUE)
    )
    assert serde(registry_url).decode(topic, data, 0, 0, schema_name="EventReceived") == event


def test_unknown_schema_id_is_a_deserialization_error(registry_url: str) -> None:
    frame = struct.pack(">bI", 0, 424242) + b"\x02"
    with pytest.raises(DeserializationError, match=r"unknown schema id 424242") as caught:
        serde(registry_url).decode("events.received.v1", frame, 5, 99)
    assert (caught.value.partition, caught.value.offset) == (5, 99)


def test_truncated_avro_body_is_a_deserialization_error(registry_url: str, unique: Callable[[str], str]) -> None:
    topic = unique("t")
    data = serde(registry_url).encode(topic, make_event_received(), schema_name="EventReceived")
    with pytest.raises(DeserializationError, match="corrupt Avro body"):
        serde(registry_url).decode(topic, data[:12], 0, 1, schema_name="EventReceived")


def test_registry_down_is_a_dependency_error_not_a_bad_record() -> None:
    frame = struct.pack(">bI", 0, 1) + b"\x02"
    with pytest.raises(DependencyUnavailable):
        serde("http://127.0.0.1:9").decode("events.received.v1", frame, 0, 0)


def test_bad_records_read_from_kafka_name_their_real_position(
    kafka: KafkaConnection, registry_url: str, unique: Callable[[str], str]
) -> None:
    topic = unique("garbage")
    create_topic(kafka, topic)
    producer = Producer(kafka.producer_config())
    good = serde(registry_url).encode(topic, make_event_received(), schema_name="EventReceived")
    payloads = [b"garbage bytes", b"\x01" + good[1:], struct.pack(">bI", 0, 999999) + good[5:], good]
    for payload in payloads:
        producer.produce(topic, payload)
    assert producer.flush(30) == 0
    consumer = Consumer(kafka.consumer_config(unique("g")))
    consumer.subscribe([topic])
    outcomes: list[str] = []
    shared = serde(registry_url)
    try:
        while len(outcomes) < len(payloads):
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            try:
                shared.decode(topic, msg.value(), msg.partition(), msg.offset(), schema_name="EventReceived")
                outcomes.append("ok")
            except DeserializationError as exc:
                assert exc.offset == msg.offset() and exc.partition == 0 and exc.topic == topic
                outcomes.append(exc.reason.split(" ")[0] + " " + exc.reason.split(" ")[1])
    finally:
        consumer.close()
    assert outcomes == ["unknown magic", "unknown magic", "unknown schema", "ok"]
