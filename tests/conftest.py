"""Session fixtures: a real Kafka broker and Redis, started with the project's own launcher unless configured."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from shared.kafka import KafkaConnection, wait_for_broker

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    """A child process started by a fixture, with its log file for failure messages."""

    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 60.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    handle = log.open("ab")
    popen = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **(env or {})})
    return Process(popen, log)


def start_broker(data_dir: Path, port: int, controller_port: int) -> Process:
    """Start a broker with the project's launcher and wait until it answers metadata requests."""
    proc = spawn(
        [
            sys.executable,
            "-m",
            "stack.cli",
            "kafka",
            "run",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--controller-port",
            str(controller_port),
            "--heap",
            "512m",
        ],
        data_dir.parent / f"{data_dir.name}.log",
    )
    deadline = time.monotonic() + 120
    while True:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            wait_for_broker(KafkaConnection(bootstrap_servers=f"127.0.0.1:{port}"), timeout_s=2)
            return proc
        except Exception:
            if time.monotonic() > deadline:
                proc.stop()
                raise


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("PIPELINE_KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    port = free_port()
    proc = start_broker(tmp_path_factory.mktemp("kafka") / "data", port, free_port())
    yield f"127.0.0.1:{port}"
    proc.stop()


@pytest.fixture(scope="session")
def kafka(kafka_bootstrap: str) -> KafkaConnection:
    """The test broker as the connection object every client config is built from."""
    return KafkaConnection(bootstrap_servers=kafka_bootstrap)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("PIPELINE_REDIS_URL")
    if configured:
        yield configured
        return
    from stack.launcher import redis_command

    port = free_port()
    data = tmp_path_factory.mktemp("redis")
    proc = spawn(redis_command(port, data), data / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def ping() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until(ping, proc, 30.0, "redis")
    yield url
    proc.stop()


@dataclass
class RegistryProcess:
    url: str
    topic: str
    process: Process

    def stop(self) -> None:
        self.process.stop()


def wait_until(ready: Callable[[], bool], proc: Process, timeout: float, what: str) -> None:
    """Poll ``ready`` until true; fail early with the log if ``proc`` exits, or at the deadline."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.popen.returncode}:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout}s:\n{proc.tail()}")
        time.sleep(0.05)


def wait_http_ready(url: str, proc: Process, timeout: float = 60.0) -> None:
    def answers_200() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers_200, proc, timeout, url)


def start_intake(
    log: Path, topic: str, kafka_bootstrap: str, redis_url: str, registry_url: str, **env: str
) -> tuple[str, Process]:
    """The intake server as its own process (``python -m services.intake.app``) on a free port, ready."""
    port = free_port()
    proc = spawn(
        [sys.executable, "-m", "services.intake.app"],
        log,
        env={
            "INTAKE_PORT": str(port),
            "INTAKE_TOPIC": topic,
            "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "PIPELINE_REDIS_URL": redis_url,
            "PIPELINE_SCHEMA_REGISTRY_URL": registry_url,
            **env,
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ready(f"{url}/readyz", proc)
    except BaseException:
        proc.stop()
        raise
    return url, proc


@pytest.fixture(scope="session")
def start_registry(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., RegistryProcess]]:
    """Factory: start the registry service as its own process over the test broker."""
    started: list[RegistryProcess] = []
    logs = tmp_path_factory.mktemp("registry")

    def start(topic: str | None = None, port: int | None = None) -> RegistryProcess:
        """A registry over ``topic`` (new unless given) on ``port`` (free unless given: a restart reuses it)."""
        topic = topic or f"_schemas-{uuid.uuid4().hex[:8]}"
        port = port or free_port()
        proc = spawn(
            [sys.executable, "-m", "services.registry.app"],
            logs / f"{topic}-{port}.log",
            env={
                "REGISTRY_PORT": str(port),
                "REGISTRY_TOPIC": topic,
                "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            },
        )
        url = f"http://127.0.0.1:{port}"
        wait_http_ready(f"{url}/readyz", proc)
        handle = RegistryProcess(url, topic, proc)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture(scope="session")
def registry_url(start_registry: Callable[..., RegistryProcess]) -> str:
    return start_registry().url


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Unique names for topics, groups and subjects, so tests never share state."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}"
