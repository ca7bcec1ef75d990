"""The triage model alone, without Kafka: runs ``services.inference.speed`` (the model's own measurement) in a
process of its own and passes its JSON through. Arguments go to it: ``--texts``, ``--batch-sizes``, ``--repeats``.
"""

from __future__ import annotations

import subprocess
import sys

from shared.settings import REPO_ROOT


def main() -> None:
    command = [sys.executable, "-m", "services.inference.speed", *sys.argv[1:]]
    sys.exit(subprocess.run(command, cwd=REPO_ROOT, check=False).returncode)


if __name__ == "__main__":
    main()
