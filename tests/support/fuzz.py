"""What the schemathesis tests check beyond schemathesis' own checks."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

import httpx
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.core.transport import Response

from shared.problems import PROBLEM_JSON

_served: set[str] = set()


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings for fuzzing a running service: reproducible, no deadline (a call may wait on Kafka)."""
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
    )


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
