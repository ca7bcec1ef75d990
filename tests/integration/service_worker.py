"""Subprocess for the service-wiring tests: a consuming service run by ``run_consumer``, as a real one is.

It copies each input record to the output topic, tagged with where it came from, slowly enough that a
SIGTERM lands mid-stream. Settings come from the environment (prefix ``WORKER_``), like any service's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.runtime import Output, PartitionBatch, Runtime
from shared.service import run_consumer
from shared.settings import ConsumerServiceSettings


class WorkerSettings(ConsumerServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WORKER_", extra="ignore")
    service: ClassVar[str] = "worker"

    name: str
    input_topic: str
    output_topic: str
    per_record_s: float = 0.002


def main() -> None:
    settings = WorkerSettings()  # type: ignore[call-arg]

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        time.sleep(settings.per_record_s * sum(len(b.records) for b in batches))  # stands in for model time
        return [
            [Output(settings.output_topic, b"%s|%d|%d" % (r.value, r.partition, r.offset), r.key)]
            for b in batches
            for r in b.records
        ]

    runtime = Runtime(settings.name, settings.pipeline.kafka, [settings.input_topic], handle, settings.runtime)
    sys.exit(run_consumer(settings, runtime))


if __name__ == "__main__":
    main()
