"""Replays never loop, against the real broker, registry and a running consumer: a poison record replayed once
fails again into one new dead letter that keeps its origin; a second plain replay is refused (exit 3) and
``--include-refailed`` takes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

from shared.errors import PermanentError
from shared.kafka import KafkaConnection, bootstrap_topics
from shared.replay.operations import read_ledger, summarize
from shared.runtime import Output, PartitionBatch, Runtime, RuntimeSettings
from shared.settings import REPO_ROOT
from shared.topics import AUDIT_REPLAYS, BY_NAME, REPLAY_LEDGER, dlq_topic, replay_topic
from tests.integration.runtime_support import headers, make_topics, produce, read, running

POISON = b"poison"


def test_a_poison_record_replayed_twice_makes_one_new_dead_letter_and_a_plain_replay_is_refused(
    kafka: KafkaConnection, registry_url: str, redis_url: str, unique: Callable[[str], str]
) -> None:
    service, source, out = unique("svc"), unique("in"), unique("out")
    make_topics(kafka, service, {source: 1, out: 1})
    bootstrap_topics(kafka, [BY_NAME[REPLAY_LEDGER], BY_NAME[AUDIT_REPLAYS]])
    env = {
        **os.environ,
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "PIPELINE_SCHEMA_REGISTRY_URL": registry_url,
        "PIPELINE_REDIS_URL": redis_url,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "stack.cli", "dlq", "replay", service, "--category", "validation", *args]
        return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)

    def handle(batches: Sequence[PartitionBatch]) -> list[list[Output]]:
        if any(r.value == POISON for b in batches for r in b.records):
            raise PermanentError("still poison", category="validation")
        return [[Output(out, r.value, r.key)] for b in batches for r in b.records]

    settings = RuntimeSettings.model_validate({"retry_delays_ms": [100], "commit_interval_ms": 100, "max_wait_ms": 20})
    produce(kafka, source, [(b"k", POISON)])
    with running(Runtime(service, kafka, [source], handle, settings)):
        [first] = read(kafka, dlq_topic(service), 1)

        replayed = cli()
        assert replayed.returncode == 0, replayed.stderr
        dead = read(kafka, dlq_topic(service), 2)
        again = headers(dead[1])
        # The new dead letter keeps the first failure's position and says after how many replays it failed.
        assert (again["dlq.original.topic"], again["dlq.original.offset"]) == (source.encode(), b"0")
        assert again["replay.count"] == b"1" and again["replay.original.offset"] == b"0"

        refused = cli("--json")
        assert refused.returncode == 3, refused.stderr
        outcome = json.loads(refused.stdout)["result"]
        assert (outcome["outcome"], outcome["replayed"], outcome["refailed"]) == ("refused", 0, 1)
        refused = cli()
        assert refused.returncode == 3, refused.stderr
        assert "--include-refailed" in refused.stderr and "failed again after replay" in refused.stderr
        assert len(read(kafka, replay_topic(service))) == 1 and len(read(kafka, dlq_topic(service))) == 2

        planned = cli("--dry-run", "--json")
        assert planned.returncode == 0, planned.stderr
        shown = json.loads(planned.stdout)["plan"]
        # The first dead letter is planned (the ledger skips it when run), the new one is left out.
        assert shown["selected"] == 1 and shown["refailed"] == 1 and shown["refailed_by_replays"] == {"1": 1}
        # ... and the dry run reads the ledger as a run would: that one would be skipped, so nothing would go.
        assert json.loads(planned.stdout)["result"]["skipped"] == 1

        taken = cli("--include-refailed", "--json")
        assert taken.returncode == 0, taken.stderr
        assert json.loads(taken.stdout)["result"]["replayed"] == 1  # the first dead letter: replayed before
        sent = read(kafka, replay_topic(service), 2)
        assert headers(sent[1])["replay.count"] == b"2"
        third = headers(read(kafka, dlq_topic(service), 3)[2])
        assert third["dlq.original.offset"] == b"0" and third["replay.count"] == b"2"

    assert headers(first)["dlq.original.topic"] == source.encode()
    from shared.codec import EventCodec

    ledger = read_ledger(kafka, REPLAY_LEDGER, EventCodec.connect(registry_url, REPO_ROOT / "schemas"))
    summary = summarize(kafka, dlq_topic(service), ledger=ledger).as_dict()
    assert (summary["total"], summary["replayed"], summary["refailed"]) == (3, 2, 1)
