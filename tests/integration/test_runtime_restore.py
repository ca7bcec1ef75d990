"""Restoring tables on assignment against a real broker: not ready while a large changelog is read back, the
remaining-records gauge counting down to 0, processing resuming from the restored state (in memory and on disk),
and a partition's disk state removed when it is revoked or the runtime stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from shared.kafka import KafkaConnection
from shared.runtime import Runtime
from shared.runtime.state import changelog_topic
from shared.service import partitions_check
from tests.integration.runtime_support import produce, running
from tests.support.tables import (
    COUNTS,
    PARTITIONS,
    counting,
    names,
    outputs,
    settings,
    tables_topics,
    wait_ready,
)

# Enough that reading the changelog back takes a while on any machine: the test must see the restore under way.
# (A restore too quick to catch calls for more records here, never for a timing assertion.)
LARGE = 300_000
SMALL = 3_000
REMAINING = "runtime_state_restore_remaining_records"
T = TypeVar("T")


def fill_changelog(kafka: KafkaConnection, topic: str, records: int, last: dict[int, tuple[bytes, int]]) -> None:
    """``records`` counts (``k<i>`` = 1) spread over the partitions, then, last in partition ``p``, the count
    ``last[p]``: a restore that stops short of a partition's end misses it."""
    producer = Producer(kafka.producer_config(**{"linger.ms": 50, "compression.type": "lz4"}))

    def send(key: bytes, value: bytes, partition: int) -> None:
        while True:
            try:
                producer.produce(topic, value, key, partition=partition)
                return
            except BufferError:
                producer.poll(0.05)

    for i in range(records):
        send(b"k%07d" % i, b"1", i % PARTITIONS)
    for partition, (key, count) in last.items():
        send(key, b"%d" % count, partition)
    assert producer.flush(60) == 0


def probes() -> dict[int, tuple[bytes, int]]:
    """A key per partition and the count its changelog ends with."""
    return {p: (b"probe-%d" % p, 40 + p) for p in range(PARTITIONS)}


def count_on(kafka: KafkaConnection, source: str, out: str, last: dict[int, tuple[bytes, int]]) -> dict[str, list[int]]:
    """One more record of each probe key, in its partition: the handler answers the count it then stores."""
    for partition, (key, _) in last.items():
        produce(kafka, source, [(key, b"x")], partition=partition)
    return outputs(kafka, out, len(last))


def remaining(service: str, table: str) -> float | None:
    return REGISTRY.get_sample_value(REMAINING, {"service": service, "table": table})


@dataclass
class RestoreSeen:
    """What readiness and the gauge showed between the group's assignment and readiness."""

    not_ready: list[str]
    most_remaining: float


def watch_restore(runtime: Runtime, table: str, timeout: float = 120.0) -> RestoreSeen:
    """Poll readiness and the remaining-records gauge until the runtime is ready."""
    check = partitions_check(runtime)

    async def ready() -> None:
        await check()

    seen = RestoreSeen([], 0.0)
    deadline = time.monotonic() + timeout
    with asyncio.Runner() as runner:
        while True:
            seen.most_remaining = max(seen.most_remaining, remaining(runtime.service, table) or 0.0)
            try:
                runner.run(ready())
                return seen
            except RuntimeError as exc:
                if str(exc) not in seen.not_ready:
                    seen.not_ready.append(str(exc))
            if time.monotonic() > deadline:
                pytest.fail(f"not ready in {timeout}s: {seen}")
            time.sleep(0.002)


