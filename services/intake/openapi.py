"""intake's OpenAPI document: the generated one plus the request bodies the routes parse themselves."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.intake.domain import IDENTIFIER, BatchIn, EventIn, SubscriptionIn
from services.intake.handlers import BATCH_PATH
from shared.docs import declare_api_keys
from shared.problems import document_problems

# The shared health routes (``shared/health.py``) carry no summary or description of their own.
HEALTH_OPERATIONS = {
    "/healthz": ("Liveness", "200 while the process serves requests; it checks no dependency."),
    "/readyz": (
        "Readiness",
        "200 when Kafka, Redis and the schema registry answer their checks, else 503 naming the failed check.",
    ),
    "/metrics": ("Prometheus metrics", "Every intake process's metrics, in the Prometheus text format."),
}


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The document of ``app``, with the bodies its routes parse themselves (so the body limit and the
    field-naming errors run first), the ``Idempotency-Key`` header and the API-key security schemes."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (EventIn, BatchIn, SubscriptionIn):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
    for path, name in (("/v1/events", "EventIn"), (BATCH_PATH, "BatchIn"), ("/v1/subscriptions", "SubscriptionIn")):
        schema["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    schema["paths"]["/v1/events"]["post"]["parameters"] = [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Names the event when the body has no event_id; a repeat within the window is a duplicate.",
            "schema": IDENTIFIER.json_schema(),
        }
    ]
    for path, (summary, description) in HEALTH_OPERATIONS.items():
        schema["paths"][path]["get"].update(summary=summary, description=description)
    app.openapi_schema = document_problems(declare_api_keys(schema))
    return schema
