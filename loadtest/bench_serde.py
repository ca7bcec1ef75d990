"""Serde throughput: the shared AvroSerde and confluent-kafka's stock Avro serde against raw fastavro.

Needs a running registry (`make up`). Prints JSON with records/s and ratios to the raw baseline,
all measured in this run, because the machine is shared and noisy.
"""

from __future__ import annotations

import io
import json
import struct
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import schemaless_reader, schemaless_writer

from shared.schemas import SchemaCatalog
from shared.serde import AvroSerde
from shared.settings import PipelineSettings
from shared.topics import EVENTS_RECEIVED
from tests.support.factories import make_event_received

N = 20_000
ROUNDS = 3


def best_rate(fn: Callable[[], object], n: int) -> float:
    """Best of ROUNDS runs, in records per second (best-of damps noise from other processes)."""
    fn()  # warm-up: caches, allocator, branch predictors
    best = 0.0
    for _ in range(ROUNDS):
        started = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - started))
    return best


def main() -> None:
    settings = PipelineSettings()
    serde = AvroSerde.connect(settings.schema_registry_url, settings.schemas_dir)
    # The stock serde and the raw baseline: the stock client and the same reader schemas.
    catalog = SchemaCatalog(settings.schemas_dir)
    client = SchemaRegistryClient({"url": settings.schema_registry_url})
    parsed = catalog.parsed("EventReceived")
    records = [make_event_received(text=f"ticket {i}: the export button fails") for i in range(N)]
    schema_id = serde.schema_id(EVENTS_RECEIVED)
    header = struct.pack(">bI", 0, schema_id)

    def raw_encode(record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(header)
        schemaless_writer(buf, parsed, record)
        return buf.getvalue()

    def raw_decode(data: bytes) -> Any:
        buf = io.BytesIO(data)
        buf.seek(5)
        return schemaless_reader(buf, parsed, None)

    context = SerializationContext(EVENTS_RECEIVED, MessageField.VALUE)
    stock_ser = AvroSerializer(client, catalog.text("EventReceived"))
    stock_de = AvroDeserializer(client)
    frames = [raw_encode(r) for r in records]

    rates = {
        "raw_fastavro_encode": best_rate(lambda: [raw_encode(r) for r in records], N),
        "shared_serde_encode": best_rate(lambda: [serde.encode(EVENTS_RECEIVED, r) for r in records], N),
        "stock_confluent_encode": best_rate(lambda: [stock_ser(r, context) for r in records], N),
        "raw_fastavro_decode": best_rate(lambda: [raw_decode(f) for f in frames], N),
        "shared_serde_decode": best_rate(lambda: [serde.decode(EVENTS_RECEIVED, f) for f in frames], N),
        "stock_confluent_decode": best_rate(lambda: [stock_de(f, context) for f in frames], N),
    }
    ratios = {
        "shared_encode_vs_raw": rates["shared_serde_encode"] / rates["raw_fastavro_encode"],
        "stock_encode_vs_raw": rates["stock_confluent_encode"] / rates["raw_fastavro_encode"],
        "shared_decode_vs_raw": rates["shared_serde_decode"] / rates["raw_fastavro_decode"],
        "stock_decode_vs_raw": rates["stock_confluent_decode"] / rates["raw_fastavro_decode"],
    }
    print(
        json.dumps(
            {
                "benchmark": "serde",
                "records": N,
                "rounds": ROUNDS,
                "records_per_s": {k: round(v) for k, v in rates.items()},
                "ratios": {k: round(v, 3) for k, v in ratios.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
