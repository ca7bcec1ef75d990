"""The embedded registry, exercised with confluent-kafka's own SchemaRegistryClient and Avro serde."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from shared.schemas import SchemaCatalog
from shared.settings import PipelineSettings
from tests.conftest import RegistryProcess
from tests.support.factories import make_event_received

CATALOG = SchemaCatalog(PipelineSettings().schemas_dir)


def ticket(*extra: dict[str, Any]) -> Schema:
    fields = [{"name": "id", "type": "string"}, *extra]
    return Schema(json.dumps({"type": "record", "name": "Ticket", "fields": fields}), "AVRO")


def test_register_lookup_and_fetch_with_the_stock_client(registry_url: str, unique: Callable[[str], str]) -> None:
    client = SchemaRegistryClient({"url": registry_url})
    subject = unique("tickets") + "-value"
    schema_id = client.register_schema(subject, ticket())
    assert client.register_schema(subject, ticket()) == schema_id  # idempotent
    fresh = SchemaRegistryClient({"url": registry_url})  # no client cache
    assert json.loads(fresh.get_schema(schema_id).schema_str or "") == json.loads(ticket().schema_str or "")
    found = fresh.lookup_schema(subject, ticket())
    assert (found.schema_id, found.version) == (schema_id, 1)
    assert subject in fresh.get_subjects()
    assert fresh.get_versions(subject) == [1]
    assert fresh.get_latest_version(subject).schema_id == schema_id
    assert fresh.get_version(subject, 1).schema_id == schema_id


def test_backward_compatible_evolution_gets_a_new_version(registry_url: str, unique: Callable[[str], str]) -> None:
    client = SchemaRegistryClient({"url": registry_url})
    subject = unique("evolve") + "-value"
    first = client.register_schema(subject, ticket())
    evolved = ticket({"name": "tag", "type": "string", "default": ""})
    assert client.test_compatibility(subject, evolved) is True
    second = client.register_schema(subject, evolved)
    assert second != first
    assert client.get_versions(subject) == [1, 2]


def test_incompatible_schema_is_refused_with_409_in_confluent_format(
    registry_url: str, unique: Callable[[str], str]
) -> None:
    client = SchemaRegistryClient({"url": registry_url})
    subject = unique("strict") + "-value"
    client.register_schema(subject, ticket())
    breaking = ticket({"name": "tag", "type": "string"})  # no default: old data cannot be read
    assert client.test_compatibility(subject, breaking) is False
    with pytest.raises(SchemaRegistryError) as caught:
        client.register_schema(subject, breaking)
    assert caught.value.http_status_code == 409
    assert caught.value.error_code == 409
    raw = httpx.post(
        f"{registry_url}/subjects/{subject}/versions",
        content=json.dumps({"schema": breaking.schema_str}),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    assert raw.status_code == 409
    body = raw.json()
    assert set(body) == {"error_code", "message"}
    assert "incompatible" in body["message"] and "tag" in body["message"]


def test_missing_subject_answers_404_in_confluent_format(registry_url: str, unique: Callable[[str], str]) -> None:
    subject = unique("missing")
    response = httpx.get(f"{registry_url}/subjects/{subject}/versions")
    assert response.status_code == 404
    assert response.json() == {"error_code": 40401, "message": f"Subject '{subject}' not found."}
    with pytest.raises(SchemaRegistryError) as caught:
        SchemaRegistryClient({"url": registry_url}).get_latest_version(subject)
    assert caught.value.error_code == 40401


def test_unknown_schema_id_and_version_answer_404(registry_url: str, unique: Callable[[str], str]) -> None:
    assert httpx.get(f"{registry_url}/schemas/ids/987654").json()["error_code"] == 40403
    subject = unique("v") + "-value"
    SchemaRegistryClient({"url": registry_url}).register_schema(subject, ticket())
    response = httpx.get(f"{registry_url}/subjects/{subject}/versions/9")
    assert (response.status_code, response.json()["error_code"]) == (404, 40402)


def test_invalid_schema_is_422(registry_url: str, unique: Callable[[str], str]) -> None:
    response = httpx.post(f"{registry_url}/subjects/{unique('bad')}/versions", json={"schema": '{"type": "recordz"}'})
    assert response.status_code == 422
    assert response.json()["error_code"] == 42201


def test_compatibility_config_global_and_per_subject(registry_url: str, unique: Callable[[str], str]) -> None:
    client = SchemaRegistryClient({"url": registry_url})
    subject = unique("cfg") + "-value"
    assert client.get_compatibility() == "BACKWARD"
    client.register_schema(subject, ticket())
    client.set_compatibility(subject, "NONE")
    assert client.get_compatibility(subject) == "NONE"
    client.register_schema(subject, ticket({"name": "tag", "type": "string"}))  # allowed under NONE
    bad_level = httpx.put(f"{registry_url}/config/{subject}", json={"compatibility": "SOMETIMES"})
    assert (bad_level.status_code, bad_level.json()["error_code"]) == (422, 42203)


def test_stock_avro_serializer_and_deserializer_round_trip(registry_url: str, unique: Callable[[str], str]) -> None:
    client = SchemaRegistryClient({"url": registry_url})
    topic = unique("events.received")
    serializer = AvroSerializer(client, CATALOG.text("EventReceived"))
    context = SerializationContext(topic, MessageField.VALUE)
    event = make_event_received()
    data = serializer(event, context)
    assert data is not None and data[0] == 0
    back = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))(data, context)
    assert back == event


def test_schemas_and_ids_survive_a_registry_restart(
    start_registry: Callable[..., RegistryProcess], unique: Callable[[str], str]
) -> None:
    registry = start_registry()
    client = SchemaRegistryClient({"url": registry.url})
    subjects = [unique(f"s{i}") + "-value" for i in range(2)]
    ids = {subject: client.register_schema(subject, ticket()) for subject in subjects}
    evolved_subject = next(iter(ids))
    evolved_id = client.register_schema(evolved_subject, ticket({"name": "n", "type": "int", "default": 0}))
    registry.stop()
    again = start_registry(registry.topic)
    fresh = SchemaRegistryClient({"url": again.url})
    assert fresh.get_latest_version(evolved_subject).schema_id == evolved_id
    assert fresh.get_versions(evolved_subject) == [1, 2]
    # A new schema after the restart gets a new id, never one already taken.
    new_id = fresh.register_schema(unique("after") + "-value", ticket({"name": "z", "type": "long", "default": 0}))
    assert new_id not in {*ids.values(), evolved_id}
