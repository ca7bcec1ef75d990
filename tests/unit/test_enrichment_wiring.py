"""The faust worker takes its Kafka security from the shared ``KafkaConnection``, like every other client."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import faust
import pytest
from pydantic import SecretStr

from services.enrichment.adapters.faust_app import create_app, faust_credentials, readiness
from services.enrichment.adapters.faust_mends import EnrichmentWorker, ResettingConsumer, SeekFirstRecovery
from services.enrichment.settings import EnrichmentSettings
from shared.kafka import KafkaConnection
from shared.logging import logging_dict


def test_plaintext_needs_no_credentials() -> None:
    assert faust_credentials(KafkaConnection(bootstrap_servers="b:9092")) is None


def test_sasl_ssl_becomes_sasl_credentials_with_a_tls_context() -> None:
    kafka = KafkaConnection(
        bootstrap_servers="b:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="enrichment",
        sasl_password=SecretStr("s3cret"),
    )
    credentials = faust_credentials(kafka)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "enrichment" and credentials.password == "s3cret"
    assert str(credentials.mechanism.value) == "SCRAM-SHA-512"
    assert credentials.ssl_context is not None


def test_ssl_alone_becomes_ssl_credentials() -> None:
    credentials = faust_credentials(KafkaConnection(bootstrap_servers="b:9093", security_protocol="SSL"))
    assert isinstance(credentials, faust.SSLCredentials)


def test_the_worker_runs_on_the_mended_recovery_and_consumer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two faust mends of ``services/enrichment/adapters/faust_mends.py`` are what the app actually uses (the
    kill -9 integration test is what shows they work)."""
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path))
    app, _ = create_app(EnrichmentSettings())
    assert isinstance(app.tables.recovery, SeekFirstRecovery)  # type: ignore[attr-defined]
    assert app.transport.Consumer is ResettingConsumer


def test_the_worker_leaves_the_root_logger_at_the_configured_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust's own worker set the root logger to DEBUG for its terminal spinner, so every debug call in faust and
    aiokafka built a log record at WARNING too (about a quarter of the worker's throughput)."""
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path))
    app, _ = create_app(EnrichmentSettings())
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    try:
        EnrichmentWorker(
            app, loglevel="WARNING", logging_config=logging_dict("enrichment", "WARNING"), quiet=True
        )._setup_logging()
        assert root.level == logging.WARNING
        assert not logging.getLogger("faust.topics").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(before[0])
        root.handlers[:] = before[1]


def test_a_readiness_check_from_the_health_thread_binds_no_faust_service_to_its_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust creates the table manager's recovery service on first access, bound to the caller's event loop: a
    /readyz answered on the health server's thread before the worker's first access crashed the worker."""
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path))
    app, enricher = create_app(EnrichmentSettings())
    outcome: list[BaseException] = []

    def on_the_health_thread() -> None:
        try:
            asyncio.new_event_loop().run_until_complete(readiness(app, enricher)())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=on_the_health_thread)
    thread.start()
    thread.join(10)
    assert [str(e) for e in outcome] == ["rebalancing or recovering tables"]
    assert app.tables._recovery is None  # type: ignore[attr-defined]
