"""The 3 a.m. story on the whole stack (``pipeline up``): records fail on an expired credential and
land in ``inference.dlq`` after their retries; the credential is repaired; ``pipeline dlq replay`` (dry run,
then for real) takes exactly those to ``delivered`` with one result and one webhook call each; a second
replay is refused, a forced one adds no result and no call; the audit holds the runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from shared.codec import EventCodec
from shared.kafka import KafkaConnection, end_offsets
from shared.replay.operations import read_audit
from shared.topics import RETRY_LEVELS, replay_topic, retry_topic
from tests.plugins import CREDENTIAL_MARK
from tests.support.kafka import wait_consumed
from tests.support.processes import REPO, free_port, wait_for
from tests.support.receiver import WebhookReceiver

pytestmark = pytest.mark.e2e
MARKED, PLAIN = 6, 6


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack.cli", "dlq", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def retries(service: str) -> list[str]:
    return [retry_topic(service, n) for n in range(1, RETRY_LEVELS + 1)]


def replayed_in(env: dict[str, str]) -> float:
    """Records inference has taken in from its replay topic (its runtime's counter)."""
    text = httpx.get(f"http://127.0.0.1:{env['INFERENCE_PORT']}/metrics").text
    line = 'runtime_records_in_total{service="inference",topic="inference.replay"} '
    return sum(float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line))


def results(env: dict[str, str]) -> Counter[str]:
    """Event ids of every committed record on events.inferred.v1 (read from the start)."""
    kafka = KafkaConnection(bootstrap_servers=env["PIPELINE_KAFKA_BOOTSTRAP_SERVERS"])
    ends = end_offsets(kafka, ["events.inferred.v1"])["events.inferred.v1"]
    consumer = Consumer(kafka.consumer_config(f"story-{uuid.uuid4().hex}", **{"enable.auto.commit": False}))
    consumer.assign([TopicPartition("events.inferred.v1", p, 0) for p in ends])
    found: Counter[str] = Counter()
    remaining = {p: end for p, end in ends.items() if end > 0}
    deadline = time.monotonic() + 60
    while remaining and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error() is not None:
            continue
        event_id = dict(msg.headers() or []).get("ce_id")
        found[event_id.decode() if isinstance(event_id, bytes) else str(event_id)] += 1
        if (msg.offset() or 0) >= remaining.get(msg.partition() or 0, 0) - 1:
            remaining.pop(msg.partition() or 0, None)
    consumer.close()
    return found


