"""DLQ tooling over the real broker and registry: summaries, paged browsing with decoded values, replay plans,
and `pipeline dlq replay` (dry run, filters, header control, the ledger's refusal and --force, the audit,
and a kill -9 halfway through followed by a rerun that replays every record exactly once)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message, Producer

from shared.codec import EventCodec
from shared.errors import DeserializationError, RetryableError
from shared.events import EventEnriched
from shared.kafka import KafkaConnection, bootstrap_topics, end_offsets
from shared.replay.operations import browse, plan, read_audit, summarize
from shared.replay.records import DlqFilter
from shared.runtime import InputRecord
from shared.runtime.routing import Failure, FailureRouter
from shared.settings import REPO_ROOT
from shared.topics import AUDIT_REPLAYS, BY_NAME, REPLAY_LEDGER, TopicSpec, dlq_topic, replay_topic
from tests.support.factories import make_event_enriched
from tests.support.kafka import headers as headers_of
from tests.support.kafka import read

SOURCE = "events.enriched.v1"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Dlq:
    service: str
    kafka: KafkaConnection
    codec: EventCodec
    env: dict[str, str]
    event_ids: dict[str, str]  # event id -> category

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stack.cli", "dlq", *args],
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def replayed(self) -> list[Message]:
        """Every committed record of the replay topic, read to its end."""
        return read(self.kafka, replay_topic(self.service))


def fill_dlq(
    kafka: KafkaConnection,
    registry_url: str,
    redis_url: str,
    dependency: int = 30,
    garbage: int = 10,
    tenant: str = "acme",
    service: str | None = None,
) -> Dlq:
    """A service's DLQ with ``dependency`` decodable events that failed on a dependency and ``garbage``
    undecodable records, as the runtime's router writes them (added to ``service``'s DLQ when given)."""
    service = service or f"svc-{uuid.uuid4().hex[:8]}"
    bootstrap_topics(
        kafka,
        [TopicSpec(dlq_topic(service), 3, "k", None), TopicSpec(replay_topic(service), 3, "k", None)]
        + [BY_NAME[REPLAY_LEDGER], BY_NAME[AUDIT_REPLAYS]],
    )
    codec = EventCodec.connect(registry_url, REPO_ROOT / "schemas")
    router = FailureRouter(service, [100])
    producer = Producer(kafka.producer_config())
    ids: dict[str, str] = {}
    for n in range(dependency + garbage):
        event = EventEnriched.model_validate(
            make_event_enriched(event_id=f"ev-{tenant}-{service}-{n}", subject=f"customer-{n % 7}", tenant=tenant)
        )
        out = codec.encode(event, topic=SOURCE)
        headers = [(k, v) for k, v in out.headers if k != "traceparent"] + [("traceparent", TRACEPARENT.encode())]
        value = out.value if n < dependency else b"\x00garbage" + bytes([n])
        record = InputRecord(SOURCE, n % 3, 1000 + n, out.key, value, headers, int(time.time() * 1000), None)
        error: Exception = (
            RetryableError("CRM token expired", category="dependency")
            if n < dependency
            else DeserializationError("unknown magic byte", topic=SOURCE, partition=n % 3, offset=1000 + n)
        )
        routed = router.route(record, Failure(error, "dependency" if n < dependency else "deserialization", False))
        producer.produce(routed.topic, routed.value, routed.key, headers=list(routed.headers), partition=n % 3)
        ids[event.event_id] = "dependency" if n < dependency else "deserialization"
    assert producer.flush(30) == 0
    env = {
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "PIPELINE_SCHEMA_REGISTRY_URL": registry_url,
        "PIPELINE_REDIS_URL": redis_url,
    }
    return Dlq(service, kafka, codec, env, ids)


@pytest.fixture
def dlq(kafka: KafkaConnection, registry_url: str, redis_url: str) -> Dlq:
    return fill_dlq(kafka, registry_url, redis_url)


def sources(messages: list[Message]) -> Counter[str]:
    return Counter(headers_of(m)["replay.source"].decode() for m in messages)


def test_summarize_counts_by_category_error_type_and_hour(dlq: Dlq) -> None:
    summary = summarize(dlq.kafka, dlq_topic(dlq.service)).as_dict()
    assert summary["total"] == 40
    assert summary["by_category"] == {"dependency": 30, "deserialization": 10}
    assert summary["by_error_type"] == {"RetryableError": 30, "DeserializationError": 10}
    assert sum(sum(c.values()) for c in summary["by_hour"].values()) == 40
    assert summary["oldest"]["failed_at"] <= summary["newest"]["failed_at"]


def test_browse_pages_with_a_cursor_cover_every_match_once_with_decoded_values(dlq: Dlq) -> None:
    seen: list[dict[str, Any]] = []
    cursor = None
    where = DlqFilter(category=["dependency"])
    while True:
        page = browse(dlq.kafka, dlq.codec, dlq_topic(dlq.service), where, cursor, limit=7)
        seen.extend(page.records)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 30 and len({(r["partition"], r["offset"]) for r in seen}) == 30
    first = seen[0]
    assert first["value"]["event_id"] == first["event_id"] and first["value"]["tenant"] == "acme"
    assert "RetryableError" in first["stacktrace"] and first["message"] == "CRM token expired"
    assert {"key": "dlq.error.category", "value": "dependency"} in first["headers"]
    garbage = browse(dlq.kafka, dlq.codec, dlq_topic(dlq.service), DlqFilter(category=["deserialization"]), limit=1)
    assert "undecodable" in garbage.records[0]["value"]


def test_a_plan_selects_exact_coordinates_by_filter(dlq: Dlq) -> None:
    chosen = plan(dlq.kafka, dlq.service, DlqFilter(category=["dependency"], partition=1))
    assert chosen.total == 10 and chosen.by_category == {"dependency": 10} and list(chosen.offsets) == [1]
    assert len(chosen.samples) == 5
    assert plan(dlq.kafka, dlq.service, DlqFilter(key="nobody:nothing")).total == 0


def test_replay_by_category_then_refused_then_forced_with_an_audit_of_every_run(dlq: Dlq) -> None:
    dry = dlq.cli("replay", dlq.service, "--category", "dependency", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["result"]["outcome"] == "dry_run" and json.loads(dry.stdout)["plan"]["selected"] == 30
    assert dlq.replayed() == []

    first = dlq.cli("replay", dlq.service, "--category", "dependency")
    assert first.returncode == 0, first.stderr
    assert "done" in first.stderr and "replayed 30" in first.stderr
    replayed = dlq.replayed()
    assert len(replayed) == 30 and set(sources(replayed).values()) == {1}
    for msg in replayed:
        found = headers_of(msg)
        assert not any(k.startswith("dlq.") for k in found), "dlq.* headers must be dropped by default"
        assert found["traceparent"] == TRACEPARENT.encode() and found["ce_tenant"] == b"acme"
        assert found["replay.count"] == b"1" and found["replay.original.topic"] == SOURCE.encode()
        event = dlq.codec.decode_value(SOURCE, msg.value(), event_type=EventEnriched)
        assert isinstance(event, EventEnriched)
        assert dlq.event_ids[event.event_id] == "dependency"  # the deserialization records stayed

    again = dlq.cli("replay", dlq.service, "--category", "dependency")
    assert again.returncode == 3, again.stderr
    assert "refused" in again.stderr and len(dlq.replayed()) == 30

    forced = dlq.cli("replay", dlq.service, "--category", "dependency", "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    after = dlq.replayed()
    assert len(after) == 60 and Counter(headers_of(m)["replay.count"] for m in after) == {b"1": 30, b"2": 30}

    ids = {json.loads(dry.stdout)["result"]["replay_id"], json.loads(forced.stdout)["result"]["replay_id"]}
    audits = [a for a in read_audit(dlq.kafka, dlq.codec) if a.service == dlq.service]
    assert [a.outcome for a in audits] == ["dry_run", "done", "refused", "done"]
    assert ids <= {a.replay_id for a in audits}
    assert [a.replayed for a in audits] == [0, 30, 0, 30] and audits[2].skipped == 30
    assert json.loads(audits[1].filters_json) == {"category": ["dependency"]}


def test_keep_headers_keeps_the_dlq_headers(dlq: Dlq) -> None:
    kept = dlq.cli("replay", dlq.service, "--category", "deserialization", "--keep-headers")
    assert kept.returncode == 0, kept.stderr
    replayed = dlq.replayed()
    assert len(replayed) == 10
    assert all(headers_of(m)["dlq.error.category"] == b"deserialization" for m in replayed)


def test_bad_arguments_exit_2(dlq: Dlq) -> None:
    assert dlq.cli("replay", dlq.service, "--since", "yesterday-ish").returncode == 2
    assert dlq.cli("replay", "no-such-service").returncode == 2


def test_a_misspelt_service_names_the_dlqs_there(dlq: Dlq) -> None:
    misspelt = dlq.service[:-1] + ("x" if dlq.service[-1] != "x" else "y")
    for command in ("replay", "show"):
        answer = dlq.cli(command, misspelt)
        assert answer.returncode == 2, answer.stderr
        assert f"did you mean {dlq.service}?" in answer.stderr and "The DLQs here:" in answer.stderr, answer.stderr


def test_piped_tables_are_never_cut(dlq: Dlq) -> None:
    shown = dlq.cli("show", dlq.service, "--limit", "40")  # stdout is a pipe here, not a terminal
    assert shown.returncode == 0, shown.stderr
    assert "…" not in shown.stdout
    assert all(event_id in shown.stdout for event_id in dlq.event_ids), shown.stdout
    assert dlq_topic(dlq.service) in shown.stdout


def test_a_replay_killed_halfway_and_run_again_replays_every_record_exactly_once(
    kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path: Path
) -> None:
    dlq = fill_dlq(kafka, registry_url, redis_url, dependency=80, garbage=0)
    log = (tmp_path / "replay.log").open("w")
    first = subprocess.Popen(
        [sys.executable, "-m", "stack.cli", "dlq", "replay", dlq.service, "--rate", "10", "--json"],
        cwd=REPO_ROOT,
        env={**os.environ, **dlq.env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    # Watermarks count written records (and transaction markers) at once: kill while the run is under way.
    while sum(end_offsets(kafka, [replay_topic(dlq.service)])[replay_topic(dlq.service)].values()) < 20:
        assert time.monotonic() < deadline and first.poll() is None, "the replay did not get going"
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    halfway = len(read(kafka, replay_topic(dlq.service)))
    assert 0 < halfway < 80
    second = dlq.cli("replay", dlq.service, "--json")
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)["result"]
    assert result["skipped"] == halfway and result["replayed"] == 80 - halfway
    counts = sources(dlq.replayed())
    assert len(counts) == 80 and set(counts.values()) == {1}
