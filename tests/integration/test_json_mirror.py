"""The JSON mirror read as a consumer without a registry client reads it: Debian's kcat piped into jq, against the
real broker, beside the inference worker's committed Avro results."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from shared.kafka import KafkaConnection
from tests.integration.test_inference import Inference, inference_worker


@pytest.fixture(scope="module")
def worker(
    kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Inference]:
    """A keyword-model worker (the model is not what this checks); its mirror goes to a topic of its own."""
    logs = tmp_path_factory.mktemp("json-mirror")
    with inference_worker(kafka, registry_url, redis_url, logs, INFERENCE_MODEL="keywords") as worker:
        yield worker


def kcat(kafka: KafkaConnection, topic: str, fmt: str, jq: str) -> list[str]:
    """Every committed record of ``topic`` printed by kcat with ``fmt``, then through ``jq -r <jq>``."""
    # Required, not skipped: CI installs both (.ci/run), and a missing tool must fail the run.
    assert shutil.which("kcat"), "kcat is not installed (Debian package kcat)"
    assert shutil.which("jq"), "jq is not installed (Debian package jq)"
    options = [f"-X{key}={value}" for key, value in kafka.client_config().items() if value is not None]
    read = subprocess.run(
        ["kcat", "-C", *options, "-X", "isolation.level=read_committed", "-t", topic, "-o", "beginning", "-e", "-q"]
        + ["-f", fmt],
        capture_output=True,
        timeout=60,
        check=True,
    )
    filtered = subprocess.run(["jq", "-r", jq], input=read.stdout, capture_output=True, timeout=30, check=True)
    return filtered.stdout.decode().splitlines()


def test_kcat_and_jq_read_each_result_from_the_mirror(worker: Inference, kafka: KafkaConnection) -> None:
    events = [worker.event(n) for n in range(20)]
    worker.send(events)
    # The Avro results are committed in the same transactions as the mirror records: once they are all read
    # (read_committed), every mirror record is readable too.
    results = {r["event_id"]: r for r in worker.results({e.event_id for e in events}, grace=0)}
    lines = kcat(
        kafka, worker.mirror, "%s\n", "[.event_id, .tenant, .result.category.label, .result.model.name] | @tsv"
    )
    ids = {e.event_id for e in events}
    rows = sorted(row for row in (tuple(line.split("\t")) for line in lines) if row[0] in ids)
    assert rows == sorted(
        (e.event_id, worker.tenant, results[e.event_id]["category"]["label"], "keywords") for e in events
    )


def test_the_mirror_records_carry_the_cloudevents_headers_with_a_json_content_type(
    worker: Inference, kafka: KafkaConnection
) -> None:
    events = [worker.event(n) for n in range(100, 105)]
    worker.send(events)
    worker.results({e.event_id for e in events}, grace=0)
    # kcat's %h: the headers as name=value, comma-separated; %k the key. One JSON object per record for jq.
    lines = kcat(
        kafka, worker.mirror, '{"key": "%k", "headers": "%h", "id": %s}\n', "[.key, .headers, .id.event_id] | @tsv"
    )
    by_id = {event_id: (key, headers.split(",")) for key, headers, event_id in (line.split("\t") for line in lines)}
    for event in events:
        key, headers = by_id[event.event_id]
        assert key == f"{event.tenant}:{event.subject}"
        assert "content-type=application/json" in headers
        assert f"ce_id={event.event_id}" in headers and "ce_source=/pipeline/inference" in headers
        assert f"ce_type={event.type}.inferred" in headers
        assert any(h.startswith("traceparent=00-") for h in headers)
