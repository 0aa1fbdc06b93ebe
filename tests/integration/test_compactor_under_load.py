"""The whole compactor under load and faults (issue 11's concurrency and crash tests).

A compact topic with keyed producers, tombstones and consumers reading from offset 0 while
passes (merge and key compaction) run with the clock moved between requests; a pass
crashed at each fail point the compactor reaches, then rerun. Time is a fake clock moved
only while no request is in flight (`InFlight`); threads meet at conditions, never sleeps.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any

import pytest

from lakelog import Engine, OffsetOutOfRangeError, Record, TopicNotFoundError
from lakelog.compactor_handler import compactor_for, make_task_handlers
from lakelog.errors import InvalidRequestError
from lakelog.limits import MAX_RECORD_BYTES
from lakelog.local.compaction import LocalCompactor
from lakelog.log.records import Entry
from lakelog.service import keycompact, passes
from lakelog.service import merge as merge_module
from lakelog.service.compactor import CompactionSettings, CompactionStep, Compactor, GcReport
from lakelog.service.merge import Merger
from lakelog.service.produce import CACHED_TAIL_MS, AppendRetryPolicy
from lakelog.storage.faults import (
    FailPoint,
    FaultInjector,
    FaultyCatalogStore,
    FaultyGroupStore,
    FaultyLedgerStore,
    FaultyObjectStore,
    InjectedFaultError,
)
from lakelog.storage.keys import topic_segments_prefix
from lakelog.storage.ports import LedgerStore, ObjectStore
from lakelog.types import StoredRecord
from tests.contract.backends import Backend, MemoryBackend
from tests.integration.test_compactor_merge import topic_of
from tests.integration.test_compactor_retention import (
    CONSUMERS,
    DAY_MS,
    HOUR_MS,
    PRODUCERS,
    TOPIC,
    Clock,
    InFlight,
    _consume,
    _merged,
    referenced,
    run_pass,
)
from tests.support import run_in_threads

KEYS = 4
"""Keys per producer: a small key space, each key rewritten many times."""
KEYED_BATCHES = 16
KEYED_PARTITIONS = 2
PASS_STEP_MS = 4 * HOUR_MS
"""How far the clock moves after each pass: a day is six passes."""
TOMBSTONE_RETENTION_MS = 10 * HOUR_MS
WAIT_S = 120.0
"""Longest a thread waits for another's progress before the test fails (a hang, not a race)."""

Produced = dict[int, dict[int, tuple[bytes, bytes | None, int]]]
"""Partition: offset: (key, value, timestamp) of every acknowledged record."""


@pytest.fixture
def clock(backend: Backend) -> Clock:
    clock = Clock()
    if isinstance(backend, MemoryBackend):
        backend.storage.clock_ms = clock
    return clock


@pytest.fixture
def make(make_engine: Callable[..., Engine], clock: Clock) -> Callable[..., Engine]:
    def new(**kwargs: Any) -> Engine:
        return make_engine(clock_ms=clock, grace_ms=HOUR_MS, sleep=lambda _s: None, **kwargs)

    return new


def keyed_compactor(engine: Engine) -> Compactor:
    """Small steps: a few items, entries and bytes each, so a pass takes many of them."""
    settings = CompactionSettings(
        max_items_per_step=5, max_merge_items=5, target_l1_bytes=200, key_compaction_bytes=300
    )
    return Compactor(engine.context, engine.gc, settings)


