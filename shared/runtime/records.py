"""What a handler sees and returns: decoded records grouped by partition, and outputs to produce."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, overload

if TYPE_CHECKING:
    from shared.runtime.state.batch import BatchState, TableView
    from shared.runtime.state.tables import Table, V

Headers = list[tuple[str, bytes]]
# A topic-partition, and one record's place in it.
TP = tuple[str, int]
RecordKey = tuple[TP, int]


class InputRecord(NamedTuple):
    """One consumed record, already decoded into ``payload``. (A tuple: cheap to build per record.)"""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int
    payload: Any

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class PartitionBatch:
    """The records of one topic-partition, in offset order; with tables, the partition's state as this call sees
    it (``table``)."""

    topic: str
    partition: int
    records: list[InputRecord]
    state: BatchState | None = None

    @overload
    def table(self, table: Table[V]) -> TableView[V]: ...

    @overload
    def table(self, table: str) -> TableView[Any]: ...

    def table(self, table: Table[Any] | str) -> TableView[Any]:
        """A table of the runtime (its definition or name) in this partition: reads see this call's writes, then
        those of earlier batches not committed yet, then the committed state."""
        if self.state is None:
            raise RuntimeError("this runtime has no tables (Runtime(..., tables=[...]))")
        return self.state.table(table)


class Output(NamedTuple):
    """One record to produce for an input record."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


# What a handler answers for one input record: its outputs, or a failure value (an exception instance,
# routed exactly like a raised one, but without failing the rest of the batch).
RecordResult = Sequence[Output] | BaseException

# The handler gets one or more partition batches and returns, for every input record in order (batches in
# the order given, records in offset order), that record's result. Raising means the whole call failed (the
# runtime then bisects). It may be a plain function, a coroutine function (run on an event loop the runtime
# owns), or return a ``concurrent.futures.Future`` of the results: the last two let batches overlap.
Handler = Callable[
    [Sequence[PartitionBatch]],
    Sequence[RecordResult] | Awaitable[Sequence[RecordResult]] | Future[Sequence[RecordResult]],
]

# Decodes a record's value; raises DeserializationError (permanent) or DependencyUnavailable.
Decoder = Callable[[str, bytes | None, int, int], Any]


def raw_decoder(topic: str, value: bytes | None, partition: int, offset: int) -> Any:
    """A decoder that hands the value bytes through unchanged."""
    return value
