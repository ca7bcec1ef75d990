"""The processing runtime: batch-by-partition consumption, exactly-once output, retry topics and dead letters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.runtime.records import Handler, InputRecord, Output, PartitionBatch, RecordResult
from shared.runtime.settings import RuntimeSettings

if TYPE_CHECKING:
    from shared.runtime.engine import Runtime

__all__ = ["Handler", "InputRecord", "Output", "PartitionBatch", "RecordResult", "Runtime", "RuntimeSettings"]


# The engine is imported lazily, so ``shared.runtime.routing`` (used by a faust agent too) stands alone.
def __getattr__(name: str) -> Any:
    if name == "Runtime":
        from shared.runtime.engine import Runtime

        return Runtime
    raise AttributeError(f"module 'shared.runtime' has no attribute {name!r}")
