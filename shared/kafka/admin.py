"""Cluster-level helpers: reachability, topic bootstrap and drift, topic limits, end offsets, group progress."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from shared.errors import BrokerUnavailable
from shared.kafka.connection import KafkaConnection
from shared.kafka.failure import KafkaFailure
from shared.topics import TOPICS, TopicSpec

log = logging.getLogger(__name__)


def wait_for_broker(kafka: KafkaConnection, timeout_s: float = 30.0) -> None:
    """Block until the broker answers a metadata request, or raise ``BrokerUnavailable`` by the deadline."""
    deadline = time.monotonic() + timeout_s
    admin = kafka.admin(quiet=True)
    last_error = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerUnavailable(
                f"Kafka at {kafka.bootstrap_servers} is not reachable after {timeout_s:.0f}s ({last_error}); "
                "is the broker running? Try `make up` or `pipeline status`."
            )
        try:
            admin.list_topics(timeout=min(remaining, 3.0))
            return
        except KafkaException as exc:
            last_error = str(KafkaFailure.of(exc) or repr(exc))
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def create_topic(
    kafka: KafkaConnection,
    name: str,
    partitions: int = 1,
    config: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> bool:
    """Create one topic unless it exists; return whether this call created it."""
    admin = kafka.admin()
    if name in admin.list_topics(timeout=timeout_s).topics:
        return False
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})], request_timeout=timeout_s)
    try:
        futures[name].result(timeout=timeout_s)
    except KafkaException as exc:
        if _already_exists(exc):
            return False
        raise
    return True


def _already_exists(exc: KafkaException) -> bool:
    failure = KafkaFailure.of(exc)
    return failure is not None and failure.code == KafkaError.TOPIC_ALREADY_EXISTS


def topic_max_bytes(kafka: KafkaConnection, topic: str, default: int, timeout_s: float = 10.0) -> int:
    """The largest record ``topic`` accepts (its ``max.message.bytes``), or ``default`` when it cannot be read."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        future = kafka.admin().describe_configs([resource], request_timeout=timeout_s)[resource]
        entry = future.result(timeout=timeout_s).get("max.message.bytes")
        return int(entry.value) if entry is not None and entry.value else default
    except (KafkaException, TimeoutError, ValueError) as exc:
        # An unanswered lookup must not stop the runtime: the producer's own limit still holds.
        log.warning("cannot read max.message.bytes; using the default", extra={"topic": topic, "error": str(exc)})
        return default


def partitions_of(kafka: KafkaConnection, topic: str, timeout_s: float = 10.0) -> list[int]:
    """The partition numbers of ``topic``; LookupError when it does not exist."""
    metadata = kafka.admin(quiet=True).list_topics(topic, timeout=timeout_s)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise LookupError(f"topic {topic} does not exist")
    return sorted(found.partitions)


def topic_names(kafka: KafkaConnection, timeout_s: float = 10.0) -> set[str]:
    return set(kafka.admin().list_topics(timeout=timeout_s).topics)


@dataclass(frozen=True)
class BootstrapReport:
    """What a topic bootstrap did and what it found different from the registry."""

    created: list[str]
    existing: list[str]
    drift: list[str]


def bootstrap_topics(
    kafka: KafkaConnection, specs: tuple[TopicSpec, ...] | list[TopicSpec] = TOPICS, timeout_s: float = 30.0
) -> BootstrapReport:
    """Create missing topics; report partition or config drift of existing ones without changing them."""
    wait_for_broker(kafka, timeout_s)
    admin = kafka.admin()
    metadata = admin.list_topics(timeout=timeout_s)
    present = metadata.topics
    missing = [spec for spec in specs if spec.name not in present]
    created: list[str] = []
    raced: list[str] = []
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication, config=s.config()) for s in missing],
            request_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=timeout_s)
                created.append(name)
            except KafkaException as exc:
                # Another bootstrap raced us (or metadata lagged): the topic exists, which is what we wanted.
                if _already_exists(exc):
                    raced.append(name)
                    continue
                raise
        present = _await_metadata(admin, [s.name for s in missing], timeout_s)
    drift: list[str] = []
    existing = [spec for spec in specs if spec.name not in created and spec.name in present]
    for spec in existing:
        have = len(present[spec.name].partitions)
        if have != spec.partitions:
            drift.append(f"{spec.name}: partitions {have}, registry says {spec.partitions}")
    if existing:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, spec.name) for spec in existing]
        described = admin.describe_configs(resources, request_timeout=timeout_s)
        for resource, future in described.items():
            spec = next(s for s in existing if s.name == resource.name)
            entries = future.result(timeout=timeout_s)
            for key, want in spec.config().items():
                got = entries[key].value if key in entries else None
                if got != want:
                    drift.append(f"{spec.name}: {key}={got}, registry says {want}")
    for line in drift:
        log.warning("topic drift", extra={"drift": line})
    return BootstrapReport(created=sorted(created), existing=sorted(s.name for s in existing), drift=drift)


def _await_metadata(admin: AdminClient, names: list[str], timeout_s: float) -> Any:
    """Wait until the broker's metadata shows ``names`` with a leader on every partition, so callers can use
    them at once (a create is acknowledged by the controller before every broker's metadata has it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=max(0.5, deadline - time.monotonic())).topics
        waiting = [
            name
            for name in names
            if name not in topics
            or topics[name].error is not None
            or any(p.leader < 0 for p in topics[name].partitions.values())
        ]
        if not waiting:
            return topics
        if time.monotonic() > deadline:
            raise TimeoutError(f"created topics without leaders after {timeout_s:.0f}s: {', '.join(waiting[:5])}")
        time.sleep(0.05)


def end_offsets(kafka: KafkaConnection, topics: list[str], timeout_s: float = 10.0) -> dict[str, dict[int, int]]:
    """Return the high watermark of every partition of ``topics``."""
    consumer = Consumer(kafka.consumer_config("pipeline-status", **{"enable.auto.commit": False}))
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        result: dict[str, dict[int, int]] = {}
        for topic in topics:
            if topic not in metadata.topics:
                continue
            result[topic] = {}
            for partition in sorted(metadata.topics[topic].partitions):
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
                result[topic][partition] = high
        return result
    finally:
        consumer.close()


class GroupProgress:
    """How far a consumer group has committed on one topic, read without joining the group."""

    def __init__(self, kafka: KafkaConnection, group: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer(kafka.consumer_config(group))
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.last = 0

    def committed(self) -> int:
        """Sum of committed offsets; while the coordinator moves or loads, the last reading."""
        try:
            tps = self.consumer.committed(self.partitions, timeout=10)
        except KafkaException:
            return self.last
        self.last = sum(max(tp.offset, 0) for tp in tps)
        return self.last

    def close(self) -> None:
        self.consumer.close()
