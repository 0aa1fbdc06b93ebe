"""Key compaction (ADR 0013, 6): a compact topic's L1 region keeps the latest record of each
key at its original offset, drops tombstones after ``delete_retention_ms``, and every
reader (fetch, the SDK consumer, offsets-for-times) skips the gaps.

Records are compared whole (`StoredRecord`: partition, offset, timestamp, key, value,
headers), so "kept" means byte for byte. Time is a fake clock; crashes are injected faults
at each write of a step; readers racing a step run at each of its writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest

from lakelog.client import Client
from lakelog.errors import InvalidRequestError
from lakelog.log.records import ChainMeta, Entry
from lakelog.service import keycompact
from lakelog.service.compactor import CompactionSettings, CompactionStep, Compactor
from lakelog.service.context import EngineContext
from lakelog.service.engine import Engine
from lakelog.service.merge import Merger
from lakelog.storage.faults import (
    FailPoint,
    FaultInjector,
    FaultyLedgerStore,
    FaultyObjectStore,
    InjectedFaultError,
)
from lakelog.storage.keys import topic_segments_prefix
from lakelog.storage.ports import LedgerStore
from lakelog.types import Record, StoredRecord
from tests.integration.test_compactor_merge import (
    Clock,
    clock,
    collect_after_grace,
    make,
    meta_of,
    topic_of,
)
from tests.support import run_in_threads

__all__ = ["clock", "make"]  # fixtures shared with the merge tests

PARTITIONS = 2
DAY_MS = 24 * 3600 * 1000
KEYS = 5
APPENDS = 24
BACKENDS = [pytest.param("memory"), pytest.param("moto", marks=pytest.mark.moto)]
Log = dict[int, list[StoredRecord]]


@pytest.fixture(autouse=True)
def small_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replacement entries cover at most 3 old ones, so a step writes several."""
    monkeypatch.setattr(keycompact, "MAX_COVERED", 3)


def produce(engine: Engine, topic: str, clock: Clock, appends: int, start: int = 0) -> None:
    """Keyed records a second apart: new values of few keys, every sixth a tombstone, with
    headers; partition 1 also gets records placed there explicitly."""
    for i in range(start, start + appends):
        engine.append(
            topic,
            [
                Record(
                    key=b"k%d" % (i % KEYS),
                    value=None if i % 6 == 5 else b"v%d" % i,
                    headers=(("n", b"%d" % i), ("bin", b"\x80\x00")),
                    timestamp_ms=clock.ms,
                ),
                Record(key=b"p%d" % (i % 3), value=b"x" * (i + 1), partition=1),
            ],
        )
        clock.ms += 1000


def deletions(engine: Engine, topic: str, clock: Clock) -> None:
    """Six keys of partition 0, each written then deleted (a tombstone last), a second
    apart; then the records of `produce`."""
    for i in range(6):
        engine.append(topic, [Record(key=b"t%d" % i, value=b"v", partition=0)])
        engine.append(topic, [Record(key=b"t%d" % i, value=None, partition=0)])
        clock.ms += 1000
    produce(engine, topic, clock, APPENDS)


def make_topic(
    make: Callable[[], Engine],
    clock: Clock,
    topic: str,
    delete_retention_ms: int = 2 * DAY_MS,
    fill: Callable[[Engine, str, Clock], None] = lambda e, t, c: produce(e, t, c, APPENDS),
) -> tuple[Engine, Log]:
    """A compact topic whose day-old records were merged to L1 (one young append stays in
    the chain): its writer, and its log as a reader sees it before key compaction."""
    engine = make()
    engine.create_topic(
        topic,
        partitions=PARTITIONS,
        config={"cleanup_policy": "compact", "delete_retention_ms": delete_retention_ms},
    )
    fill(engine, topic, clock)
    clock.ms += DAY_MS + 1
    engine.append(topic, [Record(key=b"young", value=b"y", partition=p) for p in (0, 1)])
    merge(engine, topic, clock)
    return engine, read_log(make(), topic)


