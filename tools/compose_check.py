"""`make k8s-check` (compose part): docker-compose.yml against the services, the Dockerfile and .env.example.

- every ``${VAR}`` of the compose file is in .env.example with the same default, and .env.example sets nothing
  the compose file does not read;
- every image is a target of the Dockerfile (``kafka-pipeline/<target>``) and its ``build.target`` is that target;
- a pipeline service (``python -m services.<name>.app``) sets only variables of its settings class (or the shared
  ones), its settings accept them, it listens on 0.0.0.0, its health check probes that service (shell form);
- a consumer names its instance and has a stop grace period above its shutdown timeout, and waits for the
  bootstrap job; every ``depends_on`` has a condition; every published port is on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from pydantic import ValidationError

from shared.settings import ConsumerServiceSettings
from stack.services import SERVICES
from tools.k8s_check import IMAGE_PREFIX, PROCESS_ENV, dockerfile_targets, env_names, image_problem, shared_env_names

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")
_DURATION = re.compile(r"^(?:(\d+)m)?(?:(\d+)s)?$")


def variables(text: str) -> dict[str, str]:
    """``${VAR:-default}`` / ``${VAR}`` in a compose file (its comments aside): name to default (empty if none)."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return {name: value or "" for name, value in _VARIABLE.findall(code)}


def substitute(text: str, values: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: values.get(m.group(1), m.group(2) or ""), text)


def env_file(text: str) -> dict[str, str]:
    lines = [line.strip() for line in text.splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def seconds(duration: str) -> float:
    match = _DURATION.match(str(duration))
    if not match or not any(match.groups()):
        return -1.0
    return 60.0 * int(match.group(1) or 0) + int(match.group(2) or 0)


class ComposeChecker:
    def __init__(self, compose_text: str, env_example: str, targets: set[str]) -> None:
        self.text = compose_text
        self.example = env_file(env_example)
        self.targets = targets
        self.errors: list[str] = []
        self.compose: dict[str, Any] = yaml.safe_load(substitute(compose_text, self.example)) or {}

    def fail(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def run(self) -> list[str]:
        self.env_example()
        services: dict[str, Any] = self.compose.get("services") or {}
        if not services:
            self.fail("docker-compose.yml", "no services")
        for name, spec in services.items():
            self.image(name, spec)
            self.ports(name, spec)
            self.depends(name, spec)
            service = self.pipeline_service(spec)
            if service is not None:
                self.settings(name, service, spec)
                problem = image_problem(service, str(spec.get("image", "")), self.targets)
                if problem:
                    self.fail(name, problem)
        missing = set(SERVICES) - {self.pipeline_service(spec) for spec in services.values()}
        for service in sorted(missing):
            self.fail("docker-compose.yml", f"no service runs {service}")
        return self.errors

    def env_example(self) -> None:
        used = variables(self.text)
        for name, value in sorted(used.items()):
            if name not in self.example:
                self.fail(".env.example", f"{name} is read by docker-compose.yml but not listed")
            elif self.example[name] != value:
                self.fail(".env.example", f"{name}={self.example[name]} but docker-compose.yml's default is {value!r}")
        for name in sorted(set(self.example) - set(used)):
            self.fail(".env.example", f"{name} is not read by docker-compose.yml")

    def image(self, name: str, spec: dict[str, Any]) -> None:
        image = str(spec.get("image", ""))
        target = image.removeprefix(IMAGE_PREFIX).split(":")[0]
        if not image.startswith(IMAGE_PREFIX) or target not in self.targets:
            self.fail(name, f"image {image!r} is not kafka-pipeline/<a Dockerfile target> ({sorted(self.targets)})")
        build = spec.get("build") or {}
        if build.get("target") != target:
            self.fail(name, f"build.target {build.get('target')!r} does not build its image {image!r}")

    def ports(self, name: str, spec: dict[str, Any]) -> None:
        for port in spec.get("ports") or []:
            if not str(port).startswith("127.0.0.1:"):
                self.fail(name, f"port {port} is published beyond 127.0.0.1")

    def depends(self, name: str, spec: dict[str, Any]) -> None:
        depends = spec.get("depends_on") or {}
        if isinstance(depends, list):
            self.fail(name, "depends_on without conditions (a list): name service_healthy or the like")
            return
        for other, how in depends.items():
            if not (how or {}).get("condition"):
                self.fail(name, f"depends_on {other} without a condition")

    @staticmethod
    def pipeline_service(spec: dict[str, Any]) -> str | None:
        command = [str(part) for part in spec.get("command") or []]
        for service in SERVICES:
            if command[1:3] == ["-m", f"services.{service}.app"]:
                return service
        return None

    def settings(self, name: str, service: str, spec: dict[str, Any]) -> None:
        settings = SERVICES[service]
        prefix = str(settings.model_config.get("env_prefix", ""))
        environment = {str(k): "" if v is None else str(v) for k, v in (spec.get("environment") or {}).items()}
        known = env_names(settings) | shared_env_names() | PROCESS_ENV
        for var in sorted(set(environment) - known):
            self.fail(name, f"env {var} is not a setting of {settings.__name__} or PipelineSettings")
        try:
            with mock.patch.dict(os.environ, environment, clear=True):
                resolved = settings()
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(model)'}: {e['msg']}" for e in exc.errors())
            self.fail(name, f"{settings.__name__} refuses its environment: {problems}")
            return
        if resolved.host != "0.0.0.0":
            self.fail(name, f"{prefix}HOST must be 0.0.0.0 (the default listens on 127.0.0.1 only)")
        test = list((spec.get("healthcheck") or {}).get("test") or [])
        if test != ["CMD-SHELL", f"python -m stack.probe {service}"]:
            self.fail(name, f"healthcheck {test} is not ['CMD-SHELL', 'python -m stack.probe {service}']")
        if isinstance(resolved, ConsumerServiceSettings):
            if f"{prefix}INSTANCE" not in environment:
                self.fail(name, f"{prefix}INSTANCE is not set: replicas would share a transactional id")
            grace = seconds(spec.get("stop_grace_period", "10s"))
            if grace <= resolved.shutdown_timeout_s:
                self.fail(name, f"stop_grace_period {grace}s is not above {prefix}SHUTDOWN_TIMEOUT_S")
            waits = (spec.get("depends_on") or {}).get("bootstrap") or {}
            if waits.get("condition") != "service_completed_successfully":
                self.fail(name, "a consumer must wait for bootstrap (service_completed_successfully)")


def check(compose_text: str, env_example: str, targets: set[str]) -> list[str]:
    return ComposeChecker(compose_text, env_example, targets).run()


def main() -> int:
    errors = check(COMPOSE_FILE.read_text(), ENV_EXAMPLE.read_text(), dockerfile_targets())
    services = len(yaml.safe_load(COMPOSE_FILE.read_text())["services"])
    sys.stdout.write(
        f"docker-compose.yml: {services} services, {'ok' if not errors else f'{len(errors)} problem(s)'}\n"
    )
    for error in errors:
        sys.stdout.write(f"  {error}\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
