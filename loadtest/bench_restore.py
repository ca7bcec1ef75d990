"""Restore time for 1 million keys: a real ``Restorer`` filling a partition's tables from its changelog, into the
memory store and into the disk store (RocksDB), against a bare confluent-kafka read of the same records.

- **changelogs**: two fresh compacted topics of a bench service's windowed ``activity`` table (as enrichment's:
  values are an 8-byte big-endian write time and ~100 bytes of JSON like an activity entry), one with a single
  partition holding all ``--keys`` keys (what one process restores when it takes over a 1-million-key
  partition) and one with ``--partitions`` partitions holding ``--keys / --partitions`` keys each (the same keys
  spread as the pipeline spreads them; partition 0 is measured).
- **bare read**: one consumer configured as the restorer's (``read_committed``, partition EOF) assigned to the
  partition from its start, consuming batches of 10,000 until the end: no key or value is looked at. Its
  ``consume`` waits 50 ms at most (the restorer's waits 0.5 s, which its last, short batch spends in full).
- **restore**: ``Tables.assign`` then ``Restorer.start`` as the engine calls them on an assignment, timed until
  the restorer's job is done (admin offset look-ups, reading, decoding nothing, the store writes and the expiry
  index), for each store kind, with a fresh ``Restorer`` (so a fresh consumer) every round.
- **apply**: ``PartitionTables.restore`` of the same records from a list, nothing read: the store's share.

The bare read and the restores run twice: with the consumer settings as they are (``as_configured``), and with
librdkafka's ``fetch.queue.backoff.ms`` at 10 ms (``QuickRefetch``): by default a consumer whose queue is past
``queued.min.messages`` (100,000 records) waits a full second before it fetches again, which a partition of a
million keys runs into, over and over, while the partition of one in twelve never does.

Every side runs ``--rounds`` times, alternating, and its best counts (the machine is shared). Needs the stack
(``make up``); the topics are deleted at the end. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from shared.kafka import KafkaConnection, bootstrap_topics
from shared.runtime.state import StateSettings, StoreKind, Table, Tables, changelog_topic
from shared.runtime.state.partition import stamp
from shared.runtime.stateful import Restorer
from shared.settings import PipelineSettings
from shared.topics import TopicSpec

KINDS: tuple[StoreKind, ...] = ("memory", "disk")
HOUR_MS = 3_600_000
ACTIVITY = Table("activity", retention_ms=25 * HOUR_MS)
# librdkafka's fetch.queue.backoff.ms in the second variant (its default: 1000).
QUICK_REFETCH_MS = 10
# What ``bare_read`` and the restorer's consumer share (the restorer sets these, see stateful.Restorer._serve).
READER = {
    "enable.auto.commit": False,
    "enable.partition.eof": True,
    "isolation.level": "read_committed",
    "fetch.wait.max.ms": 50,
}


def key(i: int) -> bytes:
    return b"acme:customer-%08d" % i


def entry(i: int, now_ms: int) -> bytes:
    """A windowed changelog value: the write time, then an activity entry's JSON (~100 bytes)."""
    minute = now_ms // 60_000 - i % 1440
    payload = orjson.dumps({"m": {str(minute): 1 + i % 7}, "last": now_ms / 1000})
    return stamp(now_ms - (i % 1440) * 60_000, payload)


def fill(kafka: KafkaConnection, topic: str, keys: int, partitions: int, now_ms: int) -> None:
    """``keys`` records, key ``i`` in partition ``i % partitions``: one record per key, as a compacted changelog
    holds once compacted. Batched and compressed, as the runtime's transactional producer writes them."""
    producer = Producer(kafka.producer_config(**{"linger.ms": 50, "compression.type": "lz4", "batch.size": 1 << 20}))
    for i in range(keys):
        while True:
            try:
                producer.produce(topic, entry(i, now_ms), key(i), partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120) != 0:
        raise RuntimeError(f"{topic}: records left unsent")


