"""Merge to L1 (ADR 0012, 1.7): the compactor's merge moves old chain items into
per-partition L1 segments, and every reader still sees exactly the same log.

Records are compared whole (`StoredRecord`: partition, offset, timestamp, key, value,
headers), so "the same" means byte for byte and in order. Time is a fake clock; crashes
are injected faults; concurrent appends are interleaved at named points of the merge.

The merge deletes nothing: the compactor's chain truncation deletes the items below the
chain start a grace period after the merge moved it (`truncate_after_grace`), and gc then
deletes the L0 segments they named (`collect_after_grace`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from lakelog.client import Client
from lakelog.limits import record_size
from lakelog.log.records import ChainMeta, Entry
from lakelog.service import fetch as fetch_module
from lakelog.service import merge as merge_module
from lakelog.service.compactor import CompactionStep, Compactor
from lakelog.service.context import EngineContext
from lakelog.service.engine import Engine
from lakelog.service.merge import Merger, MergeResult
from lakelog.storage.faults import (
    FailPoint,
    FaultInjector,
    FaultyLedgerStore,
    InjectedFaultError,
)
from lakelog.storage.keys import l0_segment_key_from_id, topic_segments_prefix
from lakelog.storage.ports import LedgerStore, TopicRecord
from lakelog.types import FetchPosition, FetchResult, Record, StoredRecord
from tests.conftest import MakeFaulty
from tests.support import run_in_threads

PARTITIONS = 3
DAY_MS = 24 * 3600 * 1000
BACKENDS = [pytest.param("memory"), pytest.param("moto", marks=pytest.mark.moto)]


class Clock:
    """The engines' clock: starts at wall time (objects carry wall-time ages), moves by hand."""

    def __init__(self) -> None:
        self.ms = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(make_engine: Callable[..., Engine], clock: Clock) -> Callable[[], Engine]:
    """Engines on the test's backend and clock, each with its own caches (a process each)."""
    return lambda: make_engine(clock_ms=clock, sleep=lambda _s: None)


def fill(engine: Engine, topic: str, clock: Clock, appends: int = 24) -> None:
    """Appends of keyed, keyless and explicitly placed records with headers, a second apart.

    Timestamps go up with the clock except every fifth append, which is an hour late.
    """
    for i in range(appends):
        late = 3600_000 if i % 5 == 4 else 0
        stamp = clock.ms - late
        engine.append(
            topic,
            [
                Record(value=b"keyed-%d" % i, key=b"k%d" % (i % 7), timestamp_ms=stamp),
                Record(
                    value=b"placed-%d" % i,
                    partition=i % PARTITIONS,
                    headers=(("trace", b"t%d" % i), ("empty", b"")),
                    timestamp_ms=stamp + 1,
                ),
                Record(value=None, key=b"tomb", timestamp_ms=stamp + 2),
                Record(value=b"\x00\xff" * (i + 1), headers=(("bin", b"\x80\x81"),)),
            ],
        )
        clock.ms += 1000


def day_old_topic(
    make: Callable[[], Engine], clock: Clock, topic: str, young: int = 0
) -> tuple[Engine, dict[int, list[StoredRecord]]]:
    """A topic of 24 appends a day old, then ``young`` fresh appends: its writer, and every
    record as a fresh reader sees it before any merge."""
    engine = make()
    engine.create_topic(topic, partitions=PARTITIONS)
    fill(engine, topic, clock)
    clock.ms += DAY_MS + 1
    if young:
        fill(engine, topic, clock, appends=young)
    return engine, read_all(make(), topic)


def read_all(engine: Engine, topic: str, max_records: int = 5) -> dict[int, list[StoredRecord]]:
    """Every record of every partition, fetched from offset 0 following cursors."""
    found: dict[int, list[StoredRecord]] = {}
    for partition in range(PARTITIONS):
        records: list[StoredRecord] = []
        offset, cursor = 0, None
        while True:
            result = engine.fetch(topic, partition, offset, max_records=max_records, cursor=cursor)
            records.extend(result.records)
            if result.next_offset == result.high_watermark:
                break
            assert result.records, "a fetch below the high watermark returns records"
            offset, cursor = result.next_offset, result.cursor
        found[partition] = records
    return found


def merge_all(
    engine: Engine, topic: str, now_ms: int, *, max_items: int = 7, target_bytes: int = 400
) -> list[MergeResult]:
    """Merge steps until the merge reports it is done."""
    merger = Merger(engine.context)
    record = engine.context.catalog.get_topic(topic)
    assert record is not None
    steps = []
    for _ in range(100):
        steps.append(
            merger.merge_topic(
                record, max_items=max_items, target_bytes=target_bytes, now_ms=now_ms
            )
        )
        if steps[-1].done:
            return steps
    raise AssertionError("the merge never finished")


def topic_of(engine: Engine, topic: str) -> TopicRecord:
    record = engine.context.catalog.get_topic(topic)
    assert record is not None
    return record


