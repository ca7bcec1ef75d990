"""The ops API as its own process over the real broker, Redis and registry: API-key auth with intake's code
(401/403 problems), tenant scoping, cursor-paged browsing, record views, replays with progress, the audit."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared.analytics import WRITE_SCRIPT, CategoryFigures, DeliveryFigures, write_args
from shared.auth import KeyStore
from shared.kafka import KafkaConnection
from shared.topics import replay_topic
from tests.integration.test_replay import Dlq, fill_dlq
from tests.support.kafka import read
from tests.support.processes import Process, free_port, spawn, wait_http_ready


@dataclass
class Ops:
    url: str
    dlq: Dlq
    keys: dict[str, str]
    process: Process

    def get(self, path: str, key: str = "admin", **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, headers={"X-API-Key": self.keys[key]}, timeout=60)

    def post(self, path: str, body: dict[str, Any], key: str = "admin") -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers={"X-API-Key": self.keys[key]}, timeout=60)


@pytest.fixture(scope="module")
def ops(
    kafka: KafkaConnection, registry_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ops]:
    dlq = fill_dlq(kafka, registry_url, redis_url, dependency=30, garbage=10, tenant="acme")
    fill_dlq(kafka, registry_url, redis_url, dependency=5, garbage=0, tenant="globex", service=dlq.service)
    store = KeyStore(redis.Redis.from_url(redis_url))
    keys = {
        "admin": store.create("acme", ["admin"], "1000/second")[0],
        "reader": store.create("acme", ["dlq:read"], "1000/second")[0],
        "replayer": store.create("acme", ["dlq:read", "dlq:replay"], "1000/second")[0],
        "globex": store.create("globex", ["dlq:read", "dlq:replay"], "1000/second")[0],
        "events": store.create("acme", ["events:write"], "1000/second")[0],
        "viewer": store.create("acme", ["events:read"], "1000/second")[0],
    }
    logs: Path = tmp_path_factory.mktemp("ops")
    with ops_process(dlq, logs) as (url, process):
        yield Ops(url, dlq, keys, process)
    assert "Traceback" not in (logs / "ops.log").read_text(errors="replace")


@contextmanager
def ops_process(dlq: Dlq, logs: Path) -> Iterator[tuple[str, Process]]:
    """The ops service as its own process, serving ``dlq``'s service, ready."""
    port = free_port()
    process = spawn(
        [sys.executable, "-m", "services.ops.app"],
        logs / "ops.log",
        env={**dlq.env, "OPS_PORT": str(port), "OPS_SERVICES": json.dumps([dlq.service])},
    )
    try:
        wait_http_ready(f"http://127.0.0.1:{port}/readyz", process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.stop()


def test_no_key_is_401_and_a_missing_scope_403_as_problem_details(ops: Ops) -> None:
    anonymous = httpx.get(f"{ops.url}/v1/dlqs")
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == "application/problem+json"
    assert "API key is required" in anonymous.json()["detail"]
    denied = ops.get("/v1/dlqs", key="events")
    assert denied.status_code == 403 and "dlq:read" in denied.json()["detail"]
    replay = ops.post(f"/v1/dlqs/{ops.dlq.service}/replays", {"dry_run": False}, key="reader")
    assert replay.status_code == 403 and "dlq:replay" in replay.json()["detail"]
    assert replay.json()["required_scope"] == "dlq:replay"
    # A dry run only reads: dlq:read is enough.
    dry = ops.post(f"/v1/dlqs/{ops.dlq.service}/replays", {"dry_run": True}, key="reader")
    assert dry.status_code == 200 and dry.json()["plan"]["selected"] >= 1, dry.text


def test_a_tenant_sees_only_its_own_records_and_an_admin_all(ops: Ops) -> None:
    mine = ops.get(f"/v1/dlqs/{ops.dlq.service}", key="reader").json()
    assert mine["total"] == 40 and mine["by_category"] == {"dependency": 30, "deserialization": 10}
    theirs = ops.get(f"/v1/dlqs/{ops.dlq.service}", key="globex").json()
    assert theirs["total"] == 5
    assert ops.get(f"/v1/dlqs/{ops.dlq.service}").json()["total"] == 45
    forbidden = ops.get(f"/v1/dlqs/{ops.dlq.service}", key="reader", tenant="globex")
    assert forbidden.status_code == 403
    [listed] = ops.get("/v1/dlqs", key="globex").json()["dlqs"]
    assert listed["service"] == ops.dlq.service and listed["total"] == 5


def test_records_page_with_cursors_and_a_record_view_decodes_its_value(ops: Ops) -> None:
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 8, "category": "dependency"}
        if cursor:
            params["cursor"] = cursor
        page = ops.get(f"/v1/dlqs/{ops.dlq.service}/records", key="reader", **params).json()
        seen.extend(page["records"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 30 and {r["tenant"] for r in seen} == {"acme"}
    assert len({(r["partition"], r["offset"]) for r in seen}) == 30
    first = seen[0]
    view = ops.get(f"/v1/dlqs/{ops.dlq.service}/records/{first['partition']}/{first['offset']}", key="reader").json()
    assert view["value"]["event_id"] == first["event_id"] and "RetryableError" in view["stacktrace"]
    assert any(h["key"] == "traceparent" for h in view["headers"])
    other = ops.get(f"/v1/dlqs/{ops.dlq.service}/records/{first['partition']}/{first['offset']}", key="globex")
    assert other.status_code == 404


def test_bad_requests_say_what_was_wrong(ops: Ops) -> None:
    assert ops.get(f"/v1/dlqs/{ops.dlq.service}/records", cursor="nonsense!").status_code == 400
    unknown = ops.get("/v1/dlqs/nope")
    assert unknown.status_code == 404 and ops.dlq.service in unknown.json()["detail"]
    invalid = ops.post(f"/v1/dlqs/{ops.dlq.service}/replays", {"rate": -1, "surprise": True})
    assert invalid.status_code == 422 and {e["loc"][-1] for e in invalid.json()["errors"]} >= {"rate", "surprise"}
    assert ops.get(f"/v1/dlqs/{ops.dlq.service}/records", limit=0).status_code == 422
    huge = ops.post(f"/v1/dlqs/{ops.dlq.service}/replays", {"filter": {"key": "k" * 70_000}})
    assert huge.status_code == 413 and "limit" in huge.json()["detail"]


def test_a_replay_by_api_runs_with_progress_is_refused_the_second_time_and_is_audited(ops: Ops) -> None:
    service = ops.dlq.service
    body = {"filter": {"category": ["deserialization"]}}
    dry = ops.post(f"/v1/dlqs/{service}/replays", {**body, "dry_run": True}, key="replayer")
    assert dry.status_code == 200 and dry.json()["plan"]["selected"] == 10
    assert dry.json()["result"]["outcome"] == "dry_run"
    started = ops.post(f"/v1/dlqs/{service}/replays", {**body, "rate": 50}, key="replayer")
    assert started.status_code == 202
    job = started.json()
    deadline = time.monotonic() + 60
    while job["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
        job = ops.get(f"/v1/replays/{job['replay_id']}", key="replayer").json()
    assert job["result"]["outcome"] == "done" and job["progress"] == {"done": 10, "total": 10}
    replayed = read(ops.dlq.kafka, replay_topic(service))
    assert len([m for m in replayed if b"acme" in (m.key() or b"")]) >= 10
    again = ops.post(f"/v1/dlqs/{service}/replays", body, key="replayer").json()
    while again["state"] == "running":
        time.sleep(0.2)
        again = ops.get(f"/v1/replays/{again['replay_id']}", key="replayer").json()
    assert again["result"]["outcome"] == "refused"
    runs = ops.get("/v1/audit", key="replayer", limit=10).json()["runs"]
    assert [r["outcome"] for r in runs[:3]] == ["refused", "done", "dry_run"]
    assert all(json.loads(r["filters_json"])["tenant"] == "acme" for r in runs)
    assert runs[1]["requested_by"].startswith("key:")
    assert ops.get("/v1/audit", key="globex").json()["runs"] == []


def test_stats_are_the_tenants_windows_from_the_analytics_store_with_totals_and_rates(ops: Ops, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    script = client.register_script(WRITE_SCRIPT)
    hour = int(time.time()) // 3600 * 3600
    billing = CategoryFigures(events=4, needs_review=1, confidence_sum=3.2, fallback=1, cached=2, auto_resolved=2)
    outage = CategoryFigures(events=2, confidence_sum=1.8)
    for tenant, start, field, figures in (
        ("acme", hour - 3600, "category:billing", billing),
        ("acme", hour, "category:billing", billing),
        ("acme", hour, "category:outage", outage),
        ("globex", hour, "category:billing", CategoryFigures(events=99)),
    ):
        keys, args = write_args(tenant, "1h", start, field, figures)
        script(keys=keys, args=args)
    keys, args = write_args(
        "acme", "1h", hour, "delivery", DeliveryFigures(delivered=3, failed=1, latency_sum_ms=30, latency_count=3)
    )
    script(keys=keys, args=args)

    answer = ops.get("/v1/stats", key="viewer", window="1h", count=2)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["tenant"] == "acme" and [w["start"] for w in body["windows"]] == [hour - 3600, hour]
    totals = body["totals"]
    assert totals["figures"]["events"] == 10 and totals["escalations"] == 2 and totals["auto_resolved"] == 4
    assert totals["by_category"]["outage"]["events"] == 2
    rates = totals["rates"]
    assert rates["needs_review_share"] == 0.2 and rates["webhook_success_rate"] == 0.75
    assert rates["mean_delivery_latency_ms"] == 10 and rates["escalations_per_hour"] == 1.0
    # The default count for 1h windows is 24: both come back. Another tenant's figures only with an admin key.
    assert len(ops.get("/v1/stats", key="viewer").json()["windows"]) == 2
    assert ops.get("/v1/stats", key="viewer", tenant="globex").status_code == 403
    assert ops.get("/v1/stats", key="admin", tenant="globex").json()["totals"]["figures"]["events"] == 99
    assert ops.get("/v1/stats", key="viewer", window="5m").status_code == 422
    assert ops.get("/v1/stats", key="viewer", count=0).status_code == 422
    assert ops.get("/v1/stats", key="reader").status_code == 403  # dlq:read is not events:read
    empty = ops.get("/v1/stats", key="viewer", window="1m").json()
    assert empty["windows"] == [] and empty["totals"]["figures"]["events"] == 0
