"""How to reach the Kafka cluster: one settings object from which every client config is built."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Literal

from confluent_kafka.admin import AdminClient
from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

# librdkafka's own log lines go through Python logging (JSON); probes that expect refusals stay quiet.
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")
PROBE_LOG = logging.getLogger("librdkafka.probe")
PROBE_LOG.setLevel(logging.CRITICAL)
PROBE_LOG.propagate = False

_ADMINS: dict[tuple[tuple[str, str], ...], AdminClient] = {}
_ADMINS_LOCK = threading.Lock()


class KafkaConnection(BaseSettings):
    """Bootstrap servers, TLS and SASL (prefix ``PIPELINE_KAFKA_``): a managed cluster is a setting, not code."""

    model_config = SettingsConfigDict(env_prefix="PIPELINE_KAFKA_", extra="ignore", frozen=True)

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    client_id: str = "pipeline"

    @model_validator(mode="after")
    def _complete_credentials(self) -> KafkaConnection:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security_protocol={self.security_protocol} needs PIPELINE_KAFKA_SASL_MECHANISM, "
                "PIPELINE_KAFKA_SASL_USERNAME and PIPELINE_KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password):
            raise ValueError(
                f"SASL settings are given but security_protocol={self.security_protocol} does not use SASL"
            )
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError(
                "a TLS client certificate needs both PIPELINE_KAFKA_SSL_CERTIFICATE_LOCATION and _KEY_LOCATION"
            )
        return self

    @property
    def first_port(self) -> int:
        """The port of the first bootstrap server (the local stack runs one broker)."""
        return int(self.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])

    def for_client(self, client_id: str) -> KafkaConnection:
        """The same connection under another ``client.id`` (``<service>-<instance>``)."""
        return self.model_copy(update={"client_id": client_id})

    def client_config(self) -> dict[str, Any]:
        """What every client shares: where the brokers are, who we are, and how we authenticate."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism is not None:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        for key, path in (
            ("ssl.ca.location", self.ssl_ca_location),
            ("ssl.certificate.location", self.ssl_certificate_location),
            ("ssl.key.location", self.ssl_key_location),
        ):
            if path is not None:
                conf[key] = str(path)
        if self.ssl_key_password is not None:
            conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return conf

    def producer_config(self, **overrides: object) -> dict[str, Any]:
        """Durable producer defaults: every write is acknowledged by all in-sync replicas."""
        conf = self.client_config()
        conf.update(
            {
                "acks": "all",
                "enable.idempotence": True,
                # murmur2 like the Java clients, aiokafka and faust, so a key lands where every producer puts it.
                "partitioner": "murmur2_random",
                "linger.ms": 5,
                "logger": LIBRDKAFKA_LOG,
            }
        )
        conf.update(overrides)
        return conf

    def consumer_config(self, group_id: str, **overrides: object) -> dict[str, Any]:
        """Consumer defaults: read only committed data; offsets are stored by the caller after output is acked."""
        conf = self.client_config()
        conf.update(
            {
                "group.id": group_id,
                "isolation.level": "read_committed",
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "logger": LIBRDKAFKA_LOG,
            }
        )
        conf.update(overrides)
        return conf

    def admin_config(self, quiet: bool = False) -> dict[str, Any]:
        conf = self.client_config()
        conf["socket.timeout.ms"] = 5000
        conf["logger"] = PROBE_LOG if quiet else LIBRDKAFKA_LOG
        return conf

    def admin(self, quiet: bool = False) -> AdminClient:
        """This process's one AdminClient for this connection (a quiet one for probes that expect refusals)."""
        conf = self.admin_config(quiet)
        key = tuple(sorted((k, str(v)) for k, v in conf.items() if k != "logger")) + (("quiet", str(quiet)),)
        with _ADMINS_LOCK:
            admin = _ADMINS.get(key)
            if admin is None:
                admin = _ADMINS[key] = AdminClient(conf)
            return admin
