"""Tables as a batch sees them (the handler's side), and the tables of every partition this process holds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Generic, NamedTuple, overload

from shared.runtime.records import TP
from shared.runtime.state.partition import PartitionState, StateError, TableBatch
from shared.runtime.state.stores import StateSettings, Storage
from shared.runtime.state.tables import Key, Table, V, changelog_topic, key_bytes


class ChangelogRecord(NamedTuple):
    """One record to produce, in the batch's transaction, to a table's changelog (``value`` None: a tombstone).

    ``partition`` is explicit: it is the input partition's number, whatever the key hashes to.
    """

    topic: str
    partition: int
    key: bytes
    value: bytes | None


_DELETED: Any = object()


class TableView(Generic[V]):
    """One table in the partition of the batch being handled: what a handler reads and writes.

    A batch reads its own writes, then those of earlier batches of the partition not committed yet, then the
    committed state. Its writes reach the changelog, and the state, only when its transaction commits.

    Values are decoded once per key per batch and encoded once, when the batch seals (or a savepoint is taken):
    a subject seen a dozen times in a batch costs one decode and one encode. ``get`` may so return the object an
    earlier ``get`` or ``put`` of the batch returned or stored; change it only to ``put`` it.
    """

    __slots__ = ("batch", "cache", "codec", "dirty")

    def __init__(self, table: Table[V], batch: TableBatch) -> None:
        self.batch = batch
        self.codec = table.codec
        self.cache: dict[bytes, Any] = {}
        self.dirty: dict[bytes, Any] = {}

    def get(self, key: Key) -> V | None:
        raw = key_bytes(key)
        found = self.cache.get(raw, self)
        if found is self:
            data = self.batch.get(raw)
            found = self.cache[raw] = None if data is None else self.codec.decode(data)
        return None if found is _DELETED else found

    def get_or(self, key: Key, default: V) -> V:
        found = self.get(key)
        return default if found is None else found

    def put(self, key: Key, value: V) -> None:
        raw = key_bytes(key)
        self.batch.check_writable()
        self.cache[raw] = self.dirty[raw] = value

    def delete(self, key: Key) -> None:
        raw = key_bytes(key)
        self.batch.check_writable()
        self.cache[raw] = self.dirty[raw] = _DELETED

    def flush(self) -> None:
        """Encode what this batch wrote into its overlay (at a savepoint or the seal)."""
        batch, encode = self.batch, self.codec.encode
        for raw, value in self.dirty.items():
            if value is _DELETED:
                batch.delete(raw)
            else:
                batch.put(raw, encode(value))
        self.dirty.clear()

    def forget(self) -> None:
        """A rollback: the writes since the savepoint are gone, and cached objects may hold them."""
        self.dirty.clear()
        self.cache.clear()


class BatchState:
    """Every table of one partition, as one batch sees them. The handler asks for a table with ``table``; the
    runtime seals, commits or discards the batch as a whole."""

    def __init__(
        self, tp: TP, tables: dict[str, Table[Any]], batches: dict[str, TableBatch], topics: dict[str, str]
    ) -> None:
        self.tp = tp
        self.tables = tables
        self.batches = batches
        self.topics = topics
        self.views: dict[str, TableView[Any]] = {}

    @overload
    def table(self, table: Table[V]) -> TableView[V]: ...

    @overload
    def table(self, table: str) -> TableView[Any]: ...

    def table(self, table: Table[Any] | str) -> TableView[Any]:
        """The table (its definition, or its name) in this batch's partition."""
        name = table if isinstance(table, str) else table.name
        view = self.views.get(name)
        if view is None:
            if name not in self.batches:
                raise KeyError(f"no table {name!r}; this service has {sorted(self.batches)}")
            view = self.views[name] = TableView(self.tables[name], self.batches[name])
        return view

    @property
    def now_ms(self) -> int:
        return max((batch.now_ms for batch in self.batches.values()), default=0)

    def advance(self, now_ms: int) -> None:
        """Move stream time forward (a record's timestamp, say): windowed writes carry it, reads expire by it."""
        for batch in self.batches.values():
            batch.advance(now_ms)

    def _flush(self) -> None:
        for view in self.views.values():
            view.flush()

    def savepoint(self) -> int:
        """Before a handler call that may fail alone (a bisection's half): its writes can then be dropped."""
        self._flush()
        depths = {batch.savepoint() for batch in self.batches.values()}
        return depths.pop() if depths else 1

    def rollback(self, savepoint: int) -> None:
        for view in self.views.values():
            view.forget()
        for batch in self.batches.values():
            batch.rollback(savepoint)

    def release(self, savepoint: int) -> None:
        self._flush()
        for batch in self.batches.values():
            batch.release(savepoint)

    def seal(self) -> None:
        """The handler answered: no more writes, and the partition's next batch may begin."""
        self._flush()
        for batch in self.batches.values():
            batch.seal()

    def changelog(self) -> list[ChangelogRecord]:
        """What to produce in this batch's transaction, table by table, each key once, in key order."""
        partition = self.tp[1]
        return [
            ChangelogRecord(self.topics[name], partition, key, value)
            for name, batch in self.batches.items()
            if name in self.topics  # a source table's changelog is its own input topic: nothing to write
            for key, value in batch.changes()
        ]


