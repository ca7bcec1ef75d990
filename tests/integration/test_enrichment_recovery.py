"""enrichment under failure: a ``kill -9`` mid-run, and a registry outage."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from shared.events import EventEnriched, EventReceived
from shared.kafka import KafkaConnection
from shared.topics import dlq_topic
from tests.conftest import RegistryProcess
from tests.integration.test_enrichment import enrichment_worker
from tests.support.factories import make_event_received
from tests.support.kafka import read

SUBJECTS = [f"subject-{n}" for n in range(5)]
# Several times the worker's outage backoff (1 s at most here), so it retries the registry during the outage.
REGISTRY_OUTAGE_S = 5.0


def events_for(tenant: str, first: int, last: int) -> list[EventReceived]:
    return [
        EventReceived.model_validate(
            make_event_received(tenant=tenant, subject=SUBJECTS[i % len(SUBJECTS)], event_id=f"e-{i:04d}")
        )
        for i in range(first, last)
    ]


def test_kill_9_mid_run_then_restart_loses_nothing_and_counts_each_event_once_from_the_changelog(
    kafka_bootstrap: str, kafka: KafkaConnection, registry_url: str, tmp_path: Path
) -> None:
    with enrichment_worker(kafka_bootstrap, kafka, registry_url, tmp_path) as worker:
        worker.send_events(events_for(worker.tenant, 0, 250))
        seen = worker.collect(60, to_end=False)  # under way: some committed, more in flight
        assert worker.process is not None
        os.kill(worker.process.popen.pid, signal.SIGKILL)
        worker.process.popen.wait(30)
        worker.send_events(events_for(worker.tenant, 250, 500))
        worker.start()
        every = {f"e-{i:04d}" for i in range(500)}
        seen += worker.collect_ids(every - {e.event_id for e in seen})
        by_id: dict[str, list[EventEnriched]] = defaultdict(list)
        for event in seen:
            by_id[event.event_id].append(event)
        lost = sorted(every - set(by_id))
        where = diagnose(kafka, worker.received, worker.name, set(by_id)) if lost else ""
    assert not lost, f"{len(lost)} events never came out: {where}"
    # At least once, and idempotent by event id: a record processed again after the crash says the same.
    for copies in by_id.values():
        assert len({(c.events_1h, c.events_24h, c.seconds_since_previous, c.text) for c in copies}) == 1, copies
    counts: dict[str, list[int]] = defaultdict(list)
    for copies in by_id.values():
        counts[copies[0].subject].append(copies[0].events_1h)
    # Each subject's 100 events counted 1..100: the state came back from the changelog, nothing counted twice.
    assert {subject: sorted(c) for subject, c in counts.items()} == {s: list(range(1, 101)) for s in SUBJECTS}


def test_a_registry_outage_dead_letters_nothing_and_every_event_comes_out_after_it(
    kafka_bootstrap: str,
    kafka: KafkaConnection,
    start_registry: Callable[..., RegistryProcess],
    tmp_path: Path,
) -> None:
    registry = start_registry()
    port = int(registry.url.rsplit(":", 1)[1])
    with enrichment_worker(
        kafka_bootstrap,
        kafka,
        registry.url,
        tmp_path,
        start=False,
        ENRICHMENT_RUNTIME__DEPENDENCY_BACKOFF_MAX_MS="1000",
    ) as worker:
        events = events_for(worker.tenant, 0, 20)
        worker.send_events(events[:1])  # registers the schema while the registry is up
        registry.stop()
        worker.start(ready=False)  # cold caches: every decode needs the registry
        worker.send_events(events[1:])  # encoded from the test's warm cache
        dlq = Consumer(kafka.consumer_config(f"dlq-{uuid.uuid4().hex}", **{"isolation.level": "read_uncommitted"}))
        dlq.subscribe([dlq_topic(worker.name)])
        outage_ends = time.monotonic() + REGISTRY_OUTAGE_S
        while time.monotonic() < outage_ends:  # the outage itself: watch both topics throughout
            assert worker.poll(0.2) is None, "an event came out while the registry was down"
            assert dlq.poll(0.2) is None, "a record was dead-lettered during the outage"
        start_registry(topic=registry.topic, port=port)
        out = worker.collect(20)
        assert sorted(e.event_id for e in out) == sorted(e.event_id for e in events)
        dlq.close()
        # Outputs and dead letters commit together: with every output read, the DLQ holds all it ever will.
        assert read(kafka, dlq_topic(worker.name), isolation="read_uncommitted") == []


def diagnose(kafka: KafkaConnection, topic: str, group: str, seen: set[str]) -> str:
    """Where the events that never came out sit in ``topic`` (``id@partition:offset``), and the group's
    committed offsets: a committed offset past a missing record is a record skipped, not one still pending."""
    consumer = Consumer(kafka.consumer_config(f"{group}-diagnosis"))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(12)])
    where: list[str] = []
    end = time.monotonic() + 20
    while time.monotonic() < end:
        msg = consumer.poll(0.5)
        if msg is None or msg.error() is not None:
            continue
        pairs: Any = msg.headers() or []
        event_id = next((bytes(v).decode() for k, v in pairs if k == "ce_id"), "")
        if event_id not in seen:
            where.append(f"{event_id}@{msg.partition()}:{msg.offset()}")
    consumer.close()
    group_reader = Consumer(kafka.consumer_config(group))
    committed = group_reader.committed([TopicPartition(topic, p) for p in range(12)], 10)
    group_reader.close()
    return f"missing {where}; committed {[(tp.partition, tp.offset) for tp in committed]}"