def bare_read(kafka: KafkaConnection, topic: str, partition: int, group: str) -> tuple[float, int]:
    """Seconds to consume the partition from its start to its end (the consumer's creation included, as in a
    restore), and the records read."""
    started = time.perf_counter()
    consumer = Consumer(kafka.consumer_config(group, **READER))
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        count = 0
        while True:
            # A short wait: ``consume`` returns early only once it has the 10,000 records, never at the partition's
            # end, so a long one would be spent idle on the last, short batch.
            batch = consumer.consume(10_000, 0.05)
            error = batch[-1].error() if batch else None
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                return time.perf_counter() - started, count + len(batch) - 1
            count += len(batch)
    finally:
        consumer.close()


def records_of(kafka: KafkaConnection, topic: str, partition: int, group: str) -> list[tuple[bytes, bytes | None]]:
    """The partition's records as (key, value), for the apply-only side (read once, untimed)."""
    consumer = Consumer(kafka.consumer_config(group, **READER))
    found: list[tuple[bytes, bytes | None]] = []
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        while True:
            for msg in consumer.consume(10_000, 0.5):
                if msg.error() is not None:
                    return found
                found.append((msg.key() or b"", msg.value()))
    finally:
        consumer.close()


def restore(kafka: KafkaConnection, service: str, kind: StoreKind, root: Path, partition: int) -> tuple[float, int]:
    """Seconds for a fresh ``Restorer`` to restore the partition into empty tables of ``kind``, and the keys then
    in the store (checked against what was written)."""
    tables = Tables(service, f"{service}-0", [ACTIVITY], StateSettings(store=kind, dir=root / kind))
    restorer = Restorer(service, kafka, tables, {}, timeout_s=120.0)
    try:
        started = time.perf_counter()
        tables.assign(partition)
        restorer.start(partition)
        job = restorer.jobs[partition]
        if not job.done.wait(600):
            raise RuntimeError(f"partition {partition}: not restored in 600 s")
        seconds = time.perf_counter() - started
        if restorer.take_finished() != [partition] or job.error is not None:
            raise RuntimeError(f"partition {partition}: the restore failed ({job.error})")
        return seconds, tables[partition].states[ACTIVITY.name].store.approximate_len()
    finally:
        restorer.close()
        tables.close()


def apply(
    service: str, kind: StoreKind, root: Path, partition: int, records: list[tuple[bytes, bytes | None]]
) -> float:
    """Seconds for ``PartitionTables.restore`` to write ``records`` into empty tables of ``kind``."""
    tables = Tables(service, f"{service}-apply", [ACTIVITY], StateSettings(store=kind, dir=root / kind))
    try:
        part = tables.assign(partition)
        started = time.perf_counter()
        part.restore(ACTIVITY.name, records)
        return time.perf_counter() - started
    finally:
        tables.close()


