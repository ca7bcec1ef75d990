"""RFC 9457 problem details for every HTTP error: ``application/problem+json`` naming what was wrong."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_JSON = "application/problem+json"
PROBLEM_PATH = "/problems"


@dataclass(frozen=True)
class ProblemType:
    """What a problem ``type`` names: its page at ``/problems/<name>`` says what it means and what to do."""

    status: int
    name: str
    title: str
    advice: str

    @property
    def uri(self) -> str:
        # A relative reference (RFC 9457 allows it): it resolves against the request's URL, so it names the very
        # service that answered, behind any proxy or port.
        return f"{PROBLEM_PATH}/{self.name}"


PROBLEM_TYPES = {
    t.status: t
    for t in (
        ProblemType(
            400,
            "bad-request",
            "Bad Request",
            "The request is malformed (a cursor or body that does not "
            "parse); fix what ``detail`` names and send it again.",
        ),
        ProblemType(
            401,
            "unauthorized",
            "Unauthorized",
            "Send a valid API key: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.",
        ),
        ProblemType(
            403,
            "forbidden",
            "Forbidden",
            "The key is valid but lacks the scope (``required_scope``) or "
            "asks for another tenant's data; use a key that has it.",
        ),
        ProblemType(
            404,
            "not-found",
            "Not Found",
            "Nothing is at this path, or this key may not see it; check the identifiers in the path.",
        ),
        ProblemType(
            405, "method-not-allowed", "Method Not Allowed", "Use one of the methods the ``Allow`` header names."
        ),
        ProblemType(
            409,
            "conflict",
            "Conflict",
            "The request conflicts with what is stored (an id reused with "
            "another body, or a write still in flight); see ``detail``, wait ``Retry-After`` if given.",
        ),
        ProblemType(
            413,
            "content-too-large",
            "Content Too Large",
            "The body is over the limit ``detail`` names; send less (split a batch).",
        ),
        ProblemType(415, "unsupported-media-type", "Unsupported Media Type", "Send the body as ``application/json``."),
        ProblemType(
            422,
            "unprocessable-content",
            "Unprocessable Content",
            "The body or a parameter is not valid; "
            "``errors`` names each field (``loc``) and why. Fix them and send it again.",
        ),
        ProblemType(
            429,
            "too-many-requests",
            "Too Many Requests",
            "The key is over its rate limit; wait the ``Retry-After`` seconds, then retry.",
        ),
        ProblemType(
            500,
            "internal-server-error",
            "Internal Server Error",
            "The service failed; retry later, and report it with the ``instance`` and the time if it lasts.",
        ),
        ProblemType(
            503,
            "service-unavailable",
            "Service Unavailable",
            "A dependency (Kafka, Redis, the schema "
            "registry) is unavailable; nothing was done. Retry after ``Retry-After`` seconds.",
        ),
    )
}
TITLES = {status: t.title for status, t in PROBLEM_TYPES.items()}


class Problem(Exception):
    """An HTTP error with its problem details; raise it from a route or a dependency."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    status: int, detail: str, instance: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    known = PROBLEM_TYPES.get(status)
    body: dict[str, Any] = {
        # ``about:blank`` (RFC 9457): a status with no page of its own means only what the status means.
        "type": known.uri if known else "about:blank",
        "title": known.title if known else "Error",
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details; a 422 adds ``errors`` naming each field (``loc``) and the reason.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problems a route can answer (``document_problems`` adds the schema)."""
    return {
        status: {"description": TITLES.get(status, "Error"), "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}
        for status in statuses
    }


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the ``Problem`` schema the ``problem_responses`` refer to, and the 422 of FastAPI's own validation
    as a problem too (it is answered as one by ``install``)."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422")
            if answer is not None and PROBLEM_JSON not in answer.get("content", {}):
                answer.update(problem_responses(422)[422])
    components = schema["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def allowed_methods(app: FastAPI, scope: Any) -> list[str]:
    """Every method some route serves at the request's path (Starlette's 405 names only the first route's)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """pydantic's errors as ``{"loc", "msg", "type"}`` (the contract's 422 shape), without the input values."""
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors
    ]


def problem_page(problem: ProblemType) -> str:
    """The HTML page a problem ``type`` resolves to."""
    title = escape(problem.title)
    advice = escape(problem.advice).replace("``", "")
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{problem.status} {title}</title></head>"
        f"<body><h1>{problem.status} {title}</h1><p>Answered as <code>{PROBLEM_JSON}</code> with "
        f"<code>status</code> {problem.status}; <code>detail</code> says what was wrong with this request.</p>"
        f"<p>{advice}</p></body></html>"
    )


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem details, and serve the page each problem ``type`` names."""

    @app.get(PROBLEM_PATH + "/{name}", include_in_schema=False, response_class=HTMLResponse)
    async def problem_type(name: str) -> HTMLResponse:
        for known in PROBLEM_TYPES.values():
            if known.name == name:
                return HTMLResponse(problem_page(known))
        raise Problem(404, f"no problem type {name!r}")

    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, request.url.path, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc.errors())
        first = errors[0] if errors else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return problem_response(422, f"{where}: {first['msg']}", request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return problem_response(exc.status_code, str(exc.detail), request.url.path, headers)
