"""ops' OpenAPI document: the generated one plus the replay body the route parses itself, the API keys and the
problems."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.ops.domain import ReplayRequest
from services.ops.handlers import REPLAYS_PATH
from shared.docs import declare_api_keys
from shared.problems import document_problems


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The document of ``app``, with the replay request's body (parsed by the route, after the body limit)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    body = ReplayRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(body.pop("$defs", {}))
    components[ReplayRequest.__name__] = body
    schema["paths"][REPLAYS_PATH]["post"]["requestBody"] = {
        "required": False,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ReplayRequest.__name__}"}}},
    }
    app.openapi_schema = document_problems(declare_api_keys(schema))
    return schema
