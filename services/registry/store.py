"""Registry state, persisted in the compacted topic ``_schemas`` and rebuilt from it at start."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from shared.kafka import KafkaConnection, create_topic, produce_and_wait, wait_for_broker
from shared.topics import BY_NAME, SCHEMAS

log = logging.getLogger(__name__)


def canonical(schema: Any) -> str:
    """The identity of a schema: its JSON with sorted keys and no whitespace."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


@dataclass
class SubjectVersion:
    subject: str
    version: int
    schema_id: int
    schema: str

    def as_response(self) -> dict[str, Any]:
        return {"subject": self.subject, "version": self.version, "id": self.schema_id, "schema": self.schema}


@dataclass
class RegistryState:
    """What the registry knows; every change is a record applied in log order."""

    schemas: dict[int, str] = field(default_factory=dict)
    ids_by_canonical: dict[str, int] = field(default_factory=dict)
    subjects: dict[str, list[SubjectVersion]] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)

    def apply(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        if value is None:
            return
        if key.get("keytype") == "SCHEMA":
            entry = SubjectVersion(value["subject"], value["version"], value["id"], value["schema"])
            self.schemas[entry.schema_id] = entry.schema
            self.ids_by_canonical.setdefault(canonical(json.loads(entry.schema)), entry.schema_id)
            versions = self.subjects.setdefault(entry.subject, [])
            if all(v.version != entry.version for v in versions):
                versions.append(entry)
                versions.sort(key=lambda v: v.version)
        elif key.get("keytype") == "CONFIG":
            self.config[key.get("subject") or ""] = value["compatibilityLevel"]

    def next_id(self) -> int:
        return max(self.schemas, default=0) + 1


class KafkaBackedStore:
    """Reads ``_schemas`` to its end once, then writes each change there before applying it."""

    def __init__(self, kafka: KafkaConnection, topic: str, write_timeout_s: float) -> None:
        self.kafka = kafka.for_client("registry")
        self.topic = topic
        self.write_timeout_s = write_timeout_s
        self.state = RegistryState()
        self.loaded = threading.Event()
        self.lock = threading.Lock()
        self._producer: Producer | None = None

    def load(self, broker_timeout_s: float = 3600.0) -> None:
        """Wait for the broker, make sure the topic exists, and replay it into memory."""
        wait_for_broker(self.kafka, broker_timeout_s)
        self._ensure_topic()
        consumer = Consumer(self.kafka.consumer_config("registry-loader", **{"enable.auto.commit": False}))
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=30)
            consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
            position = 0
            while position < high:
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        break
                    raise KafkaException(error)
                self._apply_message(msg)
                position = (msg.offset() or 0) + 1
        finally:
            consumer.close()
        self._producer = Producer(self.kafka.producer_config(**{"linger.ms": 0}))
        self.loaded.set()
        log.info(
            "registry loaded",
            extra={
                "topic": self.topic,
                "schemas": len(self.state.schemas),
                "subjects": len(self.state.subjects),
            },
        )

    def load_until_done(self, retry_delay_s: float = 1.0) -> None:
        """Keep loading until it succeeds: right after a broker start, leaders may not be elected yet."""
        while True:
            try:
                self.state = RegistryState()
                self.load()
                return
            except Exception:
                log.warning("registry load failed; retrying", exc_info=True)
                time.sleep(retry_delay_s)

    def _ensure_topic(self) -> None:
        spec = BY_NAME[SCHEMAS]
        create_topic(self.kafka, self.topic, spec.partitions, spec.config())

    def _apply_message(self, msg: Message) -> None:
        try:
            key = json.loads(msg.key() or b"{}")
            raw = msg.value()
            value = json.loads(raw) if raw is not None else None
        except ValueError:
            log.error("skipping undecodable _schemas record", extra={"offset": msg.offset()})
            return
        self.state.apply(key, value)

    def write(self, key: dict[str, Any], value: dict[str, Any]) -> None:
        """Persist one change, wait for the broker's acknowledgement, then apply it."""
        if self._producer is None:
            raise RuntimeError("registry store is not loaded")
        produce_and_wait(
            self._producer,
            self.topic,
            json.dumps(value).encode(),
            json.dumps(key, sort_keys=True).encode(),
            timeout_s=self.write_timeout_s,
        )
        self.state.apply(key, value)