class Passes:
    """The number of passes run, which producers wait on (batch ``b`` after pass ``b``)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.done = 0

    def ran(self) -> None:
        with self._cond:
            self.done += 1
            self._cond.notify_all()

    def wait(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.done >= count, WAIT_S), "no pass ran"

    def release(self) -> None:
        """Let every waiter go (the passes are over)."""
        with self._cond:
            self.done += 10**6
            self._cond.notify_all()


class StepsInFlight:
    """A compactor whose calls are requests in flight: the clock moves between them, never
    during one (a step lasts seconds, not the hours the test moves the clock by)."""

    def __init__(self, compactor: Compactor, requests: InFlight) -> None:
        self._compactor = compactor
        self._requests = requests

    def topics_needing_work(self) -> list[str]:
        with self._requests.one():
            return self._compactor.topics_needing_work()

    def compact_topic(self, topic: str, *, dry_run: bool = False) -> CompactionStep:
        with self._requests.one():
            return self._compactor.compact_topic(topic, dry_run=dry_run)

    def collect(self, *, full: bool = True) -> GcReport:
        with self._requests.one():
            return self._compactor.collect(full=full)


def _record(producer: int, batch: int, partition: int, ts: int) -> Record:
    """Key ``k<producer>-<n>`` (keys shared by the partitions' producers), every fifth a
    tombstone."""
    number = producer * KEYED_BATCHES + batch
    key = b"k%d-%d" % (producer, (batch + partition) % KEYS)
    value = None if number % 5 == 4 else b"p%d-%d-%d" % (producer, batch, partition)
    return Record(key=key, value=value, partition=partition, timestamp_ms=ts)


@pytest.mark.parametrize("compactors", [1, 2])
def test_key_compaction_with_producers_and_consumers_keeps_every_last_record_of_a_key(
    make: Callable[..., Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch, compactors: int
) -> None:
    # Given a compact topic whose merges write many small entries and whose key compaction
    # replaces them a few at a time
    monkeypatch.setattr(merge_module, "L1_ROW_GROUP_BYTES", 1)
    monkeypatch.setattr(keycompact, "MAX_COVERED", 3)
    admin = make()
    admin.create_topic(
        TOPIC,
        partitions=KEYED_PARTITIONS,
        config={"cleanup_policy": "compact", "delete_retention_ms": TOMBSTONE_RETENTION_MS},
    )
    stop = threading.Event()
    requests = InFlight(clock)
    passes_run = Passes()
    produced: Produced = {p: {} for p in range(KEYED_PARTITIONS)}
    read: list[list[tuple[int, int, bytes | None]]] = [[] for _ in range(CONSUMERS)]
    lock = threading.Lock()
    running = [PRODUCERS]

    def produce(index: int) -> None:
        try:
            engine = make(retry=AppendRetryPolicy(deadline_seconds=10**6))
            for batch in range(KEYED_BATCHES):
                passes_run.wait(batch)
                with requests.one():
                    records = [_record(index, batch, p, clock()) for p in range(KEYED_PARTITIONS)]
                    acks = engine.append(TOPIC, records)
                with lock:
                    for ack, record in zip(acks, records, strict=True):
                        assert record.key is not None
                        produced[ack.partition][ack.offset] = (
                            record.key,
                            record.value,
                            record.timestamp_ms or 0,
                        )
        finally:
            with lock:
                running[0] -= 1

    def consume(index: int) -> None:
        read[index].extend(_consume(make(), KEYED_PARTITIONS, stop, requests))

    def compact(_index: int) -> None:
        compactor = StepsInFlight(keyed_compactor(make()), requests)
        try:
            while True:
                with lock:
                    producing = running[0] > 0
                passes.run_pass(compactor)
                requests.advance(PASS_STEP_MS)
                passes_run.ran()
                if not producing:
                    break
            for _ in range(12):  # two more days: everything merges and is compacted
                passes.run_pass(compactor)
                requests.advance(PASS_STEP_MS)
                passes_run.ran()
        finally:
            passes_run.release()  # the producers and the other compactor, if a pass failed
            stop.set()

    def compact_too(_index: int) -> None:
        """Another compactor's passes, each begun with the first compactor's."""
        compactor = StepsInFlight(keyed_compactor(make()), requests)
        for count in itertools.count():
            passes_run.wait(count)
            if stop.is_set():
                return
            passes.run_pass(compactor)

    # When 4 producers, 2 consumers and one or two compactors run at once
    roles: list[Callable[[int], None]] = [
        *(lambda _i, n=n: produce(n) for n in range(PRODUCERS)),
        *(lambda _i, n=n: consume(n) for n in range(CONSUMERS)),
        compact,
        *([compact_too] if compactors == 2 else []),
    ]
    run_in_threads(len(roles), lambda i: roles[i](i))

    # Then key compaction did run: some records were dropped
    final = _read_from_zero(make())
    assert sum(map(len, final.values())) < sum(map(len, produced.values()))
    now = clock()
    for partition in range(KEYED_PARTITIONS):
        written = produced[partition]
        got = final[partition]
        # And a reader from 0 gets records exactly as produced at their offsets
        assert all(written[o] == r for o, r in got.items())
        last_of: dict[bytes, int] = {}
        for offset in sorted(written):
            last_of[written[offset][0]] = offset
        for key, offset in last_of.items():
            _, value, ts = written[offset]
            if value is not None or ts >= now - TOMBSTONE_RETENTION_MS:
                # every key's last record is there
                assert offset in got, (partition, key, offset)
            elif offset not in got:
                # an expired tombstone may go, but no older value of its key comes back
                assert [o for o, r in got.items() if r[0] == key] == [], (partition, key)
        # And each consumer read offsets strictly ascending, each as produced, and every
        # record that survived (none was lost while it was moved or compacted)
        for records in read:
            offsets = [o for p, o, _ in records if p == partition]
            assert offsets == sorted(set(offsets))
            assert all(written[o][1] == v for p, o, v in records if p == partition)
            assert set(got) <= set(offsets)
    # And after a full pass nothing unreferenced older than the grace period is left, and
    # everything the ledger names is stored
    run_pass(keyed_compactor(admin))
    assert_bucket_consistent(admin, clock)


def assert_bucket_consistent(engine: Engine, clock: Clock, topic: str = TOPIC) -> None:
    """Every segment the ledger names is stored; every other one is younger than grace."""
    topic_id = engine.describe_topic(topic).topic_id
    named = {key for key in referenced(engine, topic) if key}
    stored = {
        info.key: info.last_modified_ms
        for info in engine.context.objects.list(topic_segments_prefix(topic_id))
    }
    assert named <= set(stored)
    old = {key for key, ms in stored.items() if key not in named and ms <= clock() - HOUR_MS}
    assert old == set()


def _read_from_zero(engine: Engine) -> Produced:
    """Every record from offset 0 of each partition, following next_offset and cursors."""
    log: Produced = {}
    for partition in range(KEYED_PARTITIONS):
        records: dict[int, tuple[bytes, bytes | None, int]] = {}
        offset, cursor = 0, None
        high = engine.list_offset(TOPIC, partition, "latest")
        while offset < high:
            result = engine.fetch(TOPIC, partition, offset, max_records=3, cursor=cursor)
            for record in result.records:
                assert record.offset not in records and record.offset >= offset
                assert record.key is not None
                records[record.offset] = (record.key, record.value, record.timestamp_ms)
            assert result.next_offset > offset
            offset, cursor = result.next_offset, result.cursor
        log[partition] = records
    return log


# A crash at every fail point of a whole pass -------------------------------------------------

EVENTS, KEYED = "events", "keyed"
SWEEP_PASSES = 5


class CrashAt(FaultInjector):
    """Fails the ``nth`` pass through ``point`` once (none when ``point`` is None), and
    counts every pass through every point."""

    def __init__(self, point: FailPoint | None = None, nth: int = 1) -> None:
        super().__init__()
        self.point, self.nth = point, nth
        self.passed: Counter[FailPoint] = Counter()

    def should_fail(self, point: FailPoint) -> bool:
        with self._lock:
            self.passed[point] += 1
            fail = point == self.point and self.passed[point] == self.nth
            if fail:
                self.hits[point] += 1
            return fail


def faulty_engine(backend: Backend, injector: FaultInjector, clock: Clock) -> Engine:
    objects, ledger, catalog, groups = backend.stores()
    return Engine(
        FaultyObjectStore(objects, injector),
        FaultyLedgerStore(ledger, injector),
        FaultyCatalogStore(catalog, injector),
        FaultyGroupStore(groups, injector),
        clock_ms=clock,
        grace_ms=HOUR_MS,
        sleep=lambda _s: None,
    )


Log = dict[int, dict[int, tuple[bytes | None, bytes | None, int]]]
"""Partition: offset: (key, value, timestamp)."""


def two_levels(make: Callable[..., Engine], clock: Clock) -> tuple[dict[str, Log], dict[str, Log]]:
    """A delete topic with records expired at once, records expired a few hours into the
    passes (merged to L1 first) and kept ones; a compact topic of rewritten keys and
    tombstones; a day later a young append to each (it stays in the chain). Returns what
    each topic holds from its log start once passes are done, and every record written."""
    engine = make()
    engine.create_topic(EVENTS, partitions=2, config={"retention_ms": 2 * DAY_MS})
    engine.create_topic(
        KEYED, partitions=2, config={"cleanup_policy": "compact", "delete_retention_ms": HOUR_MS}
    )
    start = clock()
    stamps = (
        [start - 3 * DAY_MS] * 3 + [start - DAY_MS + 2 * HOUR_MS] * 2 + [start + 30 * DAY_MS] * 3
    )
    written: dict[str, Log] = {EVENTS: {0: {}, 1: {}}, KEYED: {0: {}, 1: {}}}
    for index, ts in enumerate(stamps):
        key, value = b"k%d" % (index % 3), None if index % 4 == 3 else b"v%d" % index
        for topic, record in (
            (EVENTS, lambda p, i=index, t=ts: Record(value=b"e%d-%d" % (i, p), timestamp_ms=t)),
            (KEYED, lambda p, k=key, v=value: Record(key=k, value=v, timestamp_ms=start)),
        ):
            records = [replace(record(p), partition=p) for p in (0, 1)]
            engine.append(topic, records)
            for p, r in enumerate(records):
                written[topic][p][index] = (r.key, r.value, r.timestamp_ms or 0)
    clock.advance(DAY_MS + 1)
    for topic in (EVENTS, KEYED):
        engine.append(
            topic,
            [Record(key=b"young", value=b"y", partition=p, timestamp_ms=clock()) for p in (0, 1)],
        )
        for p in (0, 1):
            written[topic][p][len(stamps)] = (b"young", b"y", clock())
    # Retention keeps the records stamped ahead and the young one; key compaction the last
    # of k2 and k0 and the young one (k1's last is a tombstone older than an hour)
    expected = {
        topic: {p: {o: r for o, r in log.items() if o in kept} for p, log in written[topic].items()}
        for topic, kept in ((EVENTS, {5, 6, 7, 8}), (KEYED, {5, 6, 8}))
    }
    return expected, written


def assert_valid_logs(reader: Engine, expected: dict[str, Log], written: dict[str, Log]) -> None:
    """The delete topic holds every record written from its log start; the compact topic
    every record of ``expected`` (its survivors), only records written, and no key's older
    value without its last record."""
    events = whole_log(reader, EVENTS)
    for partition, records in events.items():
        start = reader.list_offset(EVENTS, partition, "earliest")
        assert records == {o: r for o, r in written[EVENTS][partition].items() if o >= start}
    for partition, records in whole_log(reader, KEYED).items():
        log = written[KEYED][partition]
        assert expected[KEYED][partition].items() <= records.items() <= log.items()
        last_written = {key: offset for offset, (key, _, _) in sorted(log.items())}
        assert all(last_written[key] in records for key, _, _ in records.values())


def whole_log(
    engine: Engine, topic: str
) -> dict[int, dict[int, tuple[bytes | None, bytes | None, int]]]:
    """Every record of each partition from its log start, by offset."""
    log = {}
    for partition in (0, 1):
        records: dict[int, tuple[bytes | None, bytes | None, int]] = {}
        offset, cursor = engine.list_offset(topic, partition, "earliest"), None
        high = engine.list_offset(topic, partition, "latest")
        while offset < high:
            result = engine.fetch(topic, partition, offset, max_records=2, cursor=cursor)
            for record in result.records:
                assert record.offset not in records and record.offset >= offset
                records[record.offset] = (record.key, record.value, record.timestamp_ms)
            assert result.next_offset > offset
            offset, cursor = result.next_offset, result.cursor
        log[partition] = records
    return log


def sweep_passes(
    engine: Engine, clock: Clock, after_crash: Callable[[], None] = lambda: None
) -> None:
    """Passes a grace period apart, each ended by an injected crash if one hits it (then
    ``after_crash`` runs)."""
    compactor = keyed_compactor(engine)
    for _ in range(SWEEP_PASSES):
        try:
            run_pass(compactor)
        except InjectedFaultError:
            after_crash()
        clock.advance(HOUR_MS)


SWEEP = {
    FailPoint.BEFORE_PUT: 10,
    FailPoint.AFTER_PUT: 10,
    FailPoint.GET_TIMEOUT: 19,
    FailPoint.BEFORE_META_UPDATE: 10,
    FailPoint.AFTER_META_UPDATE: 10,
    FailPoint.BEFORE_ENTRIES_PUT: 6,
    FailPoint.AFTER_ENTRIES_PUT: 6,
    FailPoint.BEFORE_ENTRY_REPLACE: 8,
    FailPoint.AFTER_ENTRY_PUT: 8,
    FailPoint.AFTER_ENTRY_REPLACE: 8,
    FailPoint.BEFORE_ITEMS_DELETE: 5,
    FailPoint.AFTER_ITEMS_DELETE: 5,
    FailPoint.BEFORE_ENTRIES_DELETE: 2,
    FailPoint.AFTER_ENTRIES_DELETE: 2,
}
"""Each fail point the compactor's passes over `two_levels` reach, and how often: the
merge's PUTs and GETs, meta updates, entries put, key compaction's replacements, the
truncation's items deleted, retention's L1 entries deleted."""


@pytest.fixture
def small_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """One L1 row group (entry) per merged batch; replacements cover at most 3 entries."""
    monkeypatch.setattr(merge_module, "L1_ROW_GROUP_BYTES", 1)
    monkeypatch.setattr(keycompact, "MAX_COVERED", 3)


@pytest.mark.usefixtures("small_entries")
def test_the_sweep_reaches_the_fail_points_it_crashes_at(
    make: Callable[..., Engine], clock: Clock, backend: Backend
) -> None:
    # Given both topics, when passes run with no crash, then they pass every fail point of
    # SWEEP (the crash sweep below covers the whole pass) and no other
    two_levels(make, clock)
    injector = CrashAt()
    sweep_passes(faulty_engine(backend, injector, clock), clock)
    assert set(injector.passed) == set(SWEEP)
    assert all(injector.passed[point] >= count for point, count in SWEEP.items())


@pytest.mark.usefixtures("small_entries")
@pytest.mark.parametrize(
    ("point", "nth"),
    [
        *(
            pytest.param(point, nth, id=f"{point}-{nth}")
            for point, count in SWEEP.items()
            for nth in range(1, count + 1)
        ),
        *(pytest.param(point, 1, id=f"{point}-1-moto", marks=pytest.mark.moto) for point in SWEEP),
    ],
)
def test_a_crash_at_any_fail_point_of_a_pass_then_reruns_end_consistent(
    make: Callable[..., Engine], clock: Clock, backend: Backend, point: FailPoint, nth: int
) -> None:
    # Given a delete topic and a compact topic, each with records in the chain and due for
    # retention, truncation, merge and key compaction
    expected, written = two_levels(make, clock)

    # When passes a grace period apart run, one of them crashing at the nth pass through
    # the fail point, and then a pass without a crash
    # (a reader in between sees a valid log)
    injector = CrashAt(point, nth)
    sweep_passes(
        faulty_engine(backend, injector, clock),
        clock,
        after_crash=lambda: assert_valid_logs(make(), expected, written),
    )
    assert injector.hits[point] == 1
    run_pass(keyed_compactor(make()))

    # Then every record from the delete topic's log start is there byte for byte (its
    # retention done); the compact topic keeps every last record of a key and shows no
    # key's older value without its last record (a window a crash made larger may leave a
    # dirty tail below the cleanable ratio: its superseded values stay readable, ADR 0013, 6)
    reader = make()
    assert_valid_logs(reader, expected, written)
    assert whole_log(reader, EVENTS) == expected[EVENTS]
    # And nothing named is missing, nothing old unnamed is left
    for topic in (EVENTS, KEYED):
        assert_bucket_consistent(reader, clock, topic)


# Processes with stale caches -----------------------------------------------------------------

STALE = "stale"


def stale_topic(make: Callable[..., Engine], policy: str) -> Engine:
    """A one-partition topic of ``policy`` that keeps everything and tombstones an hour;
    its writer."""
    writer = make()
    writer.create_topic(
        STALE,
        partitions=1,
        config={"cleanup_policy": policy, "retention_ms": -1, "delete_retention_ms": HOUR_MS},
    )
    return writer


def keyed_appends(
    engine: Engine, clock: Clock, count: int, start: int = 0, keys: int = 4, prefix: bytes = b"k"
) -> None:
    """One keyed record an append on partition 0, a second apart: ``keys`` keys, every
    fifth record a tombstone."""
    for index in range(start, start + count):
        value = None if index % 5 == 4 else b"v%d" % index
        key = b"%s%d" % (prefix, index % keys)
        engine.append(STALE, [Record(key=key, value=value, partition=0, timestamp_ms=clock())])
        clock.advance(1000)


def hourly_passes(compactor: Compactor, clock: Clock, count: int) -> None:
    """``count`` passes, the clock moved a grace period (an hour) after each."""
    for _ in range(count):
        run_pass(compactor)
        clock.advance(HOUR_MS)


def requests_clock_day(clock: Clock) -> None:
    """Move the clock past a day: what was appended before may be merged and truncated."""
    clock.advance(DAY_MS + 1)


def read_on(engine: Engine, offset: int, cursor: str | None) -> list[tuple[int, bytes | None]]:
    """Every record of partition 0 from ``offset`` (with ``cursor``) to the high watermark."""
    got: list[tuple[int, bytes | None]] = []
    high = engine.list_offset(STALE, 0, "latest")
    while offset < high:
        result = engine.fetch(STALE, 0, offset, max_records=2, cursor=cursor)
        got.extend((r.offset, r.value) for r in result.records)
        assert result.next_offset > offset
        offset, cursor = result.next_offset, result.cursor
    return got


@pytest.mark.usefixtures("small_entries")
@pytest.mark.parametrize("policy", ["delete", "compact"])
@pytest.mark.parametrize("level", ["chain", "l1"])
def test_a_reader_that_fetched_before_passes_continues_with_its_old_cursor(
    make: Callable[..., Engine], clock: Clock, policy: str, level: str
) -> None:
    # Given a reader process that read part of a topic (in the chain, or in L1 after a
    # merge) and holds its cursor, its cached topic and chain items
    writer = stale_topic(make, policy)
    keyed_appends(writer, clock, 12)
    compactor = keyed_compactor(writer)
    if level == "l1":
        requests_clock_day(clock)
        Merger(writer.context).merge_topic(
            topic_of(writer, STALE), max_items=100, target_bytes=100, now_ms=clock()
        )
        keyed_appends(writer, clock, 2, start=12)
    reader = make()
    first = reader.fetch(STALE, 0, 0, max_records=3)
    assert [r.offset for r in first.records] == [0, 1, 2]

    # When other processes append, merge, compact keys, truncate the chain and collect its
    # segments, over a few grace periods
    keyed_appends(writer, clock, 4, start=14)
    requests_clock_day(clock)
    hourly_passes(compactor, clock, 4)
    assert writer.context.ledger.get_item(topic_of(writer, STALE).topic_id, 1) is None

    # Then the reader goes on with its cursor and gets what a new reader gets from there
    fresh = read_on(make(), first.next_offset, None)
    assert read_on(reader, first.next_offset, first.cursor) == fresh
    high = writer.list_offset(STALE, 0, "latest")
    if policy == "compact":
        assert len(fresh) < high - 3
    else:
        assert [o for o, _ in fresh] == list(range(3, high))


@pytest.mark.usefixtures("small_entries")
@pytest.mark.parametrize("policy", ["delete", "compact"])
def test_offsets_for_times_across_levels_and_gaps_name_the_first_record_kept(
    make: Callable[..., Engine], clock: Clock, policy: str
) -> None:
    # Given a topic whose first records were merged to L1 (and, compact, key compacted
    # with gaps; delete, expired below a log start), the rest in the chain, and a process
    # that looked up a time before the passes
    writer = stale_topic(make, policy)
    begin = clock()
    keyed_appends(writer, clock, 14)
    reader = make()
    assert reader.offset_for_time(STALE, 0, begin) == 0
    requests_clock_day(clock)
    keyed_appends(writer, clock, 4, start=14)
    compactor = keyed_compactor(writer)
    hourly_passes(compactor, clock, 4)
    if policy == "delete":
        writer.alter_topic(STALE, config={"retention_ms": DAY_MS + HOUR_MS})
        run_pass(compactor)
    kept = [
        (r.offset, r.timestamp_ms)
        for r in make()
        .fetch(STALE, 0, writer.list_offset(STALE, 0, "earliest"), max_records=100)
        .records
    ]
    meta = writer.context.ledger.read_meta(topic_of(writer, STALE).topic_id)
    assert meta is not None and 0 < meta.l1_end[0] < 18 and len(kept) < 18
    assert (meta.log_start_offset(0) > 0) == (policy == "delete")

    # When it looks up every time from before the first record to after the last, then
    # each answer is the first record kept at or after that time
    times = sorted({ts for _, ts in kept} | {ts - 1 for _, ts in kept} | {begin - 1, clock() + 1})
    for time in [begin + 1000 * i + 1 for i in range(18)] + times:
        want = next((offset for offset, ts in kept if ts >= time), None)
        assert reader.offset_for_time(STALE, 0, time) == want, time


# The compactor's entry points ----------------------------------------------------------------


@dataclass
class LambdaContext:
    """The part of a Lambda context the task handlers read: a deadline a minute away."""

    function_name: str = "lakelog-test-compactor"
    memory_limit_in_mb: int = 1536
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:test"
    aws_request_id: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.mark.parametrize("event", [None, [], "orders", 7])
def test_the_compact_task_refuses_an_event_that_is_not_an_object_clearly(
    make: Callable[..., Engine], event: Any
) -> None:
    tasks = make_task_handlers(compactor_for(make()))
    with pytest.raises(InvalidRequestError, match="needs"):
        tasks.compact_topic(event, LambdaContext())


class DeletedAfterListing:
    """A compactor whose topics are deleted right after it lists them (a user deleting a
    topic while a pass runs)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.compactor = compactor_for(engine)

    def topics_needing_work(self) -> list[str]:
        names = self.compactor.topics_needing_work()
        self._engine.delete_topic(names[0])
        return names

    def compact_topic(self, topic: str, *, dry_run: bool = False) -> CompactionStep:
        return self.compactor.compact_topic(topic, dry_run=dry_run)

    def collect(self, *, full: bool = True) -> GcReport:
        return self.compactor.collect(full=full)


def _two_topics_due(make: Callable[..., Engine], clock: Clock) -> Engine:
    """Topics "a" and "b", each with a day-old chain the merge takes."""
    engine = make()
    for topic in ("a", "b"):
        engine.create_topic(topic, partitions=1)
        for _ in range(2):
            engine.append(topic, [Record(value=b"x")])
    clock.advance(DAY_MS + 1)
    for topic in ("a", "b"):
        engine.append(topic, [Record(value=b"y")])
    return engine


def test_a_topic_deleted_after_the_listing_is_done_for_the_compact_task(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given a pass that listed "a", then "a" deleted
    engine = _two_topics_due(make, clock)
    compactor = DeletedAfterListing(engine)
    tasks = make_task_handlers(compactor)
    assert tasks.list_topics({}, LambdaContext()) == {"topics": ["a", "b"]}

    # When its compact task runs, then it is done without an error (no retries, no failed
    # pass, no alarm), and the next topic's task compacts it
    output = tasks.compact_topic({"topic": "a"}, LambdaContext())
    assert output["done"] is True and output["segments_merged"] == 0
    assert tasks.compact_topic({"topic": "b"}, LambdaContext())["segments_merged"] == 2


def test_a_topic_deleted_while_a_local_pass_runs_is_skipped_and_gc_still_runs(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given a pass of lakelog dev (or lakelog compact) listing "a" and "b", "a" deleted
    # after the listing
    engine = _two_topics_due(make, clock)

    # When the pass runs, then it compacts "b" and collects
    report = passes.run_pass(DeletedAfterListing(engine))
    assert [(step.topic, step.segments_merged) for step in report.steps][-1] == ("b", 2)
    assert report.gc is not None

    # And a pass naming an unknown topic still says so
    with pytest.raises(TopicNotFoundError):
        passes.run_pass(compactor_for(engine), ["a"])


@pytest.mark.usefixtures("small_entries")
def test_a_compacted_topic_altered_to_delete_then_back_keeps_a_valid_log(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given a compact topic whose L1 region was key compacted (gaps, empty entries): ten
    # keys written once, then six hours later four keys written again and again
    writer = stale_topic(make, "compact")
    keyed_appends(writer, clock, 10, keys=10, prefix=b"a")
    clock.advance(6 * HOUR_MS)
    keyed_appends(writer, clock, 10, start=10)
    requests_clock_day(clock)
    keyed_appends(writer, clock, 1, start=20)
    compactor = keyed_compactor(writer)
    hourly_passes(compactor, clock, 3)
    survivors = {r.offset: r for r in writer.fetch(STALE, 0, 0, max_records=100).records}
    assert len(survivors) < 21

    # When it is altered to delete with a retention that expires the older half, then
    # retention moves the log start over whole entries of the older half only, and a reader
    # gets the survivors from there (416 below it)
    writer.alter_topic(
        STALE, config={"cleanup_policy": "delete", "retention_ms": DAY_MS + 8 * HOUR_MS}
    )
    hourly_passes(compactor, clock, 3)
    start = writer.list_offset(STALE, 0, "earliest")
    assert 0 < start <= 10
    fresh = make()
    assert [r.offset for r in read_records(fresh, start)] == [o for o in survivors if o >= start]
    with pytest.raises(OffsetOutOfRangeError):
        fresh.fetch(STALE, 0, start - 1)

    # And altered back to compact, with new values of the four keys merged and compacted,
    # the log from its start holds their last records (k1's a young tombstone)
    writer.alter_topic(STALE, config={"cleanup_policy": "compact"})
    keyed_appends(writer, clock, 8, start=21)
    requests_clock_day(clock)
    keyed_appends(writer, clock, 1, start=29)
    hourly_passes(compactor, clock, 3)
    final = read_records(make(), start)
    assert [r.offset for r in final] == sorted({r.offset for r in final})
    last = {r.key: r.offset for r in final}
    assert last == {b"k0": 28, b"k1": 29, b"k2": 26, b"k3": 27}
    assert final[-1].value is None
    assert writer.list_offset(STALE, 0, "earliest") == start
    assert_bucket_consistent(writer, clock, STALE)


def read_records(engine: Engine, offset: int) -> list[StoredRecord]:
    """Every record of partition 0 from ``offset``, following next_offset and cursors."""
    got: list[StoredRecord] = []
    cursor = None
    while offset < engine.list_offset(STALE, 0, "latest"):
        result = engine.fetch(STALE, 0, offset, max_records=2, cursor=cursor)
        got.extend(result.records)
        offset, cursor = result.next_offset, result.cursor
    return got


class RetentionFirst(FaultyLedgerStore):
    """A ledger whose first L1 entries Query runs ``before`` first: a compactor's step
    lands between a reader's read of the meta item and its Query of the entries."""

    def __init__(self, inner: LedgerStore, before: Callable[[], None]) -> None:
        super().__init__(inner, FaultInjector())
        self._before: Callable[[], None] | None = before

    def query_entries(self, topic_id: str, partition: int, offset: int, limit: int) -> list[Entry]:
        before, self._before = self._before, None
        if before is not None:
            before()
        return self.inner.query_entries(topic_id, partition, offset, limit)


class RetentionBeforeGet(FaultyObjectStore):
    """An object store whose first ranged GET runs ``before`` first: a compactor's pass
    (and its gc) lands between a reader's Query of the entries and its GET."""

    def __init__(self, inner: ObjectStore, before: Callable[[], None]) -> None:
        super().__init__(inner, FaultInjector())
        self._before: Callable[[], None] | None = before

    def get_range(self, key: str, start: int, end: int) -> bytes:
        before, self._before = self._before, None
        if before is not None:
            before()
        return self.inner.get_range(key, start, end)


@pytest.mark.parametrize("race", ["before-the-entries", "before-the-get"])
def test_offsets_for_times_that_read_the_meta_item_before_retention_expired_l1_entries(
    make: Callable[..., Engine],
    clock: Clock,
    backend: Backend,
    monkeypatch: pytest.MonkeyPatch,
    race: str,
) -> None:
    # Given partition 0's L1 entries stamped A, A, B, B (offsets 0-7) and a chain batch
    # stamped B (offset 8), merged more than a grace period ago, a retention that expires
    # A, and a reader whose lookup of B reads the meta item (log start 0) just before a
    # compactor pass expires A: before it queries the entries, or before its GET (gc then
    # deleted the expired segment)
    writer = _merged(make, clock, monkeypatch, retention_ms=-1)
    stamp_b = writer.fetch(TOPIC, 0, 4, max_records=1).records[0].timestamp_ms
    writer.alter_topic(TOPIC, config={"retention_ms": HOUR_MS})
    clock.advance(HOUR_MS)
    objects, ledger, catalog, groups = backend.stores()

    def expire() -> None:
        run_pass(keyed_compactor(writer))

    if race == "before-the-entries":
        ledger = RetentionFirst(ledger, expire)
    else:
        objects = RetentionBeforeGet(objects, expire)
    reader = Engine(objects, ledger, catalog, groups, clock_ms=clock, sleep=lambda _s: None)

    # When it looks B up, then it names offset 4, the first record stamped B (not the
    # chain's 8, nor none)
    assert reader.offset_for_time(TOPIC, 0, stamp_b) == 4
    assert writer.list_offset(TOPIC, 0, "earliest") == 4


@pytest.mark.usefixtures("small_entries")
@pytest.mark.parametrize("idle_ms", [CACHED_TAIL_MS + 1, DAY_MS + 2 * HOUR_MS])
def test_a_producer_idle_past_its_cached_tail_appends_after_merges_truncated_the_chain(
    make: Callable[..., Engine], clock: Clock, idle_ms: int
) -> None:
    # Given a producer process whose last append is cached, idle while another appends and
    # passes merge the day-old items of a compact topic and truncate its chain
    idle = stale_topic(make, "compact")
    keyed_appends(idle, clock, 1)
    writer = make()
    keyed_appends(writer, clock, 6, start=1)
    compactor = keyed_compactor(writer)
    clock.advance(idle_ms)
    keyed_appends(writer, clock, 1, start=7)
    hourly_passes(compactor, clock, 3)

    removed = writer.context.ledger.get_item(topic_of(writer, STALE).topic_id, 1) is None
    assert removed == (idle_ms > DAY_MS)  # its cached tail item is gone after a day

    # When it appends again, then its record lands after every other, once
    (ack,) = idle.append(STALE, [Record(key=b"late", value=b"late", partition=0)])
    assert ack.offset == 8
    assert [(r.offset, r.value) for r in make().fetch(STALE, 0, 8).records] == [(8, b"late")]
    assert writer.list_offset(STALE, 0, "latest") == 9


@pytest.mark.usefixtures("small_entries")
def test_a_compact_topic_grown_after_a_compaction_compacts_every_partition(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given a compact topic of one partition, merged and compacted by a compactor process
    # that keeps its caches, then grown to three partitions by another process
    writer = stale_topic(make, "compact")
    other = make()
    compactor = Compactor(other.context, other.gc)  # windows take every dirty entry
    written: dict[int, dict[int, tuple[bytes | None, bytes | None]]] = {0: {}, 1: {}, 2: {}}

    def append_round(partitions: int, round_: int) -> None:
        for index in range(8):
            records = [
                Record(key=b"k%d" % (index % 3), value=b"r%d-%d" % (round_, index), partition=p)
                for p in range(partitions)
            ]
            for ack, record in zip(writer.append(STALE, records), records, strict=True):
                written[ack.partition][ack.offset] = (record.key, record.value)
        clock.advance(DAY_MS + 1)
        writer.append(STALE, [Record(key=b"young", value=b"y", partition=0)])
        written[0][max(written[0]) + 1] = (b"young", b"y")
        hourly_passes(compactor, clock, 3)

    append_round(1, 0)
    make().alter_topic(STALE, partitions=3)

    # When every partition gets new values, merged and compacted by the same compactor
    append_round(3, 1)

    # Then each partition holds, below its L1 end, the last record of each key, and every
    # record from there (the chain is not compacted), as written, once
    reader = make()
    meta = reader.context.ledger.read_meta(topic_of(reader, STALE).topic_id)
    assert meta is not None and all(meta.l1_end[p] > 0 for p in range(3))
    for partition in range(3):
        got = {
            r.offset: (r.key, r.value)
            for r in reader.fetch(STALE, partition, 0, max_records=100).records
        }
        end = meta.l1_end[partition]
        last = {key: o for o, (key, _) in sorted(written[partition].items()) if o < end}
        chain = [o for o in written[partition] if o >= end]
        assert sorted(got) == sorted([*last.values(), *chain]), partition
        assert all(written[partition][o] == r for o, r in got.items())


def test_key_compaction_of_records_at_the_size_limit_keeps_each_key_latest_byte_for_byte(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given a compact topic taking records up to its largest size, keys rewritten with
    # such values (each above an L1 row group's target), merged a day later
    writer = make()
    limit = MAX_RECORD_BYTES
    writer.create_topic(
        STALE, partitions=1, config={"cleanup_policy": "compact", "max_record_bytes": limit}
    )
    values = {}
    for index in range(6):
        key = b"k%d" % (index % 2)
        value = bytes([index]) * (limit - len(key) - 64) + bytes(range(32))
        (ack,) = writer.append(STALE, [Record(key=key, value=value, partition=0)])
        values[ack.offset] = (key, value)
    clock.advance(DAY_MS + 1)
    writer.append(STALE, [Record(key=b"young", value=b"y", partition=0)])

    # When passes merge and compact it
    compactor = Compactor(writer.context, writer.gc)
    hourly_passes(compactor, clock, 2)

    # Then a reader gets the last value of each key, whole, and the young record
    got = read_records(make(), 0)
    assert [r.offset for r in got] == [4, 5, 6]
    assert [(r.key, r.value) for r in got[:2]] == [values[4], values[5]]


@pytest.mark.parametrize("body", [b'{"topic": "gone", "dry_run": true}', b'{"topic": "gone"}'])
def test_a_pass_or_dry_run_naming_a_deleted_topic_is_404_and_writes_nothing(
    make: Callable[..., Engine], clock: Clock, body: bytes
) -> None:
    # Given a deleted topic with day-old records, and the dev server's pass route
    engine = make()
    engine.create_topic("gone", partitions=1)
    engine.append("gone", [Record(value=b"x")])
    clock.advance(DAY_MS + 1)
    engine.append("gone", [Record(value=b"y")])
    topic_id = engine.describe_topic("gone").topic_id
    engine.delete_topic("gone")
    before = {info.key for info in engine.context.objects.list(topic_segments_prefix(topic_id))}
    local = LocalCompactor(lambda: compactor_for(make()), every=0)

    # When a pass or a dry run names it, then 404 topic_not_found, and nothing changed
    status, reply = local.reply(body)
    assert (status, reply["error"]) == (HTTPStatus.NOT_FOUND, "topic_not_found")
    after = {info.key for info in engine.context.objects.list(topic_segments_prefix(topic_id))}
    assert after == before
