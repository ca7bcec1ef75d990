"""Avro serde in the Confluent wire format: magic byte 0, a 4-byte schema id, then Avro binary."""

from __future__ import annotations

import io
import json
import struct
import threading
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from shared.errors import DependencyUnavailable, DeserializationError
from shared.schemas import SchemaCatalog
from shared.topics import value_subject

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")


class AvroSerde:
    """Encode and decode topic values against the registry, caching schema ids and parsed schemas.

    Decoding resolves the writer's schema (looked up by id) against this process's reader schema from
    ``schemas/``, so producers may evolve BACKWARD-compatibly ahead of consumers.
    """

    def __init__(self, registry: SchemaRegistryClient, catalog: SchemaCatalog) -> None:
        self._registry = registry
        self._catalog = catalog
        self._ids: dict[str, int] = {}
        self._writers: dict[int, Any] = {}
        self._pairs: dict[tuple[int, str | None], tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, registry_url: str, schemas_dir: Path) -> AvroSerde:
        """A serde over the registry at ``registry_url`` (``mock://<name>`` for an in-memory one) and the
        reader schemas in ``schemas_dir``."""
        return cls(SchemaRegistryClient.new_client({"url": registry_url}), SchemaCatalog(schemas_dir))

    def needs_registry(self, topic: str, data: bytes | None = None) -> bool:
        """Whether encoding for ``topic`` (or decoding ``data``) would ask the registry: an asyncio caller runs
        such a call in a thread, since the client blocks (and retries) on the network."""
        if data is not None and len(data) >= HEADER.size:
            magic, schema_id = HEADER.unpack_from(data)
            return magic == MAGIC_BYTE and schema_id not in self._writers
        return data is None and topic not in self._ids

    def schema_id(self, topic: str, schema_name: str | None = None) -> int:
        """Return (registering once if needed) the id of this process's schema for ``topic``."""
        cached = self._ids.get(topic)
        if cached is not None:
            return cached
        name = schema_name or self._require_schema(topic)
        try:
            schema_id = self._registry.register_schema(value_subject(topic), Schema(self._catalog.text(name), "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code is not None and 400 <= exc.http_status_code < 500:
                raise
            raise DependencyUnavailable(f"schema registry unavailable: {exc}") from exc
        except Exception as exc:  # connection refused, timeouts: the registry is down, not the record
            raise DependencyUnavailable(f"schema registry unavailable: {exc}") from exc
        with self._lock:
            self._ids[topic] = schema_id
        return schema_id

    def encode(self, topic: str, record: dict[str, Any], schema_name: str | None = None) -> bytes:
        """Frame ``record`` with the topic's schema id and write it as Avro binary.

        ``schema_name`` names the record schema for topics outside the registry (tests, benchmarks).
        """
        name = schema_name or self._require_schema(topic)
        schema_id = self.schema_id(topic, name)
        buffer = io.BytesIO()
        buffer.write(HEADER.pack(MAGIC_BYTE, schema_id))
        schemaless_writer(buffer, self._catalog.parsed(name), record)
        return buffer.getvalue()

    def decode(
        self,
        topic: str,
        data: bytes | None,
        partition: int | None = None,
        offset: int | None = None,
        schema_name: str | None = None,
    ) -> Any:
        """Decode one framed value; raise ``DeserializationError`` naming where the record sits."""

        def fail(reason: str) -> DeserializationError:
            return DeserializationError(reason, topic=topic, partition=partition, offset=offset)

        if data is None:
            raise fail("value is null (tombstone)")
        if len(data) < HEADER.size:
            raise fail(f"truncated frame: {len(data)} bytes, the Confluent header alone is {HEADER.size}")
        magic, schema_id = HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise fail(f"unknown magic byte {magic}, expected {MAGIC_BYTE}")
        reader_name = schema_name or self._catalog.for_topic(topic)
        pair = self._pairs.get((schema_id, reader_name))
        if pair is None:
            writer = self._writer_schema(schema_id, fail)
            reader = self._catalog.parsed(reader_name) if reader_name else None
            # The same schema on both sides skips fastavro's slower resolution path.
            pair = (writer, None if reader == writer else reader)
            self._pairs[(schema_id, reader_name)] = pair
        writer, reader = pair
        body = io.BytesIO(data)
        body.seek(HEADER.size)
        try:
            record = schemaless_reader(body, writer, reader)
        except Exception as exc:  # fastavro raises EOFError, ValueError, SchemaResolutionError, ...
            raise fail(f"corrupt Avro body for schema id {schema_id}: {type(exc).__name__}: {exc}") from exc
        if body.tell() != len(data):
            raise fail(f"{len(data) - body.tell()} trailing bytes after the Avro record (schema id {schema_id})")
        return record

    def _writer_schema(self, schema_id: int, fail: Any) -> Any:
        cached = self._writers.get(schema_id)
        if cached is not None:
            return cached
        try:
            schema = self._registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise fail(f"unknown schema id {schema_id} (registry answered 404)") from exc
            raise DependencyUnavailable(f"schema registry error for id {schema_id}: {exc}") from exc
        except Exception as exc:
            raise DependencyUnavailable(f"schema registry unavailable for id {schema_id}: {exc}") from exc
        parsed = parse_schema(json.loads(schema.schema_str or "null"))
        with self._lock:
            self._writers[schema_id] = parsed
        return parsed

    def reader_schema(self, topic: str) -> str | None:
        """The record name this process reads ``topic``'s values as, if the topic is Avro."""
        return self._catalog.for_topic(topic)

    def _require_schema(self, topic: str) -> str:
        name = self._catalog.for_topic(topic)
        if name is None:
            raise ValueError(f"topic {topic} has no Avro value schema in the topic registry")
        return name
