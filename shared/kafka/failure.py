"""A typed view of librdkafka's ``KafkaError``, so callers never unpack ``exc.args[0]`` themselves."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException


@dataclass(frozen=True)
class KafkaFailure:
    """What went wrong in a Kafka call, and which recovery librdkafka's error classes allow."""

    code: int
    name: str
    reason: str
    retriable: bool
    fatal: bool
    txn_requires_abort: bool

    @classmethod
    def of(cls, error: BaseException | KafkaError | None) -> KafkaFailure | None:
        """Read a ``KafkaError`` or the one a ``KafkaException`` carries; ``None`` for anything else."""
        if isinstance(error, KafkaException):
            error = error.args[0] if error.args else None
        if not isinstance(error, KafkaError):
            return None
        return cls(
            code=error.code(),
            name=error.name(),
            reason=error.str(),
            retriable=bool(error.retriable()),
            fatal=bool(error.fatal()),
            txn_requires_abort=bool(error.txn_requires_abort()),
        )

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"
