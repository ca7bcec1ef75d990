"""``INTAKE_WORKERS=2``: two server processes on one port, and ``/metrics`` on either adds both up."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from shared.auth import KeyStore
from shared.kafka import KafkaConnection, create_topic
from tests.support.processes import start_intake

POSTS = 60


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def workers_of(pid: int) -> list[int]:
    """The server processes uvicorn spawned (not multiprocessing's resource tracker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(p) for p in path.read_text().split()] if path.exists() else []
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_two_workers_serve_one_port_and_metrics_add_up_across_them(
    kafka_bootstrap: str,
    kafka: KafkaConnection,
    redis_url: str,
    registry_url: str,
    tmp_path: Path,
    unique: Callable[[str], str],
) -> None:
    topic = unique("events")
    create_topic(kafka, topic, 3)
    key, _ = KeyStore.from_url(redis_url).create(unique("tenant"), ["events:write"], "100000/second")
    url, proc = start_intake(
        tmp_path / "intake.log",
        topic,
        kafka_bootstrap,
        redis_url,
        registry_url,
        INTAKE_WORKERS="2",
        PIPELINE_STATE_DIR=str(tmp_path / "state"),
    )
    port = url.rsplit(":", 1)[1]
    try:
        workers = workers_of(proc.popen.pid)
        assert len(workers) == 2, proc.tail()

        def post(i: int) -> int:
            # A new connection each time, so the kernel spreads them over both workers' accept queues.
            body = {"event_id": f"w-{i}", "type": "ticket.created", "source": "crm", "payload": {"text": "hi"}}
            return httpx.post(f"{url}/v1/events", json=body, headers={"X-API-Key": key}, timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(post, range(POSTS)))
        assert statuses == [202] * POSTS

        files = list((tmp_path / "state" / "metrics").glob(f"intake-{port}/counter_*.db"))
        pids = {int(f.stem.split("_")[1]) for f in files}
        assert pids <= set(workers) and pids, files
        for _ in range(4):  # whichever worker answers the scrape, it reports both
            text = httpx.get(f"{url}/metrics", timeout=10).text
            assert metric(text, "intake_events_total", outcome="accepted") == POSTS
            assert metric(text, "http_requests_total", route="/v1/events", status="202") == POSTS
    finally:
        proc.stop()
    assert "Traceback" not in proc.tail(), proc.tail()
