"""Tables: keyed state per input partition, read and written by a handler, changelogged in the batch's transaction.

``tables`` defines a table, ``stores`` holds its committed state (memory or RocksDB), ``partition`` keeps the
writes of batches not yet committed apart from it, and ``batch`` is what a handler and the runtime see.
"""

from shared.runtime.state.batch import BatchState, ChangelogRecord, PartitionTables, Tables, TableView
from shared.runtime.state.partition import PartitionState, StateError, TableBatch
from shared.runtime.state.stores import DiskStore, KeyValueStore, MemoryStore, StateSettings, Storage, StoreKind
from shared.runtime.state.tables import BYTES, JSON, BytesCodec, Codec, JsonCodec, Key, Table, changelog_topic

__all__ = [
    "BYTES",
    "JSON",
    "BatchState",
    "BytesCodec",
    "ChangelogRecord",
    "Codec",
    "DiskStore",
    "JsonCodec",
    "Key",
    "KeyValueStore",
    "MemoryStore",
    "PartitionState",
    "PartitionTables",
    "StateError",
    "StateSettings",
    "Storage",
    "StoreKind",
    "Table",
    "TableBatch",
    "TableView",
    "Tables",
    "changelog_topic",
]
