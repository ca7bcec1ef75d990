"""Table definitions: a name, a value codec and an optional retention; and the changelog topic each one writes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol

import orjson
from typing_extensions import TypeVar

from shared.topics import changelog_topic as changelog_topic

# Any by default: `Table("activity")` holds JSON values, typed as Any.
V = TypeVar("V", default=Any)

# A key as a handler gives it: text (stored as UTF-8) or bytes (stored as given).
Key = str | bytes

# Kafka's legal topic characters, so that ``<service>.<table>.changelog`` is a legal topic name.
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class Codec(Protocol[V]):
    """Turns a table's values into bytes for the store and the changelog, and back."""

    def encode(self, value: V) -> bytes: ...

    def decode(self, data: bytes) -> V: ...


class JsonCodec:
    """orjson: any JSON-able value (dicts, lists, numbers, text); the default."""

    def encode(self, value: Any) -> bytes:
        return orjson.dumps(value)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)


class BytesCodec:
    """Values that are bytes already (Avro frames, packed counters): stored as given."""

    def encode(self, value: bytes) -> bytes:
        return value

    def decode(self, data: bytes) -> bytes:
        return data


JSON: Codec[Any] = JsonCodec()
BYTES: Codec[bytes] = BytesCodec()


@dataclass(frozen=True)
class Table(Generic[V]):
    """A keyed state store that every input partition has its own copy of.

    ``retention_ms`` makes it windowed: an entry not written for that long (by stream time) reads as absent, and
    is then deleted, with a tombstone in the changelog, so the table never grows without bound.
    """

    name: str
    codec: Codec[V] = field(default=JSON)
    retention_ms: int | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"table name {self.name!r} must match {_NAME.pattern} (it names a topic)")
        if self.retention_ms is not None and self.retention_ms <= 0:
            raise ValueError(f"table {self.name}: retention_ms must be positive, not {self.retention_ms}")


def key_bytes(key: Key) -> bytes:
    return key.encode() if isinstance(key, str) else key