def test_readiness_waits_for_the_restore_and_counting_resumes_from_the_restored_counts(
    kafka: KafkaConnection, tmp_path: Path
) -> None:
    service, source, out = names("restore")
    tables_topics(kafka, service, source, out, COUNTS.name)
    last = probes()
    fill_changelog(kafka, changelog_topic(service, COUNTS.name), LARGE, last)
    runtime = Runtime(service, kafka, [source], counting(out), settings(tmp_path), tables=[COUNTS])
    with running(runtime):
        seen = watch_restore(runtime, COUNTS.name)
        assert any("restoring" in message for message in seen.not_ready), seen
        assert seen.most_remaining > 0, seen
        assert runtime.restoring == []
        assert remaining(service, COUNTS.name) == 0
        found = count_on(kafka, source, out, last)
    assert found == {key.decode(): [count + 1] for key, count in last.values()}


def partition_dirs(root: Path, runtime: Runtime) -> set[int]:
    """The partitions whose state this runtime keeps on disk (``<dir>/<instance id>/p<n>``)."""
    owner = root / runtime.instance_id
    return {int(path.name[1:]) for path in owner.glob("p*")} if owner.exists() else set()


def files_under(root: Path) -> list[Path]:
    return sorted(path.relative_to(root) for path in root.rglob("*") if path.is_file())


def test_a_disk_store_is_restored_and_its_directories_are_removed_when_the_runtime_stops(
    kafka: KafkaConnection, tmp_path: Path
) -> None:
    service, source, out = names("restore-disk")
    tables_topics(kafka, service, source, out, COUNTS.name)
    last = probes()
    fill_changelog(kafka, changelog_topic(service, COUNTS.name), SMALL, last)
    state = tmp_path / "state"
    conf = settings(tmp_path, state={"store": "disk", "dir": str(state)})
    runtime = Runtime(service, kafka, [source], counting(out), conf, tables=[COUNTS])
    with running(runtime):
        wait_ready(runtime)
        assert partition_dirs(state, runtime) == set(range(PARTITIONS))
        assert all((state / runtime.instance_id / f"p{p}" / COUNTS.name / "data").is_dir() for p in range(PARTITIONS))
        found = count_on(kafka, source, out, last)
    assert found == {key.decode(): [count + 1] for key, count in last.values()}
    # Closing revokes every partition: the next owner restores from the changelog, so nothing stays behind.
    assert partition_dirs(state, runtime) == set()
    assert files_under(state) == []


def held(runtime: Runtime) -> set[int]:
    assert runtime.tables is not None
    return set(runtime.tables.partitions)


def test_a_revoked_partitions_disk_state_is_removed_while_the_runtime_runs_on(
    kafka: KafkaConnection, tmp_path: Path
) -> None:
    service, source, out = names("restore-revoke")
    tables_topics(kafka, service, source, out, COUNTS.name)
    fill_changelog(kafka, changelog_topic(service, COUNTS.name), SMALL, probes())
    state = tmp_path / "state"

    def runtime(instance: int) -> Runtime:
        conf = settings(tmp_path, instance=instance, state={"store": "disk", "dir": str(state)})
        return Runtime(service, kafka, [source], counting(out), conf, tables=[COUNTS])

    first, second = runtime(0), runtime(1)
    with ExitStack() as stack:
        stack.enter_context(running(first))
        wait_ready(first)
        assert partition_dirs(state, first) == set(range(PARTITIONS))
        stack.enter_context(running(second))
        # The second member takes some partitions: both hold theirs, restored, and nothing twice.
        mine, theirs = until(lambda: _split(first, second), "the partitions split between the two runtimes, restored")
        assert partition_dirs(state, first) == mine
        assert partition_dirs(state, second) == theirs
    assert files_under(state) == []


def _split(first: Runtime, second: Runtime) -> tuple[set[int], set[int]] | None:
    mine, theirs = held(first), held(second)
    split = bool(mine and theirs) and not mine & theirs and mine | theirs == set(range(PARTITIONS))
    restored = not first.restoring and not second.restoring
    return (mine, theirs) if split and restored else None


def until(found: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """``found()`` once it is not None; fails at ``timeout``."""
    deadline = time.monotonic() + timeout
    while (value := found()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not in {timeout}s")
        time.sleep(0.02)
    return value
