"""The compactor's retention, chain truncation and gc (ADR 0013), on a fake clock.

Retention by time and by bytes moves ``log_start_offset`` (a per-partition prefix of
batches); chain items wholly below every log start go (chain start first, the items a
grace period later, their segments at the next gc); a crash at any write and a rerun end
consistent; producers and consumers keep working while it runs. Items a day old are also
merged to L1 in the same steps (ADR 0013, 4): wherever that happens, the records read are
checked to be exactly those written, and offsets below the log start still 416.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import Any

import pytest

from lakelog import Engine, OffsetOutOfRangeError, Record, TopicNotFoundError
from lakelog.log.chain import PRODUCER_EXPIRATION_MS
from lakelog.log.records import Entry
from lakelog.service import merge as merge_module
from lakelog.service.compactor import CompactionSettings, CompactionStep, Compactor
from lakelog.service.context import now_ms
from lakelog.service.produce import AppendRetryPolicy
from lakelog.storage.faults import (
    FailPoint,
    FaultInjector,
    FaultyLedgerStore,
    InjectedFaultError,
)
from lakelog.storage.keys import l0_segment_key_from_id, topic_segments_prefix
from tests.conftest import MakeFaulty
from tests.contract.backends import Backend, MemoryBackend
from tests.support import run_in_threads

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
GRACE_MS = HOUR_MS
TOPIC = "events"


class Clock:
    """A clock tests move by hand; it starts at the wall time (moto stamps objects with it)."""

    def __init__(self) -> None:
        self.now = now_ms()
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return self.now

    def advance(self, ms: int) -> None:
        with self._lock:
            self.now += ms


@pytest.fixture
def clock(backend: Backend) -> Clock:
    clock = Clock()
    if isinstance(backend, MemoryBackend):
        backend.storage.clock_ms = clock  # objects' last_modified on the same clock
    return clock


@pytest.fixture
def make(make_engine: Callable[..., Engine], clock: Clock) -> Callable[..., Engine]:
    def new(**kwargs: Any) -> Engine:
        return make_engine(clock_ms=clock, grace_ms=GRACE_MS, sleep=lambda _s: None, **kwargs)

    return new


def compactor_of(engine: Engine, items_per_step: int = 1_000) -> Compactor:
    settings = CompactionSettings(max_items_per_step=items_per_step)
    return Compactor(engine.context, engine.gc, settings)


def run_pass(compactor: Compactor) -> int:
    """One pass as the state machine runs it; returns the steps taken."""
    steps = 0
    for topic in compactor.topics_needing_work():
        while True:
            steps += 1
            assert steps < 1_000
            if compactor.compact_topic(topic).done:
                break
    compactor.collect()
    return steps


def append_batches(engine: Engine, partition: int, timestamps: list[int], tag: str = "r") -> None:
    """One append (one chain item) per timestamp, each of two records."""
    for index, ts in enumerate(timestamps):
        engine.append(
            TOPIC,
            [
                Record(value=f"{tag}{index}-{half}".encode(), partition=partition, timestamp_ms=ts)
                for half in range(2)
            ],
        )


def offsets(engine: Engine, partition: int, start: int) -> list[int]:
    return [r.offset for r in engine.fetch(TOPIC, partition, start, max_records=1_000).records]


def chain_seqs(engine: Engine) -> list[int]:
    return [item.seq for item in engine.context.ledger.chain(engine.describe_topic(TOPIC).topic_id)]


def segments(engine: Engine) -> set[str]:
    topic_id = engine.describe_topic(TOPIC).topic_id
    return {info.key for info in engine.context.objects.list(topic_segments_prefix(topic_id))}


def referenced(engine: Engine, topic: str = TOPIC) -> set[str]:
    """Every segment a chain item or an L1 entry of ``topic`` names."""
    described = engine.describe_topic(topic)
    ledger = engine.context.ledger
    named = {
        entry.segment_key
        for p in range(len(described.partitions))
        for entry in ledger.entries(described.topic_id, p)
    }
    return named | {
        l0_segment_key_from_id(described.topic_id, item.segment_id)
        for item in ledger.chain(described.topic_id)
        if item.segment_id is not None
    }


def stored(engine: Engine, partition: int, start: int) -> list[tuple[int, int, bytes | None]]:
    """Offset, timestamp and value of each record of ``partition`` from ``start``."""
    fetched = engine.fetch(TOPIC, partition, start, max_records=1_000)
    return [(r.offset, r.timestamp_ms, r.value) for r in fetched.records]


def assert_kept_and_expired(make: Callable[..., Engine], kept: dict[int, list[Any]]) -> None:
    """A fresh reader gets exactly ``kept`` (partition: records from its log start), and
    416 with the log start below it."""
    fresh = make()
    for partition, records in kept.items():
        start = records[0][0]
        assert fresh.list_offset(TOPIC, partition, "earliest") == start
        assert stored(fresh, partition, start) == records
        with pytest.raises(OffsetOutOfRangeError) as raised:
            fresh.fetch(TOPIC, partition, start - 1)
        assert raised.value.log_start_offset == start


# Retention -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend_kind", ["memory", pytest.param("moto", marks=pytest.mark.moto)])
def test_retention_by_time_moves_the_log_start_and_fetch_below_it_is_416_with_the_bounds(
    make: Callable[..., Engine], clock: Clock, backend_kind: str
) -> None:
    # Given a topic of 2 partitions kept one day, with 3 old and 2 recent batches on
    # partition 0 and only recent ones on partition 1
    engine = make()
    engine.create_topic(TOPIC, partitions=2, config={"retention_ms": DAY_MS})
    old, recent = clock.now - 2 * DAY_MS, clock.now
    append_batches(engine, 0, [old, old, old, recent, recent])
    append_batches(engine, 1, [recent])
    before = engine.describe_topic(TOPIC).partitions

    # When a pass runs
    compactor = compactor_of(engine)
    assert compactor.topics_needing_work() == [TOPIC]
    run_pass(compactor)

    # Then partition 0 starts after its old batches, partition 1 is untouched
    after = engine.describe_topic(TOPIC).partitions
    assert [p.log_start_offset for p in after] == [6, 0]
    assert [p.high_watermark for p in after] == [10, 2]
    assert after[1].bytes == before[1].bytes
    assert 0 < after[0].bytes < before[0].bytes
    # And a fetch below the start is 416 with the bounds, from it returns the rest
    with pytest.raises(OffsetOutOfRangeError) as raised:
        engine.fetch(TOPIC, 0, 5)
    assert (raised.value.log_start_offset, raised.value.high_watermark) == (6, 10)
    assert offsets(make(), 0, 6) == [6, 7, 8, 9]
    # And a consumer from earliest starts at the new start
    assert make().list_offset(TOPIC, 0, "earliest") == 6
    assert make().fetch(TOPIC, 0, 6).log_start_offset == 6
    # And nothing is left to do
    assert compactor.topics_needing_work() == []


def test_retention_by_time_expires_a_prefix_only_stopping_at_the_first_batch_kept(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given an old batch after a recent one (a producer's clock behind)
    engine = make()
    engine.create_topic(TOPIC, config={"retention_ms": DAY_MS})
    old, recent = clock.now - 2 * DAY_MS, clock.now
    append_batches(engine, 0, [old, recent, old])

    # When a pass runs, then only the first batch is expired
    run_pass(compactor_of(engine))
    assert engine.describe_topic(TOPIC).partitions[0].log_start_offset == 2
    assert offsets(engine, 0, 2) == [2, 3, 4, 5]


def test_retention_minus_one_never_expires(make: Callable[..., Engine], clock: Clock) -> None:
    engine = make()
    engine.create_topic(TOPIC, config={"retention_ms": -1, "retention_bytes": -1})
    append_batches(engine, 0, [0, 0])
    written = stored(engine, 0, 0)
    clock.advance(30 * DAY_MS)
    compactor = compactor_of(engine)
    assert compactor.topics_needing_work() == [TOPIC]  # the first item is merged to L1
    step = compactor.compact_topic(TOPIC)
    assert step.log_start_offsets == {} and step.segments_merged == 1
    assert engine.describe_topic(TOPIC).partitions[0].log_start_offset == 0
    assert stored(make(), 0, 0) == written
    assert compactor.topics_needing_work() == []


def test_retention_by_bytes_drops_the_oldest_batches_while_the_partition_exceeds_it(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given 4 batches of similar size on partition 0 and a limit of about two of them
    engine = make()
    engine.create_topic(TOPIC, config={"retention_ms": -1})
    append_batches(engine, 0, [clock.now] * 4)
    total = engine.describe_topic(TOPIC).partitions[0].bytes
    limit = total // 2 + 1
    engine.alter_topic(TOPIC, config={"retention_bytes": limit})

    # When a pass runs
    step = compactor_of(engine).compact_topic(TOPIC)

    # Then the oldest batches went until the partition holds at most the limit
    described = engine.describe_topic(TOPIC).partitions[0]
    assert described.log_start_offset == 4
    assert step.log_start_offsets == {0: 4}
    assert described.bytes <= limit < described.bytes + step.bytes_expired // 2 + 1
    assert step.bytes_expired == total - described.bytes
    assert offsets(engine, 0, 4) == [4, 5, 6, 7]


def test_partitions_added_later_are_retained_from_their_first_batch(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given a topic grown from 1 to 3 partitions, the new ones written only after
    engine = make()
    engine.create_topic(TOPIC, config={"retention_ms": DAY_MS})
    old = clock.now - 2 * DAY_MS
    append_batches(engine, 0, [old, old])
    engine.alter_topic(TOPIC, partitions=3)
    append_batches(engine, 2, [old, clock.now])
    append_batches(engine, 0, [clock.now])

    # When a pass runs, then each partition's old prefix is expired, the untouched one stays empty
    run_pass(compactor_of(engine))
    assert [p.log_start_offset for p in engine.describe_topic(TOPIC).partitions] == [4, 0, 2]


def test_dry_run_changes_nothing_and_says_what_it_would_do(
    make: Callable[..., Engine], clock: Clock, backend: Backend
) -> None:
    engine = make()
    engine.create_topic(TOPIC, config={"retention_ms": DAY_MS})
    append_batches(engine, 0, [clock.now - 2 * DAY_MS, clock.now + 3 * DAY_MS])
    clock.advance(PRODUCER_EXPIRATION_MS + GRACE_MS)
    before = backend.contents()

    step = compactor_of(engine).compact_topic(TOPIC, dry_run=True)

    assert backend.contents() == before
    assert step.log_start_offsets == {0: 2}
    assert any("expire events-0 below 2" in action for action in step.actions)
    assert any("chain start" in action for action in step.actions)


def test_a_small_step_budget_takes_several_steps_and_ends_where_one_large_step_does(
    make: Callable[..., Engine], clock: Clock
) -> None:
    engine = make()
    engine.create_topic(TOPIC, config={"retention_ms": DAY_MS})
    append_batches(engine, 0, [clock.now - 2 * DAY_MS] * 7 + [clock.now])
    compactor = compactor_of(engine, items_per_step=2)
    steps = [compactor.compact_topic(TOPIC) for _ in range(4)]
    assert [s.done for s in steps] == [False, False, False, True]
    assert engine.describe_topic(TOPIC).partitions[0].log_start_offset == 14


# Chain truncation and gc ---------------------------------------------------------------------


def _expired_and_kept(make: Callable[..., Engine], clock: Clock) -> Engine:
    """Items 1-5 expired (old records), 6-7 kept, then a day passes (producer expiry): a
    pass expires 1-5 and merges 6 (the chain's last item, 7, stays)."""
    engine = make()
    engine.create_topic(TOPIC, partitions=2, config={"retention_ms": DAY_MS})
    old = clock.now - 2 * DAY_MS
    append_batches(engine, 0, [old, old, old])
    append_batches(engine, 1, [old, old])
    append_batches(engine, 0, [clock.now + 3 * DAY_MS])  # kept through the test
    append_batches(engine, 1, [clock.now + 3 * DAY_MS])
    clock.advance(PRODUCER_EXPIRATION_MS + 1)
    return engine


@pytest.mark.parametrize("backend_kind", ["memory", pytest.param("moto", marks=pytest.mark.moto)])
def test_expired_chain_items_are_removed_and_their_segments_deleted_after_grace_not_before(
    make: Callable[..., Engine], clock: Clock, backend_kind: str
) -> None:
    # Given items 1-5 wholly expired, a day old
    engine = _expired_and_kept(make, clock)
    kept = {0: stored(engine, 0, 6), 1: stored(engine, 1, 4)}
    all_segments = segments(engine)
    compactor = compactor_of(engine)

    # When a pass runs: the chain start moves past them and the merged item 6, but they
    # stay a grace period
    run_pass(compactor)
    topic_id = engine.describe_topic(TOPIC).topic_id
    meta = engine.context.ledger.read_meta(topic_id)
    assert meta is not None and meta.chain_start == 7 and meta.l1_end[0] == 8
    assert chain_seqs(engine) == list(range(8))
    assert all_segments < segments(engine)  # plus the L1 segment
    assert_kept_and_expired(make, kept)

    # When another pass runs before the grace period ends, nothing is deleted
    clock.advance(GRACE_MS - 1)
    run_pass(compactor)
    assert chain_seqs(engine) == list(range(8))
    assert all_segments < segments(engine)

    # When one runs after it: the items go, then gc deletes their segments
    clock.advance(1)
    run_pass(compactor)
    assert chain_seqs(engine) == [7]
    assert segments(engine) == referenced(engine)
    assert len(segments(engine)) == 2  # item 7's and partition 0's L1 segment

    # And every reader still finds the kept records, from earliest and from the start item
    assert_kept_and_expired(make, kept)
    with pytest.raises(OffsetOutOfRangeError):
        make().fetch(TOPIC, 0, 0)
    assert compactor.topics_needing_work() == []


def test_a_fetch_at_the_log_start_whose_anchor_was_removed_reads_its_records(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given a chain truncated so that the log start of partition 1 is in the first item
    # left (its anchor, the item before, is deleted; partition 0's start is in L1)
    engine = _expired_and_kept(make, clock)
    kept = {0: stored(engine, 0, 6), 1: stored(engine, 1, 4)}
    compactor = compactor_of(engine)
    run_pass(compactor)
    clock.advance(GRACE_MS)
    run_pass(compactor)
    assert chain_seqs(engine)[0] == 7

    # When a fresh process fetches at exactly the log start (and below it, and many at once)
    fresh = make()
    result = fresh.fetch(TOPIC, 1, 4)

    # Then it reads the records, and its cursor continues
    assert [(r.offset, r.timestamp_ms, r.value) for r in result.records] == kept[1]
    assert fresh.fetch(TOPIC, 1, 6, cursor=result.cursor).records == []
    with pytest.raises(OffsetOutOfRangeError) as raised:
        fresh.fetch(TOPIC, 1, 2)
    assert raised.value.log_start_offset == 4
    assert_kept_and_expired(make, kept)


def test_a_fetch_below_the_log_start_is_416_while_removed_items_wait_for_their_grace(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given a chain start just moved past items still stored (the anchor of its first item
    # among them)
    engine = _expired_and_kept(make, clock)
    run_pass(compactor_of(engine))
    assert chain_seqs(engine)[0] == 0

    # When fresh processes fetch below the log start and at it, then 416 with the bounds,
    # and the records
    with pytest.raises(OffsetOutOfRangeError) as raised:
        make().fetch(TOPIC, 0, 2)
    assert (raised.value.log_start_offset, raised.value.high_watermark) == (6, 8)
    assert offsets(make(), 0, 6) == [6, 7]


def test_a_fetch_below_the_log_start_reads_no_segment_of_items_below_the_chain_start(
    make: Callable[..., Engine], make_faulty: MakeFaulty, clock: Clock
) -> None:
    # Given a cursor into item 1, and a chain start since moved past it (items still stored,
    # their segments about to be collected)
    engine = _expired_and_kept(make, clock)
    cursor = make().fetch(TOPIC, 0, 0, max_records=1).cursor
    run_pass(compactor_of(engine))

    # When a process whose every GET would fail continues from the cursor
    reader, injector = make_faulty(clock_ms=clock, grace_ms=GRACE_MS)
    injector.set_probability(FailPoint.GET_TIMEOUT, 1.0)
    with pytest.raises(OffsetOutOfRangeError) as raised:
        reader.fetch(TOPIC, 0, 1, max_records=1, cursor=cursor)

    # Then it answers 416 without reading a segment
    assert raised.value.log_start_offset == 6
    assert injector.hits[FailPoint.GET_TIMEOUT] == 0


def test_a_cursor_into_removed_items_falls_back_to_the_offset(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given a consumer whose cursor was taken when partition 1's records began at item 4
    engine = _expired_and_kept(make, clock)
    cursor = engine.fetch(TOPIC, 1, 4, max_records=1).cursor
    compactor = compactor_of(engine)
    run_pass(compactor)
    clock.advance(GRACE_MS)
    run_pass(compactor)

    # When it continues after the items were removed, then it reads on from its offset
    assert [r.offset for r in engine.fetch(TOPIC, 1, 5, cursor=cursor).records] == [5]


def test_a_process_idle_for_a_day_never_appends_into_removed_items(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given a process whose last write is item 1, and a chain later truncated past it
    idle = make()
    idle.create_topic(TOPIC, partitions=2, config={"retention_ms": DAY_MS})
    old = clock.now - 2 * DAY_MS
    append_batches(idle, 0, [old])
    other = make()
    append_batches(other, 0, [old, old])
    append_batches(other, 1, [old, old])
    append_batches(other, 1, [clock.now + 3 * DAY_MS])
    clock.advance(PRODUCER_EXPIRATION_MS + 1)
    compactor = compactor_of(other)
    run_pass(compactor)
    clock.advance(GRACE_MS)
    run_pass(compactor)
    assert chain_seqs(other) == [6]

    # When the idle process appends again, then after the tail, at the next offset
    (ack,) = idle.append(TOPIC, [Record(value=b"late", partition=0)])
    assert (ack.partition, ack.offset) == (0, 6)
    assert chain_seqs(other) == [6, 7]
    assert [r.value for r in make().fetch(TOPIC, 0, 6).records] == [b"late"]


def test_chain_items_appended_within_a_day_are_kept_for_retried_producers(
    make: Callable[..., Engine], clock: Clock
) -> None:
    engine = make()
    engine.create_topic(TOPIC, config={"retention_ms": HOUR_MS})
    append_batches(engine, 0, [clock.now - DAY_MS] * 3 + [clock.now + DAY_MS])
    clock.advance(PRODUCER_EXPIRATION_MS - 1)
    run_pass(compactor_of(engine))
    meta = engine.context.ledger.read_meta(engine.describe_topic(TOPIC).topic_id)
    assert meta is not None and meta.chain_start == 0
    assert engine.describe_topic(TOPIC).partitions[0].log_start_offset == 6


def test_items_below_the_chain_start_are_deleted_a_step_budget_at_a_time(
    make: Callable[..., Engine], clock: Clock
) -> None:
    engine = _expired_and_kept(make, clock)
    run_pass(compactor_of(engine))
    clock.advance(GRACE_MS)
    compactor = compactor_of(engine, items_per_step=4)
    steps = [compactor.compact_topic(TOPIC) for _ in range(2)]
    assert [(s.items_removed, s.done) for s in steps] == [(4, False), (3, True)]
    assert chain_seqs(engine) == [7]


def test_a_step_with_nothing_to_do_writes_nothing(
    make: Callable[..., Engine], clock: Clock
) -> None:
    engine = make()
    engine.create_topic(TOPIC, partitions=3, config={"retention_ms": DAY_MS})
    append_batches(engine, 1, [clock.now])
    topic_id = engine.describe_topic(TOPIC).topic_id
    before = engine.context.ledger.read_meta(topic_id)
    step = compactor_of(engine).compact_topic(TOPIC)
    assert step.done and step.actions == ()
    assert engine.context.ledger.read_meta(topic_id) == before


def test_retention_is_due_while_removed_items_wait_for_their_grace_period(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given a chain start just moved (its items wait a grace period)
    engine = _expired_and_kept(make, clock)
    compactor = compactor_of(engine)
    run_pass(compactor)
    assert compactor.topics_needing_work() == []

    # When the partitions' bytes exceed a new limit, then the topic needs work again
    engine.alter_topic(TOPIC, config={"retention_bytes": 1})
    assert compactor.topics_needing_work() == [TOPIC]
    run_pass(compactor)
    # Partition 1's records are in the chain's last item, partition 0's were merged to L1
    # by the first pass: both are expired
    described = engine.describe_topic(TOPIC).partitions
    assert [(p.log_start_offset, p.bytes) for p in described] == [(8, 0), (6, 0)]


# Crashes -------------------------------------------------------------------------------------

CRASHES = [
    ("move", FailPoint.BEFORE_META_UPDATE),
    ("move", FailPoint.AFTER_META_UPDATE),
    ("delete", FailPoint.BEFORE_ITEMS_DELETE),
    ("merge", FailPoint.AFTER_PUT),
    ("merge", FailPoint.AFTER_ENTRIES_PUT),
    pytest.param("move", FailPoint.AFTER_META_UPDATE, marks=pytest.mark.moto, id="move-moto"),
    pytest.param("delete", FailPoint.BEFORE_ITEMS_DELETE, marks=pytest.mark.moto, id="delete-moto"),
]
"""Each write of the truncation a crash can hit: the meta item moving log and chain start
(before it, and after it with the reply lost), and the items' deletion a grace later; and
the merge's in the same pass: an L1 segment PUT, its entries put (the meta item not moved)."""


def _crashing_pass(compactor: Compactor, injector: FaultInjector, point: FailPoint) -> None:
    """A pass with ``point`` armed once; the crash ends the pass."""
    injector.arm(point)
    with suppress(InjectedFaultError):
        run_pass(compactor)
    assert injector.hits[point] == 1
    injector.disarm()


@pytest.mark.parametrize(("phase", "point"), CRASHES)
def test_a_crash_at_any_write_then_a_rerun_ends_consistent(
    make: Callable[..., Engine],
    make_faulty: MakeFaulty,
    clock: Clock,
    point: FailPoint,
    phase: str,
) -> None:
    # Given expired items and a compactor whose stores fail where told
    engine = _expired_and_kept(make, clock)
    kept = {0: stored(engine, 0, 6), 1: stored(engine, 1, 4)}
    faulty, injector = make_faulty(clock_ms=clock, grace_ms=GRACE_MS)
    compactor = compactor_of(faulty)
    if phase == "delete":  # the chain start has moved: the crash hits the items' deletion
        run_pass(compactor)
        clock.advance(GRACE_MS)

    # When a pass crashes there, and passes run again (a grace period apart)
    _crashing_pass(compactor, injector, point)
    for _ in range(3):
        run_pass(compactor_of(make()))
        clock.advance(GRACE_MS)
    run_pass(compactor_of(make()))

    # Then the ledger and the bucket are consistent and every kept record is readable
    assert chain_seqs(engine) == [7]
    assert segments(engine) == referenced(engine)
    assert [p.log_start_offset for p in engine.describe_topic(TOPIC).partitions] == [6, 4]
    assert_kept_and_expired(make, kept)


def test_a_lost_race_for_the_meta_item_is_replanned(
    make: Callable[..., Engine], make_faulty: MakeFaulty, clock: Clock
) -> None:
    # Given a compactor whose meta update is beaten by another compactor's
    engine = make()
    engine.create_topic(TOPIC, config={"retention_ms": DAY_MS})
    append_batches(engine, 0, [clock.now - 2 * DAY_MS, clock.now])
    faulty, _ = make_faulty(clock_ms=clock, grace_ms=GRACE_MS)
    ledger: Any = faulty.context.ledger
    other = compactor_of(make())
    raced: list[int] = []

    def race(_topic_id: str) -> None:
        if not raced:
            raced.append(1)
            other.compact_topic(TOPIC)

    ledger.on_query = race

    # When it steps, then it re-reads and ends where the other left the topic
    step = compactor_of(faulty).compact_topic(TOPIC)
    assert step.done and raced == [1]
    assert engine.describe_topic(TOPIC).partitions[0].log_start_offset == 2


# gc's leftovers ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend_kind", ["memory", pytest.param("moto", marks=pytest.mark.moto)])
def test_a_create_that_crashed_before_its_catalog_write_is_purged_after_grace(
    make: Callable[..., Engine], make_faulty: MakeFaulty, clock: Clock, backend_kind: str
) -> None:
    # Given a create that stopped after writing its chain
    faulty, injector = make_faulty(clock_ms=clock, grace_ms=GRACE_MS)
    injector.arm(FailPoint.AFTER_CHAIN_CREATE)
    with pytest.raises(InjectedFaultError):
        faulty.create_topic(TOPIC)
    engine = make()
    (marker,) = engine.context.catalog.deleted_topics()
    assert engine.context.ledger.read_tail(marker.topic_id) is not None
    compactor = compactor_of(engine)

    # When collect runs before the grace period, the chain stays; after it, it goes
    assert compactor.collect().topics_purged == 0
    assert engine.context.ledger.read_tail(marker.topic_id) is not None
    clock.advance(GRACE_MS)
    assert compactor.collect().topics_purged == 1
    assert engine.context.ledger.read_meta(marker.topic_id) is None
    assert list(engine.context.ledger.chain(marker.topic_id)) == []
    assert engine.context.catalog.deleted_topics() == []
    # And a topic created normally leaves no marker
    engine.create_topic(TOPIC)
    assert engine.context.catalog.deleted_topics() == []


def test_a_listed_sealed_topic_whose_marker_is_gone_is_deleted_by_collect(
    make: Callable[..., Engine], make_faulty: MakeFaulty, clock: Clock
) -> None:
    # Given a delete that stopped after sealing, whose marker a gc pass then dropped
    # (it read the chain before the seal)
    faulty, injector = make_faulty(clock_ms=clock, grace_ms=GRACE_MS)
    faulty.create_topic(TOPIC)
    append_batches(faulty, 0, [clock.now])
    topic_id = faulty.describe_topic(TOPIC).topic_id
    injector.arm(FailPoint.AFTER_SEAL)
    with pytest.raises(InjectedFaultError):
        faulty.delete_topic(TOPIC)
    faulty.context.catalog.forget_deleted_topic(topic_id)

    # When collect runs while the deletion might still be running, it leaves it alone
    compactor = compactor_of(make())
    compactor.collect()
    assert make().list_topics() == [TOPIC]

    # When it runs a grace period later, the deletion is completed, and purged after another
    clock.advance(GRACE_MS)
    compactor.collect()
    with pytest.raises(TopicNotFoundError):
        make().describe_topic(TOPIC)
    clock.advance(GRACE_MS)
    assert compactor.collect().topics_purged == 1
    assert make().context.ledger.read_meta(topic_id) is None


# Concurrency ---------------------------------------------------------------------------------

PRODUCERS = 4
CONSUMERS = 2
BATCHES = 12
PASSES = 30


class InFlight:
    """Appends and fetches in flight, and a clock moved only between them: no request
    outlasts the grace period (a Lambda runs 15 minutes at most), however far the test
    moves the clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._running = 0
        self._advancing = False

    @contextmanager
    def one(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._advancing)
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def advance(self, ms: int) -> None:
        with self._cond:
            self._advancing = True
            self._cond.wait_for(lambda: self._running == 0)
            self._clock.advance(ms)
            self._advancing = False
            self._cond.notify_all()


def _consume(
    engine: Engine, partitions: int, stop: threading.Event, requests: InFlight
) -> Iterator[tuple[int, int, bytes | None]]:
    """Every record a sequential reader gets from offset 0, partition by partition in
    turn, until it reaches the high watermarks read once ``stop`` is set; a 416 must be a
    truly expired offset."""
    position = [0] * partitions
    cursors: list[str | None] = [None] * partitions
    targets: list[int] | None = None
    while targets is None or any(p < t for p, t in zip(position, targets, strict=True)):
        if targets is None and stop.is_set():
            targets = [engine.list_offset(TOPIC, p, "latest") for p in range(partitions)]
        for partition in range(partitions):
            try:
                with requests.one():
                    result = engine.fetch(
                        TOPIC,
                        partition,
                        position[partition],
                        max_records=3,
                        cursor=cursors[partition],
                    )
            except OffsetOutOfRangeError as error:
                assert error.log_start_offset > position[partition]
                position[partition], cursors[partition] = error.log_start_offset, None
                continue
            for record in result.records:
                yield partition, record.offset, record.value
            position[partition], cursors[partition] = result.next_offset, result.cursor


def test_producers_and_consumers_keep_working_while_passes_run(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given a topic where old records (timestamps a week back) expire at once and new ones
    # (a week ahead) never do during the test
    admin = make()
    admin.create_topic(TOPIC, partitions=3, config={"retention_ms": DAY_MS})
    old, new = clock.now - 7 * DAY_MS, clock.now + 7 * DAY_MS
    stop = threading.Event()
    requests = InFlight(clock)
    old_written = threading.Barrier(PRODUCERS + 1)
    produced: dict[int, dict[int, tuple[bytes | None, int]]] = {p: {} for p in range(3)}
    read: list[list[tuple[int, int, bytes | None]]] = [[] for _ in range(CONSUMERS)]
    lock = threading.Lock()

    running = [PRODUCERS + 1]  # the producers and the compactor

    def finished() -> None:
        with lock:
            running[0] -= 1
            if not running[0]:
                stop.set()

    def produce(index: int) -> None:
        try:
            _produce(index)
        finally:
            finished()

    def _produce(index: int) -> None:
        engine = make(retry=AppendRetryPolicy(deadline_seconds=10 * PASSES * 3600))
        for batch in range(BATCHES):
            ts = old if batch < BATCHES // 2 else new
            records = [
                Record(value=f"p{index}-{batch}-{p}".encode(), partition=p, timestamp_ms=ts)
                for p in range(3)
            ]
            with requests.one():
                acks = engine.append(TOPIC, records)
            for ack, record in zip(acks, records, strict=True):
                with lock:
                    produced[ack.partition][ack.offset] = (record.value, ts)
            if batch == BATCHES // 2 - 1:
                old_written.wait()

    def consume(index: int) -> None:
        read[index].extend(_consume(make(), 3, stop, requests))

    def compact(_index: int) -> None:
        compactor = compactor_of(make(), items_per_step=5)
        try:
            for index in range(PASSES):
                if index == 2:
                    old_written.wait()  # every old record precedes every new one
                run_pass(compactor)
                requests.advance(HOUR_MS)
        finally:
            finished()

    # When 4 producers, 2 consumers and the compactor run at once
    roles: list[Callable[[int], None]] = [
        *(lambda _i, n=n: produce(n) for n in range(PRODUCERS)),
        *(lambda _i, n=n: consume(n) for n in range(CONSUMERS)),
        compact,
    ]
    run_in_threads(len(roles), lambda i: roles[i](i))
    run_pass(compactor_of(make()))

    # Then each consumer read, per partition, offsets in order without repeats, every
    # record from the final log start on, each with the value produced there
    final = admin.describe_topic(TOPIC).partitions
    for records in read:
        for partition in range(3):
            got = [(o, v) for p, o, v in records if p == partition]
            assert [o for o, _ in got] == sorted({o for o, _ in got})
            start = final[partition].log_start_offset
            assert [o for o, _ in got if o >= start] == list(
                range(start, final[partition].high_watermark)
            )
            assert all(produced[partition][o][0] == v for o, v in got)
    # And only old records were expired, and the bucket holds exactly what the chain names
    for partition in range(3):
        start = final[partition].log_start_offset
        assert [o for o, (_, ts) in produced[partition].items() if o < start and ts != old] == []
    assert segments(admin) == referenced(admin)
    # And the passes did expire, truncate the chain and delete segments meanwhile
    assert any(p.log_start_offset > 0 for p in final)
    assert chain_seqs(admin)[0] > 0


# Retention over L1 (ADR 0013, 2) -------------------------------------------------------------


def _merged(
    make: Callable[..., Engine],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    retention_ms: int = -1,
) -> Engine:
    """Partition 0: batches stamped A, A, B, B; partition 1: A, A (items 1-6), merged by a
    pass a day later into one L1 segment per partition of one entry per batch; then in the
    chain partition 1: a batch stamped A + 12 h (item 7), partition 0: B (item 8).

    A is the start time, B three days on; the topic keeps everything until the merge, then
    records for ``retention_ms``.
    """
    monkeypatch.setattr(merge_module, "L1_ROW_GROUP_BYTES", 1)  # one row group per batch
    engine = make()
    engine.create_topic(TOPIC, partitions=2, config={"retention_ms": -1, "retention_bytes": -1})
    a, b = clock.now, clock.now + 3 * DAY_MS
    append_batches(engine, 0, [a, a, b, b])
    append_batches(engine, 1, [a, a])
    clock.advance(PRODUCER_EXPIRATION_MS + 1)
    append_batches(engine, 1, [a + DAY_MS // 2], tag="c")
    append_batches(engine, 0, [b], tag="c")
    run_pass(compactor_of(engine))
    meta = engine.context.ledger.read_meta(engine.describe_topic(TOPIC).topic_id)
    assert meta is not None and meta.l1_end == (8, 4) and meta.chain_start == 7
    assert [len(l1_spans(engine, p)) for p in range(2)] == [4, 2]
    engine.alter_topic(TOPIC, config={"retention_ms": retention_ms})
    return engine


def l1_spans(engine: Engine, partition: int) -> list[tuple[int, int]]:
    """The stored L1 entries of ``partition``: (base offset, last offset)."""
    topic_id = engine.describe_topic(TOPIC).topic_id
    return [
        (e.base_offset, e.last_offset) for e in engine.context.ledger.entries(topic_id, partition)
    ]


def l1_segments(engine: Engine, partition: int) -> set[str]:
    return {key for key in segments(engine) if f"/L1/{partition}/" in key}


EXPIRED_BY_TIME = {0: [(4, 5), (6, 7)], 1: []}
"""The L1 entries left when A is expired and B is not."""


@pytest.mark.parametrize(
    ("retention_ms", "starts"),
    [
        pytest.param(DAY_MS, [4, 4], id="l1-only"),  # A + 12 h is kept
        pytest.param(HOUR_MS, [4, 6], id="l1-and-chain"),  # partition 1's chain batch too
    ],
)
@pytest.mark.parametrize("backend_kind", ["memory", pytest.param("moto", marks=pytest.mark.moto)])
def test_retention_by_time_expires_l1_entries_then_the_chain_in_one_pass(
    make: Callable[..., Engine],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    retention_ms: int,
    starts: list[int],
    backend_kind: str,
) -> None:
    # Given merged records, of which those stamped A (and maybe A + 12 h) are now expired
    engine = _merged(make, clock, monkeypatch, retention_ms)
    kept = {0: stored(engine, 0, 4), 1: stored(engine, 1, starts[1])}
    compactor = compactor_of(engine)

    # When a pass runs
    assert compactor.topics_needing_work() == [TOPIC]
    step = compactor.compact_topic(TOPIC)
    compactor.collect()

    # Then the log starts moved past the expired prefix, L1 and chain, in one step, and
    # describe shows them, with the bytes from there
    assert step.done and step.log_start_offsets == {0: 4, 1: starts[1]}
    assert step.entries_removed == 4
    described = engine.describe_topic(TOPIC).partitions
    assert [p.log_start_offset for p in described] == starts
    assert [p.high_watermark for p in described] == [10, 6]
    assert step.bytes_expired > 0 and described[0].bytes > 0
    assert (described[1].bytes == 0) == (starts[1] == 6)
    # ... the entries wholly below the log starts are deleted, the others kept
    assert {p: l1_spans(engine, p) for p in range(2)} == EXPIRED_BY_TIME
    # ... a fetch below the start is 416 with the bounds, from it returns the rest
    if starts[1] < 6:
        assert_kept_and_expired(make, kept)
    else:
        assert_kept_and_expired(make, {0: kept[0]})
        assert make().fetch(TOPIC, 1, 6).records == []
        with pytest.raises(OffsetOutOfRangeError) as raised:
            make().fetch(TOPIC, 1, 1)
        assert (raised.value.log_start_offset, raised.value.high_watermark) == (6, 6)
    # ... and nothing more is due
    assert compactor.topics_needing_work() == []


def _bytes_model(engine: Engine, partition: int, limit: int) -> int:
    """Where retention by bytes puts the log start: after the shortest prefix of batches
    (by the chain's marks) leaving at most ``limit`` bytes."""
    chain = list(engine.context.ledger.chain(engine.describe_topic(TOPIC).topic_id))
    total = chain[-1].mark(partition).cumulative_bytes
    ends = [(i.mark(partition).high_watermark, i.mark(partition).cumulative_bytes) for i in chain]
    return min(end for end, below in [(0, 0), *ends] if total - below <= limit)


@pytest.mark.parametrize("share", [0.7, 0.45, 0.2, 0.0])
def test_retention_by_bytes_expires_l1_entries_then_the_chain(
    make: Callable[..., Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch, share: float
) -> None:
    # Given merged records and a byte limit of a share of partition 0's bytes
    engine = _merged(make, clock, monkeypatch)
    limit = int(engine.describe_topic(TOPIC).partitions[0].bytes * share)
    expected = [_bytes_model(engine, p, limit) for p in range(2)]
    assert expected[0] > 0
    engine.alter_topic(TOPIC, config={"retention_bytes": limit})
    compactor = compactor_of(engine)

    # When a pass runs
    assert compactor.topics_needing_work() == [TOPIC]
    run_pass(compactor)

    # Then each partition keeps the shortest suffix of batches within the limit
    described = engine.describe_topic(TOPIC).partitions
    assert [p.log_start_offset for p in described] == expected
    assert all(p.bytes <= limit for p in described)
    for partition in range(2):
        assert all(last >= expected[partition] for _, last in l1_spans(engine, partition))
        if expected[partition] > 0:
            with pytest.raises(OffsetOutOfRangeError) as raised:
                make().fetch(TOPIC, partition, expected[partition] - 1)
            assert raised.value.log_start_offset == expected[partition]
        records = make().fetch(TOPIC, partition, expected[partition], max_records=100).records
        assert [r.offset for r in records] == list(
            range(expected[partition], described[partition].high_watermark)
        )
    assert compactor.topics_needing_work() == []


def test_a_fetch_at_the_log_start_inside_an_l1_entry_reads_from_it(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given partition 0 merged into one L1 entry (offsets 0-7), and a log start moved to 4
    # inside it (as by a chain retention step that a merge in flight had not seen)
    engine = make()
    engine.create_topic(TOPIC, partitions=2, config={"retention_ms": 2 * DAY_MS})
    a = clock.now
    append_batches(engine, 0, [a, a, a + 3 * DAY_MS, a + 3 * DAY_MS])
    clock.advance(PRODUCER_EXPIRATION_MS + 1)
    append_batches(engine, 1, [clock.now])
    kept = stored(engine, 0, 4)
    run_pass(compactor_of(make()))
    assert l1_spans(engine, 0) == [(0, 7)]
    ledger = engine.context.ledger
    topic_id = engine.describe_topic(TOPIC).topic_id
    meta = ledger.read_meta(topic_id)
    assert meta is not None and meta.log_start_offset(0) == 0
    assert ledger.update_meta(topic_id, replace(meta, log_start=(4, 0)), meta.version)

    # When fresh readers fetch at the log start and below, then they get the records from
    # it and 416
    assert_kept_and_expired(make, {0: kept})
    # ... and a retention step keeps the entry (its records from 4 on are not expired)
    step = compactor_of(make()).compact_topic(TOPIC)
    assert step.entries_removed == 0 and step.log_start_offsets == {}
    assert l1_spans(engine, 0) == [(0, 7)]


def test_a_fetch_that_read_the_meta_item_before_retention_and_misses_the_entries_is_416(
    make: Callable[..., Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given merged records stamped A, now expired, and a reader whose entries Query runs
    # just after a compactor step moved the log start and deleted the entries below it
    _merged(make, clock, monkeypatch, retention_ms=DAY_MS)
    compactor = compactor_of(make())
    steps: list[CompactionStep] = []

    class ExpiredUnderneath(FaultyLedgerStore):
        def query_entries(
            self, topic_id: str, partition: int, from_offset: int, limit: int
        ) -> list[Entry]:
            if not steps:
                steps.append(compactor.compact_topic(TOPIC))
            return super().query_entries(topic_id, partition, from_offset, limit)

    reader = make()
    reader.context.ledger = ExpiredUnderneath(reader.context.ledger, FaultInjector())

    # When it fetches an offset now below the log start, then 416 with the new bounds
    with pytest.raises(OffsetOutOfRangeError) as raised:
        reader.fetch(TOPIC, 0, 1)
    assert steps and steps[0].entries_removed == 4
    assert (raised.value.log_start_offset, raised.value.high_watermark) == (4, 10)
    # ... and at the log start it reads on
    assert [r.offset for r in reader.fetch(TOPIC, 0, 4, max_records=100).records] == list(
        range(4, 10)
    )


@pytest.mark.parametrize(
    "point",
    [
        FailPoint.AFTER_META_UPDATE,  # the reply lost
        FailPoint.BEFORE_ENTRIES_DELETE,
        pytest.param(FailPoint.BEFORE_ENTRIES_DELETE, marks=pytest.mark.moto, id="moto"),
    ],
    ids=str,
)
def test_a_crash_between_the_meta_update_and_the_entries_deletion_then_a_rerun_ends_consistent(
    make: Callable[..., Engine],
    make_faulty: MakeFaulty,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    point: FailPoint,
) -> None:
    # Given merged records stamped A, now expired, and a step that stops after its meta
    # update
    engine = _merged(make, clock, monkeypatch, retention_ms=DAY_MS)
    kept = {0: stored(engine, 0, 4)}
    faulty, injector = make_faulty(clock_ms=clock, grace_ms=GRACE_MS)
    injector.arm(point)
    with pytest.raises(InjectedFaultError):
        compactor_of(faulty).compact_topic(TOPIC)

    # Then the log starts moved, the entries below them are still stored, readers get the
    # kept records and 416 below them
    assert [p.log_start_offset for p in engine.describe_topic(TOPIC).partitions] == [4, 4]
    assert [len(l1_spans(engine, p)) for p in range(2)] == [4, 2]
    assert_kept_and_expired(make, kept)

    # When the next pass runs: it lists the topic and deletes them
    compactor = compactor_of(make())
    assert compactor.topics_needing_work() == [TOPIC]
    step = compactor.compact_topic(TOPIC)
    assert step.entries_removed == 4 and step.log_start_offsets == {}
    assert {p: l1_spans(engine, p) for p in range(2)} == EXPIRED_BY_TIME
    assert compactor.topics_needing_work() == []
    # ... and gc after the grace period leaves exactly what is referenced
    clock.advance(GRACE_MS)
    run_pass(compactor)
    assert segments(engine) == referenced(engine)
    assert l1_segments(engine, 1) == set()
    assert_kept_and_expired(make, kept)


def test_retention_deletes_a_wholly_expired_l1_segment_with_its_entries_never_a_named_one(
    make: Callable[..., Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given merged records, whose L1 segments were just written: partition 1's segment
    # holds only entries that expire, partition 0's also entries that stay
    engine = _merged(make, clock, monkeypatch, retention_ms=DAY_MS)
    (named,), (expired,) = l1_segments(engine, 0), l1_segments(engine, 1)
    compactor = compactor_of(engine)

    # When a step expires every entry of partition 1 and half of partition 0's
    step = compactor.compact_topic(TOPIC)

    # Then it deletes the segment no entry names any more, after its entries, and keeps
    # the one a live entry names
    assert step.entries_removed == 4 and step.segments_deleted == 1
    assert expired not in segments(engine) and named in segments(engine)
    assert segments(engine) == referenced(engine)
    assert [r.offset for r in make().fetch(TOPIC, 0, 4, max_records=100).records] == list(
        range(4, 10)
    )
    # And a full gc after the grace period finds nothing left to delete
    clock.advance(GRACE_MS)
    assert compactor.collect(full=True).segments_deleted == 0


@pytest.mark.parametrize("items_per_step", [1, 2, 3, 1_000])
def test_a_small_budget_over_l1_takes_several_steps_and_ends_where_a_large_one_does(
    make: Callable[..., Engine],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    items_per_step: int,
) -> None:
    engine = _merged(make, clock, monkeypatch, retention_ms=HOUR_MS)
    compactor = compactor_of(engine, items_per_step=items_per_step)
    steps = []
    while not steps or not steps[-1].done:
        steps.append(compactor.compact_topic(TOPIC))
        assert len(steps) < 20
    # 4 entries and 1 chain batch to expire: at least one step per budget's worth
    assert len(steps) >= -(-5 // items_per_step)
    assert (len(steps) == 1) == (items_per_step == 1_000)
    assert [p.log_start_offset for p in engine.describe_topic(TOPIC).partitions] == [4, 6]
    assert {p: l1_spans(engine, p) for p in range(2)} == EXPIRED_BY_TIME
    assert sum(step.entries_removed for step in steps) == 4


def test_a_dry_run_over_l1_writes_nothing_and_says_what_it_would_do(
    make: Callable[..., Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch, backend: Backend
) -> None:
    engine = _merged(make, clock, monkeypatch, retention_ms=HOUR_MS)
    before = backend.contents()

    step = compactor_of(engine).compact_topic(TOPIC, dry_run=True)

    assert backend.contents() == before
    assert step.log_start_offsets == {0: 4, 1: 6} and step.entries_removed == 4
    assert "expire events-0 below 2 (time, L1 entry 0..1)" in step.actions
    assert "expire events-1 below 4 (time, L1 entry 2..3)" in step.actions
    assert "delete 2 L1 entries of events-0 below 4" in step.actions
    assert any(
        action.startswith("expire events-1 below 6 (time, item 7)") for action in step.actions
    )


class _CountingEntries(FaultyLedgerStore):
    """A ledger that counts the L1 entry Queries per partition."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, FaultInjector())
        self.queries: list[int] = []

    def query_entries(
        self, topic_id: str, partition: int, from_offset: int, limit: int
    ) -> list[Entry]:
        self.queries.append(partition)
        return super().query_entries(topic_id, partition, from_offset, limit)


def test_listing_and_a_step_with_nothing_due_in_l1_query_each_partition_once(
    make: Callable[..., Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _merged(make, clock, monkeypatch, retention_ms=30 * DAY_MS)
    counting = _CountingEntries(engine.context.ledger)
    engine.context.ledger = counting
    compactor = compactor_of(engine)

    assert compactor.topics_needing_work() == []
    assert sorted(counting.queries) == [0, 1]
    counting.queries.clear()
    step = compactor.compact_topic(TOPIC)
    assert step.done and step.log_start_offsets == {} and step.entries_removed == 0
    assert sorted(counting.queries) == [0, 1]


def test_a_compacted_topic_is_not_listed_nor_expired_for_its_old_l1_records(
    make: Callable[..., Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _merged(make, clock, monkeypatch)
    engine.alter_topic(TOPIC, config={"retention_ms": HOUR_MS, "cleanup_policy": "compact"})
    compactor = compactor_of(engine)

    # A pass may list it, for key compaction (ADR 0013, 6), but expires nothing
    steps = [compactor.compact_topic(TOPIC)]
    while not steps[-1].done:
        steps.append(compactor.compact_topic(TOPIC))
    assert all(s.log_start_offsets == {} and s.entries_removed == 0 for s in steps)
    assert [p.log_start_offset for p in engine.describe_topic(TOPIC).partitions] == [0, 0]
    assert l1_spans(engine, 0)[0][0] == 0 and l1_spans(engine, 1)[0][0] == 0


def test_a_fetch_whose_l1_segment_retention_deleted_with_its_entries_is_416(
    make: Callable[..., Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given merged records stamped A, now expired, and a reader that found partition 1's
    # L1 entries, whose GET of their segment runs after a compactor step deleted them and
    # then the segment only they named
    _merged(make, clock, monkeypatch, retention_ms=DAY_MS)
    compactor = compactor_of(make())
    reader = make()
    objects_store = reader.context.objects
    raced: list[int] = []

    class ExpiredUnderneath:
        def __getattr__(self, name: str) -> Any:
            return getattr(objects_store, name)

        def get_range(self, key: str, start: int, end: int) -> bytes:
            if "/L1/" in key and not raced:
                step = compactor.compact_topic(TOPIC)
                raced.extend((step.entries_removed, step.segments_deleted))
            data: bytes = objects_store.get_range(key, start, end)
            return data

    reader.context.objects = ExpiredUnderneath()  # type: ignore[assignment]

    # When it fetches, then 416 with the new bounds
    with pytest.raises(OffsetOutOfRangeError) as raised:
        reader.fetch(TOPIC, 1, 0)
    assert raced == [4, 1]
    assert (raised.value.log_start_offset, raised.value.high_watermark) == (4, 6)


def test_consumers_reading_l1_while_retention_expires_it_lose_and_repeat_nothing(
    make: Callable[..., Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given merged records, and consumers reading them from offset 0 while passes expire
    # those stamped A (L1 entries and partition 1's chain batch) and gc runs after grace
    engine = _merged(make, clock, monkeypatch)
    written = {p: {r[0]: r[2] for r in stored(engine, p, 0)} for p in range(2)}
    stop = threading.Event()
    requests = InFlight(clock)
    read: list[list[tuple[int, int, bytes | None]]] = [[] for _ in range(CONSUMERS)]

    def consume(index: int) -> None:
        read[index].extend(_consume(make(), 2, stop, requests))

    def compact(_index: int) -> None:
        try:
            engine.alter_topic(TOPIC, config={"retention_ms": HOUR_MS})
            compactor = compactor_of(make(), items_per_step=1)
            for _ in range(3):
                run_pass(compactor)
                requests.advance(GRACE_MS)
        finally:
            stop.set()

    run_in_threads(CONSUMERS + 1, lambda i: consume(i) if i < CONSUMERS else compact(i))

    # Then each consumer read, per partition, offsets in order without repeats, every one
    # from the final log start on, each with the value written there
    final = engine.describe_topic(TOPIC).partitions
    assert [p.log_start_offset for p in final] == [4, 6]
    for records in read:
        for partition in range(2):
            got = [(o, v) for p, o, v in records if p == partition]
            assert [o for o, _ in got] == sorted({o for o, _ in got})
            start = final[partition].log_start_offset
            assert [o for o, _ in got if o >= start] == list(
                range(start, final[partition].high_watermark)
            )
            assert all(written[partition][o] == v for o, v in got)
    assert segments(engine) == referenced(engine)
    assert l1_segments(engine, 1) == set()
