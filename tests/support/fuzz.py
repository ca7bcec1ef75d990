"""The schemathesis tests' common part: the app's document, the fuzzer's key, how a case is called and what it
checks beyond schemathesis' own checks."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

import httpx
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import CheckFunction
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.schemas import OpenApiSchema

from shared.auth import KeyStore
from shared.problems import PROBLEM_JSON

_served: set[str] = set()


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings for fuzzing a running service: reproducible, no deadline (a call may wait on Kafka)."""
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
    )


def app_schema(app: FastAPI) -> tuple[dict[str, Any], OpenApiSchema]:
    """The app's own OpenAPI document, built without starting it (the lifespan is what connects), and its schema
    for schemathesis."""
    document = app.openapi()
    return document, schemathesis.openapi.from_dict(document)


def api_key(redis_url: str, scopes: list[str]) -> str:
    """A key for the fuzzer with ``scopes``, at a rate no run reaches."""
    key, _ = KeyStore.from_url(redis_url).create("fuzz", scopes, "100000/second")
    return key


def call_and_validate(
    case: Case[Any], base_url: str, key: str, timeout: float, excluded_checks: list[CheckFunction] | None = None
) -> None:
    """Call ``case`` with ``key``; all of schemathesis' default checks (less ``excluded_checks``) and
    :func:`problem_type_is_served`."""
    case.call_and_validate(
        base_url=base_url,
        headers={"X-API-Key": key},
        timeout=timeout,
        excluded_checks=excluded_checks,
        additional_checks=[problem_type_is_served],
    )


def operations(schema: OpenApiSchema) -> set[str]:
    """Every operation of ``schema`` as ``METHOD /path``; every one of them must load."""
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    return {f"{r.ok().method.upper()} {r.ok().path}" for r in results if isinstance(r, Ok)}


def problem_type_is_served(ctx: Any, response: Response, case: Case[Any]) -> bool | None:
    """A problem's ``type`` (a reference relative to the request) is a page the answering service serves."""
    content_type = response.headers.get("content-type", [""])[0]
    if not content_type.startswith(PROBLEM_JSON):
        return None
    problem_type = response.json()["type"]
    if problem_type == "about:blank":
        return None
    url = urljoin(str(response.request.url), problem_type)
    if url not in _served:
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200, f"the problem type {url} answers {page.status_code}"
        _served.add(url)
    return None
