"""Frames that fail before any registry lookup: each is a typed DeserializationError naming its position."""

from __future__ import annotations

import pytest

from shared.errors import DeserializationError, PermanentError
from shared.serde import AvroSerde
from shared.settings import PipelineSettings

# An address nothing listens on: these cases must fail before the registry is ever asked.
SERDE = AvroSerde.connect("http://127.0.0.1:9", PipelineSettings().schemas_dir)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated frame"),
        (b"\x00\x00\x01", "truncated frame"),
        (b"\x07\x00\x00\x00\x01abc", "unknown magic byte 7"),
        (b'{"json": true}', "unknown magic byte 123"),
        (None, "tombstone"),
    ],
)
def test_bad_frames_raise_deserialization_error_with_position(data: bytes | None, reason: str) -> None:
    with pytest.raises(DeserializationError) as caught:
        SERDE.decode("events.received.v1", data, partition=3, offset=42)
    error = caught.value
    assert reason in str(error)
    assert (error.topic, error.partition, error.offset) == ("events.received.v1", 3, 42)
    assert "events.received.v1[3]@42" in str(error)
    assert isinstance(error, PermanentError)
    assert error.category == "deserialization"
