"""Tables without a broker: both stores, batch overlays (pipelined, committed, discarded), restore and expiry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.runtime.state import (
    BYTES,
    JSON,
    ChangelogRecord,
    DiskStore,
    KeyValueStore,
    MemoryStore,
    PartitionState,
    StateError,
    StateSettings,
    Table,
    Tables,
    changelog_topic,
)
from shared.runtime.state.partition import stamp

SOURCE = 3  # a partition number: the state of partition 3 of every co-partitioned input topic
ACTIVITY: Table[Any] = Table("activity")
RAW = Table("raw", BYTES)
HOUR_MS = 3_600_000
WINDOWED = Table("recent", BYTES, retention_ms=HOUR_MS)


@pytest.fixture(params=["memory", "disk"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> StateSettings:
    return StateSettings(store=request.param, dir=tmp_path / "state")


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> KeyValueStore:
    return MemoryStore() if request.param == "memory" else DiskStore(tmp_path / "db")


def make_tables(settings: StateSettings, *tables: Table[Any], max_expiries: int | None = None) -> Tables:
    if max_expiries is not None:
        settings = settings.model_copy(update={"max_expiries_per_batch": max_expiries})
    return Tables("activity-svc", "activity-svc-0", tables or (RAW,), settings)


def make_state(settings: StateSettings, table: Table[Any] = RAW, **kwargs: Any) -> PartitionState:
    return make_tables(settings, table, **kwargs).assign(SOURCE).states[table.name]


def committed(state: PartitionState) -> dict[bytes, bytes]:
    return dict(state.store.items())


# ---------------------------------------------------------------------- the stores


def test_store_puts_gets_and_deletes(store: KeyValueStore) -> None:
    store.put(b"a", b"1")
    store.put(b"b", b"2")
    store.delete(b"a")
    store.delete(b"missing")
    assert (store.get(b"a"), store.get(b"b"), store.get(b"missing")) == (None, b"2", None)


def test_store_write_many_applies_in_order(store: KeyValueStore) -> None:
    store.put(b"gone", b"0")
    store.write_many([(b"a", b"1"), (b"a", None), (b"b", None), (b"b", b"2"), (b"gone", None), (b"c", b"3")])
    assert dict(store.items()) == {b"b": b"2", b"c": b"3"}


def test_store_counts_and_clears(store: KeyValueStore) -> None:
    store.write_many((b"k%d" % i, b"v") for i in range(100))
    assert store.approximate_len() == 100
    store.clear()
    assert (list(store.items()), store.get(b"k1")) == ([], None)


def test_disk_store_wipes_what_its_directory_held(tmp_path: Path) -> None:
    first = DiskStore(tmp_path / "db")
    first.put(b"old", b"1")
    first.close()
    again = DiskStore(tmp_path / "db")
    assert again.get(b"old") is None


def test_disk_store_iterates_in_key_order(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "db")
    store.write_many([(b"b", b"2"), (b"a", b"1"), (b"c", b"3")])
    assert [key for key, _ in store.items()] == [b"a", b"b", b"c"]


# ---------------------------------------------------------------------- one batch


def test_batch_reads_its_own_writes_before_commit(settings: StateSettings) -> None:
    state = make_state(settings)
    state.restore([(b"kept", b"0"), (b"removed", b"0")])
    batch = state.begin(now_ms=0)
    batch.put(b"new", b"1")
    batch.put(b"kept", b"2")
    batch.delete(b"removed")
    assert (batch.get(b"new"), batch.get(b"kept"), batch.get(b"removed")) == (b"1", b"2", None)
    assert committed(state) == {b"kept": b"0", b"removed": b"0"}


def test_changes_hold_the_last_value_per_key_in_key_order(settings: StateSettings) -> None:
    batch = make_state(settings).begin(now_ms=0)
    batch.put(b"b", b"1")
    batch.put(b"a", b"1")
    batch.put(b"b", b"2")
    batch.delete(b"a")
    batch.put(b"c", b"3")
    batch.seal()
    assert batch.changes() == [(b"a", None), (b"b", b"2"), (b"c", b"3")]


def test_changes_wait_for_the_seal(settings: StateSettings) -> None:
    batch = make_state(settings).begin(now_ms=0)
    with pytest.raises(StateError):
        batch.changes()


def test_writes_after_the_seal_are_refused(settings: StateSettings) -> None:
    batch = make_state(settings).begin(now_ms=0)
    batch.seal()
    with pytest.raises(StateError):
        batch.put(b"a", b"1")


def test_savepoint_rollback_drops_only_the_writes_since(settings: StateSettings) -> None:
    batch = make_state(settings).begin(now_ms=0)
    batch.put(b"a", b"1")
    point = batch.savepoint()
    batch.put(b"a", b"2")
    batch.put(b"b", b"2")
    assert batch.get(b"a") == b"2"
    batch.rollback(point)
    batch.seal()
    assert batch.changes() == [(b"a", b"1")]


def test_savepoint_release_keeps_the_writes_since(settings: StateSettings) -> None:
    batch = make_state(settings).begin(now_ms=0)
    batch.put(b"a", b"1")
    point = batch.savepoint()
    batch.put(b"a", b"2")
    batch.delete(b"b")
    batch.release(point)
    batch.seal()
    assert batch.changes() == [(b"a", b"2"), (b"b", None)]


def test_seal_with_an_open_savepoint_is_refused(settings: StateSettings) -> None:
    batch = make_state(settings).begin(now_ms=0)
    batch.savepoint()
    with pytest.raises(StateError):
        batch.seal()


# ---------------------------------------------------------------------- pipelined batches


def test_pipelined_batch_sees_earlier_uncommitted_writes(settings: StateSettings) -> None:
    state = make_state(settings)
    first = state.begin(now_ms=0)
    first.put(b"a", b"1")
    first.delete(b"b")
    first.seal()
    second = state.begin(now_ms=0)
    second.put(b"c", b"2")
    assert (second.get(b"a"), second.get(b"b")) == (b"1", None)
    assert first.get(b"c") is None  # an earlier batch never sees a later one
    assert committed(state) == {}


def test_pipelined_batch_reads_the_newest_pending_write_first(settings: StateSettings) -> None:
    state = make_state(settings)
    for value in (b"1", b"2"):
        batch = state.begin(now_ms=0)
        batch.put(b"a", value)
        batch.seal()
    assert state.begin(now_ms=0).get(b"a") == b"2"


def test_next_batch_waits_for_the_previous_seal(settings: StateSettings) -> None:
    state = make_state(settings)
    state.begin(now_ms=0)
    with pytest.raises(StateError):
        state.begin(now_ms=0)


def test_commit_out_of_order_is_refused(settings: StateSettings) -> None:
    state = make_state(settings)
    state.begin(now_ms=0).seal()
    second = state.begin(now_ms=0)
    second.seal()
    with pytest.raises(StateError):
        state.commit(second)


def test_commits_apply_in_order(settings: StateSettings) -> None:
    state = make_state(settings)
    first = state.begin(now_ms=0)
    first.put(b"a", b"1")
    first.put(b"b", b"1")
    first.seal()
    second = state.begin(now_ms=0)
    second.put(b"a", b"2")
    second.delete(b"b")
    second.seal()
    state.commit(first)
    assert committed(state) == {b"a": b"1", b"b": b"1"}
    assert second.get(b"a") == b"2"  # still reads its own write over the store
    state.commit(second)
    assert committed(state) == {b"a": b"2"}


def test_discard_on_abort_leaves_the_store_as_committed(settings: StateSettings) -> None:
    state = make_state(settings)
    first = state.begin(now_ms=0)
    first.put(b"a", b"1")
    first.seal()
    state.commit(first)
    aborted = []
    for value in (b"2", b"3"):
        batch = state.begin(now_ms=0)
        batch.put(b"a", value)
        batch.put(b"b", value)
        batch.seal()
        aborted.append(batch)
    state.discard_pending()
    assert committed(state) == {b"a": b"1"}
    rerun = state.begin(now_ms=0)
    assert (rerun.get(b"a"), rerun.get(b"b")) == (b"1", None)
    with pytest.raises(StateError):
        aborted[0].get(b"a")  # a discarded batch is closed for good
    with pytest.raises(StateError):
        state.commit(aborted[0])


def test_discard_since_a_batch_keeps_the_batches_before(settings: StateSettings) -> None:
    state = make_state(settings)
    batches = []
    for value in (b"1", b"2", b"3"):
        batch = state.begin(now_ms=0)
        batch.put(b"a", value)
        batch.seal()
        batches.append(batch)
    state.discard(batches[1])
    assert state.begin(now_ms=0).get(b"a") == b"1"
    assert list(state.pending)[:1] == batches[:1]


# ---------------------------------------------------------------------- restore and drop


def test_restore_applies_tombstones_and_the_last_value(settings: StateSettings) -> None:
    state = make_state(settings)
    read = state.restore([(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"b", None), (b"c", None), (b"d", b"4")])
    assert read == 6
    assert committed(state) == {b"a": b"2", b"d": b"4"}


def test_restore_may_come_in_pieces(settings: StateSettings) -> None:
    state = make_state(settings)
    state.restore((b"k%05d" % i, b"v") for i in range(25_000))  # more than one restore chunk
    state.restore((b"k%05d" % i, None) for i in range(0, 25_000, 2))
    assert len(committed(state)) == 12_500
    assert (committed(state)[b"k00001"], committed(state).get(b"k00002")) == (b"v", None)


def test_restore_with_pending_batches_is_refused(settings: StateSettings) -> None:
    state = make_state(settings)
    state.begin(now_ms=0)
    with pytest.raises(StateError):
        state.restore([(b"a", b"1")])


def test_drop_removes_the_partition_directory(tmp_path: Path) -> None:
    tables = make_tables(StateSettings(store="disk", dir=tmp_path), RAW, WINDOWED)
    part = tables.assign(SOURCE)
    batch = part.begin(now_ms=0)
    batch.table(RAW).put("a", b"1")
    batch.seal()
    part.commit(batch)
    folder = tmp_path / "activity-svc-0" / "p3"
    assert (folder / "raw" / "data").is_dir() and (folder / "recent" / "expiry").is_dir()
    tables.revoke([SOURCE])
    assert not folder.exists()
    assert SOURCE not in tables


def test_state_drop_discards_pending_and_removes_its_directory(tmp_path: Path) -> None:
    state = make_state(StateSettings(store="disk", dir=tmp_path), WINDOWED)
    pending = state.begin(now_ms=0)
    state.drop()
    assert not (tmp_path / "activity-svc-0" / "p3" / "recent").exists()
    with pytest.raises(StateError):
        pending.put(b"a", b"1")


def test_reassignment_starts_empty(settings: StateSettings) -> None:
    tables = make_tables(settings)
    batch = tables.assign(SOURCE).begin(now_ms=0)
    batch.table(RAW).put("a", b"1")
    batch.seal()
    tables[SOURCE].commit(batch)
    assert tables.assign(SOURCE).begin(now_ms=0).table(RAW).get("a") is None


# ---------------------------------------------------------------------- windowed tables


def test_expired_entry_reads_as_absent_before_any_sweep(settings: StateSettings) -> None:
    state = make_state(settings, WINDOWED)
    batch = state.begin(now_ms=1_000)
    batch.put(b"a", b"1")
    batch.advance(1_000 + HOUR_MS - 1)
    assert batch.get(b"a") == b"1"
    batch.advance(1_000 + HOUR_MS + 1)
    assert batch.get(b"a") is None


def test_windowed_values_carry_their_write_time(settings: StateSettings) -> None:
    state = make_state(settings, WINDOWED)
    batch = state.begin(now_ms=5_000)
    batch.put(b"a", b"1")
    batch.seal()
    assert batch.changes() == [(b"a", stamp(5_000, b"1"))]


def write(state: PartitionState, now_ms: int, **values: bytes | None) -> None:
    """One committed batch at ``now_ms`` (and its expiry sweep): put each value, delete each None."""
    batch = state.begin(now_ms)
    batch.expire(10_000)
    for key, value in values.items():
        if value is None:
            batch.delete(key.encode())
        else:
            batch.put(key.encode(), value)
    batch.seal()
    state.commit(batch)


def test_expiry_deletes_with_a_tombstone(settings: StateSettings) -> None:
    state = make_state(settings, WINDOWED)
    write(state, 1_000, old=b"1")
    write(state, 2_000, young=b"2")
    batch = state.begin(now_ms=1_000 + HOUR_MS + 1)
    assert batch.expire(limit=100) == 1
    batch.seal()
    assert batch.changes() == [(b"old", None)]
    state.commit(batch)
    assert list(committed(state)) == [b"young"]


def test_rewritten_entry_does_not_expire(settings: StateSettings) -> None:
    state = make_state(settings, WINDOWED)
    write(state, 1_000, a=b"1")
    write(state, 2_000, a=b"2")
    batch = state.begin(now_ms=1_000 + HOUR_MS + 1)
    assert batch.expire(limit=100) == 0
    assert batch.get(b"a") == b"2"


def test_expiry_leaves_a_key_a_pending_batch_wrote_again(settings: StateSettings) -> None:
    state = make_state(settings, WINDOWED)
    write(state, 1_000, a=b"1", b=b"1")
    pending = state.begin(now_ms=1_000 + HOUR_MS)
    pending.put(b"a", b"2")
    pending.delete(b"b")
    pending.seal()
    batch = state.begin(now_ms=1_000 + HOUR_MS + 1)
    assert batch.expire(limit=100) == 0
    batch.seal()
    assert batch.changes() == []


def test_expiry_goes_back_to_a_key_whose_pending_rewrite_was_discarded(settings: StateSettings) -> None:
    state = make_state(settings, WINDOWED)
    write(state, 1_000, a=b"1")
    pending = state.begin(now_ms=1_000 + HOUR_MS)
    pending.put(b"a", b"2")
    pending.seal()
    state.begin(now_ms=1_000 + HOUR_MS + 1).expire(limit=100)
    state.discard_pending()
    batch = state.begin(now_ms=1_000 + HOUR_MS + 1)
    assert batch.expire(limit=100) == 1


def test_one_batch_expires_no_more_than_its_limit(settings: StateSettings) -> None:
    state = make_state(settings, WINDOWED)
    write(state, 1_000, **{f"k{i}": b"v" for i in range(10)})
    first = state.begin(now_ms=1_000 + HOUR_MS + 1)
    assert first.expire(limit=4) == 4
    first.seal()
    state.commit(first)
    second = state.begin(now_ms=1_000 + HOUR_MS + 2)
    # The four index entries of keys now gone are cleaned first, then four more keys expire.
    assert second.expire(limit=8) == 4


def test_expiry_index_does_not_grow_with_rewrites(settings: StateSettings) -> None:
    state = make_state(settings, WINDOWED)
    assert state.index is not None
    for minute in range(600):  # ten hours of the same 20 keys written every minute
        write(state, minute * 60_000, **{f"k{i}": b"v" for i in range(20)})
    assert len(committed(state)) == 20
    # Within retention: at most 61 writes of each key (one an hour back, and the current one) are indexed.
    assert len(list(state.index.items())) <= 20 * 62


def test_windowed_table_expires_everything_once_writes_stop(settings: StateSettings) -> None:
    state = make_state(settings, WINDOWED)
    for minute in range(120):
        write(state, minute * 60_000, **{f"k{minute % 30}": b"v"})
    write(state, 120 * 60_000 + 2 * HOUR_MS)
    write(state, 120 * 60_000 + 2 * HOUR_MS + 1)
    assert state.index is not None
    assert (committed(state), list(state.index.items())) == ({}, [])


def test_restored_windowed_entries_expire(settings: StateSettings) -> None:
    state = make_state(settings, WINDOWED)
    state.restore([(b"old", stamp(1_000, b"1")), (b"young", stamp(HOUR_MS, b"2")), (b"gone", None)])
    batch = state.begin(now_ms=0)  # stream time continues from the newest restored entry
    assert batch.now_ms == HOUR_MS
    batch.advance(HOUR_MS + 1_001)
    assert batch.get(b"old") is None
    batch.seal()
    state.commit(batch)
    sweep = state.begin(now_ms=HOUR_MS + 1_001)
    assert sweep.expire(limit=100) == 1
    sweep.seal()
    assert sweep.changes() == [(b"old", None)]


def test_out_of_order_restored_entry_reads_absent_and_is_swept_later(settings: StateSettings) -> None:
    state = make_state(settings, WINDOWED)
    state.restore([(b"late", stamp(5_000, b"1")), (b"early", stamp(1_000, b"2"))])
    batch = state.begin(now_ms=1_001 + HOUR_MS)
    assert (batch.get(b"early"), batch.get(b"late")) == (None, b"1")
    batch.seal()
    state.commit(batch)
    sweep = state.begin(now_ms=5_001 + HOUR_MS)
    sweep.expire(limit=100)
    sweep.seal()
    assert sweep.changes() == [(b"early", None), (b"late", None)]


def test_windowed_restore_refuses_a_value_without_a_write_time(settings: StateSettings) -> None:
    state = make_state(settings, WINDOWED)
    with pytest.raises(StateError):
        state.restore([(b"a", b"1")])


def test_stream_time_never_goes_back(settings: StateSettings) -> None:
    state = make_state(settings, WINDOWED)
    write(state, 5_000, a=b"1")
    batch = state.begin(now_ms=1_000)
    batch.put(b"b", b"2")
    batch.advance(10)
    batch.seal()
    assert batch.now_ms == 5_000 and batch.changes() == [(b"b", stamp(5_000, b"2"))]


# ---------------------------------------------------------------------- what a handler sees


def test_table_view_round_trips_json_values(settings: StateSettings) -> None:
    batch = make_tables(settings, ACTIVITY).assign(SOURCE).begin(now_ms=0)
    activity = batch.table(ACTIVITY)
    activity.put("customer-1", {"count": 2, "last": "2024-01-01"})
    assert activity.get(b"customer-1") == {"count": 2, "last": "2024-01-01"}  # str and bytes keys are one key
    assert activity.get_or("customer-2", {"count": 0}) == {"count": 0}
    assert batch.table("activity") is activity


def test_unknown_table_is_a_key_error(settings: StateSettings) -> None:
    batch = make_tables(settings).assign(SOURCE).begin(now_ms=0)
    with pytest.raises(KeyError):
        batch.table("nope")


def test_changelog_names_each_table_topic_and_the_input_partition(settings: StateSettings) -> None:
    part = make_tables(settings, ACTIVITY, RAW).assign(SOURCE)
    batch = part.begin(now_ms=0)
    batch.table(RAW).put("b", b"2")
    batch.table(ACTIVITY).put("a", 1)
    batch.table(RAW).delete("a")
    batch.seal()
    assert batch.changelog() == [
        ChangelogRecord("activity-svc.activity.changelog", 3, b"a", b"1"),
        ChangelogRecord("activity-svc.raw.changelog", 3, b"a", None),
        ChangelogRecord("activity-svc.raw.changelog", 3, b"b", b"2"),
    ]


def test_partition_commit_and_discard_cover_every_table(settings: StateSettings) -> None:
    part = make_tables(settings, ACTIVITY, RAW).assign(SOURCE)
    kept = part.begin(now_ms=0)
    kept.table(ACTIVITY).put("a", 1)
    kept.seal()
    dropped = part.begin(now_ms=0)
    dropped.table(RAW).put("b", b"2")
    dropped.seal()
    part.discard(dropped)
    part.commit(kept)
    after = part.begin(now_ms=0)
    assert (after.table(ACTIVITY).get("a"), after.table(RAW).get("b")) == (1, None)
    assert part.pending == [after]


def test_partition_begin_sweeps_windowed_tables(settings: StateSettings) -> None:
    part = make_tables(settings, WINDOWED, RAW).assign(SOURCE)
    part.restore("recent", [(b"old", stamp(0, b"1"))])
    batch = part.begin(now_ms=HOUR_MS + 1)
    batch.seal()
    assert batch.changelog() == [ChangelogRecord(changelog_topic("activity-svc", "recent"), 3, b"old", None)]


def test_a_source_table_writes_no_changelog_of_its_own(settings: StateSettings) -> None:
    tables = Tables("activity-svc", "activity-svc-0", (RAW, ACTIVITY), settings, sources={"raw": "profiles.v1"})
    assert tables.topics["raw"] == "profiles.v1" and tables.changelogged == {
        "activity": changelog_topic("activity-svc", "activity")
    }
    batch = tables.assign(SOURCE).begin(now_ms=0)
    batch.table(RAW).put("a", b"1")
    batch.table(ACTIVITY).put("s", {"n": 1})
    batch.seal()
    assert [(r.topic, r.key) for r in batch.changelog()] == [(changelog_topic("activity-svc", "activity"), b"s")]
    with pytest.raises(ValueError, match="not among the tables"):
        Tables("activity-svc", "activity-svc-0", (RAW,), settings, sources={"nope": "x"})


def test_table_name_must_be_a_topic_name() -> None:
    with pytest.raises(ValueError):
        Table("no spaces")


def test_table_names_must_not_repeat(settings: StateSettings) -> None:
    with pytest.raises(ValueError):
        make_tables(settings, RAW, Table("raw"))


class CountingCodec:
    """JSON, counting each decode and encode."""

    def __init__(self) -> None:
        self.decoded = self.encoded = 0

    def encode(self, value: Any) -> bytes:
        self.encoded += 1
        return JSON.encode(value)

    def decode(self, data: bytes) -> Any:
        self.decoded += 1
        return JSON.decode(data)


def test_a_key_is_decoded_and_encoded_once_per_batch_however_often_it_is_used(settings: StateSettings) -> None:
    codec = CountingCodec()
    counted: Table[Any] = Table("counted", codec)
    part = make_tables(settings, counted).assign(SOURCE)
    first = part.begin(now_ms=0)
    first.table(counted).put("s", {"n": 0})
    first.seal()
    part.commit(first)
    codec.decoded = codec.encoded = 0
    batch = part.begin(now_ms=0)
    view = batch.table(counted)
    for _ in range(12):
        state = view.get_or("s", {"n": 0})
        view.put("s", {"n": state["n"] + 1})
    batch.seal()
    assert (codec.decoded, codec.encoded) == (1, 1)
    assert batch.changelog()[0].value == b'{"n":12}'


def test_a_rollback_forgets_the_objects_a_failed_call_changed_in_place(settings: StateSettings) -> None:
    part = make_tables(settings, ACTIVITY).assign(SOURCE)
    batch = part.begin(now_ms=0)
    view = batch.table(ACTIVITY)
    view.put("s", {"ids": ["a"]})
    point = batch.savepoint()
    state = view.get("s")
    assert state is not None
    state["ids"].append("b")  # changed in place by a call that then fails
    view.put("s", state)
    batch.rollback(point)
    assert view.get("s") == {"ids": ["a"]}
    batch.seal()
    assert [(r.key, r.value) for r in batch.changelog()] == [(b"s", b'{"ids":["a"]}')]


def test_a_batch_put_back_before_it_was_written_is_discarded_though_its_changelog_was_computed(
    settings: StateSettings,
) -> None:
    from shared.runtime.records import InputRecord, PartitionBatch
    from shared.runtime.stateful import CallState, StateBook

    tables = make_tables(settings, ACTIVITY)
    tables.assign(SOURCE)
    book = StateBook(tables)
    record = InputRecord("in", SOURCE, 0, b"k", b"v", [], 0, None)
    [batch], entries = book.begin([PartitionBatch("in", SOURCE, [record])])
    call = CallState(entries)
    batch.table(ACTIVITY).put("s", 1)
    call.seal()
    assert [r.key for r in book.changelog(entries)] == [b"s"]
    book.discard_unproduced()  # an outage found after settling: nothing of the batch went out
    book.committed()
    assert tables[SOURCE].begin(now_ms=0).table(ACTIVITY).get("s") is None
