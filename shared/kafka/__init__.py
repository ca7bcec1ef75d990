"""The thin Kafka transport: the connection settings, client configs, delivery reports, typed errors, admin."""

from shared.kafka.admin import (
    BootstrapReport,
    GroupProgress,
    bootstrap_topics,
    create_topic,
    end_offsets,
    topic_max_bytes,
    topic_names,
    wait_for_broker,
)
from shared.kafka.connection import KafkaConnection
from shared.kafka.delivery import DeliveryFailed, DeliveryReports, RecordPosition, produce_and_wait
from shared.kafka.failure import KafkaFailure

__all__ = [
    "BootstrapReport",
    "DeliveryFailed",
    "DeliveryReports",
    "GroupProgress",
    "KafkaConnection",
    "KafkaFailure",
    "RecordPosition",
    "bootstrap_topics",
    "create_topic",
    "end_offsets",
    "produce_and_wait",
    "topic_max_bytes",
    "topic_names",
    "wait_for_broker",
]
