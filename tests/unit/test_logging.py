"""Structured logs: JSON lines with extras, and payloads only as hashes."""

from __future__ import annotations

import json
import logging

from shared.logging import JsonFormatter, payload_hash


def test_json_formatter_includes_extras_and_service() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "routed %s", ("ok",), None)
    record.event_id = "e1"
    record.position = "events.received.v1[2]@17"
    line = json.loads(JsonFormatter("intake").format(record))
    assert line["msg"] == "routed ok"
    assert line["service"] == "intake"
    assert line["event_id"] == "e1"
    assert line["position"] == "events.received.v1[2]@17"


def test_payload_hash_hides_the_text() -> None:
    digest = payload_hash("my card is 4111 1111 1111 1111")
    assert digest.startswith("sha256:")
    assert "4111" not in digest
    assert digest == payload_hash(b"my card is 4111 1111 1111 1111")