@pytest.mark.timeout(900)
def test_an_expired_credential_is_repaired_and_its_dead_letters_replayed_once(
    stack: dict[str, str], tmp_path: Path
) -> None:
    env = stack
    intake = f"http://127.0.0.1:{env['INTAKE_PORT']}"
    auth = {"Authorization": f"Bearer {os.environ.get('PIPELINE_DEV_API_KEY', 'dev-key-change-me')}"}
    receiver = WebhookReceiver(free_port()).start()
    try:
        run = uuid.uuid4().hex[:6]
        events: list[dict[str, Any]] = [
            {
                "event_id": f"{'m' if n < MARKED else 'p'}-{run}-{n}",
                "type": "ticket.created",
                "source": "story",
                "subject": f"customer-{n}",
                "payload": {
                    "text": f"{CREDENTIAL_MARK} my invoice total is wrong, please check ({n})"
                    if n < MARKED
                    else f"The app crashes when I open settings ({n})"
                },
                "callback_url": f"{receiver.url}/hook",
            }
            for n in range(MARKED + PLAIN)
        ]
        marked = {e["event_id"] for e in events[:MARKED]}
        answer = httpx.post(f"{intake}/v1/events:batch", headers=auth, json={"events": events}, timeout=30)
        assert answer.status_code == 202, answer.text
        # Two records no one can decode, straight into the inference input: deserialization dead letters.
        producer = Producer({"bootstrap.servers": env["PIPELINE_KAFKA_BOOTSTRAP_SERVERS"]})
        for i in range(2):
            producer.produce("events.enriched.v1", b"\x00garbage" + bytes([i]), f"dev:garbage-{i}".encode())
        assert producer.flush(10) == 0

        def status(event_id: str) -> str:
            return str(httpx.get(f"{intake}/v1/events/{event_id}", headers=auth).json().get("status"))

        def dlq() -> dict[str, Any]:
            listed = json.loads(cli(env, "list", "--json").stdout)["dlqs"]
            return next((d for d in listed if d["service"] == "inference"), {"by_category": {}})

        wait_for(
            lambda: dlq()["by_category"] == {"dependency": MARKED, "deserialization": 2},
            "the dead letters",
            timeout=180,
            interval=0.5,
        )
        wait_for(lambda: all(status(i) == "failed" for i in marked), "the failed statuses", timeout=180, interval=0.5)
        wait_for(lambda: len(receiver.calls) == PLAIN, "the plain events' webhooks", timeout=180, interval=0.5)
        assert all(status(e["event_id"]) == "delivered" for e in events[MARKED:])

        (Path(env["TEST_CREDENTIAL_EXPIRED"])).unlink()  # the credential is renewed

        dry = cli(env, "replay", "inference", "--category", "dependency", "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout)["plan"]["selected"] == MARKED

        replay = cli(env, "replay", "inference", "--category", "dependency", "--json")
        assert replay.returncode == 0, replay.stderr
        first_id = json.loads(replay.stdout)["result"]["replay_id"]
        wait_for(
            lambda: all(status(i) == "delivered" for i in marked),
            "the replayed events to be delivered",
            timeout=180,
            interval=0.5,
        )
        assert {i: n for i, n in results(env).items() if i in marked} == dict.fromkeys(marked, 1)
        calls = Counter(c.headers["webhook-id"] for c in receiver.calls)
        assert {i: calls[i] for i in marked} == dict.fromkeys(marked, 1)

        refused = cli(env, "replay", "inference", "--category", "dependency")
        assert refused.returncode == 3, refused.stderr
        forced = cli(env, "replay", "inference", "--category", "dependency", "--force", "--json")
        assert forced.returncode == 0, forced.stderr
        forced_id = json.loads(forced.stdout)["result"]["replay_id"]
        kafka = KafkaConnection(bootstrap_servers=env["PIPELINE_KAFKA_BOOTSTRAP_SERVERS"])
        wait_for(
            lambda: replayed_in(env) >= 2 * MARKED, "inference to take in the forced replay", timeout=180, interval=0.5
        )
        # A second result, or a second call, would come from a record still to handle: wait until none is left.
        wait_consumed(kafka, "inference", [replay_topic("inference")])
        wait_consumed(kafka, "notifier", ["events.inferred.v1", *retries("notifier"), replay_topic("notifier")])
        assert {i: n for i, n in results(env).items() if i in marked} == dict.fromkeys(marked, 1)
        calls = Counter(c.headers["webhook-id"] for c in receiver.calls)
        assert {i: calls[i] for i in marked} == dict.fromkeys(marked, 1)

        listed = dlq()
        assert listed["replayed"] == MARKED and listed["pending"] == 2  # the deserialization records stay
        codec = EventCodec.connect(env["PIPELINE_SCHEMA_REGISTRY_URL"], REPO / "schemas")
        runs = {a.replay_id: a.model_dump() for a in read_audit(kafka, codec)}
        assert runs[first_id]["outcome"] == "done" and runs[first_id]["replayed"] == MARKED
        assert runs[forced_id]["outcome"] == "done" and runs[forced_id]["force"]
        assert [r["outcome"] for r in runs.values() if r["service"] == "inference"] == [
            "dry_run",
            "done",
            "refused",
            "done",
        ]
    finally:
        receiver.close()
