"""The platform a test run shares (broker, Redis, registry): started once by the first process that needs it.

Under pytest-xdist every worker asks for it; a file lock in the run's base temp folder lets the first one start
it and the others read where it is. The processes outlive the worker that started them: the main pytest process
stops them when the run ends (``stop_shared``).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.support.processes import free_port, start_broker, start_redis, start_registry

STATE = "platform.json"


@dataclass(frozen=True)
class Platform:
    kafka_bootstrap: str
    redis_url: str
    registry_url: str
    pids: tuple[int, ...] = ()


def shared_platform(root: Path) -> Platform:
    """The run's platform, started here unless another process already did. ``PIPELINE_KAFKA_BOOTSTRAP_SERVERS``
    and ``PIPELINE_REDIS_URL``, when set, name a broker and a Redis to use instead of starting them."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = root / STATE
        if state.exists():
            found = json.loads(state.read_text())
            return Platform(found["kafka_bootstrap"], found["redis_url"], found["registry_url"], tuple(found["pids"]))
        platform = _start(root)
        state.write_text(json.dumps(asdict(platform)))
        return platform


def _start(root: Path) -> Platform:
    pids: list[int] = []
    kafka = os.environ.get("PIPELINE_KAFKA_BOOTSTRAP_SERVERS")
    if not kafka:
        port = free_port()
        broker = start_broker(root / "kafka", port, free_port())
        pids.append(broker.popen.pid)
        kafka = f"127.0.0.1:{port}"
    redis_url = os.environ.get("PIPELINE_REDIS_URL")
    if not redis_url:
        (root / "redis").mkdir(exist_ok=True)
        redis_url, redis = start_redis(root / "redis")
        pids.append(redis.popen.pid)
    topic = f"_schemas-{uuid.uuid4().hex[:8]}"
    registry_url, registry = start_registry(root / "registry.log", kafka, topic, free_port())
    # The registry first, so it never outlives its broker in a shutdown.
    pids.insert(0, registry.popen.pid)
    return Platform(kafka, redis_url, registry_url, tuple(pids))


def stop_shared(root: Path, timeout_s: float = 60.0) -> None:
    """Stop what ``shared_platform`` started under ``root`` (nothing when it never ran)."""
    state = root / STATE
    if not state.exists():
        return
    for pid in json.loads(state.read_text())["pids"]:
        _stop(pid, timeout_s)
    state.unlink()


def _alive(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # another process's child: read its state instead
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _stop(pid: int, timeout_s: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.05)
