"""The Avro schemas in ``schemas/``: loading, the topic-to-schema map, and registration."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from fastavro import parse_schema

from shared.topics import BY_NAME, TOPICS, value_subject


class SchemaCatalog:
    """Every ``.avsc`` in a directory, by record name, parsed once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @cached_property
    def raw(self) -> dict[str, dict[str, Any]]:
        schemas: dict[str, dict[str, Any]] = {}
        for path in sorted(self.directory.glob("*.avsc")):
            schemas[path.stem] = json.loads(path.read_text())
        return schemas

    @cached_property
    def _parsed(self) -> dict[str, Any]:
        return {name: parse_schema(schema) for name, schema in self.raw.items()}

    def parsed(self, name: str) -> Any:
        return self._parsed[name]

    def text(self, name: str) -> str:
        return json.dumps(self.raw[name], separators=(",", ":"))

    def for_topic(self, topic: str) -> str | None:
        """Return the record name that a topic's values carry, if the topic is Avro."""
        spec = BY_NAME.get(topic)
        return spec.value_schema if spec else None

    def register_all(self, client: SchemaRegistryClient) -> dict[str, int]:
        """Register every topic's value schema under ``<topic>-value``; return subject to schema id."""
        ids: dict[str, int] = {}
        for spec in TOPICS:
            if spec.value_schema is None:
                continue
            subject = value_subject(spec.name)
            ids[subject] = client.register_schema(subject, Schema(self.text(spec.value_schema), "AVRO"))
        return ids
