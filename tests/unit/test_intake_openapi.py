"""intake's OpenAPI document declares the request bodies its routes parse themselves, and describes every
operation."""

from __future__ import annotations

from typing import Any

from services.intake.app import create_app
from services.intake.settings import IntakeSettings


def test_every_post_declares_its_json_body_and_every_reference_resolves() -> None:
    schema: dict[str, Any] = create_app(IntakeSettings()).openapi()
    components = schema["components"]["schemas"]
    for path in ("/v1/events", "/v1/events:batch", "/v1/subscriptions"):
        ref = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.split("/")[-1] in components
    text = str(schema)
    for name in {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in components, name
    assert components["EventIn"]["properties"]["payload"]["$ref"] == "#/components/schemas/Payload"


def test_every_operation_has_a_summary_and_a_description() -> None:
    schema: dict[str, Any] = create_app(IntakeSettings()).openapi()
    operations = [(method, path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    assert len(operations) >= 9
    for method, path, operation in operations:
        assert operation.get("summary", "").strip(), (method, path)
        assert operation.get("description", "").strip(), (method, path)


def test_the_batch_documents_200_for_duplicates_only_and_422_for_all_rejected() -> None:
    responses = create_app(IntakeSettings()).openapi()["paths"]["/v1/events:batch"]["post"]["responses"]
    assert {"200", "202", "422", "503"} <= set(responses)
    assert "rejected" in responses["422"]["description"]
