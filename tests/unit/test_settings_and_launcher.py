"""Settings refuse placeholder secrets in production; the launcher's broker config suits one node."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.intake.settings import IntakeSettings
from shared.launcher import kafka_version, server_properties
from shared.settings import DEFAULT_DEV_API_KEY, PipelineSettings


def test_production_refuses_the_default_dev_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_ENV", "production")
    with pytest.raises(ValidationError, match="PIPELINE_DEV_API_KEY"):
        PipelineSettings()
    monkeypatch.setenv("PIPELINE_DEV_API_KEY", "a-real-secret")
    assert PipelineSettings().dev_api_key == "a-real-secret"


def test_development_accepts_the_documented_default() -> None:
    assert PipelineSettings(_env_file=None).dev_api_key == DEFAULT_DEV_API_KEY  # type: ignore[call-arg]


def test_service_settings_use_their_own_prefix_and_the_shared_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_PORT", "18000")
    monkeypatch.setenv("PIPELINE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    settings = IntakeSettings()
    assert settings.port == 18000
    assert settings.pipeline.kafka_port == 19092


def test_broker_config_is_single_node_kraft_with_replication_factor_one(tmp_path: Path) -> None:
    props = dict(line.split("=", 1) for line in server_properties(tmp_path, 9092, 9093).splitlines() if line)
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_kafka_version_comes_from_the_pom() -> None:
    assert kafka_version().startswith("4.1.")
