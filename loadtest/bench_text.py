"""Text cleaning and redaction without Kafka: runs ``tools.text_speed`` in a process of its own (arguments, JSON)."""

from __future__ import annotations

import subprocess
import sys

from shared.settings import REPO_ROOT


def main() -> None:
    command = [sys.executable, "-m", "tools.text_speed", *sys.argv[1:]]
    sys.exit(subprocess.run(command, cwd=REPO_ROOT, check=False).returncode)


if __name__ == "__main__":
    main()
