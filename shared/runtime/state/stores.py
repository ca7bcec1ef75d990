"""Key-value stores behind a table's state: a dict in memory, or RocksDB on disk, both over bytes."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

# RocksDB's default memtable is 64 MiB; one DB per table per partition would pin that much per partition
# before a single flush. 16 MiB keeps a dozen partitions' tables within a few hundred MiB.
DISK_WRITE_BUFFER_BYTES = 16 * 1024 * 1024

StoreKind = Literal["memory", "disk"]


class StateSettings(BaseModel):
    """Where tables keep their state, and how much expiry one batch may do."""

    store: StoreKind = Field(
        default="memory",
        description="memory: a dict per table per partition (fastest; state must fit in RAM). disk: RocksDB, "
        "one directory per table per partition under `dir` (state larger than memory).",
    )
    dir: Path = Field(
        default=Path("state"),
        description="Root of the disk stores. Scratch space: every store is rebuilt from its changelog on assignment.",
    )
    max_expiries_per_batch: int = Field(
        default=10_000,
        ge=1,
        description="Expired entries one batch looks at, at most, so a backlog of expiries never stalls a batch "
        "(reads hide an expired entry before it is swept).",
    )


class KeyValueStore(Protocol):
    """A partition's committed state for one table: bytes to bytes, no transactions of its own.

    Iteration order: a ``DiskStore`` yields keys in byte order, a ``MemoryStore`` in first-insertion order. The
    expiry index only ever appends keys in byte order (time first), so both yield it oldest first.
    """

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def write_many(self, writes: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Apply puts (and deletes, where the value is None) in order, as one write where the store can."""
        ...

    def items(self) -> Iterator[tuple[bytes, bytes]]: ...

    def approximate_len(self) -> int:
        """The number of keys: exact in memory, RocksDB's estimate on disk."""
        ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


class MemoryStore:
    """A dict: the default, and the fastest, for state that fits in memory."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)

    def write_many(self, writes: Iterable[tuple[bytes, bytes | None]]) -> None:
        data = self.data
        pop = data.pop
        for key, value in writes:
            if value is None:
                pop(key, None)
            else:
                data[key] = value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self.data.items())

    def approximate_len(self) -> int:
        return len(self.data)

    def clear(self) -> None:
        self.data.clear()

    def close(self) -> None:
        self.data = {}


class DiskStore:
    """RocksDB (``rocksdict``, raw bytes) in its own directory: state larger than memory.

    The directory is scratch space, never a source of truth: the changelog is. So an existing directory is wiped
    on open (a previous owner's or a crashed run's leftovers could be older than the changelog), and the
    write-ahead log is off: after a crash the store is rebuilt from the changelog anyway, and the WAL would only
    double every write.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        self.db = self._open()

    def _open(self) -> Rdict:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(DISK_WRITE_BUFFER_BYTES)
        db = Rdict(str(self.path), options)
        write_options = WriteOptions()
        # A property at run time, though rocksdict's stub declares a method.
        write_options.disable_wal = True  # type: ignore[method-assign,assignment]
        db.set_write_options(write_options)
        return db

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)

    def delete(self, key: bytes) -> None:
        self.db.delete(key)

    def write_many(self, writes: Iterable[tuple[bytes, bytes | None]]) -> None:
        batch = WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        for key, value in writes:
            if value is None:
                delete(key)
            else:
                put(key, value)
        if not batch.is_empty():
            self.db.write(batch)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self.db.items():
            assert isinstance(key, bytes) and isinstance(value, bytes)
            yield key, value

    def approximate_len(self) -> int:
        return self.db.property_int_value("rocksdb.estimate-num-keys") or 0

    def clear(self) -> None:
        # Dropping the files is cheaper than a delete per key, and leaves no tombstones to compact.
        self.db.close()
        shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        self.db = self._open()

    def close(self) -> None:
        self.db.close()


class Storage:
    """Opens and removes the stores of the configured kind; a disk store lives at ``dir / <relative path>``."""

    def __init__(self, settings: StateSettings) -> None:
        self.settings = settings

    @property
    def on_disk(self) -> bool:
        return self.settings.store == "disk"

    def open(self, relative: Path) -> KeyValueStore:
        """A fresh, empty store (a disk store wipes what its directory held)."""
        if self.on_disk:
            return DiskStore(self.settings.dir / relative)
        return MemoryStore()

    def remove(self, relative: Path) -> None:
        """Delete what a store left on disk (nothing for memory). Its stores must be closed first."""
        if self.on_disk:
            shutil.rmtree(self.settings.dir / relative, ignore_errors=True)
