"""Print the project's pinned requirements from pyproject.toml, one per line, for an image's pip install.

    python3 tools/requirements.py pyproject.toml [extra ...]

The images install the dependencies in a layer of their own (cached until pyproject.toml changes) and run the
source from /app, so they read the lists instead of installing the project. Standard library only: the image's
build stage runs it with Debian's python3 before anything is installed.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    unknown = [name for name in extras if name not in optional]
    if unknown:
        raise SystemExit(f"{pyproject} has no optional dependencies {unknown}; it has {sorted(optional)}")
    return [*project["dependencies"], *(req for name in extras for req in optional[name])]


def main(argv: list[str]) -> None:
    sys.stdout.write("".join(f"{line}\n" for line in requirements(Path(argv[0]), argv[1:])))


if __name__ == "__main__":
    main(sys.argv[1:])
