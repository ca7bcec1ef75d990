"""Prometheus metrics of every runtime, labelled by service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_IN = Counter("runtime_records_in_total", "Records consumed", ["service", "topic"])
RECORDS_OUT = Counter("runtime_records_out_total", "Output records produced", ["service", "topic"])
RECORDS_RETRIED = Counter(
    "runtime_records_retried_total", "Records sent to a retry topic", ["service", "topic", "category"]
)
RECORDS_DEAD = Counter(
    "runtime_records_dead_lettered_total", "Records sent to the DLQ", ["service", "topic", "category"]
)
BATCH_SIZE = Histogram(
    "runtime_batch_size", "Records per handler call", ["service"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
)
HANDLER_SECONDS = Histogram("runtime_handler_seconds", "Handler latency per call", ["service"])
TRANSACTIONS = Counter("runtime_transactions_total", "Transaction outcomes", ["service", "result"])
LAG = Gauge("runtime_consumer_lag", "High watermark minus position", ["service", "topic", "partition"])
PAUSED = Gauge("runtime_paused_partitions", "Partitions paused by the runtime", ["service"])
BACKPRESSURE_PAUSES = Counter("runtime_backpressure_pauses_total", "Pauses because too much is buffered", ["service"])
DEPENDENCY_PAUSES = Counter("runtime_dependency_pauses_total", "Pauses for an unavailable dependency", ["service"])
MISSING_TOPIC_PAUSES = Counter(
    "runtime_missing_topic_pauses_total",
    "Partition pauses because an output topic does not exist",
    ["service", "topic"],
)
