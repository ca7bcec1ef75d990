"""Service shells answer /healthz, /readyz (checking real dependencies) and /metrics."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.intake.app import create_app as intake_app
from services.intake.settings import IntakeSettings
from tests.support.processes import free_port


def settings(monkeypatch: pytest.MonkeyPatch, kafka: str, redis: str, registry: str) -> IntakeSettings:
    monkeypatch.setenv("PIPELINE_KAFKA_BOOTSTRAP_SERVERS", kafka)
    monkeypatch.setenv("PIPELINE_REDIS_URL", redis)
    monkeypatch.setenv("PIPELINE_SCHEMA_REGISTRY_URL", registry)
    return IntakeSettings()


def test_ready_when_kafka_redis_and_registry_answer(
    monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, redis_url: str, registry_url: str
) -> None:
    client = TestClient(intake_app(settings(monkeypatch, kafka_bootstrap, redis_url, registry_url)))
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"kafka", "redis", "registry"}
    assert "python_info" in client.get("/metrics").text


def test_unready_names_the_dependency_that_is_down(
    monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, registry_url: str
) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    client = TestClient(intake_app(settings(monkeypatch, kafka_bootstrap, dead_redis, registry_url)))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["redis"]["ok"] is False and "Connection" in checks["redis"]["error"]
    assert checks["kafka"]["ok"] is True
