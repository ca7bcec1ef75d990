"""A consuming service under ``run_consumer``: SIGTERM commits what it finished; a fatal error exits non-zero."""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from shared.kafka import GroupProgress, KafkaConnection, create_topic
from tests.integration.runtime_support import make_topics, produce, read
from tests.support.processes import Process, free_port, spawn, wait_http_ready

RECORDS = 2000
PARTITIONS = 3


def start_worker(kafka: KafkaConnection, name: str, source: str, out: str, log: Path) -> tuple[Process, int]:
    port = free_port()
    env = {
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "WORKER_NAME": name,
        "WORKER_INPUT_TOPIC": source,
        "WORKER_OUTPUT_TOPIC": out,
        "WORKER_PORT": str(port),
        "WORKER_INSTANCE": "0",
        # Nested runtime settings through the environment, as a deployment sets them.
        "WORKER_RUNTIME__MAX_BATCH_SIZE": "50",
        "WORKER_RUNTIME__COMMIT_INTERVAL_MS": "100",
        "WORKER_RUNTIME__SESSION_TIMEOUT_MS": "6000",
        "WORKER_SHUTDOWN_TIMEOUT_S": "20",
    }
    return spawn([sys.executable, "-m", "tests.integration.service_worker"], log, env), port


def wait_committed(progress: GroupProgress, proc: Process, at_least: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while (done := progress.committed()) < at_least:
        assert proc.popen.poll() is None, f"worker exited with {proc.popen.returncode}:\n{proc.tail()}"
        assert time.monotonic() < deadline, f"committed {done} of {at_least} in {timeout}s:\n{proc.tail()}"
        time.sleep(0.05)
    return done


def stop(proc: Process) -> int:
    proc.popen.send_signal(signal.SIGTERM)
    return proc.popen.wait(60)


def test_sigterm_mid_stream_commits_what_it_finished_and_a_restart_loses_nothing(
    kafka: KafkaConnection, unique: Callable[[str], str], tmp_path: Path
) -> None:
    name, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, name, {source: PARTITIONS, out: PARTITIONS})
    produce(kafka, source, [(f"k{i % 20}".encode(), str(i).encode()) for i in range(RECORDS)])
    progress = GroupProgress(kafka, name, source, PARTITIONS)
    try:
        worker, port = start_worker(kafka, name, source, out, tmp_path / "first.log")
        wait_http_ready(f"http://127.0.0.1:{port}/readyz", worker)
        wait_committed(progress, worker, RECORDS // 5)
        assert stop(worker) == 0, worker.tail()
        assert "stopping on signal" in worker.tail()
        stopped_at = progress.committed()
        assert stopped_at < RECORDS, "the stop did not land mid-stream"

        # What it finished is committed: every committed offset has its output, and no transaction was aborted.
        committed = read(kafka, out, stopped_at)
        assert len(committed) == stopped_at
        assert len(read(kafka, out, stopped_at, isolation="read_uncommitted")) == stopped_at

        again, _ = start_worker(kafka, name, source, out, tmp_path / "second.log")
        wait_committed(progress, again, RECORDS)
        assert stop(again) == 0, again.tail()
    finally:
        progress.close()
    outputs = read(kafka, out, RECORDS)
    counts = Counter(int(msg.value().split(b"|")[0]) for msg in outputs)  # type: ignore[union-attr]
    assert set(counts) == set(range(RECORDS))
    assert max(counts.values()) == 1
    assert len(read(kafka, out, RECORDS, isolation="read_uncommitted")) == RECORDS


def test_a_fatal_runtime_error_ends_the_process_with_a_non_zero_code(
    kafka: KafkaConnection, unique: Callable[[str], str], tmp_path: Path
) -> None:
    # No dead-letter topic for this service: the runtime refuses to start (RuntimeFatal).
    name, source = unique("nodlq"), unique("in")
    create_topic(kafka, source)
    worker, _ = start_worker(kafka, name, source, unique("out"), tmp_path / "fatal.log")
    assert worker.popen.wait(60) == 1
    assert "does not exist" in worker.tail()
