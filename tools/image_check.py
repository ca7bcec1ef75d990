"""Inspect built images: a non-root user, a shell-form health check, and no compiler, installer, test or secret.

    python -m tools.image_check kafka-pipeline/python:latest ...   (make compose-test runs it on every image)

Each image's root filesystem is read through `podman image mount` (rootful). A secret is a file whose bytes are
those of a build secret (the CA bundle handed to pip and Maven: it must never land in a layer), anything under
/run/secrets, a private key, or an ``.env`` file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tools.podman import run

# Compilers and build tools: none in a runtime image.
BUILD_TOOLS = ("gcc", "cc", "c++", "g++", "clang", "make", "cmake", "javac", "ld", "as", "mvn", "go", "cargo")
# Installers: the environments are complete when the image is built.
INSTALLERS = ("pip", "pip3", "easy_install")
SECRET_NAMES = (".env", "id_rsa", "id_ed25519", "id_ecdsa")
PRIVATE_KEY = b"PRIVATE KEY-----"
BUILD_SECRETS = (Path(os.environ.get("CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")),)


def check_config(image: str, config: dict[str, Any], passwd: str) -> list[str]:
    """The image's user is not root (a name is looked up in its /etc/passwd); its health check is shell form."""
    problems = []
    user = str(config.get("User") or "").split(":")[0]
    uids = {line.split(":")[0]: line.split(":")[2] for line in passwd.splitlines() if line.count(":") >= 2}
    uid = uids.get(user, user)
    if not user or uid == "0":
        problems.append(f"{image}: runs as root (USER {user or 'unset'})")
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if not test or test[0] != "CMD-SHELL":
        problems.append(f"{image}: no shell-form HEALTHCHECK (found {test or 'none'})")
    return problems


def _files(root: Path) -> Iterator[Path]:
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not (directory == str(root) and d in ("proc", "sys", "dev"))]
        for name in names:
            yield Path(directory) / name


def check_rootfs(image: str, root: Path, secrets: tuple[Path, ...] = BUILD_SECRETS) -> list[str]:
    """What must not be in an image's files: build tools, installers, tests, secrets."""
    problems = []
    digests = {p.stat().st_size: hashlib.sha256(p.read_bytes()).hexdigest() for p in secrets if p.is_file()}
    bins = [root / "usr" / "bin", root / "usr" / "local" / "bin", root / "bin", root / "opt" / "venv" / "bin"]
    for directory in bins:
        for tool in (*BUILD_TOOLS, *INSTALLERS):
            if (directory / tool).exists() or (directory / tool).is_symlink():
                problems.append(f"{image}: has /{(directory / tool).relative_to(root)}")
    for site in (root / "opt" / "venv" / "lib").glob("python3*/site-packages"):
        if (site / "pip").exists():
            problems.append(f"{image}: has pip in /{site.relative_to(root)}")
    secret_dir = root / "run" / "secrets"
    if secret_dir.is_dir() and any(secret_dir.iterdir()):
        problems.append(f"{image}: /run/secrets is not empty")
    for path in _files(root):
        relative = path.relative_to(root)
        if path.is_symlink() or not path.is_file():
            continue
        if relative.parts[0] == "app" and ("tests" in relative.parts or path.name.startswith("test_")):
            problems.append(f"{image}: test file /{relative}")
        elif path.name in SECRET_NAMES or path.suffix == ".key":
            problems.append(f"{image}: secret-like file /{relative}")
        else:
            size = path.stat().st_size
            if size in digests and hashlib.sha256(path.read_bytes()).hexdigest() == digests[size]:
                problems.append(f"{image}: /{relative} is a build secret")
            elif path.suffix == ".pem" and PRIVATE_KEY in path.read_bytes():
                problems.append(f"{image}: private key /{relative}")
    return problems


def check_images(images: list[str]) -> list[str]:
    problems = []
    for image in images:
        inspected = json.loads(run(["podman", "image", "inspect", image]).stdout)[0]
        config = dict(inspected["Config"])
        # Docker keeps the health check in Config, podman's inspect beside it.
        config["Healthcheck"] = config.get("Healthcheck") or inspected.get("Healthcheck")
        root = Path(run(["podman", "image", "mount", image]).stdout.strip())
        try:
            passwd = (root / "etc" / "passwd").read_text()
            found = check_config(image, config, passwd) + check_rootfs(image, root)
        finally:
            run(["podman", "image", "unmount", image], check=False)
        sys.stdout.write(f"{image}: {'; '.join(found) if found else 'ok'}\n")
        problems += found
    return problems


def main(argv: list[str]) -> int:
    return 1 if check_images(argv) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
