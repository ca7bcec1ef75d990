"""Settings: placeholder secrets, nesting, instances; the launcher's broker config; the runner's start order."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.enrichment.settings import EnrichmentSettings
from services.inference.settings import InferenceSettings
from services.intake.settings import IntakeSettings
from services.notifier.settings import NotifierSettings
from shared.settings import DEFAULT_DEV_API_KEY, PipelineSettings
from stack.launcher import kafka_version, server_properties
from stack.runner import CONSUMERS, PLATFORM, Supervisor, components


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
    lines = [line for line in server_properties(tmp_path, 9092, 9093).splitlines() if line and line[0] != "#"]
    props = dict(line.split("=", 1) for line in lines)
    assert len(props) == len(lines), "a key is set twice"
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


def test_nested_runtime_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_RUNTIME__MAX_BATCH_SIZE", "512")
    monkeypatch.setenv("INFERENCE_RUNTIME__RETRY_DELAYS_MS", "[50, 100]")
    settings = InferenceSettings()
    assert settings.runtime.max_batch_size == 512
    assert settings.runtime.retry_delays_ms == [50, 100]


def test_instance_comes_from_the_service_variable_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "inference-7")
    monkeypatch.setenv("INFERENCE_INSTANCE", "2")
    settings = InferenceSettings()
    assert settings.instance == 2 and settings.runtime.instance == 2


def test_instance_falls_back_to_a_statefulset_hostname_ordinal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "inference-3")
    assert InferenceSettings().runtime.instance == 3
    monkeypatch.setattr(socket, "gethostname", lambda: "pipeline-inference-12")
    assert InferenceSettings().runtime.instance == 12


def test_a_hostname_that_merely_ends_in_digits_is_no_ordinal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "ip-10-0-1-17")
    monkeypatch.setenv("PIPELINE_ENV", "production")
    monkeypatch.setenv("PIPELINE_DEV_API_KEY", "a-real-secret")
    with pytest.raises(ValidationError, match="INFERENCE_INSTANCE is not set"):
        InferenceSettings()


def test_an_explicit_runtime_instance_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "laptop")
    monkeypatch.setenv("INFERENCE_RUNTIME__INSTANCE", "5")
    assert InferenceSettings().instance == 5


def test_production_refuses_to_guess_the_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "worker")
    monkeypatch.setenv("PIPELINE_ENV", "production")
    monkeypatch.setenv("PIPELINE_DEV_API_KEY", "a-real-secret")
    with pytest.raises(ValidationError, match="INFERENCE_INSTANCE is not set"):
        InferenceSettings()
    assert NotifierSettings(instance=4).runtime.instance == 4


def test_development_without_an_ordinal_is_instance_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "laptop")
    assert EnrichmentSettings().runtime.instance == 0


def test_consumers_start_after_the_topic_bootstrap_and_stop_after_their_deadline() -> None:
    parts = {p.name: p for p in components(PipelineSettings())}
    for name in ("enrichment", "inference", "notifier"):
        assert parts[name].stage == CONSUMERS
        assert parts[name].stopwaitsecs > InferenceSettings().shutdown_timeout_s
    assert parts["kafka"].stage == PLATFORM and parts["registry"].stage == PLATFORM


def test_the_supervisor_starts_the_platform_and_leaves_consumers_to_pipeline_up(tmp_path: Path) -> None:
    settings = PipelineSettings(state_dir=tmp_path)
    supervisor = Supervisor(settings)
    supervisor.write_config(components(settings))
    programs = supervisor.config.read_text().split("[program:")[1:]
    autostart = {block.split("]")[0]: "autostart=true" in block for block in programs}
    assert autostart == {p.name: p.stage == PLATFORM for p in components(settings)}
    assert not autostart["inference"] and autostart["kafka"]


def test_status_works_in_production_without_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_ENV", "production")
    monkeypatch.setenv("PIPELINE_DEV_API_KEY", "a-real-secret")
    monkeypatch.setattr(socket, "gethostname", lambda: "box")
    assert {p.name for p in components(PipelineSettings())} >= {"enrichment", "inference", "notifier"}


def test_inference_processes_run_as_instances_of_one_group_on_their_own_ports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INFERENCE_PROCESSES", "3")
    settings = PipelineSettings(state_dir=tmp_path)
    parts = {p.name: p for p in components(settings) if p.name.startswith("inference")}
    assert {name: (p.port, p.environment) for name, p in parts.items()} == {
        "inference": (9103, {"INFERENCE_INSTANCE": "0", "INFERENCE_PORT": "9103"}),
        "inference-1": (9113, {"INFERENCE_INSTANCE": "1", "INFERENCE_PORT": "9113"}),
        "inference-2": (9123, {"INFERENCE_INSTANCE": "2", "INFERENCE_PORT": "9123"}),
    }
    supervisor = Supervisor(settings)
    supervisor.write_config(components(settings))
    assert 'environment=INFERENCE_INSTANCE="2",INFERENCE_PORT="9123"' in supervisor.config.read_text()
    assert InferenceSettings(instance=0).torch_threads(16) == 5
