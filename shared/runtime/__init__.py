"""The processing runtime: batch-by-partition consumption, exactly-once output, retry topics and dead letters."""

from shared.runtime.engine import Runtime
from shared.runtime.model import Handler, InputRecord, Output, PartitionBatch
from shared.runtime.settings import RuntimeSettings

__all__ = ["Handler", "InputRecord", "Output", "PartitionBatch", "Runtime", "RuntimeSettings"]
