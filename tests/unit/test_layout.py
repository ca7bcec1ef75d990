"""The layout rules: every service's rooms, pure domains, and who may import whom (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.processes import REPO


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, at any depth (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def violations() -> list[str]:
    problems: list[str] = []
    for path in sorted(REPO.glob("shared/**/*.py")):
        for module in imported_modules(path):
            if module.split(".")[0] in ("services", "stack", "tools", "tests", "loadtest"):
                problems.append(f"{path.relative_to(REPO)} imports {module}")
    for path in sorted(REPO.glob("services/*/**/*.py")):
        own = path.relative_to(REPO).parts[1]
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] in ("stack", "tools", "tests", "loadtest") or (
                parts[0] == "services" and len(parts) > 1 and parts[1] != own
            ):
                problems.append(f"{path.relative_to(REPO)} imports {module}")
    # What pip installs never needs the repository's test and benchmark folders.
    for package in ("stack", "tools"):
        for path in sorted(REPO.glob(f"{package}/**/*.py")):
            problems += [
                f"{path.relative_to(REPO)} imports {module}"
                for module in sorted(imported_modules(path))
                if module.split(".")[0] in ("tests", "loadtest")
            ]
    return problems


def test_shared_and_services_keep_the_import_rule() -> None:
    assert violations() == []


def test_the_rule_catches_a_shared_module_importing_a_service(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("def f() -> None:\n    from services.intake.settings import IntakeSettings\n")
    assert "services.intake.settings" in imported_modules(sample)


def test_only_stack_and_tools_import_services_among_the_top_level_packages() -> None:
    importers = {
        path.relative_to(REPO).parts[0]
        for package in ("shared", "stack", "loadtest", "tools")
        for path in REPO.glob(f"{package}/**/*.py")
        if any(m.split(".")[0] == "services" for m in imported_modules(path))
    }
    assert importers <= {"stack", "tools"}


# Every service has these; the registry (a Confluent-compatible schema registry, not a pipeline stage) is the
# exception: app.py, compat.py, store.py and settings.py.
ROOMS = ("settings.py", "domain.py", "handlers.py", "adapters/__init__.py", "app.py")
ROOMLESS = {"registry"}
# What a domain.py never imports: brokers, stores, HTTP, models, and its own service's I/O rooms.
IO_LIBRARIES = {
    "aiohttp",
    "aiokafka",
    "confluent_kafka",
    "faust",
    "fastapi",
    "httpx",
    "redis",
    "requests",
    "safetensors",
    "socket",
    "starlette",
    "tokenizers",
    "torch",
    "transformers",
    "uvicorn",
}


def missing_rooms(services: Path) -> list[str]:
    return [
        f"{service.name} has no {room}"
        for service in sorted(p for p in services.iterdir() if (p / "__init__.py").exists())
        if service.name not in ROOMLESS
        for room in ROOMS
        if not (service / room).exists()
    ]


def impure_domains(services: Path) -> list[str]:
    problems: list[str] = []
    for path in sorted(services.glob("*/domain.py")):
        own = path.parent.name
        for module in sorted(imported_modules(path)):
            parts = module.split(".")
            if parts[0] in IO_LIBRARIES or (
                parts[:2] == ["services", own] and len(parts) > 2 and parts[2] in ("adapters", "handlers", "app")
            ):
                problems.append(f"{own}/domain.py imports {module}")
    return problems


def test_every_service_has_its_rooms() -> None:
    assert missing_rooms(REPO / "services") == []


def test_no_domain_imports_an_io_library_or_its_adapters() -> None:
    assert impure_domains(REPO / "services") == []


def test_the_rules_catch_a_missing_room_and_an_impure_domain(tmp_path: Path) -> None:
    service = tmp_path / "svc"
    (service / "adapters").mkdir(parents=True)
    for name in ("__init__.py", "settings.py", "app.py", "adapters/__init__.py"):
        (service / name).write_text("")
    (service / "domain.py").write_text("import redis.asyncio\nfrom services.svc.adapters.store import Store\n")
    assert missing_rooms(tmp_path) == ["svc has no handlers.py"]
    assert impure_domains(tmp_path) == [
        "svc/domain.py imports redis.asyncio",
        "svc/domain.py imports services.svc.adapters.store",
    ]


def test_faust_and_aiokafka_serve_the_analytics_service_only() -> None:
    """Every other consumer runs on the runtime (confluent-kafka): faust is where windowed analytics fit (issue 22)."""
    users = {
        str(path.relative_to(REPO))
        for package in ("shared", "services", "stack", "tools", "loadtest")
        for path in REPO.glob(f"{package}/**/*.py")
        if any(module.split(".")[0] in ("faust", "aiokafka", "mode") for module in imported_modules(path))
    }
    assert users and all(user.startswith("services/analytics/") for user in users), sorted(users)