def best(rounds: int, sides: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Best seconds of each side over ``rounds``, the sides alternating within a round."""
    found = {name: float("inf") for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            found[name] = min(found[name], run())
    return found


class QuickRefetch(KafkaConnection):
    """The connection with librdkafka's ``fetch.queue.backoff.ms`` lowered for every consumer built from it (the
    restorer's included): by default a consumer whose queue holds ``queued.min.messages`` (100,000) records
    fetches again only a second later, which a read of a large partition keeps running into."""

    def consumer_config(self, group_id: str, **overrides: object) -> dict[str, Any]:
        return super().consumer_config(group_id, **{"fetch.queue.backoff.ms": QUICK_REFETCH_MS, **overrides})


def measure(
    kafka: KafkaConnection, service: str, topic: str, partition: int, keys: int, rounds: int, root: Path
) -> dict[str, Any]:
    group = f"{service}-bare"
    counts: dict[str, int] = {}
    quick = QuickRefetch.model_validate(kafka.model_dump())

    def read(connection: KafkaConnection, name: str) -> Callable[[], float]:
        def run() -> float:
            seconds, counts[name] = bare_read(connection, topic, partition, group)
            return seconds

        return run

    def restored(connection: KafkaConnection, kind: StoreKind, name: str) -> Callable[[], float]:
        def run() -> float:
            seconds, counts[name] = restore(connection, service, kind, root, partition)
            return seconds

        return run

    def applied(kind: StoreKind) -> Callable[[], float]:
        return lambda: apply(service, kind, root, partition, records)

    records = records_of(kafka, topic, partition, group)
    if len(records) != keys:
        raise RuntimeError(f"{topic}[{partition}]: {len(records)} records, {keys} expected")
    sides: dict[str, Callable[[], float]] = {"bare": read(kafka, "bare"), "bare_quick": read(quick, "bare_quick")}
    for kind in KINDS:
        sides[kind] = restored(kafka, kind, kind)
        sides[f"{kind}_quick"] = restored(quick, kind, f"{kind}_quick")
        sides[f"{kind}_apply"] = applied(kind)
    seconds = best(rounds, sides)
    exact = ("bare", "bare_quick", "memory", "memory_quick")  # a disk store's count is RocksDB's estimate
    wrong = {name: counts[name] for name in exact if counts[name] != keys}
    if wrong:
        raise RuntimeError(f"{topic}[{partition}]: {keys} keys written, but read or restored {wrong}")
    result: dict[str, Any] = {"topic_partitions": None, "keys": keys}
    for suffix, label in (("", "as_configured"), ("_quick", f"fetch_queue_backoff_{QUICK_REFETCH_MS}ms")):
        bare = seconds[f"bare{suffix}"]
        found: dict[str, Any] = {"bare_read_s": round(bare, 3), "bare_read_keys_per_s": round(keys / bare)}
        for kind in KINDS:
            restore_s = seconds[f"{kind}{suffix}"]
            found[kind] = {
                "restore_s": round(restore_s, 3),
                "restore_keys_per_s": round(keys / restore_s),
                "restore_vs_bare": round(restore_s / bare, 2),
            }
            if not suffix:
                found[kind]["apply_only_s"] = round(seconds[f"{kind}_apply"], 3)
                found[kind]["keys_in_store"] = counts[kind]
        result[label] = found
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=12, help="of the spread changelog (0: skip it)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the disk stores go (default: the temp dir)")
    args = parser.parse_args()
    kafka = PipelineSettings().kafka
    run_id = uuid.uuid4().hex[:8]
    # A bench service per layout: the restorer reads the changelog its tables name, <service>.activity.changelog.
    services = {1: f"bench-restore-{run_id}-1p"}
    if args.partitions > 1:
        services[args.partitions] = f"bench-restore-{run_id}-{args.partitions}p"
    topics = {n: changelog_topic(service, ACTIVITY.name) for n, service in services.items()}
    bootstrap_topics(
        kafka, [TopicSpec(topic, n, "tenant:subject", None, compacted=True) for n, topic in topics.items()]
    )
    now_ms = int(time.time() * 1000)
    results: dict[str, Any] = {}
    try:
        for n, topic in topics.items():
            started = time.perf_counter()
            fill(kafka, topic, args.keys, n, now_ms)
            filled = time.perf_counter() - started
            in_first = len(range(0, args.keys, n))  # the keys of partition 0, the one measured
            with tempfile.TemporaryDirectory(prefix="bench-restore-", dir=args.dir) as tmp:
                found = measure(kafka, services[n], topic, 0, in_first, args.rounds, Path(tmp))
            found["topic_partitions"] = n
            found["fill_s"] = round(filled, 1)
            results["one_partition" if n == 1 else f"one_of_{n}_partitions"] = found
    finally:
        kafka.admin().delete_topics(list(topics.values()))
    print(
        json.dumps(
            {"benchmark": "restore", "table": "windowed (activity)", "rounds": args.rounds, **results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