def with_survivors(make: Callable[[], Engine], clock: Clock, topic: str) -> tuple[Engine, Log, Log]:
    """`make_topic`, and the log key compaction should leave of it now (`survivors`)."""
    engine, before = make_topic(make, clock, topic)
    return engine, before, survivors(before, meta_of(engine, topic), clock.ms, 2 * DAY_MS)


def merge(engine: Engine, topic: str, clock: Clock) -> None:
    """Merge every day-old chain item into small L1 segments (one row group each)."""
    merger = Merger(engine.context)
    for _ in range(100):
        if merger.merge_topic(
            topic_of(engine, topic), max_items=5, target_bytes=60, now_ms=clock.ms
        ).done:
            return
    raise AssertionError("the merge never finished")


def compact(engine: Engine, topic: str, key_bytes: int = 64 << 20) -> list[CompactionStep]:
    """Compactor steps until the topic is done."""
    compactor = Compactor(
        engine.context, engine.gc, CompactionSettings(key_compaction_bytes=key_bytes)
    )
    steps = []
    for _ in range(100):
        steps.append(compactor.compact_topic(topic))
        if steps[-1].done:
            return steps
    raise AssertionError("the compactor never finished")


def read_log(engine: Engine, topic: str, max_records: int = 3) -> Log:
    """Every record of every partition, fetched from offset 0 following next_offset and
    cursors; each fetch's records are checked ascending and after the last one read."""
    log: Log = {}
    for partition in range(PARTITIONS):
        records: list[StoredRecord] = []
        offset, cursor = 0, None
        for _ in range(1000):
            result = engine.fetch(topic, partition, offset, max_records=max_records, cursor=cursor)
            offsets = [r.offset for r in result.records]
            assert offsets == sorted(set(offsets)) and all(o >= offset for o in offsets)
            assert not offsets or result.next_offset > offsets[-1]
            records.extend(result.records)
            if result.next_offset == result.high_watermark:
                break
            assert result.next_offset >= offset
            offset, cursor = result.next_offset, result.cursor
        else:
            raise AssertionError("the reader never reached the high watermark")
        log[partition] = records
    return log


def survivors(log: Log, meta: ChainMeta, now_ms: int, delete_retention_ms: int) -> Log:
    """What key compaction keeps of ``log``: below each L1 end, the last record of each key
    (a tombstone only while younger than ``delete_retention_ms``) and keyless records;
    everything from the L1 end on."""
    kept: Log = {}
    for partition, records in log.items():
        end = meta.l1_end[partition]
        latest = {r.key: r.offset for r in records if r.offset < end}
        kept[partition] = [
            r
            for r in records
            if r.offset >= end
            or r.key is None
            or (
                latest[r.key] == r.offset
                and (r.value is not None or r.timestamp_ms >= now_ms - delete_retention_ms)
            )
        ]
    return kept


def entries(engine: Engine, topic: str, partition: int) -> list[Entry]:
    return list(engine.context.ledger.entries(topic_of(engine, topic).topic_id, partition))


def objects(engine: Engine, topic: str) -> set[str]:
    prefix = topic_segments_prefix(topic_of(engine, topic).topic_id)
    return {info.key for info in engine.context.objects.list(prefix)}


def assert_valid(engine: Engine, topic: str, before: Log, after: Log) -> None:
    """A fresh reader sees a log between ``after`` (every survivor) and ``before``
    (nothing that was not there), in order, each record once; every segment an entry
    names exists."""
    named = {e.segment_key for p in range(PARTITIONS) for e in entries(engine, topic, p)}
    assert named - {""} <= objects(engine, topic)
    assert_between(read_log(engine, topic), before, after)


def assert_between(seen: Log, before: Log, after: Log) -> None:
    for partition in range(PARTITIONS):
        got = seen[partition]
        assert set(after[partition]) <= set(got) <= set(before[partition]), partition
        assert [r.offset for r in got] == sorted({r.offset for r in got})


