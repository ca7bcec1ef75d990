"""Child processes for tests: spawn with a log, wait until ready, stop; free ports."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.kafka import KafkaConnection, wait_for_broker

REPO = Path(__file__).resolve().parent.parent.parent


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_range() -> range:
    """This process's share of the ports below the ephemeral range: each xdist worker gets its own slice."""
    low, high = 10_000, _ephemeral_low()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    size = (high - low) // max(count, 1)
    return range(low + index * size, low + (index + 1) * size)


_PORTS = _port_range()
_handed_out: set[int] = set()


def free_port() -> int:
    """A free port below the kernel's ephemeral range: a port the kernel handed out (``bind(0)``) can be taken by
    any client connection's source port before the server binds it, which happens once many processes run."""
    for _ in range(1000):
        port = random.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORTS}")


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


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0, interval: float = 0.05) -> None:
    """Poll ``check`` every ``interval`` seconds until it holds; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what} ({timeout}s)"
        time.sleep(interval)


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


def start_broker(data_dir: Path, port: int, controller_port: int) -> Process:
    """Start a broker with the project's launcher and wait until it answers metadata requests."""
    args = [sys.executable, "-m", "stack.cli", "kafka", "run", "--data-dir", str(data_dir)]
    args += ["--port", str(port), "--controller-port", str(controller_port), "--heap", "512m"]
    proc = spawn(args, data_dir.parent / f"{data_dir.name}.log")
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


def start_redis(data_dir: Path) -> tuple[str, Process]:
    """Debian's redis-server on a free port, ready; its URL and process."""
    import redis

    from stack.launcher import redis_command

    port = free_port()
    proc = spawn(redis_command(port, data_dir), data_dir / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def ping() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until(ping, proc, 30.0, "redis")
    return url, proc


def start_registry(log: Path, kafka_bootstrap: str, topic: str, port: int) -> tuple[str, Process]:
    """The registry service as its own process over ``topic``, ready; its URL and process."""
    proc = spawn(
        [sys.executable, "-m", "services.registry.app"],
        log,
        env={"REGISTRY_PORT": str(port), "REGISTRY_TOPIC": topic, "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
    )
    url = f"http://127.0.0.1:{port}"
    wait_http_ready(f"{url}/readyz", proc)
    return url, proc


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
