"""Every HTTP service's /docs and /redoc load only from the service, and every problem ``type`` is a page the
service serves."""

from __future__ import annotations

import json
import re
from urllib.parse import urljoin

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.intake.app import create_app as intake_app
from services.intake.settings import IntakeSettings
from services.ops.app import create_app as ops_app
from services.ops.settings import OpsSettings
from shared.problems import PROBLEM_TYPES, problem_response

# The lifespan (which connects) does not run: a TestClient used outside ``with`` skips it.
APPS = {"intake": lambda: intake_app(IntakeSettings()), "ops": lambda: ops_app(OpsSettings())}


@pytest.fixture(params=sorted(APPS))
def app(request: pytest.FixtureRequest) -> FastAPI:
    return APPS[request.param]()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_their_assets_from_the_service_itself(app: FastAPI, page: str) -> None:
    client = TestClient(app)
    html = client.get(page).text
    assert not re.search(r"https?://", html), html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


def test_every_problem_type_is_a_page_the_service_serves(app: FastAPI) -> None:
    client = TestClient(app)
    for status in PROBLEM_TYPES:
        page = client.get(json.loads(bytes(problem_response(status, "x").body))["type"])
        assert page.status_code == 200 and PROBLEM_TYPES[status].title in page.text, status


def test_an_answered_problem_names_its_page_relative_to_the_request(app: FastAPI) -> None:
    answer = TestClient(app).get("/no/such/path")
    assert answer.status_code == 404 and answer.json()["type"] == "/problems/not-found"
    assert TestClient(app).get(urljoin(str(answer.url), answer.json()["type"])).status_code == 200


def test_an_unknown_problem_type_is_a_404() -> None:
    assert TestClient(APPS["ops"]()).get("/problems/nope").status_code == 404