def meta_of(engine: Engine, topic: str) -> ChainMeta:
    meta = engine.context.ledger.read_meta(topic_of(engine, topic).topic_id)
    assert meta is not None
    return meta


def objects(engine: Engine, topic: str) -> list[str]:
    prefix = topic_segments_prefix(topic_of(engine, topic).topic_id)
    return [info.key for info in engine.context.objects.list(prefix)]


def entries(engine: Engine, topic: str) -> list[Entry]:
    topic_id = topic_of(engine, topic).topic_id
    return [e for p in range(PARTITIONS) for e in engine.context.ledger.entries(topic_id, p)]


def referenced(engine: Engine, topic: str) -> set[str]:
    """Every segment a chain item or an L1 entry names."""
    topic_id = topic_of(engine, topic).topic_id
    named = {e.segment_key for e in entries(engine, topic)}
    for item in engine.context.ledger.chain(topic_id):
        if item.segment_id is not None:
            named.add(l0_segment_key_from_id(topic_id, item.segment_id))
    return named


def truncate_after_grace(engine: Engine, topic: str, clock: Clock) -> list[CompactionStep]:
    """Compactor steps once the grace period after the chain start moved has passed: they
    delete the chain items below the chain start (and merge whatever else is ready)."""
    clock.ms += engine.gc.grace_ms + 1
    compactor = Compactor(engine.context, engine.gc)
    steps = []
    for _ in range(100):
        steps.append(compactor.compact_topic(topic))
        if steps[-1].done:
            return steps
    raise AssertionError("the compactor never finished")


def collect_after_grace(engine: Engine, topic: str, clock: Clock) -> list[str]:
    """gc of the topic once every object written so far is past the grace period."""
    clock.ms = max(clock.ms, int(time.time() * 1000)) + 2 * 3600_000
    return engine.gc.collect_topic(topic)


def assert_consistent(engine: Engine, topic: str, expected: dict[int, list[StoredRecord]]) -> None:
    """Every referenced segment exists and a fresh reader sees ``expected`` exactly."""
    present = set(objects(engine, topic))
    assert referenced(engine, topic) <= present
    assert read_all(engine, topic) == expected


# --- the log is unchanged ------------------------------------------------------------------


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_merge_keeps_every_record_byte_for_byte_and_reduces_the_object_count(
    make: Callable[[], Engine], clock: Clock, topic_name: str, backend_name: str
) -> None:
    # Given a topic of keyed, keyless and placed records with headers, a day old
    writer = make()
    writer.create_topic(topic_name, partitions=PARTITIONS)
    fill(writer, topic_name, clock)
    before = read_all(make(), topic_name)
    hw_before = {p: len(before[p]) for p in range(PARTITIONS)}
    segments_before = len(objects(writer, topic_name))
    clock.ms += DAY_MS + 1
    fill(writer, topic_name, clock, appends=2)  # young: they stay in the chain
    expected = read_all(make(), topic_name)

    # When the merge runs to the end, the merged items are deleted after the grace
    # period, and gc runs after its own
    steps = merge_all(make(), topic_name, clock.ms)
    assert referenced(make(), topic_name) >= set(objects(make(), topic_name))  # no deletes yet
    truncated = truncate_after_grace(make(), topic_name, clock)
    collected = collect_after_grace(make(), topic_name, clock)

    # Then every record reads back identical, in order, from a fresh process
    reader = make()
    assert read_all(reader, topic_name) == expected
    assert read_all(reader, topic_name, max_records=1000) == expected
    # ... the merged offsets are below the L1 end and the chain starts after them
    meta = meta_of(reader, topic_name)
    assert meta.l1_end == tuple(hw_before[p] for p in range(PARTITIONS))
    assert meta.chain_start == sum(step.items_merged for step in steps) == 25  # genesis too
    assert sum(step.items_removed for step in truncated) == 25
    assert sum(step.segments_merged for step in truncated) == 0  # nothing more to merge
    # ... and the truncation deleted the merged L0 segments after their items, leaving
    # gc nothing: fewer objects than before the merge
    deleted = sum(step.segments_deleted for step in truncated)
    assert deleted == segments_before == sum(step.segments_merged for step in steps)
    assert collected == []
    assert len(objects(reader, topic_name)) < segments_before
    assert set(objects(reader, topic_name)) == referenced(reader, topic_name)
    assert all("/L1/" in e.segment_key for e in entries(reader, topic_name))