# --- what is kept ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_compaction_keeps_the_latest_record_per_key_at_its_offset_byte_for_byte(
    make: Callable[[], Engine], clock: Clock, topic_name: str, backend_name: str
) -> None:
    # Given a compact topic whose day-old records are in L1
    engine, before = make_topic(make, clock, topic_name)
    meta = meta_of(engine, topic_name)
    entries_before = [len(entries(engine, topic_name, p)) for p in range(PARTITIONS)]

    # When the compactor runs to the end of its pass
    steps = compact(engine, topic_name)

    # Then each key's latest record is kept with its offset, timestamp, key, value and
    # headers, every older one is gone, and the chain's records are untouched
    expected = survivors(before, meta, clock.ms, 2 * DAY_MS)
    assert read_log(make(), topic_name) == expected
    assert sum(map(len, expected.values())) < sum(map(len, before.values())) - 20
    assert any("compact keys" in line for step in steps for line in step.actions)
    dropped = sum(map(len, before.values())) - sum(map(len, expected.values()))
    assert sum(step.records_compacted for step in steps) == dropped
    # ... the compacted end reached the L1 end, and the entries are fewer
    assert meta_of(engine, topic_name).compacted_end == meta.l1_end
    assert [len(entries(engine, topic_name, p)) for p in range(PARTITIONS)] < entries_before
    # ... and once gc ran, no segment is left that no entry names
    collect_after_grace(engine, topic_name, clock)
    reader = make()
    assert read_log(reader, topic_name) == expected
    named = {e.segment_key for p in range(PARTITIONS) for e in entries(reader, topic_name, p)}
    l1 = {key for key in objects(reader, topic_name) if "/L1/" in key}
    assert l1 == named - {""}


def test_a_second_pass_with_no_new_records_writes_nothing(
    make: Callable[[], Engine], clock: Clock, topic_name: str, backend: Any
) -> None:
    engine, _ = make_topic(make, clock, topic_name)
    compact(engine, topic_name)
    contents = backend.contents()

    steps = compact(engine, topic_name)

    assert backend.contents() == contents
    assert len(steps) == 1 and steps[0].done
    assert topic_name not in Compactor(engine.context, engine.gc).topics_needing_work()


