"""One connection object builds every client config: TLS and SASL are settings, and errors are typed."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from pydantic import SecretStr, ValidationError

from shared.kafka import KafkaConnection, KafkaFailure


def test_sasl_ssl_settings_from_the_environment_reach_every_librdkafka_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PIPELINE_KAFKA_BOOTSTRAP_SERVERS", "broker-1.example:9093,broker-2.example:9093")
    monkeypatch.setenv("PIPELINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PIPELINE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("PIPELINE_KAFKA_SASL_USERNAME", "pipeline")
    monkeypatch.setenv("PIPELINE_KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("PIPELINE_KAFKA_SSL_CA_LOCATION", str(tmp_path / "ca.pem"))
    kafka = KafkaConnection().for_client("inference-3")
    for conf in (kafka.producer_config(), kafka.consumer_config("inference"), kafka.admin_config()):
        assert conf["bootstrap.servers"] == "broker-1.example:9093,broker-2.example:9093"
        assert conf["security.protocol"] == "SASL_SSL"
        assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
        assert conf["sasl.username"] == "pipeline"
        assert conf["sasl.password"] == "s3cret"
        assert conf["ssl.ca.location"] == str(tmp_path / "ca.pem")
        assert conf["client.id"] == "inference-3"


def test_mutual_tls_settings_reach_the_config(tmp_path: Path) -> None:
    kafka = KafkaConnection(
        security_protocol="SSL",
        ssl_ca_location=tmp_path / "ca.pem",
        ssl_certificate_location=tmp_path / "client.pem",
        ssl_key_location=tmp_path / "client.key",
        ssl_key_password=SecretStr("pw"),
    )
    conf = kafka.producer_config()
    assert conf["security.protocol"] == "SSL"
    assert conf["ssl.certificate.location"] == str(tmp_path / "client.pem")
    assert conf["ssl.key.location"] == str(tmp_path / "client.key")
    assert conf["ssl.key.password"] == "pw"
    assert not any(key.startswith("sasl.") for key in conf)


def test_the_password_never_shows_in_the_settings_repr() -> None:
    kafka = KafkaConnection(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SecretStr("hunter2"),
    )
    assert "hunter2" not in repr(kafka)


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="PIPELINE_KAFKA_SASL_MECHANISM"):
        KafkaConnection(security_protocol="SASL_SSL")


def test_a_client_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="both"):
        KafkaConnection(security_protocol="SSL", ssl_certificate_location=tmp_path / "client.pem")


def test_plaintext_defaults_work_locally_and_keep_durable_producer_settings() -> None:
    conf = KafkaConnection(_env_file=None).producer_config(**{"linger.ms": 0})  # type: ignore[call-arg]
    assert conf["security.protocol"] == "PLAINTEXT"
    assert (conf["acks"], conf["enable.idempotence"], conf["partitioner"]) == ("all", True, "murmur2_random")
    assert conf["linger.ms"] == 0


def test_one_admin_client_per_connection_and_process() -> None:
    kafka = KafkaConnection(bootstrap_servers="127.0.0.1:1")
    assert kafka.admin() is kafka.admin()
    assert kafka.admin() is KafkaConnection(bootstrap_servers="127.0.0.1:1").admin()
    assert kafka.admin(quiet=True) is not kafka.admin()


def test_kafka_failure_reads_the_error_inside_an_exception() -> None:
    error = KafkaError(KafkaError._TIMED_OUT, "took too long", retriable=True, txn_requires_abort=False)
    failure = KafkaFailure.of(KafkaException(error))
    assert failure is not None
    assert failure.code == KafkaError._TIMED_OUT
    assert failure.retriable and not failure.fatal and not failure.txn_requires_abort
    assert "took too long" in str(failure)


def test_kafka_failure_of_a_fatal_abortable_error() -> None:
    failure = KafkaFailure.of(KafkaError(KafkaError._FENCED, "fenced", fatal=True, txn_requires_abort=True))
    assert failure is not None and failure.fatal and failure.txn_requires_abort


def test_kafka_failure_of_anything_else_is_none() -> None:
    assert KafkaFailure.of(KafkaException()) is None
    assert KafkaFailure.of(ValueError("not kafka")) is None


def test_a_topic_limit_lookup_that_times_out_falls_back_to_the_default() -> None:
    from shared.kafka import topic_max_bytes

    # Nothing listens on port 1: the describe call cannot be answered within its timeout.
    assert topic_max_bytes(KafkaConnection(bootstrap_servers="127.0.0.1:1"), "t", 1234, timeout_s=0.5) == 1234
