"""Every Kafka header name the pipeline writes or reads (ARCHITECTURE.md's header contract), in one place."""

from __future__ import annotations

# CloudEvents Kafka protocol binding, binary mode, plus W3C trace context.
CE_SPECVERSION = "ce_specversion"
CE_ID = "ce_id"
CE_SOURCE = "ce_source"
CE_TYPE = "ce_type"
CE_TIME = "ce_time"
CE_SUBJECT = "ce_subject"
CE_TENANT = "ce_tenant"
CONTENT_TYPE = "content-type"
TRACEPARENT = "traceparent"
CE_REQUIRED = (CE_SPECVERSION, CE_ID, CE_SOURCE, CE_TYPE, CE_TIME)
CE_ALL = (*CE_REQUIRED, CE_SUBJECT, CE_TENANT)

# Retry records: the attempt, when it is due, why it failed, and where it first came from.
RETRY_PREFIX = "retry."
RETRY_ATTEMPT = "retry.attempt"
RETRY_DUE = "retry.due"
RETRY_ERROR_TYPE = "retry.error.type"
RETRY_ERROR_CATEGORY = "retry.error.category"
RETRY_ERROR_MESSAGE = "retry.error.message"
RETRY_DEFERRED_SINCE = "retry.deferred.since"
RETRY_ORIGINAL = "retry.original."

# Dead letters: where the record came from, which service gave up on it, and why.
DLQ_PREFIX = "dlq."
DLQ_ORIGINAL = "dlq.original."
DLQ_ORIGINAL_TOPIC = "dlq.original.topic"
DLQ_ORIGINAL_PARTITION = "dlq.original.partition"
DLQ_ORIGINAL_OFFSET = "dlq.original.offset"
DLQ_ORIGINAL_TIMESTAMP = "dlq.original.timestamp"
DLQ_ORIGINAL_SIZE = "dlq.original.size"
DLQ_SERVICE = "dlq.service"
DLQ_ERROR_CATEGORY = "dlq.error.category"
DLQ_ERROR_TYPE = "dlq.error.type"
DLQ_ERROR_MESSAGE = "dlq.error.message"
DLQ_STACKTRACE = "dlq.stacktrace"
DLQ_ATTEMPTS = "dlq.attempts"
DLQ_FAILED_AT = "dlq.failed.at"
DLQ_TRUNCATED = "dlq.truncated"
DLQ_HEADERS_DROPPED = "dlq.headers.dropped"

# Replayed dead letters: which replay run sent it, from where, how many times, and its first position.
REPLAY_PREFIX = "replay."
REPLAY_ID = "replay.id"
REPLAY_SOURCE = "replay.source"
REPLAY_COUNT = "replay.count"
REPLAY_ORIGINAL = "replay.original."
# A redelivery (``POST /v1/events/{id}/redeliver``): its id, and the endpoint URLs to call again (a JSON list).
REDELIVERY_PREFIX = "redelivery."
REDELIVERY_ID = "redelivery.id"
REDELIVERY_ENDPOINTS = "redelivery.endpoints"
# On a replay ledger entry: how many times that dead letter was replayed (read without decoding the entry).
LEDGER_COUNT = "count"

# The position suffixes under ``retry.original.``, ``dlq.original.`` and ``replay.original.``.
TOPIC = "topic"
PARTITION = "partition"
OFFSET = "offset"
TIMESTAMP = "timestamp"
