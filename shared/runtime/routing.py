"""Where a failed record goes, and the retry and dead-letter records built for it (ARCHITECTURE.md headers)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from shared import headers as h
from shared.errors import Category, PermanentError, PipelineError, RetryableError
from shared.runtime.records import Headers, InputRecord
from shared.topics import dlq_topic, retry_topic

# Room left for the record framing that the broker counts on top of key, value and headers.
RECORD_OVERHEAD_BYTES = 512


@dataclass(frozen=True)
class Failure:
    """Why one record failed, as the runtime classified it."""

    error: BaseException
    category: Category
    retryable: bool
    delay_ms: int | None = None
    counts_attempt: bool = True
    attempts: int | None = None  # the handler's own count of tries, where it keeps one

    @classmethod
    def of(cls, error: BaseException) -> Failure:
        if isinstance(error, PermanentError):
            return cls(error, error.category, False, attempts=error.attempts)
        if isinstance(error, RetryableError):
            return cls(error, error.category, True, error.delay_ms, error.counts_attempt)
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


def header_int(headers: Sequence[tuple[str, bytes]], name: str) -> int | None:
    for key, raw in headers:
        if key == name:
            try:
                return int(raw.decode()) if isinstance(raw, bytes) else None
            except ValueError:
                return None
    return None


def due_at(headers: Sequence[tuple[str, bytes]], timestamp_ms: int, max_delay_ms: int) -> int | None:
    """When a retry record is due (epoch ms), or None when it carries no due time.

    A record is due at most ``max_delay_ms`` after it was written, so a bogus or skewed ``retry.due`` cannot
    hold its partition longer than the longest retry delay.
    """
    due = header_int(headers, h.RETRY_DUE)
    if due is not None and timestamp_ms > 0:
        due = min(due, timestamp_ms + max_delay_ms)
    return due


def attempts_so_far(record: InputRecord) -> int:
    """Attempts made before this one: 0 from the main or replay topic, n from ``retry.n``."""
    return header_int(record.headers, h.RETRY_ATTEMPT) or 0


def original_position(record: InputRecord) -> tuple[str, int, int, int]:
    """The first topic, partition, offset and timestamp this record came from, across retries and replays.

    A retry carries ``retry.original.*``; a replayed dead letter carries ``replay.original.*`` (or the kept
    ``dlq.original.*``); anything else came from where it sits.
    """
    for prefix in (h.RETRY_ORIGINAL, h.DLQ_ORIGINAL, h.REPLAY_ORIGINAL):
        topic = record.header(prefix + h.TOPIC)
        partition = header_int(record.headers, prefix + h.PARTITION)
        offset = header_int(record.headers, prefix + h.OFFSET)
        if topic is not None and partition is not None and offset is not None:
            timestamp = header_int(record.headers, prefix + h.TIMESTAMP)
            return topic.decode(), partition, offset, timestamp if timestamp is not None else record.timestamp_ms
    return record.topic, record.partition, record.offset, record.timestamp_ms


def _base_headers(record: InputRecord) -> Headers:
    # The original headers, without what an earlier retry or dead-lettering added (replay.* stays).
    return [(k, v) for k, v in record.headers if not k.startswith((h.RETRY_PREFIX, h.DLQ_PREFIX))]


def _stacktrace(error: BaseException, limit: int) -> bytes:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__)).encode()
    return text[-limit:] if len(text) > limit else text


class DeferralExpired(PermanentError):
    """A record deferred (without using attempts) for longer than the runtime allows."""

    category: Category = "delivery"


class FailureRouter:
    """Builds the retry or dead-letter record for a failed record; pure, so a faust agent can use it too."""

    def __init__(
        self,
        service: str,
        retry_delays_ms: Sequence[int],
        retry_levels_available: int | None = None,
        stacktrace_max_bytes: int = 4096,
        max_deferral_ms: int = 3_600_000,
    ) -> None:
        self.service = service
        levels = len(retry_delays_ms) if retry_levels_available is None else retry_levels_available
        self.delays = list(retry_delays_ms)[: max(0, min(len(retry_delays_ms), levels))]
        self.stacktrace_max_bytes = stacktrace_max_bytes
        self.max_deferral_ms = max_deferral_ms

    def level_for_delay(self, delay_ms: int) -> int:
        """The retry level (1-based) whose delay is the nearest at or above ``delay_ms``, else the longest."""
        for level, delay in enumerate(self.delays, start=1):
            if delay >= delay_ms:
                return level
        return len(self.delays)

    def route(self, record: InputRecord, failure: Failure, now_ms: int | None = None) -> Routed:
        """Build the retry record (next level, with its due time) or the dead-letter record for ``failure``."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        done = attempts_so_far(record)
        if failure.retryable and not failure.counts_attempt and self.delays:
            since = header_int(record.headers, h.RETRY_DEFERRED_SINCE) or now_ms
            if now_ms - since <= self.max_deferral_ms:
                return self._retry(record, failure, done, now_ms, deferred_since=since)
            expired = DeferralExpired(
                f"deferred for {(now_ms - since) / 1000:.0f}s, over the {self.max_deferral_ms / 1000:.0f}s allowed: "
                f"{failure.error}"
            )
            return self._dead(record, Failure(expired, "delivery", False), done + 1, now_ms)
        attempt = done + 1
        if failure.retryable and attempt <= len(self.delays):
            return self._retry(record, failure, attempt, now_ms)
        return self._dead(record, failure, attempt, now_ms)

    def _retry(
        self, record: InputRecord, failure: Failure, attempt: int, now_ms: int, deferred_since: int | None = None
    ) -> Routed:
        if failure.delay_ms is not None:
            level = self.level_for_delay(failure.delay_ms)
            delay = min(max(0, failure.delay_ms), self.delays[-1])
        else:
            level = max(1, min(attempt, len(self.delays)))
            delay = self.delays[level - 1]
        topic, partition, offset, timestamp = original_position(record)
        headers = _base_headers(record) + [
            (h.RETRY_ATTEMPT, str(attempt).encode()),
            (h.RETRY_DUE, str(now_ms + delay).encode()),
            (h.RETRY_ERROR_TYPE, failure.type_name.encode()),
            (h.RETRY_ERROR_CATEGORY, failure.category.encode()),
            # The reason the status API shows for the retry; at most 1 KiB, as ``dlq.error.message``.
            (h.RETRY_ERROR_MESSAGE, str(failure.error).encode()[:1024]),
            (h.RETRY_ORIGINAL + h.TOPIC, topic.encode()),
            (h.RETRY_ORIGINAL + h.PARTITION, str(partition).encode()),
            (h.RETRY_ORIGINAL + h.OFFSET, str(offset).encode()),
            (h.RETRY_ORIGINAL + h.TIMESTAMP, str(timestamp).encode()),
        ]
        if deferred_since is not None:
            headers.append((h.RETRY_DEFERRED_SINCE, str(deferred_since).encode()))
        return Routed(retry_topic(self.service, level), record.key, record.value, headers, False, attempt)

    def _dead(self, record: InputRecord, failure: Failure, attempt: int, now_ms: int) -> Routed:
        topic, partition, offset, timestamp = original_position(record)
        failed_at = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds")
        headers = _base_headers(record) + [
            (h.DLQ_ORIGINAL_TOPIC, topic.encode()),
            (h.DLQ_ORIGINAL_PARTITION, str(partition).encode()),
            (h.DLQ_ORIGINAL_OFFSET, str(offset).encode()),
            (h.DLQ_ORIGINAL_TIMESTAMP, str(timestamp).encode()),
            (h.DLQ_SERVICE, self.service.encode()),
            (h.DLQ_ERROR_CATEGORY, failure.category.encode()),
            (h.DLQ_ERROR_TYPE, failure.type_name.encode()),
            (h.DLQ_ERROR_MESSAGE, str(failure.error).encode()[:1024]),
            (h.DLQ_STACKTRACE, _stacktrace(failure.error, self.stacktrace_max_bytes)),
            (h.DLQ_ATTEMPTS, str(failure.attempts or attempt).encode()),
            (h.DLQ_FAILED_AT, failed_at.encode()),
        ]
        return Routed(dlq_topic(self.service), record.key, record.value, headers, True, attempt)


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> int:
    return len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in headers) + RECORD_OVERHEAD_BYTES


def fit(routed: Routed, max_bytes: int) -> Routed:
    """Make a dead letter fit the topic, and say so in headers: trim the stack trace and the value first;
    if the key and original headers alone are still too large, drop the original headers and trim the key."""
    if record_size(routed.key, routed.value, routed.headers) <= max_bytes:
        return routed
    original = len(routed.value or b"")
    marks = [(h.DLQ_TRUNCATED, b"true"), (h.DLQ_ORIGINAL_SIZE, str(original).encode())]
    headers = [(k, v[:512] if k == h.DLQ_STACKTRACE else v) for k, v in routed.headers] + marks
    key = routed.key
    if record_size(key, b"", headers) > max_bytes:
        headers = [(k, v) for k, v in headers if k.startswith(h.DLQ_PREFIX)] + [(h.DLQ_HEADERS_DROPPED, b"true")]
        key = (key or b"")[: max(0, max_bytes - record_size(b"", b"", headers)) // 2] or None
    room = max(0, max_bytes - record_size(key, b"", headers))
    return Routed(routed.topic, key, (routed.value or b"")[:room], headers, routed.dead, routed.attempt)
