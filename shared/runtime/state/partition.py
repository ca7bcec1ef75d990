"""One table's state in one input partition: the committed store, and the writes of batches not yet committed.

A batch's writes stay in its own overlay until its transaction commits; the next batch of the partition may
start before that and reads through every pending overlay, newest first, then the store. A commit applies the
oldest overlay to the store; an abort, or a rewind of the partition, throws pending overlays away, so the store
only ever holds what the changelog holds.

Windowed tables (``retention_ms``) prefix every stored value with the stream time it was written at (8 bytes,
big-endian), in the store and in the changelog alike, so a restore knows each entry's age. An expiry index, a
second store keyed by ``time + key``, finds the entries due to expire without a scan of the table.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any

from shared.runtime.state.stores import KeyValueStore
from shared.runtime.state.tables import Table

_TIME = struct.Struct(">Q")
TIME_BYTES = _TIME.size
RESTORE_CHUNK = 10_000

# What a batch writes: a key's last value, None for a delete.
Writes = dict[bytes, bytes | None]


class StateError(RuntimeError):
    """The state API was used out of order: a bug in the caller (the runtime), never the records' fault."""


def written_at(stored: bytes) -> int:
    """The stream time a windowed table's stored value was written at."""
    if len(stored) < TIME_BYTES:
        raise StateError(f"windowed table value of {len(stored)} bytes has no write time")
    time: int = _TIME.unpack_from(stored)[0]
    return time


def stamp(time_ms: int, payload: bytes) -> bytes:
    return _TIME.pack(max(0, time_ms)) + payload


class TableBatch:
    """One batch's reads and writes of one table in one partition: the overlay that commits with the batch.

    Reads see, in order: this batch's writes, the writes of earlier pending batches (newest first), the store.
    Savepoints stack further layers on top, so a failed handler call's writes can be rolled back alone.
    """

    def __init__(self, state: PartitionState, below: tuple[TableBatch, ...], now_ms: int) -> None:
        self.state = state
        self.below = below  # earlier pending batches of the partition, newest first
        self.now_ms = now_ms  # stream time: never behind the batch before
        self.layers: list[Writes] = [{}]
        self.sealed = False
        self.closed = False

    @property
    def writes(self) -> Writes:
        return self.layers[0]

    @property
    def cutoff(self) -> int | None:
        """Entries written before this stream time have expired (None: the table keeps entries forever)."""
        retention = self.state.table.retention_ms
        return None if retention is None else self.now_ms - retention

    # ------------------------------------------------------------------ reads and writes

    def stored(self, key: bytes) -> bytes | None:
        """The key's value as stored (with its write time, for a windowed table), expired or not."""
        if self.closed:
            raise StateError(f"table {self.state.table.name}: the batch was committed or discarded")
        for layer in reversed(self.layers):
            if key in layer:
                return layer[key]
        for earlier in self.below:
            writes = earlier.writes
            if key in writes:
                return writes[key]
        return self.state.store.get(key)

    def get(self, key: bytes) -> bytes | None:
        """The key's current value (its payload, without a write time); None when absent or expired."""
        value = self.stored(key)
        if value is None or self.state.table.retention_ms is None:
            return value
        cutoff = self.cutoff
        assert cutoff is not None
        return None if written_at(value) < cutoff else value[TIME_BYTES:]

    def put(self, key: bytes, payload: bytes) -> None:
        self._write(key, payload if self.state.table.retention_ms is None else stamp(self.now_ms, payload))

    def delete(self, key: bytes) -> None:
        self._write(key, None)

    def check_writable(self) -> None:
        if self.closed or self.sealed:
            raise StateError(f"table {self.state.table.name}: write after the batch was sealed, committed or discarded")

    def _write(self, key: bytes, value: bytes | None) -> None:
        self.check_writable()
        self.layers[-1][key] = value

    def advance(self, now_ms: int) -> None:
        """Move stream time forward (never back): later writes carry it, and reads expire by it."""
        if now_ms > self.now_ms:
            self.now_ms = now_ms

    # ------------------------------------------------------------------ savepoints

    def savepoint(self) -> int:
        """Start a layer of writes that ``rollback`` can drop alone; answer its depth."""
        if self.closed or self.sealed:
            raise StateError(f"table {self.state.table.name}: savepoint on a sealed or closed batch")
        self.layers.append({})
        return len(self.layers) - 1

    def rollback(self, savepoint: int) -> None:
        """Drop every write since ``savepoint``."""
        self._check_savepoint(savepoint)
        del self.layers[savepoint:]

    def release(self, savepoint: int) -> None:
        """Keep the writes since ``savepoint``: fold them into the layer below (the last write wins)."""
        self._check_savepoint(savepoint)
        into = self.layers[savepoint - 1]
        for layer in self.layers[savepoint:]:
            into.update(layer)
        del self.layers[savepoint:]

    def _check_savepoint(self, savepoint: int) -> None:
        if not 1 <= savepoint < len(self.layers):
            raise StateError(f"table {self.state.table.name}: no open savepoint {savepoint}")

    # ------------------------------------------------------------------ the end of the batch

    def seal(self) -> None:
        """The handler is done with this batch: no more writes; the next batch of the partition may begin."""
        if len(self.layers) > 1:
            raise StateError(f"table {self.state.table.name}: sealed with {len(self.layers) - 1} open savepoints")
        self.sealed = True

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """The changelog records of this batch, as stored (a tombstone is None): one per key, in key order, so a
        rerun of the same records writes the same changelog."""
        if not self.sealed:
            raise StateError(f"table {self.state.table.name}: changes of a batch that is not sealed")
        return sorted(self.writes.items())

    def expire(self, limit: int) -> int:
        """Delete (with a tombstone) what has expired by this batch's stream time, looking at no more than
        ``limit`` index entries; answer how many entries it deleted."""
        state, cutoff = self.state, self.cutoff
        if cutoff is None or state.index is None:
            return 0
        store, index = state.store, state.index
        expired = 0
        stale: list[bytes] = []
        # The index is read oldest first (see KeyValueStore) and only a bounded prefix of it: the rest is newer.
        for ikey, _ in islice(index.items(), limit):
            if _TIME.unpack_from(ikey)[0] >= cutoff:
                break
            key = ikey[TIME_BYTES:]
            committed = store.get(key)
            if committed is None or written_at(committed) >= cutoff:
                # Deleted, or written again since (and indexed again, later): this entry has done its job. Judged
                # by the committed store alone, so an abort of pending batches cannot make it wrong.
                stale.append(ikey)
                continue
            # Expired in the store; a pending batch may have written or deleted it since.
            current = self.stored(key)
            if current is not None and written_at(current) < cutoff:
                self.writes[key] = None
                expired += 1
            # The index entry goes once the tombstone commits (the next sweep finds the key gone).
        if stale:
            index.write_many((ikey, None) for ikey in stale)
        return expired


