"""Table state: the memory store against the disk store (RocksDB), on the store and through a batch.

Needs no broker. Prints JSON with operations per second for each store and the disk/memory ratio, both measured
in this run (the machine is shared and noisy; best of --rounds for the small runs): puts, gets and one
write_many of --keys small keys on the bare store; the same keys put and read back through pipelined batches of
--batch keys (a TableView, seal, commit); and a restore of --restore-keys changelog records, plain and windowed,
in seconds and keys per second (best of --rounds too). The disk store lives in a temporary directory under --dir.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from shared.runtime.state import BYTES, StateSettings, StoreKind, Table, Tables
from shared.runtime.state.partition import stamp

KINDS: tuple[StoreKind, ...] = ("memory", "disk")
PLAIN = Table("bench", BYTES)
WINDOWED = Table("window", BYTES, retention_ms=3_600_000)
TP = 0  # partition 0
VALUE = b'{"count": 12, "last_seen": 1718000000000}'


def key(i: int) -> bytes:
    return b"customer-%08d" % i


def best_seconds(rounds: int, setup: Callable[[], Callable[[], object]]) -> float:
    """Best of ``rounds``: each round gets a fresh setup (an empty store), timed around the returned run only."""
    best = float("inf")
    for _ in range(rounds):
        run = setup()
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def measure(
    kind: StoreKind, root: Path, n: int, batch_size: int, restore_keys: list[bytes], rounds: int
) -> dict[str, float]:
    settings = StateSettings(store=kind, dir=root / kind)
    tables = Tables("bench", "bench-0", [PLAIN, WINDOWED], settings)
    keys = [key(i) for i in range(n)]

    def store_puts() -> Callable[[], object]:
        store = tables.assign(TP).states[PLAIN.name].store

        def run() -> None:
            for k in keys:
                store.put(k, VALUE)

        return run

    def store_gets() -> Callable[[], object]:
        store = tables.assign(TP).states[PLAIN.name].store
        store.write_many((k, VALUE) for k in keys)
        return lambda: [store.get(k) for k in keys]

    def store_write_many() -> Callable[[], object]:
        store = tables.assign(TP).states[PLAIN.name].store
        return lambda: store.write_many((k, VALUE) for k in keys)

    def batch_puts() -> Callable[[], object]:
        part = tables.assign(TP)

        def run() -> None:
            # Two batches in flight, as the runtime pipelines them: commit the one before, then begin the next.
            previous = None
            for start in range(0, n, batch_size):
                batch = part.begin(now_ms=start)
                view = batch.table(PLAIN)
                for k in keys[start : start + batch_size]:
                    view.put(k, VALUE)
                batch.seal()
                batch.changelog()
                if previous is not None:
                    part.commit(previous)
                previous = batch
            if previous is not None:
                part.commit(previous)

        return run

    def batch_gets() -> Callable[[], object]:
        part = tables.assign(TP)
        part.restore(PLAIN.name, ((k, VALUE) for k in keys))
        pending = part.begin(now_ms=0)  # one pending batch to read through, as in the pipeline
        pending.table(PLAIN).put(b"other", VALUE)
        pending.seal()
        view = part.begin(now_ms=0).table(PLAIN)
        return lambda: [view.get(k) for k in keys]

    results = {
        "store_put_per_s": n / best_seconds(rounds, store_puts),
        "store_get_per_s": n / best_seconds(rounds, store_gets),
        "store_write_many_per_s": n / best_seconds(rounds, store_write_many),
        "batch_put_commit_per_s": n / best_seconds(rounds, batch_puts),
        "batch_get_per_s": n / best_seconds(rounds, batch_gets),
    }
    windowed = stamp(1_718_000_000_000, VALUE)
    for table, value in ((PLAIN, VALUE), (WINDOWED, windowed)):
        # The records exist before the clock starts: this times the restore, not building its input.
        records = [(k, value) for k in restore_keys]

        def restore(name: str = table.name, records: list[tuple[bytes, bytes]] = records) -> Callable[[], object]:
            part = tables.assign(TP)  # empty stores, as on an assignment
            return lambda: part.restore(name, records)

        seconds = best_seconds(rounds, restore)
        results[f"restore_{table.name}_s"] = seconds
        results[f"restore_{table.name}_keys_per_s"] = len(restore_keys) / seconds
    tables.close()
    return results


def rounded(results: dict[str, float]) -> dict[str, float]:
    return {k: round(v) if k.endswith("_per_s") else round(v, 3) for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--restore-keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the disk store goes (default: the temp dir)")
    args = parser.parse_args()
    restore_keys = [key(i) for i in range(args.restore_keys)]
    with tempfile.TemporaryDirectory(prefix="bench-state-", dir=args.dir) as tmp:
        measured = {kind: measure(kind, Path(tmp), args.keys, args.batch, restore_keys, args.rounds) for kind in KINDS}
    memory, disk = measured["memory"], measured["disk"]
    # Throughputs compare as disk/memory (below 1: disk is slower); restore times as disk/memory too (above 1:
    # disk is slower).
    ratios = {name: disk[name] / memory[name] for name in memory}
    print(
        json.dumps(
            {
                "benchmark": "state",
                "keys": args.keys,
                "batch": args.batch,
                "restore_keys": args.restore_keys,
                "rounds": args.rounds,
                "memory": rounded(memory),
                "disk": rounded(disk),
                "disk_vs_memory": {k: round(v, 3) for k, v in ratios.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
