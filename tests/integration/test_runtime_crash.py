"""Crash recovery, in the shape of Kafka's system test `transactions_test`: kill -9 a transactional runtime
repeatedly while it copies 10,000 records, then check every input comes out exactly once."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.kafka import GroupProgress, KafkaConnection
from tests.integration.runtime_support import make_topics, produce, read
from tests.support.processes import REPO

log = logging.getLogger(__name__)
RECORDS = 10_000
PARTITIONS = 6
KEYS = 60


@pytest.mark.parametrize("mode", ["sync", "async-inflight-4"])
def test_kill_dash_nine_during_transactions_loses_and_duplicates_nothing(
    kafka: KafkaConnection, unique: Callable[[str], str], tmp_path: Path, mode: str
) -> None:
    seed = int(os.environ.get("CRASH_TEST_SEED", random.randrange(1 << 30)))
    print(f"crash test seed: {seed} (rerun with CRASH_TEST_SEED={seed})")
    rng = random.Random(seed)
    service, source, out = unique("copier"), unique("in"), unique("out")
    make_topics(kafka, service, {source: PARTITIONS, out: PARTITIONS})
    produce(kafka, source, [(f"k{i % KEYS}".encode(), str(i).encode()) for i in range(RECORDS)])
    logfile = (tmp_path / "worker.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.crash_worker",
                kafka.bootstrap_servers,
                service,
                source,
                out,
                mode,
            ],
            cwd=REPO,
            stdout=logfile,
            stderr=subprocess.STDOUT,
        )

    progress = GroupProgress(kafka, service, source, PARTITIONS)
    worker = start()
    kills: list[str] = []
    last_kill_at = 0
    deadline = time.monotonic() + 420
    try:
        while (done := progress.committed()) < RECORDS:
            assert time.monotonic() < deadline, f"stuck at {done}/{RECORDS} after kills {kills}"
            if worker.poll() is not None:
                assert worker.returncode == -signal.SIGKILL, (tmp_path / "worker.log").read_text()[-3000:]
                worker = start()
            elif done - last_kill_at >= RECORDS // 5 and len(kills) < 4:
                # Alternate: a kill inside an open transaction (armed, fires just before a commit),
                # then a kill -9 at a seeded random moment.
                if len(kills) % 2 == 0:
                    worker.send_signal(signal.SIGUSR1)
                    kind = "in-transaction"
                else:
                    time.sleep(rng.uniform(0.0, 0.3))
                    worker.kill()
                    kind = "random"
                worker.wait(60)
                last_kill_at = progress.committed()
                kills.append(f"{kind}@{done}")
                worker = start()
            time.sleep(0.1)
    finally:
        worker.kill()
        worker.wait(30)
        logfile.close()
        progress.close()
    print(f"kills: {kills}")
    assert len(kills) >= 3, kills

    uncommitted = read(kafka, out, RECORDS, isolation="read_uncommitted", timeout=120)
    committed = read(kafka, out, RECORDS, timeout=120)
    assert len(uncommitted) > len(committed), "no kill landed inside an open transaction"

    values = [m.value() or b"" for m in committed]
    inputs = [v.split(b"|")[0] for v in values]
    assert len(inputs) == RECORDS, f"{len(inputs) - len(set(inputs))} duplicates"
    assert set(inputs) == {str(i).encode() for i in range(RECORDS)}
    per_key: dict[bytes, list[int]] = defaultdict(list)
    for msg in committed:
        per_key[msg.key() or b""].append(int((msg.value() or b"").split(b"|")[0]))
    for key, sequence in per_key.items():
        assert sequence == sorted(sequence), f"order broken for {key!r}"
