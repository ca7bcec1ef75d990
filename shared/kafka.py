"""Thin Kafka transport helpers: client configs, reachability, topic bootstrap and end offsets."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from shared.errors import BrokerUnavailable
from shared.topics import TOPICS, TopicSpec

log = logging.getLogger(__name__)


# librdkafka's own log lines go through Python logging (JSON); probes that expect refusals stay quiet.
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")
_PROBE_LOG = logging.getLogger("librdkafka.probe")
_PROBE_LOG.setLevel(logging.CRITICAL)
_PROBE_LOG.propagate = False


def admin_client(bootstrap: str, quiet: bool = False) -> AdminClient:
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000}
    conf["logger"] = _PROBE_LOG if quiet else LIBRDKAFKA_LOG
    return AdminClient(conf)


def producer_config(bootstrap: str, **overrides: object) -> dict[str, object]:
    """Durable producer defaults: every write is acknowledged by all in-sync replicas."""
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
        "linger.ms": 5,
    }
    conf.update(overrides)
    return conf


def consumer_config(bootstrap: str, group_id: str, **overrides: object) -> dict[str, object]:
    """Consumer defaults: read only committed data; offsets are stored by the caller after output is acked."""
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }
    conf.update(overrides)
    return conf


def wait_for_broker(bootstrap: str, timeout_s: float = 30.0) -> None:
    """Block until the broker answers a metadata request, or raise ``BrokerUnavailable`` by the deadline."""
    deadline = time.monotonic() + timeout_s
    admin = admin_client(bootstrap, quiet=True)
    last_error = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerUnavailable(
                f"Kafka at {bootstrap} is not reachable after {timeout_s:.0f}s ({last_error}); "
                "is the broker running? Try `make up` or `pipeline status`."
            )
        try:
            admin.list_topics(timeout=min(remaining, 3.0))
            return
        except KafkaException as exc:
            last_error = str(exc.args[0]) if exc.args else repr(exc)
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def create_topic(
    bootstrap: str, name: str, partitions: int = 1, config: dict[str, str] | None = None, timeout_s: float = 30.0
) -> bool:
    """Create one topic unless it exists; return whether this call created it."""
    admin = admin_client(bootstrap)
    if name in admin.list_topics(timeout=timeout_s).topics:
        return False
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})], request_timeout=timeout_s)
    try:
        futures[name].result(timeout=timeout_s)
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    return True


@dataclass(frozen=True)
class BootstrapReport:
    """What a topic bootstrap did and what it found different from the registry."""

    created: list[str]
    existing: list[str]
    drift: list[str]


def bootstrap_topics(
    bootstrap: str, specs: tuple[TopicSpec, ...] | list[TopicSpec] = TOPICS, timeout_s: float = 30.0
) -> BootstrapReport:
    """Create missing topics; report partition or config drift of existing ones without changing them."""
    wait_for_broker(bootstrap, timeout_s)
    admin = admin_client(bootstrap)
    metadata = admin.list_topics(timeout=timeout_s)
    present = metadata.topics
    missing = [spec for spec in specs if spec.name not in present]
    created: list[str] = []
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
                # Another bootstrap raced us: the topic exists, which is what we wanted.
                if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                raise
    drift: list[str] = []
    existing = [spec for spec in specs if spec.name in present]
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


def end_offsets(bootstrap: str, topics: list[str], timeout_s: float = 10.0) -> dict[str, dict[int, int]]:
    """Return the high watermark of every partition of ``topics``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pipeline-status", "enable.auto.commit": False})
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

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer(consumer_config(bootstrap, group))
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
