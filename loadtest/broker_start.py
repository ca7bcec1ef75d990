"""Broker start time with the project's launcher: cold (format a new data dir) and warm (restart on it).

Prints JSON. Runs its own broker on free ports, so a running stack is not touched.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from tests.support.processes import free_port, start_broker


def main() -> None:
    results: dict[str, list[float]] = {"cold_s": [], "warm_s": []}
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "kafka"
            port, controller = free_port(), free_port()
            for kind in ("cold_s", "warm_s"):
                started = time.perf_counter()
                broker = start_broker(data, port, controller)
                results[kind].append(round(time.perf_counter() - started, 2))
                broker.stop()
    print(
        json.dumps(
            {
                "benchmark": "broker_start",
                **results,
                "warm_vs_cold": round(sum(results["warm_s"]) / sum(results["cold_s"]), 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