def test_a_merge_leaves_items_younger_than_a_day_in_the_chain(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine = make()
    engine.create_topic(topic_name, partitions=PARTITIONS)
    fill(engine, topic_name, clock, appends=4)

    steps = merge_all(engine, topic_name, clock.ms + DAY_MS - 2_500)

    # Only genesis and the first two appends (at +0 s and +1 s of 4) are a day old then
    assert [step.items_merged for step in steps] == [3]
    assert meta_of(engine, topic_name).chain_start == 3


def test_one_fetch_reads_across_the_l1_end_into_the_chain(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine, expected = day_old_topic(make, clock, topic_name, young=3)
    merge_all(engine, topic_name, clock.ms)
    l1_end = meta_of(engine, topic_name).l1_end

    reader = make()
    # One fetch from offset 0 returns the L1 records and the chain's after them
    for partition in range(PARTITIONS):
        result = reader.fetch(topic_name, partition, 0, max_records=1000)
        assert result.records == expected[partition]
        assert len(result.records) > l1_end[partition]
        assert result.next_offset == result.high_watermark == len(expected[partition])
    # ... and so does one multi-partition fetch, one budget for all
    positions = [FetchPosition(topic_name, p, l1_end[p] - 2) for p in range(PARTITIONS)]
    many = reader.fetcher.fetch_many(positions, 1 << 20, 10_000)
    for partition, result in enumerate(many):
        assert isinstance(result, FetchResult)
        assert result.records == expected[partition][l1_end[partition] - 2 :]


def test_a_position_s_own_max_bytes_bounds_its_l1_and_chain_records(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine, expected = day_old_topic(make, clock, topic_name, young=3)
    merge_all(engine, topic_name, clock.ms)
    l1_end = meta_of(engine, topic_name).l1_end
    reader = make()

    def sizes(records: list[StoredRecord]) -> list[int]:
        return [record_size(r.key, r.value, r.headers) for r in records]

    for partition in range(PARTITIONS):
        # a limit that ends inside L1, and one that ends on the chain after the L1 end
        inside = sum(sizes(expected[partition][: l1_end[partition] - 1]))
        across = sum(sizes(expected[partition][: l1_end[partition] + 1]))
        for limit in (inside, across):
            # Read the partition with it to the end: each fetch is a run of the log within
            # the limit (planned from averages, it may stop a little before it), and the
            # next one goes on from exactly there
            records: list[StoredRecord] = []
            offset, cursor = 0, None
            while offset < len(expected[partition]):
                positions = [FetchPosition(topic_name, partition, offset, cursor, limit)]
                (result,) = reader.fetcher.fetch_many(positions, 1 << 20, 10_000)
                assert isinstance(result, FetchResult)
                assert result.records, "a fetch below the high watermark returns records"
                assert sum(sizes(result.records)) <= limit or len(result.records) == 1
                assert result.next_offset == offset + len(result.records)
                records.extend(result.records)
                offset, cursor = result.next_offset, result.cursor
            assert records == expected[partition]


def test_a_fetch_stopped_by_its_budget_inside_l1_resumes_from_its_cursor(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine, expected = day_old_topic(make, clock, topic_name)
    merge_all(engine, topic_name, clock.ms, target_bytes=100)

    reader = make()
    first = reader.fetch(topic_name, 0, 1, max_records=2)
    second = reader.fetch(topic_name, 0, first.next_offset, max_records=3, cursor=first.cursor)

    assert first.records == expected[0][1:3]
    assert second.records == expected[0][3:6]


def test_the_sdk_consumer_reads_every_record_across_levels(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine, expected = day_old_topic(make, clock, topic_name, young=2)
    merge_all(engine, topic_name, clock.ms)

    client = Client(transport=make())
    consumer = client.consumer(
        topic_name, auto_offset_reset="earliest", max_poll_records=4, fetch_max_bytes=200
    )
    got: dict[int, list[tuple[Any, ...]]] = {p: [] for p in range(PARTITIONS)}
    total = sum(len(records) for records in expected.values())
    for _ in range(500):
        for batch in consumer.poll().values():
            for record in batch:
                got[record.partition].append(
                    (
                        record.offset,
                        record.timestamp,
                        record.key,
                        record.value,
                        tuple(record.headers),
                    )
                )
        if sum(len(records) for records in got.values()) >= total:
            break
    consumer.close()

    assert got == {
        p: [(r.offset, r.timestamp_ms, r.key, r.value, r.headers) for r in expected[p]]
        for p in range(PARTITIONS)
    }


def test_cursors_taken_before_a_merge_read_on_correctly_after_it(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    # Given readers parked at every offset of every partition, with their cursors
    engine, expected = day_old_topic(make, clock, topic_name, young=2)
    parked = []
    for partition in range(PARTITIONS):
        for offset in range(len(expected[partition])):
            result = engine.fetch(topic_name, partition, offset, max_records=1)
            parked.append((partition, result.next_offset, result.cursor))

    # When the merge moves the chain's start past most of them
    merge_all(make(), topic_name, clock.ms)

    # Then each cursor still reads exactly the records after its position
    reader = make()
    for partition, offset, cursor in parked:
        result = reader.fetch(topic_name, partition, offset, max_records=1000, cursor=cursor)
        assert result.records == expected[partition][offset:], (partition, offset)


def test_offsets_for_times_are_the_same_before_and_after_a_merge(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine, expected = day_old_topic(make, clock, topic_name, young=2)
    stamps = sorted({r.timestamp_ms for records in expected.values() for r in records})
    probes = [stamps[0] - 1, *stamps, stamps[-1] + 1]

    def answers(reader: Engine) -> list[int | None]:
        return [reader.offset_for_time(topic_name, p, t) for p in range(PARTITIONS) for t in probes]

    unmerged = answers(make())
    merge_all(engine, topic_name, clock.ms)

    merged = answers(make())
    assert merged == unmerged
    # ... and each answer is the first record at or after the time
    for index, (partition, probe) in enumerate((p, t) for p in range(PARTITIONS) for t in probes):
        first = next((r.offset for r in expected[partition] if r.timestamp_ms >= probe), None)
        assert merged[index] == first


# --- crashes, concurrency, dry run ---------------------------------------------------------

CRASH_POINTS = [
    FailPoint.AFTER_PUT,  # an L1 segment stored, no entry names it
    FailPoint.AFTER_ENTRIES_PUT,  # entries put, the meta item not moved
    FailPoint.BEFORE_META_UPDATE,
    FailPoint.AFTER_META_UPDATE,  # the meta item moved, the items below still there
    # the truncation a grace period later, deleting the merged items
    FailPoint.BEFORE_ITEMS_DELETE,
    FailPoint.AFTER_ITEMS_DELETE,
]


@pytest.mark.parametrize(
    "point",
    [
        *CRASH_POINTS,
        # and on DynamoDB, where entries put before the crash are found by a real Query
        pytest.param(
            FailPoint.AFTER_ENTRIES_PUT, id="moto-after_entries_put", marks=pytest.mark.moto
        ),
        pytest.param(
            FailPoint.AFTER_META_UPDATE, id="moto-after_meta_update", marks=pytest.mark.moto
        ),
    ],
    ids=str,
)
def test_a_merge_that_crashes_at_any_step_then_reruns_ends_consistent(
    make: Callable[[], Engine],
    make_faulty: MakeFaulty,
    clock: Clock,
    topic_name: str,
    point: FailPoint,
) -> None:
    # Given a day-old topic, and a merge, then the truncation of the merged items, that
    # crash at one write
    _, expected = day_old_topic(make, clock, topic_name, young=2)
    faulty, injector = make_faulty(clock_ms=clock)
    injector.arm(point)
    with pytest.raises(InjectedFaultError):
        merge_all(faulty, topic_name, clock.ms)
        truncate_after_grace(faulty, topic_name, clock)

    # Then readers see the same log at once, and after gc past its grace period
    assert_consistent(make(), topic_name, expected)
    collect_after_grace(make(), topic_name, clock)
    assert_consistent(make(), topic_name, expected)

    # When the merge runs again to the end, then the truncation and gc
    merge_all(faulty, topic_name, clock.ms)
    truncate_after_grace(faulty, topic_name, clock)
    collect_after_grace(make(), topic_name, clock)

    # Then the log is unchanged, fully merged, and nothing unreferenced survives
    reader = make()
    assert_consistent(reader, topic_name, expected)
    meta = meta_of(reader, topic_name)
    assert meta.chain_start == 25
    assert [
        item.seq for item in reader.context.ledger.chain(topic_of(reader, topic_name).topic_id)
    ] == [25, 26]
    assert set(objects(reader, topic_name)) == referenced(reader, topic_name)
    # ... and no offset is named by two entries (the rerun continued after the first run's)
    for partition in range(PARTITIONS):
        topic_id = topic_of(reader, topic_name).topic_id
        spans = [
            (e.base_offset, e.last_offset)
            for e in reader.context.ledger.entries(topic_id, partition)
        ]
        assert [low for low, _ in spans] == [0] + [high + 1 for _, high in spans[:-1]]
        assert spans[-1][1] + 1 == meta.l1_end[partition]


class _Interleaving(FaultyLedgerStore):
    """A ledger that runs ``before`` ahead of each named step of a merge."""

    def __init__(self, inner: LedgerStore, before: Callable[[str], None]) -> None:
        super().__init__(inner, FaultInjector())
        self._before = before

    def put_entries(self, topic_id: str, partition: int, entries: Sequence[Entry]) -> None:
        self._before("entries")
        super().put_entries(topic_id, partition, entries)

    def update_meta(self, topic_id: str, meta: ChainMeta, expected_version: int) -> bool:
        self._before("meta")
        return super().update_meta(topic_id, meta, expected_version)

    def delete_items(self, topic_id: str, seqs: Sequence[int]) -> None:
        self._before("delete")
        super().delete_items(topic_id, seqs)


def test_appends_landing_during_every_step_of_a_merge_are_all_kept(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    # Given a day-old topic, and a producer that appends before each step of the merge
    engine, _ = day_old_topic(make, clock, topic_name)
    producer = make()
    steps: list[str] = []

    def append(step: str) -> None:
        steps.append(step)
        fill(producer, topic_name, clock, appends=1)

    base = make()
    context = base.context
    interleaved = EngineContext.create(
        context.objects, _Interleaving(context.ledger, append), context.catalog, clock
    )

    # When the merge runs while those appends land, then the truncation after grace
    record = topic_of(engine, topic_name)
    result = Merger(interleaved).merge_topic(
        record, max_items=100, target_bytes=1 << 20, now_ms=clock.ms
    )
    assert result.items_merged == 24  # the chain's last item always stays
    assert "delete" not in steps  # the merge deletes nothing itself
    clock.ms += base.gc.grace_ms + 1
    compactor = Compactor(interleaved, base.gc)
    assert compactor.compact_topic(topic_name).items_removed == 24

    # Then every append of the producer is read back after those merged, none lost
    assert {"entries", "meta", "delete"} <= set(steps)
    everything = read_all(make(), topic_name)
    values = [r.value for records in everything.values() for r in records]
    assert sum(1 for v in values if v and v.startswith(b"keyed-")) == 24 + len(steps)
    assert len(
        {(r.partition, r.offset) for records in everything.values() for r in records}
    ) == len(values)
    for partition, records in everything.items():
        assert [r.offset for r in records] == list(range(len(records))), partition


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_dry_run_reports_the_merge_and_changes_nothing(
    make: Callable[[], Engine], clock: Clock, topic_name: str, backend: Any, backend_name: str
) -> None:
    engine, _ = day_old_topic(make, clock, topic_name)
    contents = backend.contents()

    report = Merger(engine.context).merge_topic(
        topic_of(engine, topic_name), max_items=10, target_bytes=400, now_ms=clock.ms, dry_run=True
    )

    assert backend.contents() == contents
    assert report.items_merged == 10 and report.segments_merged == 9
    assert report.segments_written == 0 and report.entries_written == 0
    assert report.actions and "merge chain items 0..9" in report.actions[0]
    assert not report.done


def test_a_cursor_naming_a_chain_item_removed_by_the_merge_falls_back_to_l1(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine, expected = day_old_topic(make, clock, topic_name)
    first = engine.fetch(topic_name, 1, 0, max_records=1)

    merge_all(engine, topic_name, clock.ms)
    again = engine.fetch(topic_name, 1, 1, max_records=2, cursor=first.cursor)

    assert again.records == expected[1][1:3]
    assert again.next_offset == 3


def test_a_partition_with_every_record_merged_reads_empty_at_its_end(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine, _ = day_old_topic(make, clock, topic_name)
    engine.append(topic_name, [Record(value=b"only p0", partition=0)])
    merge_all(engine, topic_name, clock.ms)
    end = meta_of(engine, topic_name).l1_end[2]

    result = make().fetch(topic_name, 2, end)

    assert result.records == [] and result.next_offset == result.high_watermark == end
    assert make().list_offset(topic_name, 2, "latest") == end


def test_purging_a_deleted_topic_removes_its_l1_entries_and_segments(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    engine, _ = day_old_topic(make, clock, topic_name, young=1)
    merge_all(engine, topic_name, clock.ms)
    topic_id = topic_of(engine, topic_name).topic_id
    assert entries(engine, topic_name)

    engine.delete_topic(topic_name)
    clock.ms = max(clock.ms, int(time.time() * 1000)) + 2 * 3600_000
    assert engine.gc.purge_deleted_topics() == [topic_id]

    ledger = engine.context.ledger
    assert all(list(ledger.entries(topic_id, p)) == [] for p in range(PARTITIONS))
    assert list(engine.context.objects.list(topic_segments_prefix(topic_id))) == []


def test_producers_and_merges_running_in_threads_lose_and_repeat_nothing(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    # Given a day-old topic, two producers appending and a merger looping, all at once
    _, expected = day_old_topic(make, clock, topic_name)
    future = clock.ms + 2 * DAY_MS  # every item but the last is old enough to merge
    finished: list[int] = []  # list.append is atomic: the producers that are done

    def work(index: int) -> None:
        engine = make()
        if index < 2:
            for i in range(15):
                engine.append(topic_name, [Record(value=b"w%d-%d" % (index, i), key=b"%d" % i)])
            finished.append(index)
            return
        while len(finished) < 2:
            merge_all(engine, topic_name, future, max_items=3, target_bytes=200)

    run_in_threads(3, work)
    merge_all(make(), topic_name, future)

    # Then every record is read back once, at dense offsets, the old ones unchanged
    everything = read_all(make(), topic_name)
    written = sorted(
        r.value
        for records in everything.values()
        for r in records
        if r.value and r.value[:1] == b"w"
    )
    assert written == sorted(b"w%d-%d" % (w, i) for w in range(2) for i in range(15))
    for partition, records in everything.items():
        assert [r.offset for r in records] == list(range(len(records)))
        assert records[: len(expected[partition])] == expected[partition]
    assert meta_of(make(), topic_name).chain_start > 25


class _CountingObjects:
    """An object store that records the ranges GET from it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gets: list[tuple[str, int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        self.gets.append((key, start, end))
        data: bytes = self.inner.get_range(key, start, end)
        return data


def _counting_reader(backend: Any, clock: Clock) -> tuple[Engine, _CountingObjects]:
    objects, ledger, catalog, groups = backend.stores()
    counting = _CountingObjects(objects)
    return Engine(counting, ledger, catalog, groups, clock_ms=clock), counting  # type: ignore[arg-type]


def test_a_replay_of_merged_records_gets_each_small_l1_segment_once(
    make: Callable[[], Engine], clock: Clock, topic_name: str, backend: Any
) -> None:
    engine, expected = day_old_topic(make, clock, topic_name)
    merge_all(engine, topic_name, clock.ms, max_items=100, target_bytes=1 << 20)
    reader, counting = _counting_reader(backend, clock)

    assert read_all(reader, topic_name, max_records=2) == expected

    l1_gets = [key for key, _, _ in counting.gets if "/L1/" in key]
    assert sorted(l1_gets) == sorted({e.segment_key for e in entries(reader, topic_name)})


def _one_l1_segment(
    make: Callable[[], Engine], clock: Clock, topic: str, value_bytes: int, seed: int
) -> tuple[list[StoredRecord], str]:
    """40 incompressible records of ``value_bytes`` in partition 0, a day old, merged into
    one L1 segment: the records as read before the merge, and the segment's key."""
    engine = make()
    engine.create_topic(topic, partitions=PARTITIONS)
    noise = random.Random(seed)
    for i in range(40):
        engine.append(
            topic, [Record(value=noise.randbytes(value_bytes), partition=0, key=b"%d" % i)]
        )
    clock.ms += DAY_MS + 1
    engine.append(topic, [Record(value=b"young", partition=1)])
    expected = read_all(make(), topic)
    merge_all(engine, topic, clock.ms, max_items=100, target_bytes=64 << 20)
    (segment,) = {e.segment_key for e in entries(engine, topic)}
    return expected[0], segment


def _replayed(
    make: Callable[[], Engine],
    clock: Clock,
    topic: str,
    backend: Any,
    sizes: tuple[int, int, int, int],
) -> tuple[list[StoredRecord], list[StoredRecord], list[tuple[int, int]], Engine, str]:
    """`_one_l1_segment` of records of ``value_bytes``, replayed by a fresh reader
    ``fetch_bytes`` a fetch: the records expected and read, the segment's GETs, the reader
    and the segment's key. ``sizes`` is (value_bytes, row group bytes, read ahead,
    fetch_bytes), as the ``replay_sizes`` fixture patched them."""
    value_bytes, _group, _read_ahead, fetch_bytes = sizes
    expected, segment = _one_l1_segment(make, clock, topic, value_bytes, seed=value_bytes)
    reader, counting = _counting_reader(backend, clock)
    records: list[StoredRecord] = []
    offset, cursor = 0, None
    while offset < 40:
        result = reader.fetch(topic, 0, offset, max_bytes=fetch_bytes, cursor=cursor)
        records.extend(result.records)
        offset, cursor = result.next_offset, result.cursor
    gets = [(start, end) for key, start, end in counting.gets if key == segment]
    return expected, records, gets, reader, segment


@pytest.fixture
def replay_sizes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The sizes of `_replayed`, with the row group size and the read ahead patched."""
    sizes: tuple[int, int, int, int] = request.param
    monkeypatch.setattr(merge_module, "L1_ROW_GROUP_BYTES", sizes[1])
    monkeypatch.setattr(fetch_module, "L1_READ_AHEAD", sizes[2])
    return sizes


@pytest.mark.parametrize("replay_sizes", [(16 << 10, 32 << 10, 128 << 10, 20 << 10)], indirect=True)
def test_a_replay_of_a_large_l1_segment_reads_ahead_and_its_footer_once(
    make: Callable[[], Engine], clock: Clock, topic_name: str, backend: Any, replay_sizes: Any
) -> None:
    # Given 640 KiB of incompressible records of one partition merged into one L1 segment
    # of 32 KiB row groups, when a reader replays it 20 KiB at a time with 128 KiB ahead
    expected, records, gets, _, _ = _replayed(make, clock, topic_name, backend, replay_sizes)

    # Then it reads the same records with one GET per 128 KiB read ahead (3 whole row
    # groups of the 20 once the footer is known), plus the footer once
    assert records == expected
    footers = [span for span in gets if span[1] - span[0] < 16 << 10]
    assert len(footers) == 1
    assert len(gets) <= 1 + 1 + 6
    assert all(end - start <= 128 << 10 for start, end in gets)


@pytest.mark.parametrize("replay_sizes", [(64 << 10, 128 << 10, 2 << 20, 256 << 10)], indirect=True)
def test_a_replay_takes_the_rest_of_an_l1_segment_with_its_read_ahead_when_little_is_left(
    make: Callable[[], Engine], clock: Clock, topic_name: str, backend: Any, replay_sizes: Any
) -> None:
    # Given 2.5 MiB of incompressible records of one partition merged into one L1 segment
    # of 128 KiB row groups, when a reader replays it 256 KiB at a time with 2 MiB ahead
    # (the rest after it, about 0.5 MiB, is less than half of it)
    expected, records, gets, reader, segment = _replayed(
        make, clock, topic_name, backend, replay_sizes
    )

    # Then one GET reads the whole segment, footer included, instead of 2 MiB, the footer
    # and a small last GET
    assert records == expected
    footer = reader.context.caches.segments.get(segment)
    assert footer is not None
    assert len(gets) == 1
    assert gets[0][1] == footer.size


def test_a_merge_step_stops_at_max_bytes_and_the_next_steps_merge_the_rest(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    # Given a topic of 24 day-old appends and a young one
    engine, expected = day_old_topic(make, clock, topic_name, young=1)
    record = topic_of(engine, topic_name)
    merger = Merger(engine.context)
    start = meta_of(engine, topic_name).chain_start

    # When a merge step may take 1,000 items but only 200 bytes of batches
    first = merger.merge_topic(
        record, max_items=1000, target_bytes=1 << 20, now_ms=clock.ms, max_bytes=200
    )

    # Then it takes the items whose batches fit (one at least), says it is not done, and
    # the steps after it merge the rest; every record reads the same
    assert 1 <= first.items_merged < 24
    assert first.bytes_merged <= 200 or first.items_merged == 1
    assert not first.done
    rest = merge_all(engine, topic_name, clock.ms, max_items=1000, target_bytes=1 << 20)
    found = engine.context.ledger.read_tail(record.topic_id)
    assert found is not None
    assert meta_of(engine, topic_name).chain_start == found[0].seq  # all but the tail
    assert sum(step.items_merged for step in [first, *rest]) == found[0].seq - start
    assert read_all(make(), topic_name) == expected


def test_a_merge_moving_the_chain_start_during_a_fetch_across_levels_loses_no_budget(
    make: Callable[[], Engine], make_faulty: MakeFaulty, clock: Clock, topic_name: str
) -> None:
    # Given a topic merged halfway, and a reader whose chain query (after its L1 part)
    # runs just after the next merge step moved the chain start past where it reads
    engine, expected = day_old_topic(make, clock, topic_name, young=1)
    record = topic_of(engine, topic_name)
    merger = Merger(engine.context)
    merger.merge_topic(record, max_items=8, target_bytes=1 << 20, now_ms=clock.ms)
    reader, _ = make_faulty(clock_ms=clock)
    ledger = reader.context.ledger
    assert isinstance(ledger, FaultyLedgerStore)
    moved: list[MergeResult] = []

    def merge_once(_topic_id: str) -> None:
        if not moved:
            moved.append(
                merger.merge_topic(record, max_items=8, target_bytes=1 << 20, now_ms=clock.ms)
            )

    ledger.on_query = merge_once

    # When it fetches from offset 0 with room for 12 records
    result = reader.fetch(topic_name, 0, 0, max_records=12)

    # Then it gets 12 records, as if the merge had not run meanwhile
    assert moved and moved[0].items_merged == 8
    assert result.records == expected[0][:12]


def test_a_fetch_whose_segment_a_merge_and_gc_removed_after_it_read_the_chain_reads_l1(
    make: Callable[[], Engine], clock: Clock
) -> None:
    # Given a day-old topic and a reader whose fetch has read the chain items, when the
    # merge runs and gc deletes their L0 segments before the fetch's GETs
    engine, expected = day_old_topic(make, clock, "raced")
    reader = make()
    objects_store = reader.context.objects
    raced: list[bool] = []

    class MergedUnderneath:
        def __getattr__(self, name: str) -> Any:
            return getattr(objects_store, name)

        def get_range(self, key: str, start: int, end: int) -> bytes:
            if not raced:
                raced.append(True)
                merge_all(engine, "raced", clock.ms)
                truncate_after_grace(engine, "raced", clock)
                collect_after_grace(engine, "raced", clock)
            return objects_store.get_range(key, start, end)

    reader.context.objects = MergedUnderneath()  # type: ignore[assignment]

    # Then the fetch plans again from the ledger and returns the records from L1
    result = reader.fetch("raced", 0, 0, max_records=3)
    assert raced
    assert result.records == expected[0][:3]


def test_a_fetch_whose_chain_items_a_merge_moved_below_the_chain_start_returns_them(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    # Given a day-old topic and a reader whose fetch, stopped by its budget before the
    # chain's end, reads the meta item only after a merge moved the chain start past the
    # items it planned from
    engine, expected = day_old_topic(make, clock, topic_name, young=2)
    reader = make()
    queried: list[bool] = []
    merged: list[MergeResult] = []

    class MergedBeforeTheMetaRead(FaultyLedgerStore):
        def query(self, topic_id: str, start: int, limit: int) -> Any:
            queried.append(True)
            return super().query(topic_id, start, limit)

        def read_meta(self, topic_id: str) -> ChainMeta | None:
            if queried and not merged:
                merged.extend(merge_all(engine, topic_name, clock.ms))
            return super().read_meta(topic_id)

    reader.context.ledger = MergedBeforeTheMetaRead(reader.context.ledger, FaultInjector())

    # When it fetches from offset 0
    result = reader.fetch(topic_name, 0, 0, max_records=3)

    # Then it returns the records it planned, none skipped (their items are deleted only
    # a grace period later, their segments after that)
    assert merged and meta_of(engine, topic_name).chain_start == 25
    assert result.records == expected[0][:3]
    assert result.next_offset == 3


def test_a_pass_merges_again_only_once_the_items_below_the_chain_start_are_gone(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    # Given a topic whose first half a compactor step merged
    engine = make()
    engine.create_topic(topic_name, partitions=PARTITIONS)
    fill(engine, topic_name, clock, appends=12)
    clock.ms += DAY_MS + 1
    fill(engine, topic_name, clock, appends=12)
    expected = read_all(make(), topic_name)
    clock.ms += DAY_MS - engine.gc.grace_ms // 2
    compactor = Compactor(engine.context, engine.gc)
    assert compactor.compact_topic(topic_name).segments_merged == 12
    moved = meta_of(engine, topic_name)
    assert moved.chain_start == 13

    # When the second half is a day old too, but the merged items still wait for their
    # grace period: no merge (it would restart their grace period at every pass)
    clock.ms += engine.gc.grace_ms // 2 + 1
    assert compactor.topics_needing_work() == []
    step = compactor.compact_topic(topic_name)
    assert step.done and step.segments_merged == 0
    assert meta_of(engine, topic_name) == moved

    # When the grace period has passed: one step deletes them and merges the second half
    assert moved.chain_start_ms is not None
    clock.ms = moved.chain_start_ms + engine.gc.grace_ms
    assert compactor.topics_needing_work() == [topic_name]
    step = compactor.compact_topic(topic_name)
    assert step.items_removed == 13 and step.segments_merged == 11
    assert meta_of(engine, topic_name).chain_start == 24
    assert read_all(make(), topic_name) == expected


def test_l1_row_groups_end_only_where_chain_batches_end_and_carry_their_cumulative_bytes(
    make: Callable[[], Engine], clock: Clock, topic_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given batches of 3 records on partition 0, and row groups of 60 record bytes (a group
    # fills up in the middle of a batch)
    monkeypatch.setattr(merge_module, "L1_ROW_GROUP_BYTES", 60)
    engine = make()
    engine.create_topic(topic_name, partitions=PARTITIONS)
    for i in range(8):
        engine.append(
            topic_name,
            [Record(value=b"v%d-%d-" % (i, n) + b"x" * 12, partition=0) for n in range(3)],
        )
    clock.ms += DAY_MS + 1
    engine.append(topic_name, [Record(value=b"young", partition=1)])
    expected = read_all(make(), topic_name)
    topic_id = topic_of(engine, topic_name).topic_id
    marks = {
        item.mark(0).high_watermark: item.mark(0).cumulative_bytes
        for item in engine.context.ledger.chain(topic_id)
    }

    # When they are merged into one L1 segment
    merge_all(engine, topic_name, clock.ms, max_items=100, target_bytes=1 << 20)

    # Then there are several row groups, each of whole batches, each entry carrying the
    # partition's chain bytes at its end
    made = list(engine.context.ledger.entries(topic_id, 0))
    assert len(made) > 1
    assert all(entry.record_count % 3 == 0 for entry in made)
    assert [entry.cumulative_bytes for entry in made] == [
        marks[entry.last_offset + 1] for entry in made
    ]
    assert made[-1].cumulative_bytes == engine.describe_topic(topic_name).partitions[0].bytes
    assert read_all(make(), topic_name) == expected


def test_an_l1_budget_planned_from_entry_averages_never_passes_max_bytes_nor_skips_a_record(
    make: Callable[[], Engine], clock: Clock, topic_name: str
) -> None:
    # Given L1 entries of a 100-byte record, then of a 4-byte tombstone and a 1,000-byte
    # record (an average of 502 bytes)
    engine = make()
    engine.create_topic(topic_name, partitions=1)
    for _ in range(2):
        engine.append(topic_name, [Record(value=b"x" * 100)])
        engine.append(topic_name, [Record(key=b"tomb", value=None), Record(value=b"y" * 1000)])
    clock.ms += DAY_MS + 1
    merge_all(engine, topic_name, clock.ms, target_bytes=1)
    assert tuple(meta_of(engine, topic_name).l1_end) == (4,)
    reader = make()

    # When a fetch's budget, or the position's own max_bytes, ends right after the tombstone
    alone = reader.fetch(topic_name, 0, 0, max_bytes=104)
    positions = [FetchPosition(topic_name, 0, 0, max_bytes=104)]
    (own,) = reader.fetcher.fetch_many(positions, 1 << 20, 100)

    # Then each returns the first record (not past the tombstone), and the next fetch goes
    # on from exactly there, across the L1 end
    for result in (alone, own):
        assert isinstance(result, FetchResult)
        assert [r.offset for r in result.records] == [0]
        rest = reader.fetch(topic_name, 0, result.next_offset, cursor=result.cursor)
        assert [r.offset for r in rest.records] == [1, 2, 3, 4, 5]
        assert rest.records[0].key == b"tomb"