def test_tombstones_stay_until_delete_retention_ms_then_go(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    # Given a compact topic whose keys t0..t5 were deleted 25 to 30 s before a day ago,
    # and a delete retention the oldest three of them have passed
    retention = DAY_MS + 27_500
    engine, before = make_topic(make, clock, topic_name, retention, deletions)
    tombstones = [r for r in before[0] + before[1] if r.value is None]
    latest_tombstones = [
        r for r in survivors(before, meta_of(engine, topic_name), 0, 0)[0] if r.value is None
    ]

    # When the compactor runs
    compact(engine, topic_name)

    # Then the latest tombstones younger than the retention are still read, older ones not
    cutoff = clock.ms - retention
    read = read_log(make(), topic_name)
    kept = [r for r in read[0] + read[1] if r.value is None]
    assert tombstones and latest_tombstones
    assert kept == [r for r in latest_tombstones if r.timestamp_ms >= cutoff]
    assert [r.key for r in kept if r.key is not None and r.key.startswith(b"t")] == [
        b"t3",
        b"t4",
        b"t5",
    ]
    assert not [r for r in read[0] if r.key in {b"t0", b"t1", b"t2"}]  # nor their values

    # When time passes beyond the retention and new records make the region due again
    clock.ms += retention
    produce(engine, topic_name, clock, APPENDS * 2, start=1000)
    clock.ms += DAY_MS + 1
    engine.append(topic_name, [Record(key=b"young", value=b"z", partition=0)])
    merge(engine, topic_name, clock)
    compact(engine, topic_name)

    # Then none of the six deleted keys is read any more, tombstone or value
    read = read_log(make(), topic_name)
    assert not [r for r in read[0] if r.key is not None and r.key.startswith(b"t")]


def test_keyless_records_are_refused_on_a_compact_topic_and_nothing_is_written(
    make: Callable[[], Engine], topic_name: str
) -> None:
    engine = make()
    engine.create_topic(topic_name, config={"cleanup_policy": "compact"})

    with pytest.raises(InvalidRequestError, match="record 1 has no key"):
        engine.append(topic_name, [Record(key=b"k", value=b"v"), Record(value=b"keyless")])

    assert engine.fetch(topic_name, 0, 0).high_watermark == 0
    engine.append(topic_name, [Record(key=b"k", value=None)])  # a keyed tombstone is fine


def test_a_topic_with_cleanup_policy_delete_is_not_key_compacted(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine, before = make_topic(make, clock, topic_name)
    engine.alter_topic(topic_name, config={"cleanup_policy": "delete", "retention_ms": -1})

    compact(engine, topic_name)

    assert read_log(make(), topic_name) == before
    assert meta_of(engine, topic_name).compacted_end == ()


def test_a_small_budget_compacts_window_by_window_while_the_region_is_due(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    # Given a compact topic in L1, and a step budget of about two entries
    engine, before = make_topic(make, clock, topic_name)
    meta = meta_of(engine, topic_name)

    # When the compactor runs to the end of its pass
    steps = compact(engine, topic_name, key_bytes=40)

    # Then it took several windows per partition, each from the log start, and stopped
    # once a partition's dirty bytes fell below half its region (Kafka's dirty ratio)
    windows = [line for step in steps for line in step.actions if "compact keys" in line]
    assert len(windows) > 2 * PARTITIONS
    assert_valid(make(), topic_name, before, survivors(before, meta, clock.ms, 2 * DAY_MS))
    moved = meta_of(engine, topic_name)
    for partition in range(PARTITIONS):
        region = entries(engine, topic_name, partition)
        clean = sum(e.size_bytes for e in region if e.last_offset < moved.compacted_end[partition])
        dirty = sum(e.size_bytes for e in region if e.base_offset >= moved.compacted_end[partition])
        assert 0 < moved.compacted_end[partition] <= meta.l1_end[partition]
        assert dirty < keycompact.MIN_CLEANABLE_RATIO * (clean + dirty) or not dirty


# --- readers --------------------------------------------------------------------------------


def test_a_fetch_from_any_offset_returns_the_next_survivors_and_skips_the_gaps(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine, before, expected = with_survivors(make, clock, topic_name)
    compact(engine, topic_name)
    reader = make()

    for partition in range(PARTITIONS):
        high = before[partition][-1].offset + 1
        for offset in range(high + 1):
            result = reader.fetch(topic_name, partition, offset, max_records=2)
            later = [r for r in expected[partition] if r.offset >= offset]
            assert result.records == later[: len(result.records)], (partition, offset)
            assert result.records or not later  # something when something is left
            if len(result.records) < len(later):
                assert later[len(result.records)].offset >= result.next_offset
            else:
                assert result.next_offset == high == result.high_watermark


def test_the_sdk_consumer_reads_a_compacted_topic_once_in_order(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine, _before, expected = with_survivors(make, clock, topic_name)
    compact(engine, topic_name)

    consumer = Client(transport=make()).consumer(
        topic_name, auto_offset_reset="earliest", max_poll_records=3, fetch_max_bytes=100
    )
    got: dict[int, list[tuple[Any, ...]]] = {p: [] for p in range(PARTITIONS)}
    total = sum(len(records) for records in expected.values())
    for _ in range(500):
        for batch in consumer.poll().values():
            for record in batch:
                got[record.partition].append(
                    (record.offset, record.timestamp, record.key, record.value, record.headers)
                )
        if sum(map(len, got.values())) >= total:
            break
    consumer.close()

    assert got == {
        p: [(r.offset, r.timestamp_ms, r.key, r.value, list(r.headers)) for r in expected[p]]
        for p in range(PARTITIONS)
    }


def test_offsets_for_times_over_a_compacted_region_name_the_first_survivor(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine, before, expected = with_survivors(make, clock, topic_name)
    compact(engine, topic_name)
    reader = make()

    for partition in range(PARTITIONS):
        stamps = sorted({r.timestamp_ms for r in before[partition]})
        for stamp in [stamps[0] - 1, *stamps, stamps[-1] + 1]:
            first = next((r for r in expected[partition] if r.timestamp_ms >= stamp), None)
            found = reader.offset_for_time(topic_name, partition, stamp)
            assert found == (None if first is None else first.offset), (partition, stamp)


# --- crashes, races, dry runs ---------------------------------------------------------------


class _NthPass(FaultInjector):
    """Fails ``point`` at its ``n``-th pass only."""

    def __init__(self, point: FailPoint, n: int) -> None:
        super().__init__()
        self._point, self._n = point, n
        self.passes: Counter[FailPoint] = Counter()

    def should_fail(self, point: FailPoint) -> bool:
        self.passes[point] += 1
        return point == self._point and self.passes[point] == self._n


WRITES = [
    (FailPoint.BEFORE_PUT, 1),
    (FailPoint.AFTER_PUT, 1),
    (FailPoint.BEFORE_ENTRY_REPLACE, 1),
    (FailPoint.AFTER_ENTRY_PUT, 1),
    (FailPoint.AFTER_ENTRY_REPLACE, 1),
    (FailPoint.BEFORE_ENTRY_REPLACE, 2),
    (FailPoint.AFTER_ENTRY_PUT, 2),
    (FailPoint.AFTER_ENTRY_REPLACE, 2),
    (FailPoint.BEFORE_META_UPDATE, 1),
    (FailPoint.AFTER_META_UPDATE, 1),
    pytest.param(FailPoint.AFTER_ENTRY_PUT, 2, marks=pytest.mark.moto, id="moto-after_entry_put-2"),
]


@pytest.mark.parametrize(("point", "n"), WRITES)
def test_a_step_that_crashes_at_any_write_then_reruns_ends_consistent(
    make: Callable[[], Engine], clock: Clock, topic_name: str, point: FailPoint, n: int
) -> None:
    # Given a compact topic in L1, and a compactor whose stores fail at one write
    engine, before, after = with_survivors(make, clock, topic_name)
    base = make().context
    injector = _NthPass(point, n)
    crashing = EngineContext.create(
        FaultyObjectStore(base.objects, injector),
        FaultyLedgerStore(base.ledger, injector),
        base.catalog,
        clock,
    )

    # When its step crashes there
    with pytest.raises(InjectedFaultError):
        Compactor(crashing, engine.gc).compact_topic(topic_name)

    # Then readers see a valid log at once, and after gc past its grace period
    assert_valid(make(), topic_name, before, after)
    collect_after_grace(engine, topic_name, clock)
    assert_valid(make(), topic_name, before, after)

    # When the compactor runs again to the end, then gc
    compact(engine, topic_name)
    collect_after_grace(engine, topic_name, clock)

    # Then the log is compacted, and nothing unreferenced survives
    reader = make()
    assert read_log(reader, topic_name) == after
    named = {e.segment_key for p in range(PARTITIONS) for e in entries(reader, topic_name, p)}
    assert {key for key in objects(reader, topic_name) if "/L1/" in key} == named - {""}
    for partition in range(PARTITIONS):  # entries are dense again: no overlap left over
        spans = [(e.base_offset, e.last_offset) for e in entries(reader, topic_name, partition)]
        assert [low for low, _ in spans] == [0] + [high + 1 for _, high in spans[:-1]]


class _Racing(FaultyLedgerStore):
    """A ledger that runs ``before`` ahead of each write of a key compaction step: the put
    of a replacement entry and each of its deletions (highest offset first, as
    `LedgerStore.replace_entry` does them)."""

    def __init__(self, inner: LedgerStore, before: Callable[[str], None]) -> None:
        super().__init__(inner, FaultInjector())
        self._before = before

    def replace_entry(
        self, topic_id: str, partition: int, entry: Entry, replaced: Sequence[Entry]
    ) -> bool:
        self._before("replace")
        last = replaced[-1]
        if not self.inner.replace_entry(topic_id, partition, entry, [last]):
            return False
        for old in reversed(replaced[:-1]):  # each deletion alone, highest first
            self._before("deletion")
            self.inner.replace_entry(topic_id, partition, entry, [old, last])
        self._before("replaced")
        return True

    def update_meta(self, topic_id: str, meta: ChainMeta, expected_version: int) -> bool:
        self._before("meta")
        return super().update_meta(topic_id, meta, expected_version)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_fetches_racing_each_write_of_a_step_see_every_survivor_once_in_order(
    make: Callable[[], Engine], clock: Clock, topic_name: str, backend_name: str
) -> None:
    # Given a compact topic in L1, and readers that read the whole log (each from a
    # fresh process, and one that keeps its caches) before each write of a compaction
    engine, before, after = with_survivors(make, clock, topic_name)
    warm = make()
    writes: list[str] = []

    def read(write: str) -> None:
        writes.append(write)
        assert_between(read_log(make(), topic_name), before, after)
        assert_between(read_log(warm, topic_name, max_records=2), before, after)

    base = make().context
    racing = EngineContext.create(base.objects, _Racing(base.ledger, read), base.catalog, clock)

    # When the compaction runs
    compactor = Compactor(racing, engine.gc)
    for _ in range(100):
        if compactor.compact_topic(topic_name).done:
            break

    # Then every reader saw a valid log at every write, and the final log is compacted
    assert {"replace", "deletion", "replaced", "meta"} <= set(writes)
    assert read_log(warm, topic_name) == after


def compacted_underneath(reader: Engine, writer: Engine, topic: str, clock: Clock) -> list[bool]:
    """Make ``reader``'s first L1 entry Query run key compaction and gc of the replaced
    segments right after it read the entries (before its GETs); True in the list once."""
    ledger = reader.context.ledger
    raced: list[bool] = []

    class CompactedUnderneath:
        def __getattr__(self, name: str) -> Any:
            return getattr(ledger, name)

        def query_entries(
            self, topic_id: str, partition: int, from_offset: int, limit: int
        ) -> list[Entry]:
            found = ledger.query_entries(topic_id, partition, from_offset, limit)
            if not raced:
                raced.append(True)
                compact(writer, topic)
                assert collect_after_grace(writer, topic, clock)
            return found

    reader.context.ledger = CompactedUnderneath()  # type: ignore[assignment]
    return raced


def test_a_fetch_whose_l1_segment_was_replaced_and_collected_after_it_read_the_entries(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    # Given a compact topic in L1, and a reader that has read the entries when key
    # compaction replaces them and gc deletes the old segments, before its GETs
    engine, _before, after = with_survivors(make, clock, topic_name)
    reader = make()
    raced = compacted_underneath(reader, engine, topic_name, clock)

    # Then its fetch reads the entries again and returns the survivors
    result = reader.fetch(topic_name, 0, 0, max_records=3)
    assert raced
    assert result.records == after[0][:3]


def test_offsets_for_times_whose_l1_segment_was_replaced_and_collected_meanwhile(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine, before, after = with_survivors(make, clock, topic_name)
    reader = make()
    raced = compacted_underneath(reader, engine, topic_name, clock)
    # (the first record was superseded: its entry and segment were replaced)
    assert after[1][0].offset > 0

    found = reader.offset_for_time(topic_name, 1, before[1][0].timestamp_ms)

    assert raced
    assert found == after[1][0].offset


def test_a_dry_run_reports_the_compaction_and_writes_nothing(
    make: Callable[[], Engine], clock: Clock, topic_name: str, backend: Any
) -> None:
    engine, before = make_topic(make, clock, topic_name)
    assert topic_name in Compactor(engine.context, engine.gc).topics_needing_work()
    contents = backend.contents()

    step = Compactor(engine.context, engine.gc).compact_topic(topic_name, dry_run=True)

    assert backend.contents() == contents
    assert step.done
    assert any(line.startswith(f"compact keys of {topic_name}-0") for line in step.actions)
    assert read_log(make(), topic_name) == before


def test_two_compactors_racing_on_one_partition_end_with_one_valid_log(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    # Given a compact topic in L1, and a compactor that another one overtakes between
    # its plan and its first replacement
    engine, _before, after = with_survivors(make, clock, topic_name)
    overtaken: list[CompactionStep] = []

    def overtake(write: str) -> None:
        if write == "replace" and not overtaken:
            overtaken.extend(compact(make(), topic_name))

    base = make().context
    slow = EngineContext.create(base.objects, _Racing(base.ledger, overtake), base.catalog, clock)

    # When the slow one goes on with its step
    step = Compactor(slow, engine.gc).compact_topic(topic_name)

    # Then its replacements found the entries changed and wrote nothing more, and the log
    # is the other one's, compacted; gc then leaves only what the entries name
    assert overtaken and "lost a race" in step.actions[-1]
    assert read_log(make(), topic_name) == after
    collect_after_grace(engine, topic_name, clock)
    assert_valid(make(), topic_name, after, after)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_compactors_and_readers_running_in_threads_agree_on_one_log(
    make: Callable[[], Engine], clock: Clock, topic_name: str, backend_name: str
) -> None:
    # Given a compact topic in L1, two compactors and two readers at once
    _, before, after = with_survivors(make, clock, topic_name)
    finished: list[int] = []  # list.append is atomic: the compactors that are done
    reads: list[int] = []

    def work(index: int) -> None:
        engine = make()
        if index < 2:
            compact(engine, topic_name)
            finished.append(index)
            return
        while len(finished) < 2 or not reads:
            assert_between(read_log(engine, topic_name, max_records=2 + index), before, after)
            reads.append(index)

    run_in_threads(4, work)

    # Then every read was a valid log, and the log ends compacted
    assert reads
    assert read_log(make(), topic_name) == after


def test_a_rerun_that_keeps_more_than_the_crashed_step_still_leaves_dense_entries(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    # Given a partition whose only record to drop is an expired tombstone, and a step that
    # crashed between its replacement's put and the deletions of the entries it covers
    def unique_keys(engine: Engine, topic: str, clock: Clock) -> None:
        engine.append(topic, [Record(key=b"gone", value=None, partition=0)])
        for i in range(6):
            engine.append(topic, [Record(key=b"u%d" % i, value=b"v", partition=0)])

    engine, before = make_topic(make, clock, topic_name, 0, unique_keys)
    base = make().context
    injector = _NthPass(FailPoint.AFTER_ENTRY_PUT, 1)
    crashing = EngineContext.create(
        base.objects, FaultyLedgerStore(base.ledger, injector), base.catalog, clock
    )
    with pytest.raises(InjectedFaultError):
        Compactor(crashing, engine.gc).compact_topic(topic_name)
    spans = [(e.base_offset, e.last_offset) for e in entries(engine, topic_name, 0)]
    assert spans[0][0] == spans[1][0] == 0  # the replacement overlaps the entries it covers

    # When the tombstone is kept again (a longer delete retention) and the step reruns
    engine.alter_topic(topic_name, config={"delete_retention_ms": 10 * DAY_MS})
    compact(make(), topic_name)

    # Then the overlapped entries are replaced too: the entries are dense, the log whole
    spans = [(e.base_offset, e.last_offset) for e in entries(engine, topic_name, 0)]
    assert [low for low, _ in spans] == [0] + [high + 1 for _, high in spans[:-1]]
    assert read_log(make(), topic_name) == before


# --- a query engine reading the bucket ------------------------------------------------------


def test_duckdb_reads_each_kept_record_at_its_offset_from_the_compacted_l1_segments(
    make: Callable[[], Engine], clock: Clock, topic_name: str, tmp_path: Path
) -> None:
    # Given a compact topic merged to L1 and key compacted (its replaced segments collected)
    engine, before = make_topic(make, clock, topic_name)
    meta = meta_of(engine, topic_name)
    compact(engine, topic_name)
    collect_after_grace(engine, topic_name, clock)
    expected = survivors(before, meta, clock.ms, 2 * DAY_MS)

    # When DuckDB reads the topic's L1 objects as they lie in the bucket
    prefix = topic_segments_prefix(topic_of(engine, topic_name).topic_id)
    l1 = [info for info in engine.context.objects.list(prefix) if "/L1/" in info.key]
    for index, info in enumerate(l1):
        body = engine.context.objects.get_range(info.key, 0, info.size)
        (tmp_path / f"{index}.parquet").write_bytes(body)
    relation = duckdb.sql(
        'SELECT partition, "offset", key, value FROM read_parquet('
        f"'{tmp_path}/*.parquet') ORDER BY partition, \"offset\""
    )
    assert relation is not None
    rows = relation.fetchall()

    # Then it sees exactly the records a fetch below the L1 end returns, with their offsets
    assert rows == [
        (r.partition, r.offset, r.key, r.value)
        for p in range(PARTITIONS)
        for r in expected[p]
        if r.offset < meta.l1_end[p]
    ]
