"""Errors as types: the runtime, not the handler, decides between retry, dead letter and crash."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

Category = Literal["deserialization", "validation", "model", "dependency", "timeout", "delivery", "internal"]
CATEGORIES: tuple[Category, ...] = (
    "deserialization",
    "validation",
    "model",
    "dependency",
    "timeout",
    "delivery",
    "internal",
)


class PipelineError(Exception):
    """Base of every typed pipeline error; carries a category from ARCHITECTURE.md.

    ``outputs`` (runtime ``Output`` records) are produced with the retry or dead-letter record, in the same
    transaction: what the failed record did achieve (a webhook delivered to one endpoint of two) is kept.
    """

    category: Category = "internal"

    def __init__(self, message: str, *, category: Category | None = None, outputs: Sequence[Any] = ()) -> None:
        super().__init__(message)
        if category is not None:
            self.category = category
        self.outputs = tuple(outputs)


class RetryableError(PipelineError):
    """The record may succeed later: send it to a retry level.

    ``delay_ms`` asks for a due time (a webhook's ``Retry-After``, backoff with jitter): the record goes to the
    retry level whose delay is the nearest at or above it. ``counts_attempt=False`` defers the record without
    using up its ladder (an open circuit), up to the runtime's maximum deferral time.
    """

    def __init__(
        self,
        message: str,
        *,
        category: Category | None = None,
        delay_ms: int | None = None,
        counts_attempt: bool = True,
        outputs: Sequence[Any] = (),
    ) -> None:
        super().__init__(message, category=category, outputs=outputs)
        self.delay_ms = delay_ms
        self.counts_attempt = counts_attempt


class PermanentError(PipelineError):
    """The record will never succeed: send it to the dead-letter topic.

    ``attempts`` is how many tries the handler itself made, where it keeps its own count (the notifier's calls on
    its retry schedule, which ride the runtime's deferral without using up retry levels); the dead letter's
    ``dlq.attempts`` says that rather than the runtime's count.
    """

    def __init__(
        self,
        message: str,
        *,
        category: Category | None = None,
        outputs: Sequence[Any] = (),
        attempts: int | None = None,
    ) -> None:
        super().__init__(message, category=category, outputs=outputs)
        self.attempts = attempts


class DependencyUnavailable(RetryableError):
    """A shared dependency (registry, Redis, broker) is down; not the record's fault."""

    category: Category = "dependency"


class DeserializationError(PermanentError):
    """A record's bytes cannot be decoded; names where the record sits."""

    category: Category = "deserialization"

    def __init__(self, reason: str, *, topic: str, partition: int | None, offset: int | None) -> None:
        self.reason = reason
        self.topic = topic
        self.partition = partition
        self.offset = offset
        where = f"{topic}[{partition if partition is not None else '?'}]@{offset if offset is not None else '?'}"
        super().__init__(f"cannot decode {where}: {reason}")


class BrokerUnavailable(Exception):
    """Kafka could not be reached within the allowed time."""


class RuntimeFatal(Exception):
    """An error the process cannot recover from (fencing, fatal producer state): exit and be restarted."""
