"""Dependency strikes: tell an outage from a record that fails on a dependency alone, and route the latter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared.errors import DependencyUnavailable
from shared.runtime.processing import SettledRecord
from shared.runtime.records import TP, RecordKey
from shared.runtime.routing import Failure


def is_dependency(failure: Failure) -> bool:
    return isinstance(failure.error, DependencyUnavailable)


class DependencyStrikes:
    """Strikes of records that failed on a dependency while others passed.

    A record fails "alone" when records passed since its last failure: that counts a strike, the record is held
    and retried, and after ``limit`` strikes it is routed. An outage (nothing passing anywhere) never counts one.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # Per record: its strikes, and how many records had passed at its last failure.
        self.strikes: dict[RecordKey, tuple[int, int]] = {}
        self.passed = 0

    def count_passed(self, records: int) -> None:
        self.passed += records

    def outage(self, results: Mapping[RecordKey, SettledRecord]) -> DependencyUnavailable | None:
        """The dependency error to pause everything on, when nothing in ``results`` passed (here or, for some
        record failing on a dependency, since its last failure); None when the results are to be written."""
        on_dependency = {
            key: result.error
            for key, result in results.items()
            if isinstance(result, Failure) and isinstance(result.error, DependencyUnavailable)
        }
        if not on_dependency or any(not isinstance(result, Failure) for result in results.values()):
            return None
        if all(self._failed_alone(key) for key in on_dependency):
            return None
        for key in on_dependency:
            strikes, _ = self.strikes.get(key, (0, 0))
            self.strikes[key] = (strikes, self.passed)
        return next(iter(on_dependency.values()))

    def escalate(self, tp: TP, offset: int) -> bool:
        """Count a strike for a record that failed alone on a dependency; True once it is to be routed."""
        key = (tp, offset)
        strikes = self.strikes.get(key, (0, 0))[0] + 1
        if strikes < self.limit:
            self.strikes[key] = (strikes, self.passed)
            return False
        self.strikes.pop(key, None)
        return True

    def forget(self, partitions: Iterable[TP]) -> None:
        gone = set(partitions)
        for key in [k for k in self.strikes if k[0] in gone]:
            del self.strikes[key]

    def _failed_alone(self, key: RecordKey) -> bool:
        entry = self.strikes.get(key)
        return entry is not None and self.passed > entry[1]
