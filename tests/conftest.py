"""Session fixtures: the platform (a real Kafka broker, Redis and the registry), shared by the whole run."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.kafka import KafkaConnection
from tests.support.platform import Platform, shared_platform, stop_shared
from tests.support.processes import Process, free_port
from tests.support.processes import start_registry as start_registry_process

PLATFORM_DIR = "platform"


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _platform_root(config: pytest.Config) -> Path:
    # Under xdist a worker's base temp is <run's base temp>/<worker id>: the platform lives in the run's.
    base: Path = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    return (base.parent if _is_worker(config) else base) / PLATFORM_DIR


def pytest_unconfigure(config: pytest.Config) -> None:
    """The main process stops the shared platform once every worker is done."""
    if not _is_worker(config) and hasattr(config, "_tmp_path_factory"):
        stop_shared(_platform_root(config))


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's headless Chromium (tests/support/browser.py), quit after the test."""
    from tests.support.browser import chromium

    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def platform(request: pytest.FixtureRequest) -> Platform:
    return shared_platform(_platform_root(request.config))


@pytest.fixture(scope="session")
def kafka_bootstrap(platform: Platform) -> str:
    return platform.kafka_bootstrap


@pytest.fixture(scope="session")
def kafka(kafka_bootstrap: str) -> KafkaConnection:
    """The test broker as the connection object every client config is built from."""
    return KafkaConnection(bootstrap_servers=kafka_bootstrap)


@pytest.fixture(scope="session")
def redis_url(platform: Platform) -> str:
    return platform.redis_url


@dataclass
class RegistryProcess:
    url: str
    topic: str
    process: Process

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="session")
def start_registry(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., RegistryProcess]]:
    """Factory: a registry service of the test's own, as its own process over the test broker."""
    started: list[RegistryProcess] = []
    logs = tmp_path_factory.mktemp("registry")

    def start(topic: str | None = None, port: int | None = None) -> RegistryProcess:
        """A registry over ``topic`` (new unless given) on ``port`` (free unless given: a restart reuses it)."""
        topic = topic or f"_schemas-{uuid.uuid4().hex[:8]}"
        port = port or free_port()
        url, proc = start_registry_process(logs / f"{topic}-{port}.log", kafka_bootstrap, topic, port)
        handle = RegistryProcess(url, topic, proc)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture(scope="session")
def registry_url(platform: Platform) -> str:
    return platform.registry_url


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Unique names for topics, groups and subjects, so tests never share state."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}"


# The e2e test files that share one whole stack (tests/e2e/conftest.py) run in one worker, so it boots once.
SHARED_STACK_FILES = ("tests/e2e/test_pipeline.py", "tests/e2e/test_dlq_story.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist hands out one test file at a time (its module fixtures start once), the shared-stack files together."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::")[0]
            return "e2e-stack" if path in SHARED_STACK_FILES else path

    return ByFile(config, log)
