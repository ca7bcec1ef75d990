"""API documentation that works offline: Swagger UI and ReDoc served from a Python package, not from a CDN."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# fastapi-offline ships swagger-ui-bundle.js (Swagger UI 5, which renders OpenAPI 3.1), swagger-ui.css,
# redoc.standalone.js and a favicon; only its files are used, not its app factory.
ASSETS = str(files("fastapi_offline") / "static")
ASSETS_PATH = "/docs/assets"


def api_app(title: str, **kwargs: Any) -> FastAPI:
    """A FastAPI app whose ``/docs`` (Swagger UI) and ``/redoc`` load nothing but from the service itself."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, **kwargs)
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            # No spec validator badge: it would send the document to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    return app


# How intake and ops take an API key (``shared/api_auth.py``), as OpenAPI security schemes.
API_KEY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def declare_api_keys(schema: dict[str, Any], prefix: str = "/v1/") -> dict[str, Any]:
    """Declare the API-key schemes in ``schema`` and require one of them on every operation under ``prefix``."""
    schema.setdefault("components", {})["securitySchemes"] = API_KEY_SCHEMES
    for path, operations in schema["paths"].items():
        if path.startswith(prefix):
            for operation in operations.values():
                operation["security"] = [{name: []} for name in API_KEY_SCHEMES]
    return schema