class PartitionState:
    """One table's state in one input partition: the committed store plus the overlays of pending batches.

    Batches begin, seal and commit in order. The runtime calls ``begin`` when it hands a batch to the handler,
    ``seal`` when the handler answered, ``commit`` once the batch's transaction committed and ``discard`` when it
    aborted or the partition was rewound.
    """

    def __init__(
        self, table: Table[Any], store: KeyValueStore, index: KeyValueStore | None, remove: Callable[[], None]
    ) -> None:
        if (table.retention_ms is None) != (index is None):
            raise StateError(f"table {table.name}: an expiry index goes with a retention, and only with one")
        self.table = table
        self.store = store
        self.index = index
        self.remove = remove
        self.pending: deque[TableBatch] = deque()
        # Stream time as of the last committed batch (or the newest restored entry).
        self.committed_ms = 0

    def begin(self, now_ms: int) -> TableBatch:
        """A new batch, reading through every pending batch. The batch before it must be sealed: two handler calls
        of one partition writing at once would each miss the other's writes."""
        if self.pending and not self.pending[-1].sealed:
            raise StateError(f"table {self.table.name}: a batch began before the previous one was sealed")
        base = self.pending[-1].now_ms if self.pending else self.committed_ms
        batch = TableBatch(self, tuple(reversed(self.pending)), max(base, now_ms))
        self.pending.append(batch)
        return batch

    def commit(self, batch: TableBatch) -> None:
        """The batch's transaction committed: apply its writes to the store. Batches commit in the order they
        began."""
        if not self.pending or self.pending[0] is not batch:
            raise StateError(f"table {self.table.name}: commit out of order, or of a discarded batch")
        changes = batch.changes()
        self.store.write_many(changes)
        if self.index is not None:
            # Indexed by write time; the time goes first, so index keys sort (and, in a dict, arrive) oldest first.
            self.index.write_many(
                sorted((value[:TIME_BYTES] + key, b"") for key, value in changes if value is not None)
            )
        self.committed_ms = batch.now_ms
        self.pending.popleft()
        batch.closed = True

    def discard(self, since: TableBatch | None = None) -> None:
        """Throw away ``since`` and every batch after it (every pending batch when None): an abort, or a rewind."""
        if since is None:
            keep = 0
        else:
            try:
                keep = self.pending.index(since)
            except ValueError:
                return  # committed or discarded already
        while len(self.pending) > keep:
            self.pending.pop().closed = True

    def discard_pending(self) -> None:
        self.discard(None)

    def restore(self, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Apply changelog records (a None value deletes) to the store; answer how many were read.

        On assignment, before the first batch. May be called again with the next records of the changelog.
        """
        if self.pending:
            raise StateError(f"table {self.table.name}: restore while batches are pending")
        count = 0
        iterator = iter(records)
        while chunk := list(islice(iterator, RESTORE_CHUNK)):
            count += len(chunk)
            self.store.write_many(chunk)
            if self.index is not None:
                self._index_restored(chunk)
        return count

    def _index_restored(self, chunk: list[tuple[bytes, bytes | None]]) -> None:
        """Index restored entries by their write time; stream time resumes from the newest of them.

        A changelog is written in stream-time order, so the index still grows oldest first (see KeyValueStore).
        Were an entry out of order, a memory index would only sweep it late: reads hide it on time regardless.
        """
        assert self.index is not None
        stamped = [(value, key) for key, value in chunk if value is not None]
        if not stamped:
            return
        if min(len(value) for value, _ in stamped) < TIME_BYTES:
            raise StateError(f"table {self.table.name}: a changelog value has no write time")
        # One pass each, no call per record: a restore of millions of entries is what a rebalance waits for.
        self.index.write_many([(value[:TIME_BYTES] + key, b"") for value, key in stamped])
        newest = max(value[:TIME_BYTES] for value, _ in stamped)  # big-endian: byte order is time order
        self.committed_ms = max(self.committed_ms, written_at(newest))

    def drop(self) -> None:
        """Revoked: forget everything, pending and committed, and delete the stores."""
        self.discard()
        self.store.close()
        if self.index is not None:
            self.index.close()
        self.remove()
