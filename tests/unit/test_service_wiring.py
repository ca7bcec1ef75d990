"""A consuming service's readiness: 503 until the group has assigned it partitions, and again while stopping."""

from __future__ import annotations

import threading

from fastapi import FastAPI
from fastapi.testclient import TestClient

from shared.health import health_router
from shared.kafka import KafkaConnection
from shared.runtime import Runtime, RuntimeSettings
from shared.service import partitions_check


def test_readyz_answers_503_until_partitions_are_assigned() -> None:
    runtime = Runtime("svc", KafkaConnection(bootstrap_servers="127.0.0.1:1"), ["in"], lambda b: [], RuntimeSettings())
    stopping = threading.Event()
    app = FastAPI()
    app.include_router(health_router("svc", {"partitions": partitions_check(runtime, stopping)}))
    client = TestClient(app)
    first = client.get("/readyz")
    assert first.status_code == 503
    assert "no partitions assigned yet" in first.json()["checks"]["partitions"]["error"]
    runtime.joined.set()
    assert client.get("/readyz").status_code == 200
    stopping.set()
    assert client.get("/readyz").json()["checks"]["partitions"]["error"] == "RuntimeError: stopping"


def test_every_client_of_a_runtime_is_named_service_dash_instance() -> None:
    runtime = Runtime("inference", KafkaConnection(), ["in"], lambda b: [], RuntimeSettings(instance=3))
    assert runtime.kafka.client_id == "inference-3"
    assert runtime.kafka.producer_config()["client.id"] == "inference-3"
