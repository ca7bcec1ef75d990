"""Topic bootstrap from the registry: idempotent, reports drift, fails fast when the broker is down."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

from shared.errors import BrokerUnavailable
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.topics import TopicSpec
from tests.support.processes import free_port


def specs(unique: Callable[[str], str]) -> list[TopicSpec]:
    return [
        TopicSpec(unique("events"), 3, "k", None),
        TopicSpec(unique("table"), 2, "k", None, compacted=True),
    ]


def test_bootstrap_creates_missing_topics_with_their_configs(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    wanted = specs(unique)
    report = bootstrap_topics(kafka, wanted)
    assert report.created == sorted(s.name for s in wanted)
    admin = kafka.admin()
    topics = admin.list_topics(timeout=10).topics
    assert [len(topics[s.name].partitions) for s in wanted] == [3, 2]
    resource = ConfigResource(ConfigResource.Type.TOPIC, wanted[1].name)
    configs = admin.describe_configs([resource])[resource].result(10)
    assert configs["cleanup.policy"].value == "compact"


def test_second_bootstrap_changes_nothing_and_finds_no_drift(
    kafka: KafkaConnection, unique: Callable[[str], str]
) -> None:
    wanted = specs(unique)
    bootstrap_topics(kafka, wanted)
    again = bootstrap_topics(kafka, wanted)
    assert again.created == []
    assert again.existing == sorted(s.name for s in wanted)
    assert again.drift == []


def test_bootstrap_reports_partition_and_config_drift(kafka: KafkaConnection, unique: Callable[[str], str]) -> None:
    wanted = specs(unique)
    bootstrap_topics(kafka, wanted)
    changed = [
        TopicSpec(wanted[0].name, 6, "k", None),
        TopicSpec(wanted[1].name, 2, "k", None, compacted=False),
    ]
    drift = bootstrap_topics(kafka, changed).drift
    assert any(wanted[0].name in line and "partitions 3" in line for line in drift)
    assert any(wanted[1].name in line and "cleanup.policy=compact" in line for line in drift)


def test_bootstrap_against_a_dead_broker_fails_clearly_within_30_seconds(unique: Callable[[str], str]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=f"Kafka at {dead} is not reachable"):
        bootstrap_topics(KafkaConnection(bootstrap_servers=dead), specs(unique), timeout_s=5)
    assert time.monotonic() - started < 30
