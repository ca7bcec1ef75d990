"""The import rule of ARCHITECTURE.md: shared/ never imports services or stack; no service imports another."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


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
            if module.split(".")[0] in ("services", "stack"):
                problems.append(f"{path.relative_to(REPO)} imports {module}")
    for path in sorted(REPO.glob("services/*/**/*.py")):
        own = path.relative_to(REPO).parts[1]
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "stack" or (parts[0] == "services" and len(parts) > 1 and parts[1] != own):
                problems.append(f"{path.relative_to(REPO)} imports {module}")
    return problems


def test_shared_and_services_keep_the_import_rule() -> None:
    assert violations() == []


def test_the_rule_catches_a_shared_module_importing_a_service(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("def f() -> None:\n    from services.intake.settings import IntakeSettings\n")
    assert "services.intake.settings" in imported_modules(sample)


def test_only_stack_imports_services_among_the_top_level_packages() -> None:
    importers = {
        path.relative_to(REPO).parts[0]
        for package in ("shared", "stack", "loadtest")
        for path in REPO.glob(f"{package}/**/*.py")
        if any(m.split(".")[0] == "services" for m in imported_modules(path))
    }
    assert importers <= {"stack"}
