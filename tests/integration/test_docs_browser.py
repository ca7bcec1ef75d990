"""intake's and ops' /docs in a real headless Chromium (Debian's, driven by Selenium), with no network: Swagger UI
renders every operation, and every resource the page loaded came from the service itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from services.intake.app import create_app as intake_app
from services.intake.settings import IntakeSettings
from services.ops.app import create_app as ops_app
from services.ops.settings import OpsSettings
from tests.support.processes import free_port

APPS: dict[str, Callable[[], FastAPI]] = {
    "intake": lambda: intake_app(IntakeSettings()),
    "ops": lambda: ops_app(OpsSettings()),
}


@pytest.fixture(params=sorted(APPS))
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, FastAPI]]:
    """The app in a uvicorn thread, without its lifespan: the pages need no broker."""
    app = APPS[request.param]()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)


def test_docs_render_every_operation_from_local_assets_only(browser: WebDriver, served: tuple[str, FastAPI]) -> None:
    url, app = served
    expected = {
        f"{method.upper()} {path}" for path, operations in app.openapi()["paths"].items() for method in operations
    }
    browser.get(f"{url}/docs")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary"))
    shown = {
        f"{block.find_element(By.CSS_SELECTOR, '.opblock-summary-method').text} "
        f"{block.find_element(By.CSS_SELECTOR, '.opblock-summary-path').get_attribute('data-path')}"
        for block in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary")
    }
    assert shown == expected
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(name.startswith(f"{url}/") for name in loaded), loaded
