"""Podman as `make images` and `make compose-test` run it: this repository's containers.conf and storage.conf."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

PODMAN_DIR = Path(__file__).resolve().parent.parent / "infra" / "podman"


def podman_env() -> dict[str, str]:
    return {
        **os.environ,
        "CONTAINERS_CONF": str(PODMAN_DIR / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(PODMAN_DIR / "storage.conf"),
    }


def run(args: list[str], env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env or podman_env(), check=check, capture_output=True, text=True)
