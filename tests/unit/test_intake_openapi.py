"""intake's OpenAPI document declares the request bodies its routes parse themselves."""

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