class PartitionTables:
    """Every table's state in one input partition this process holds."""

    def __init__(
        self, tp: TP, states: dict[str, PartitionState], topics: dict[str, str], max_expiries_per_batch: int
    ) -> None:
        self.tp = tp
        self.states = states
        self.topics = topics
        self.max_expiries_per_batch = max_expiries_per_batch
        self.pending: list[BatchState] = []

    def begin(self, now_ms: int) -> BatchState:
        """A batch of this partition handed to the handler, at stream time ``now_ms`` (its newest record's
        timestamp, say). Windowed tables delete what expired by then, in this batch (tombstones included)."""
        batches = {name: state.begin(now_ms) for name, state in self.states.items()}
        for batch in batches.values():
            batch.expire(self.max_expiries_per_batch)
        tables = {name: state.table for name, state in self.states.items()}
        batch_state = BatchState(self.tp, tables, batches, self.topics)
        self.pending.append(batch_state)
        return batch_state

    def commit(self, batch: BatchState) -> None:
        """Its transaction committed: its writes become the partition's state."""
        if not self.pending or self.pending[0] is not batch:
            raise StateError(f"{self.tp[0]}[{self.tp[1]}]: commit out of order, or of a discarded batch")
        for name, state in self.states.items():
            state.commit(batch.batches[name])
        self.pending.pop(0)

    def discard(self, since: BatchState | None = None) -> None:
        """Its transaction aborted, or the partition went back before it: forget ``since`` and every later batch
        (every pending batch when None)."""
        if since is not None and since not in self.pending:
            return
        keep = 0 if since is None else self.pending.index(since)
        for name, state in self.states.items():
            state.discard(self.pending[keep].batches[name] if keep < len(self.pending) else None)
        del self.pending[keep:]

    def restore(self, table: str, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Apply a table's changelog records (key, value; None deletes), read from its partition ``tp[1]``."""
        return self.states[table].restore(records)

    def drop(self) -> None:
        for state in self.states.values():
            state.drop()
        self.pending.clear()


class Tables:
    """The tables of one service, in every partition this process holds: fresh and empty on assignment (the
    runtime then restores them from their changelogs), dropped on revocation.

    State belongs to a partition *number*, as a Kafka Streams task does: the input topics, the service's retry
    and replay topics and a source table's topic all have the same partition count and key, so records of one key
    land in partition ``p`` of each, and changelog partition ``p`` holds the state of all of them. (The runtime
    assigns co-partitioned topics together: the range assignor.)
    """

    def __init__(
        self,
        service: str,
        owner: str,
        definitions: Sequence[Table[Any]],
        settings: StateSettings,
        sources: dict[str, str] | None = None,
    ) -> None:
        names = [table.name for table in definitions]
        if len(set(names)) != len(names):
            raise ValueError(f"table names repeat: {names}")
        self.definitions = {table.name: table for table in definitions}
        # A source table's changelog is its own input topic (``sources``: table name -> topic); the others write
        # ``<service>.<table>.changelog``.
        self.sources = dict(sources or {})
        unknown = set(self.sources) - set(names)
        if unknown:
            raise ValueError(f"source tables {sorted(unknown)} are not among the tables {names}")
        self.topics = {name: self.sources.get(name) or changelog_topic(service, name) for name in names}
        # The owner (this process's instance id) keeps two instances on one host out of each other's directories.
        self.owner = owner
        self.settings = settings
        self.storage = Storage(settings)
        self.partitions: dict[int, PartitionTables] = {}

    @property
    def changelogged(self) -> dict[str, str]:
        """The tables whose writes the runtime produces to a changelog (not the source tables), and their topics."""
        return {name: topic for name, topic in self.topics.items() if name not in self.sources}

    def assign(self, partition: int) -> PartitionTables:
        """Empty tables for a partition just assigned."""
        if partition in self.partitions:
            self.partitions.pop(partition).drop()
        states = {name: self._open(partition, table) for name, table in self.definitions.items()}
        tables = PartitionTables(("", partition), states, self.changelogged, self.settings.max_expiries_per_batch)
        self.partitions[partition] = tables
        return tables

    def _open(self, partition: int, table: Table[Any]) -> PartitionState:
        folder = self._folder(partition) / table.name
        store = self.storage.open(folder / "data")
        index = None if table.retention_ms is None else self.storage.open(folder / "expiry")
        return PartitionState(table, store, index, lambda: self.storage.remove(folder))

    def _folder(self, partition: int) -> Path:
        return Path(self.owner) / f"p{partition}"

    def __getitem__(self, partition: int) -> PartitionTables:
        return self.partitions[partition]

    def __contains__(self, partition: object) -> bool:
        return partition in self.partitions

    def revoke(self, partitions: Iterable[int]) -> None:
        """Revoked or lost: the next owner restores from the changelog, so nothing here is kept."""
        for partition in partitions:
            tables = self.partitions.pop(partition, None)
            if tables is not None:
                tables.drop()
                self.storage.remove(self._folder(partition))

    def close(self) -> None:
        self.revoke(list(self.partitions))
