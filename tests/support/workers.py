"""A consumer worker that a test runs as its own process over topics of its own: the platform's addresses it is
given, and its life (started, then its reader closed, the worker stopped and its log free of tracebacks)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from confluent_kafka import Consumer

from shared.kafka import KafkaConnection
from tests.support.processes import Process


class Worker(Protocol):
    """What :func:`running` needs of a worker: a reader of its output, and how to start and stop it."""

    reader: Consumer

    def start(self) -> Process: ...

    def stop(self) -> None: ...


W = TypeVar("W", bound=Worker)


def platform_env(kafka: KafkaConnection, registry_url: str, redis_url: str) -> dict[str, str]:
    """The broker, registry and Redis of the tests, in the variables a service reads them from."""
    return {
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "PIPELINE_SCHEMA_REGISTRY_URL": registry_url,
        "PIPELINE_REDIS_URL": redis_url,
    }


@contextmanager
def running(worker: W, log: Path, start: bool = True) -> Iterator[W]:
    """``worker`` (started here unless ``start`` is off); then its reader closed and the worker stopped, and, when
    the block raised nothing, no traceback in its ``log``."""
    if start:
        worker.start()
    try:
        yield worker
    finally:
        worker.reader.close()
        worker.stop()
    text = log.read_text(errors="replace") if log.exists() else ""
    assert "Traceback" not in text, text[-3000:]
