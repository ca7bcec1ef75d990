"""The project's broker keeps its data across a restart (state in a directory that survives)."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import Consumer, Producer

from shared.kafka import KafkaConnection, create_topic
from tests.support.processes import free_port, start_broker


def test_records_and_topics_survive_a_broker_restart(tmp_path: Path) -> None:
    port, controller = free_port(), free_port()
    kafka = KafkaConnection(bootstrap_servers=f"127.0.0.1:{port}")
    broker = start_broker(tmp_path / "kafka", port, controller)
    try:
        create_topic(kafka, "durable", 2)
        producer = Producer(kafka.producer_config())
        for i in range(10):
            producer.produce("durable", key=f"k{i}".encode(), value=f"v{i}".encode())
        assert producer.flush(30) == 0
    finally:
        broker.stop()
    assert broker.popen.returncode == 143 or broker.popen.returncode == 0, broker.tail()
    broker = start_broker(tmp_path / "kafka", port, controller)
    try:
        consumer = Consumer(kafka.consumer_config("after-restart"))
        consumer.subscribe(["durable"])
        values: set[bytes | None] = set()
        while len(values) < 10:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                values.add(msg.value())
        consumer.close()
        assert values == {f"v{i}".encode() for i in range(10)}
    finally:
        broker.stop()
