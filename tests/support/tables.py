"""Helpers for the runtime's table tests: co-partitioned topics, a counting handler, readiness."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from shared.errors import PermanentError
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.runtime import Output, PartitionBatch, RecordResult, Runtime, RuntimeSettings
from shared.runtime.state import BYTES, Table, changelog_topic
from shared.service import partitions_check
from shared.topics import TopicSpec, service_topics
from tests.support.kafka import read

COUNTS: Table[int] = Table("counts")
PLANS: Table[bytes] = Table("plans", BYTES)
PARTITIONS = 3


def settings(tmp_path: Path, **overrides: Any) -> RuntimeSettings:
    return RuntimeSettings.model_validate(
        {
            "max_batch_size": 20,
            "max_wait_ms": 20,
            "commit_interval_ms": 100,
            "retry_delays_ms": [100],
            "state": {"dir": str(tmp_path / "state")},
            **overrides,
        }
    )


def counting(out: str, poison: bytes = b"poison") -> Callable[[Sequence[PartitionBatch]], list[RecordResult]]:
    """Counts records per key in the table; answers ``key=count``. A poison record writes, then fails: its write
    must not survive the call."""

    def handle(batches: Sequence[PartitionBatch]) -> list[RecordResult]:
        answers: list[RecordResult] = []
        for batch in batches:
            counts = batch.table(COUNTS)
            for record in batch.records:
                key = (record.key or b"").decode()
                count = counts.get_or(key, 0) + 1
                counts.put(key, count)
                if record.value == poison:
                    raise PermanentError("poison", category="validation")
                answers.append([Output(out, b"%s=%d" % (record.key or b"", count), record.key)])
        return answers

    return handle


def tables_topics(kafka: KafkaConnection, service: str, source: str, out: str, *tables: str) -> None:
    """The input and output, the service's retry, dead-letter and replay topics, and the changelogs, all with the
    same partitions: state is per partition number, so the topics a service reads must be co-partitioned."""
    specs = [TopicSpec(name, PARTITIONS, "k", None) for name in (source, out)]
    specs += [TopicSpec(changelog_topic(service, t), PARTITIONS, "k", None, compacted=True) for t in tables]
    bootstrap_topics(kafka, [*specs, *service_topics(service, PARTITIONS)])


def names(prefix: str) -> tuple[str, str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"tables-{prefix}-{suffix}", f"in-{suffix}", f"out-{suffix}"


def outputs(kafka: KafkaConnection, out: str, count: int) -> dict[str, list[int]]:
    found: dict[str, list[int]] = defaultdict(list)
    for msg in read(kafka, out, count):
        key, _, value = (msg.value() or b"").decode().partition("=")
        found[key].append(int(value))
    return found


def wait_ready(runtime: Runtime, timeout: float = 60.0) -> None:
    """Readiness: joined, and every assigned partition's tables restored."""
    check = partitions_check(runtime)

    async def ask() -> None:
        await check()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            asyncio.run(ask())
            return
        except RuntimeError:
            time.sleep(0.05)
    pytest.fail("the runtime never became ready")
