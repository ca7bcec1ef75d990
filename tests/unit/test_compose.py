"""docker-compose.yml, .env.example, the Dockerfile and the image tools: the checks pass, and catch breakage."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import probe
from tools import compose_check, image_check, requirements
from tools.k8s_check import dockerfile_targets

COMPOSE = compose_check.COMPOSE_FILE.read_text()
ENV_EXAMPLE = compose_check.ENV_EXAMPLE.read_text()
TARGETS = dockerfile_targets()


def broken(change: Callable[[dict[str, Any]], None], env_example: str = ENV_EXAMPLE) -> list[str]:
    """The compose file after ``change`` (applied to it as loaded, defaults substituted), checked."""
    compose = yaml.safe_load(compose_check.substitute(COMPOSE, compose_check.env_file(ENV_EXAMPLE)))
    change(compose)
    text = yaml.safe_dump(compose)
    return compose_check.check(text, env_example, TARGETS)


def test_the_compose_file_passes() -> None:
    assert compose_check.check(COMPOSE, ENV_EXAMPLE, TARGETS) == []


def test_compose_test_waits_for_every_long_running_service_of_the_compose_file() -> None:
    from tools.compose_test import LONG_RUNNING

    services = yaml.safe_load(compose_check.substitute(COMPOSE, compose_check.env_file(ENV_EXAMPLE)))["services"]
    # Every service but the one-shot bootstrap (it exits once the topics and schemas are in place) and those of a
    # profile (inference-gpu needs a GPU).
    expected = [name for name, service in services.items() if name != "bootstrap" and not service.get("profiles")]
    assert sorted(LONG_RUNNING) == sorted(expected)


def test_every_image_role_is_a_dockerfile_target() -> None:
    assert {"python", "registry", "inference", "inference-cuda", "kafka", "redis"} <= TARGETS


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c["services"]["intake"]["environment"].update(INTAKE_WORKRES="2"), "env INTAKE_WORKRES"),
        (lambda c: c["services"]["intake"]["environment"].update(INTAKE_WORKERS="0"), "refuses its environment"),
        (lambda c: c["services"]["ops"]["environment"].pop("OPS_HOST"), "OPS_HOST must be 0.0.0.0"),
        (
            lambda c: c["services"]["notifier"]["healthcheck"].update(test=["CMD", "python", "-m", "stack.probe"]),
            "healthcheck",
        ),
        (
            lambda c: c["services"]["status"]["healthcheck"].update(test=["CMD-SHELL", "python -m stack.probe ops"]),
            "stack.probe status",
        ),
        (lambda c: c["services"]["inference"]["environment"].pop("INFERENCE_INSTANCE"), "INFERENCE_INSTANCE"),
        (lambda c: c["services"]["enrichment"].update(stop_grace_period="20s"), "stop_grace_period"),
        (lambda c: c["services"]["notifier"].update(depends_on={"kafka": {"condition": "service_healthy"}}), "wait"),
        (lambda c: c["services"]["registry"].update(depends_on=["kafka"]), "without conditions"),
        (lambda c: c["services"]["intake"].update(ports=["8000:8000"]), "beyond 127.0.0.1"),
        (lambda c: c["services"]["inference"].update(image="kafka-pipeline/python:latest"), "image"),
        (lambda c: c["services"]["redis"].update(image="redis:7"), "Dockerfile target"),
        (lambda c: c["services"]["kafka"]["build"].update(target="python"), "build.target"),
        (lambda c: c["services"].pop("status"), "no service runs status"),
    ],
)
def test_a_broken_compose_file_fails(change: Callable[[dict[str, Any]], None], expected: str) -> None:
    errors = broken(change)
    assert errors, "the check passed a broken compose file"
    assert any(expected in error for error in errors), errors


def test_env_example_must_list_every_variable_with_its_default() -> None:
    missing = ENV_EXAMPLE.replace("INTAKE_WORKERS=1\n", "")
    assert any("INTAKE_WORKERS is read" in e for e in compose_check.check(COMPOSE, missing, TARGETS))
    other = ENV_EXAMPLE.replace("INTAKE_WORKERS=1\n", "INTAKE_WORKERS=4\n")
    assert any("default is '1'" in e for e in compose_check.check(COMPOSE, other, TARGETS))
    unused = ENV_EXAMPLE + "REDIS_HOST_PORT=6379\n"
    assert any("REDIS_HOST_PORT is not read" in e for e in compose_check.check(COMPOSE, unused, TARGETS))


def test_variables_and_substitution() -> None:
    text = "a: ${A:-1}\nb: ${B}\n# c: ${C:-3}\nd: ${D-4}\n"
    assert compose_check.variables(text) == {"A": "1", "B": "", "D": "4"}
    assert compose_check.substitute(text, {"A": "9"}) == "a: 9\nb: \n# c: 3\nd: 4\n"
    assert compose_check.seconds("45s") == 45 and compose_check.seconds("1m30s") == 90
    assert compose_check.seconds("soon") == -1


def test_the_probe_finds_the_service_of_a_container_command() -> None:
    assert probe.service_of(["tini", "--", "python", "-m", "services.notifier.app"]) == "notifier"
    assert probe.service_of(["/opt/venv/bin/pipeline-intake"]) == "intake"
    assert probe.service_of(["python", "-m", "stack.cli", "bootstrap"]) is None
    assert probe.service_of(["python", "-m", "services.nothing.app"]) is None


def test_the_probe_asks_readyz_and_reports_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    assert probe.probe("http://127.0.0.1:9/readyz", timeout_s=1.0)[0] is False
    monkeypatch.setenv("OPS_PORT", "9")
    assert probe.main(["ops"]) == 1


def test_requirements_come_from_pyproject(tmp_path: Path) -> None:
    core = requirements.requirements(Path("pyproject.toml"), [])
    model = requirements.requirements(Path("pyproject.toml"), ["model"])
    assert not any(req.startswith("torch") for req in core)
    assert any(req.startswith("torch==") for req in model) and set(core) < set(model)
    with pytest.raises(SystemExit, match="no optional dependencies"):
        requirements.requirements(Path("pyproject.toml"), ["nothing"])


# --- image inspection, on a root filesystem made here ---------------------------------------------------------

PASSWD = "root:x:0:0:root:/root:/bin/bash\nredis:x:101:104::/var/lib/redis:/usr/sbin/nologin\n"
HEALTHY = {"Test": ["CMD-SHELL", "python -m stack.probe"]}


def rootfs(tmp_path: Path, *files: str) -> Path:
    root = tmp_path / "root"
    for name in ("usr/bin/python3", "opt/venv/bin/python", "app/shared/settings.py", *files):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    return root


def test_a_clean_image_passes(tmp_path: Path) -> None:
    secret = tmp_path / "ca.pem"
    secret.write_text("-----BEGIN CERTIFICATE-----\nabc\n")
    assert image_check.check_config("i", {"User": "10001:10001", "Healthcheck": HEALTHY}, PASSWD) == []
    assert image_check.check_config("i", {"User": "redis", "Healthcheck": HEALTHY}, PASSWD) == []
    assert image_check.check_rootfs("i", rootfs(tmp_path), (secret,)) == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"User": "", "Healthcheck": HEALTHY}, "runs as root"),
        ({"User": "0:0", "Healthcheck": HEALTHY}, "runs as root"),
        ({"User": "root", "Healthcheck": HEALTHY}, "runs as root"),
        ({"User": "10001", "Healthcheck": {"Test": ["CMD", "python", "-m", "stack.probe"]}}, "HEALTHCHECK"),
        ({"User": "10001"}, "HEALTHCHECK"),
    ],
)
def test_a_root_user_or_exec_form_health_check_fails(config: dict[str, Any], expected: str) -> None:
    problems = image_check.check_config("i", config, PASSWD)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("usr/bin/gcc", "/usr/bin/gcc"),
        ("usr/bin/make", "/usr/bin/make"),
        ("opt/venv/bin/pip", "/opt/venv/bin/pip"),
        ("opt/venv/lib/python3.11/site-packages/pip/__init__.py", "pip in"),
        ("app/tests/unit/test_x.py", "test file"),
        ("app/services/test_thing.py", "test file"),
        ("run/secrets/ca-bundle", "/run/secrets"),
        ("app/.env", "secret-like"),
        ("etc/ssl/private/server.key", "secret-like"),
    ],
)
def test_a_build_tool_test_or_secret_in_an_image_fails(tmp_path: Path, path: str, expected: str) -> None:
    problems = image_check.check_rootfs("i", rootfs(tmp_path, path), ())
    assert any(expected in p for p in problems), problems


def test_a_build_secret_copied_into_an_image_fails(tmp_path: Path) -> None:
    secret = tmp_path / "ca.pem"
    secret.write_text("-----BEGIN CERTIFICATE-----\nthe machine's bundle\n")
    root = rootfs(tmp_path)
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "etc/ssl/certs/bundle.crt").write_bytes(secret.read_bytes())
    (root / "etc/ssl/certs/other.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    problems = image_check.check_rootfs("i", root, (secret,))
    assert any("bundle.crt is a build secret" in p for p in problems), problems
    assert any("private key" in p for p in problems), problems
    assert json.dumps(problems)
