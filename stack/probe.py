"""The images' health check: ``python -m stack.probe`` asks ``/readyz`` of the service this container runs.

The service is the one named by the container's command (``python -m services.<name>.app`` or
``pipeline-<name>``, read from ``/proc/1/cmdline``, which is tini's and carries the command after it), its port
comes from that service's settings under the container's environment. Exit 0 when ready, 1 otherwise, with the
reason on stdout (``podman healthcheck run`` / ``docker inspect`` show it). Standard library HTTP: it runs every
few seconds in every container, so it starts fast.
"""

from __future__ import annotations

import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

from stack.services import SERVICES, port_of

_COMMAND = re.compile(r"^(?:services\.(\w+)\.app|(?:.*/)?pipeline-(\w+))$")


def service_of(argv: list[str]) -> str | None:
    """The service a command line runs, or None."""
    for arg in argv:
        match = _COMMAND.match(arg)
        if match:
            name = match.group(1) or match.group(2)
            if name in SERVICES:
                return name
    return None


def probe(url: str, timeout_s: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200, f"{response.status} {response.read(200).decode(errors='replace')}"
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code} {exc.read(200).decode(errors='replace')}"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"


def main(argv: list[str]) -> int:
    cmdline = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    service = argv[0] if argv else service_of([part.decode(errors="replace") for part in cmdline])
    if service is None or service not in SERVICES:
        sys.stdout.write(f"no service of {sorted(SERVICES)} in this container's command: python -m stack.probe NAME\n")
        return 1
    ok, detail = probe(f"http://127.0.0.1:{port_of(service)}/readyz", timeout_s=4.0)
    sys.stdout.write(f"{service}: {detail}\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
