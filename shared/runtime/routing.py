"""Where a failed record goes, and the retry and dead-letter records built for it (ARCHITECTURE.md headers)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.errors import Category, PermanentError, PipelineError, RetryableError
from shared.runtime.model import Headers, InputRecord
from shared.topics import dlq_topic, retry_topic

RETRY_PREFIX = "retry."
DLQ_PREFIX = "dlq."
# Room left for the record framing that the broker counts on top of key, value and headers.
RECORD_OVERHEAD_BYTES = 512


@dataclass(frozen=True)
class Failure:
    """Why one record failed, as the runtime classified it."""

    error: BaseException
    category: Category
    retryable: bool

    @classmethod
    def of(cls, error: BaseException) -> Failure:
        if isinstance(error, PermanentError):
            return cls(error, error.category, False)
        if isinstance(error, RetryableError):
            return cls(error, error.category, True)
        if isinstance(error, PipelineError):
            return cls(error, error.category, True)
        # An unexpected exception is retryable up to the attempt limit, then dead-lettered as internal.
        return cls(error, "internal", True)

    @property
    def type_name(self) -> str:
        return type(self.error).__name__


@dataclass(frozen=True)
class Routed:
    """A retry or DLQ record ready to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    dead: bool
    attempt: int


def _header_int(record: InputRecord, name: str) -> int | None:
    raw = record.header(name)
    try:
        return int(raw.decode()) if raw is not None else None
    except ValueError:
        return None


def attempts_so_far(record: InputRecord) -> int:
    """Attempts made before this one: 0 from the main or replay topic, n from ``retry.n``."""
    return _header_int(record, "retry.attempt") or 0


def original_position(record: InputRecord) -> tuple[str, int, int]:
    """The first topic, partition and offset this record came from, even after retries."""
    topic = record.header("retry.original.topic")
    partition = _header_int(record, "retry.original.partition")
    offset = _header_int(record, "retry.original.offset")
    if topic is not None and partition is not None and offset is not None:
        return topic.decode(), partition, offset
    return record.topic, record.partition, record.offset


def _base_headers(record: InputRecord) -> Headers:
    # The original headers, without what an earlier retry or dead-lettering added.
    return [(k, v) for k, v in record.headers if not k.startswith((RETRY_PREFIX, DLQ_PREFIX))]


def _stacktrace(error: BaseException, limit: int) -> bytes:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__)).encode()
    return text[-limit:] if len(text) > limit else text


def route(
    service: str,
    record: InputRecord,
    failure: Failure,
    retry_delays_ms: list[int],
    retry_levels_available: int,
    stacktrace_max_bytes: int,
    now_ms: int | None = None,
) -> Routed:
    """Build the retry record (next level, with its due time) or the DLQ record for ``failure``."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    attempt = attempts_so_far(record) + 1
    topic, partition, offset = original_position(record)
    levels = min(len(retry_delays_ms), retry_levels_available)
    if failure.retryable and attempt <= levels:
        headers = _base_headers(record) + [
            ("retry.attempt", str(attempt).encode()),
            ("retry.due", str(now_ms + retry_delays_ms[attempt - 1]).encode()),
            ("retry.error.type", failure.type_name.encode()),
            ("retry.error.category", failure.category.encode()),
            ("retry.original.topic", topic.encode()),
            ("retry.original.partition", str(partition).encode()),
            ("retry.original.offset", str(offset).encode()),
        ]
        return Routed(retry_topic(service, attempt), record.key, record.value, headers, False, attempt)
    original_ts = record.timestamp_ms
    headers = _base_headers(record) + [
        ("dlq.original.topic", topic.encode()),
        ("dlq.original.partition", str(partition).encode()),
        ("dlq.original.offset", str(offset).encode()),
        ("dlq.original.timestamp", str(original_ts).encode()),
        ("dlq.service", service.encode()),
        ("dlq.error.category", failure.category.encode()),
        ("dlq.error.type", failure.type_name.encode()),
        ("dlq.error.message", str(failure.error).encode()[:1024]),
        ("dlq.stacktrace", _stacktrace(failure.error, stacktrace_max_bytes)),
        ("dlq.attempts", str(attempt).encode()),
        ("dlq.failed.at", datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds").encode()),
    ]
    return Routed(dlq_topic(service), record.key, record.value, headers, True, attempt)


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> int:
    return len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in headers) + RECORD_OVERHEAD_BYTES


def fit(routed: Routed, max_bytes: int) -> Routed:
    """Make a dead letter fit the topic, and say so in headers: trim the stack trace and the value first;
    if the key and original headers alone are still too large, drop the original headers and trim the key."""
    if record_size(routed.key, routed.value, routed.headers) <= max_bytes:
        return routed
    original = len(routed.value or b"")
    marks = [("dlq.truncated", b"true"), ("dlq.original.size", str(original).encode())]
    headers = [(k, v[:512] if k == "dlq.stacktrace" else v) for k, v in routed.headers] + marks
    key = routed.key
    if record_size(key, b"", headers) > max_bytes:
        headers = [(k, v) for k, v in headers if k.startswith(DLQ_PREFIX)] + [("dlq.headers.dropped", b"true")]
        key = (key or b"")[: max(0, max_bytes - record_size(b"", b"", headers)) // 2] or None
    room = max(0, max_bytes - record_size(key, b"", headers))
    return Routed(routed.topic, key, (routed.value or b"")[:room], headers, routed.dead, routed.attempt)
