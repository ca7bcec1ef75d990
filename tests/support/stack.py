"""Whole stacks for the e2e tests: ``pipeline up`` on ports and a state folder of their own, and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stack.services import SERVICES
from tests.support.processes import REPO, free_port

# Every service's port variable but the registry's (set with the registry's URL): a new service gets a port too.
PORTS = [
    f"{settings.model_config.get('env_prefix', '')}PORT" for name, settings in SERVICES.items() if name != "registry"
]


def stack_env(state: Path, **overrides: str) -> dict[str, str]:
    """The environment of a stack of its own: free ports for every part, state under ``state``."""
    kafka, registry = free_port(), free_port()
    return {
        **os.environ,
        "PIPELINE_STATE_DIR": str(state),
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka}",
        "PIPELINE_KAFKA_CONTROLLER_PORT": str(free_port()),
        "PIPELINE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "PIPELINE_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{registry}",
        "REGISTRY_PORT": str(registry),
        **{variable: str(free_port()) for variable in PORTS},
        **overrides,
    }


def pipeline(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``pipeline <args>`` against the stack ``env`` names."""
    return subprocess.run(
        [sys.executable, "-m", "stack.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@contextmanager
def running_stack(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``pipeline up`` with ``env``, and ``pipeline down`` afterwards (after a failed start too: what did start
    must not outlive the test)."""
    try:
        started = pipeline(env, "up")
        assert started.returncode == 0, started.stdout + started.stderr
        yield env
    finally:
        pipeline(env, "down")
