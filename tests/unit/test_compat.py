"""Avro schema resolution rules behind the registry's compatibility checks."""

from __future__ import annotations

from typing import Any

from services.registry.compat import compatibility_problems, read_problems


def record(*fields: dict[str, Any], name: str = "Ticket") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "t", "fields": list(fields)}


V1 = record({"name": "id", "type": "string"}, {"name": "count", "type": "int"})


def test_adding_a_field_with_a_default_is_backward_compatible() -> None:
    v2 = record(*V1["fields"], {"name": "tag", "type": "string", "default": ""})
    assert compatibility_problems("BACKWARD", v2, [V1]) == []


def test_adding_a_field_without_a_default_is_refused() -> None:
    v2 = record(*V1["fields"], {"name": "tag", "type": "string"})
    problems = compatibility_problems("BACKWARD", v2, [V1])
    assert len(problems) == 1
    assert "/tag" in problems[0]


def test_removing_a_field_is_backward_but_not_forward_compatible_without_default() -> None:
    v2 = record({"name": "id", "type": "string"})
    assert compatibility_problems("BACKWARD", v2, [V1]) == []
    assert compatibility_problems("FORWARD", v2, [V1]) != []


def test_int_promotes_to_long_but_long_does_not_narrow_to_int() -> None:
    widened = record({"name": "id", "type": "string"}, {"name": "count", "type": "long"})
    assert read_problems(widened, V1) == []
    assert read_problems(V1, widened) != []


def test_enum_losing_a_symbol_needs_a_reader_default() -> None:
    writer = {"type": "enum", "name": "P", "symbols": ["LOW", "HIGH", "URGENT"]}
    reader = {"type": "enum", "name": "P", "symbols": ["LOW", "HIGH"]}
    assert read_problems(reader, writer) != []
    assert read_problems({**reader, "default": "LOW"}, writer) == []


def test_nullable_field_reads_its_non_null_writer_and_null_branch_must_exist() -> None:
    writer = record({"name": "url", "type": "string"})
    reader = record({"name": "url", "type": ["null", "string"], "default": None})
    assert read_problems(reader, writer) == []
    assert read_problems(writer, reader) != []  # a null written cannot be read as string


def test_named_type_references_and_nested_records_are_followed() -> None:
    pred = {"type": "record", "name": "Prediction", "fields": [{"name": "label", "type": "string"}]}
    writer = record({"name": "category", "type": pred}, {"name": "priority", "type": "Prediction"})
    pred_v2 = {
        "type": "record",
        "name": "Prediction",
        "fields": [{"name": "label", "type": "string"}, {"name": "confidence", "type": "double"}],
    }
    reader = record({"name": "category", "type": pred_v2}, {"name": "priority", "type": "Prediction"})
    problems = read_problems(reader, writer)
    assert len(problems) == 2
    assert all("confidence" in p for p in problems)


def test_transitive_levels_check_every_version_not_just_the_latest() -> None:
    v2 = record(
        {"name": "id", "type": "string"}, {"name": "count", "type": "int"}, {"name": "x", "type": "int", "default": 0}
    )
    v3 = record({"name": "id", "type": "string"}, {"name": "x", "type": "int"})  # no default, v1 lacks x
    assert compatibility_problems("BACKWARD", v3, [V1, v2]) == []
    assert compatibility_problems("BACKWARD_TRANSITIVE", v3, [V1, v2]) != []


def test_none_level_accepts_anything() -> None:
    assert compatibility_problems("NONE", {"type": "string"}, [V1]) == []


def test_record_rename_is_incompatible_unless_aliased() -> None:
    renamed = record(*V1["fields"], name="Issue")
    assert read_problems(renamed, V1) != []
    assert read_problems({**renamed, "aliases": ["Ticket"]}, V1) == []
