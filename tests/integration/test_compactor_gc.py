"""The compactor's deletions without a full scan (ADR 0013, 2 and 3.2): a step deletes the
segments of the chain items and L1 entries it deletes, after them; a light ``collect``
lists nothing and reads no chain item; the full ``collect`` finds what a crash left.

On a fake clock, with faults injected where the existing compactor tests inject them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from lakelog import Engine, OffsetOutOfRangeError
from lakelog.log.chain import PRODUCER_EXPIRATION_MS, new_segment_id
from lakelog.log.records import ChainItem, Entry, ProducerUpdate
from lakelog.service.compactor import SHARED_SEGMENT_MS, Compactor
from lakelog.storage.faults import FailPoint, InjectedFaultError
from lakelog.storage.keys import l0_segment_key_from_id
from lakelog.storage.ports import ChainConflict, LedgerStore, ObjectInfo, ObjectStore
from tests.conftest import MakeFaulty
from tests.integration.test_compactor_retention import (
    DAY_MS,
    GRACE_MS,
    TOPIC,
    Clock,
    _merged,
    append_batches,
    chain_seqs,
    clock,
    compactor_of,
    l1_segments,
    make,
    referenced,
    run_pass,
    segments,
)

__all__ = ["clock", "make"]  # fixtures shared with the retention tests

MINUTE_MS = 60_000


def item_segments(engine: Engine, seqs: Sequence[int]) -> set[str]:
    """The L0 segments the stored chain items at ``seqs`` name."""
    topic_id = engine.describe_topic(TOPIC).topic_id
    return {
        l0_segment_key_from_id(topic_id, item.segment_id)
        for item in engine.context.ledger.chain(topic_id)
        if item.seq in seqs and item.segment_id is not None
    }


def expired_chain(make: Callable[..., Engine], clock: Clock) -> Engine:
    """Items 1-3 of partition 0 expired (stamped two days ago); a day later items 4 and 5
    (the tail), and a pass that moved the log start and the chain start past 1-3."""
    engine = make()
    engine.create_topic(TOPIC, config={"retention_ms": DAY_MS})
    append_batches(engine, 0, [clock.now - 2 * DAY_MS] * 3, tag="old")
    clock.advance(PRODUCER_EXPIRATION_MS + 1)
    append_batches(engine, 0, [clock.now], tag="new")
    append_batches(engine, 0, [clock.now], tag="tail")
    run_pass(compactor_of(engine))
    meta = engine.context.ledger.read_meta(engine.describe_topic(TOPIC).topic_id)
    assert meta is not None and meta.chain_start == 4
    return engine


# Chain truncation -------------------------------------------------------------------------


@pytest.mark.parametrize("backend_kind", ["memory", pytest.param("moto", marks=pytest.mark.moto)])
def test_truncation_deletes_exactly_the_l0_segments_of_the_items_it_deleted(
    make: Callable[..., Engine], clock: Clock, backend_kind: str
) -> None:
    # Given items 1-3 below the chain start, their grace period passed
    engine = expired_chain(make, clock)
    doomed = item_segments(engine, [1, 2, 3])
    live = item_segments(engine, [4, 5])
    before = segments(engine)
    clock.advance(GRACE_MS)

    # When a step deletes them
    step = compactor_of(engine).compact_topic(TOPIC)

    # Then exactly their segments went, after them; every segment named stays
    assert step.items_removed == 4 and step.segments_deleted == 3  # genesis names none
    assert chain_seqs(engine) == [4, 5]
    assert segments(engine) == before - doomed == live == referenced(engine)
    fetched = make().fetch(TOPIC, 0, 6).records
    assert [r.value for r in fetched] == [b"new0-0", b"new0-1", b"tail0-0", b"tail0-1"]


def test_a_segment_a_later_item_names_again_is_kept_when_its_first_item_goes(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given an append whose chain put's reply was lost: the retry finds its own item there
    # and plans after it, so items 1 and 2 name the same segment; item 2 is the tail
    engine = make()
    engine.create_topic(TOPIC, config={"retention_ms": DAY_MS})
    engine.context.ledger = LostFirstReply(engine.context.ledger)
    append_batches(engine, 0, [clock.now - 2 * DAY_MS])
    topic_id = engine.describe_topic(TOPIC).topic_id
    first, second = (
        item for item in engine.context.ledger.chain(topic_id) if item.kind == "append"
    )
    assert first.segment_id == second.segment_id and second.seq == first.seq + 1
    clock.advance(PRODUCER_EXPIRATION_MS + 1)
    compactor = compactor_of(engine)
    run_pass(compactor)
    clock.advance(GRACE_MS)

    # When the truncation deletes item 1 (the tail stays)
    step = compactor.compact_topic(TOPIC)

    # Then the segment the tail still names is kept
    assert step.items_removed == 2 and step.segments_deleted == 0
    assert chain_seqs(engine) == [2]
    assert segments(engine) == referenced(engine) != set()


def test_segments_written_shortly_before_items_after_the_chain_start_are_left_to_the_full_gc(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given items 1-3 appended a minute apart and merged a day later, items 4-8 a minute
    # after each other, and steps of 4 items, which read 4 items from the chain start:
    # item 7, not the chain's end, could still name a segment uploaded within
    # SHARED_SEGMENT_MS before it
    engine = make()
    engine.create_topic(TOPIC, config={"retention_ms": -1})
    for tag in ("a", "b", "c", "d", "e", "f", "g", "tail"):
        append_batches(engine, 0, [clock.now], tag=tag)
        clock.advance(MINUTE_MS)
    assert 8 * MINUTE_MS < SHARED_SEGMENT_MS
    clock.advance(PRODUCER_EXPIRATION_MS - 6 * MINUTE_MS)
    compactor = compactor_of(engine, items_per_step=4)
    assert compactor.compact_topic(TOPIC).segments_merged == 3
    doomed = item_segments(engine, [1, 2, 3])
    clock.advance(GRACE_MS)

    # When the truncation deletes the items
    step = compactor.compact_topic(TOPIC)

    # Then their segments stay for the full gc, which a light collect does not run
    assert step.items_removed == 4 and step.segments_deleted == 0
    assert doomed <= segments(engine)
    assert compactor.collect(full=False).segments_deleted == 0
    assert compactor.collect(full=True).segments_deleted == 3
    assert segments(engine) == referenced(engine)


@pytest.mark.parametrize("point", [FailPoint.AFTER_ITEMS_DELETE])
def test_a_crash_between_the_items_and_their_segments_leaves_orphans_the_full_gc_deletes(
    make_faulty: MakeFaulty, clock: Clock, point: FailPoint
) -> None:
    # Given items below the chain start past their grace period, on stores that fail
    # right after the items' deletion
    engine, injector = make_faulty(clock_ms=clock, grace_ms=GRACE_MS)
    expired_chain(lambda: engine, clock)
    doomed = item_segments(engine, [1, 2, 3])
    clock.advance(GRACE_MS)
    compactor = Compactor(engine.context, engine.gc)

    # When the step crashes between the two deletions
    injector.arm(point)
    with pytest.raises(InjectedFaultError):
        compactor.compact_topic(TOPIC)

    # Then the items are gone and their segments are orphans: no step finds them again,
    # nor a light collect; the next full gc (they are past the grace period) deletes them
    assert chain_seqs(engine) == [4, 5]
    assert doomed <= segments(engine)
    assert compactor.compact_topic(TOPIC).segments_deleted == 0
    assert compactor.collect(full=False).segments_deleted == 0
    assert doomed <= segments(engine)
    assert compactor.collect(full=True).segments_deleted == 3
    assert segments(engine) == referenced(engine)


# Retention over L1 ------------------------------------------------------------------------


def test_retention_keeps_the_segment_of_an_entry_straddling_the_log_start(
    make: Callable[..., Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given merged records of partition 0: entries of batches stamped A, A, B, B in one
    # segment; retention then expires the A ones (the B entries stay, in the same segment)
    engine = _merged(make, clock, monkeypatch, retention_ms=DAY_MS)
    (shared,) = l1_segments(engine, 0)
    compactor = compactor_of(engine, items_per_step=1)

    # When steps of one entry each expire them (each cut by its budget)
    steps = [compactor.compact_topic(TOPIC) for _ in range(6)]

    # Then the segment partition 0's live entries name is never deleted
    assert sum(step.entries_removed for step in steps) == 4
    assert shared in segments(engine)
    assert segments(engine) == referenced(engine)
    assert [r.offset for r in make().fetch(TOPIC, 0, 4, max_records=100).records] == list(
        range(4, 10)
    )


def test_a_crash_between_the_entries_and_their_segment_leaves_an_orphan_the_full_gc_deletes(
    make: Callable[..., Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given merged records whose step expires every entry of partition 1, on an object
    # store that fails when that step deletes their segment
    engine = _merged(make, clock, monkeypatch, retention_ms=DAY_MS)
    (expired,) = l1_segments(engine, 1)
    objects = engine.context.objects
    engine.context.objects = FailingDelete(objects)
    compactor = compactor_of(engine)

    # When the step crashes after deleting the entries
    with pytest.raises(InjectedFaultError):
        compactor.compact_topic(TOPIC)
    engine.context.objects = objects

    # Then the segment is an orphan no step or light collect finds; the full gc does
    assert expired in segments(engine)
    assert compactor.compact_topic(TOPIC).segments_deleted == 0
    assert compactor.collect(full=False).segments_deleted == 0
    clock.advance(GRACE_MS)
    assert compactor.collect(full=True).segments_deleted == 1
    assert expired not in segments(engine)
    assert segments(engine) == referenced(engine)


# Light and full collect -------------------------------------------------------------------


@pytest.mark.parametrize("backend_kind", ["memory", pytest.param("moto", marks=pytest.mark.moto)])
def test_a_light_collect_lists_no_segment_and_reads_no_chain_item_or_entry(
    make: Callable[..., Engine], clock: Clock, monkeypatch: pytest.MonkeyPatch, backend_kind: str
) -> None:
    # Given a merged topic with L0 and L1 segments past the grace period, and an orphan
    engine = _merged(make, clock, monkeypatch)
    topic_id = engine.describe_topic(TOPIC).topic_id
    orphan = l0_segment_key_from_id(topic_id, new_segment_id(clock.now))
    engine.context.objects.put(orphan, b"crashed append")
    clock.advance(GRACE_MS + 1)
    counting = Counting(engine)
    compactor = compactor_of(engine)

    # When a light collect runs: one reverse Query of the topic's tail, nothing else
    report = compactor.collect(full=False)
    assert report.segments_deleted == 0
    assert counting.calls == ["read_tail"]

    # When a full one runs: it lists the segments, reads every item and entry, deletes
    report = compactor.collect(full=True)
    assert report.segments_deleted == 1
    assert {"list", "chain", "entries"} <= set(counting.calls)
    assert segments(engine) == referenced(engine)


def test_a_light_collect_still_purges_a_deleted_topic(
    make: Callable[..., Engine], clock: Clock
) -> None:
    engine = make()
    engine.create_topic(TOPIC)
    append_batches(engine, 0, [clock.now])
    engine.delete_topic(TOPIC)
    clock.advance(GRACE_MS + 1)
    assert compactor_of(engine).collect(full=False).topics_purged == 1


# Readers racing the targeted deletions ----------------------------------------------------


def test_a_fetch_whose_l0_segment_the_truncation_deleted_after_it_read_the_chain_reads_l1(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given a day-old topic, and a reader whose fetch has read the chain items when a
    # merge, then a grace period later the truncation, deletes them and their segments
    engine = make()
    engine.create_topic(TOPIC, config={"retention_ms": -1})
    append_batches(engine, 0, [clock.now] * 4)
    append_batches(engine, 0, [clock.now], tag="tail")
    expected = [(r.offset, r.value) for r in make().fetch(TOPIC, 0, 0).records]
    clock.advance(PRODUCER_EXPIRATION_MS + 1)
    reader = make()
    raced: list[int] = []

    def merge_then_truncate() -> int:
        compactor = compactor_of(engine)
        assert compactor.compact_topic(TOPIC).segments_merged == 4
        clock.advance(GRACE_MS + 1)
        return compactor.compact_topic(TOPIC).segments_deleted

    reader.context.objects = Racing(reader.context.objects, raced, merge_then_truncate)

    # When it GETs the segment: missing; it plans again and reads the merged records
    fetched = reader.fetch(TOPIC, 0, 0, max_records=100)
    assert raced == [4]
    assert [(r.offset, r.value) for r in fetched.records] == expected


def test_a_fetch_whose_l0_segment_the_truncation_deleted_after_retention_is_416(
    make: Callable[..., Engine], clock: Clock
) -> None:
    # Given expired records, and a reader whose fetch has read their chain items when
    # retention, then a grace period later the truncation, deletes them and their segments
    engine = make()
    engine.create_topic(TOPIC, config={"retention_ms": DAY_MS})
    append_batches(engine, 0, [clock.now - 2 * DAY_MS] * 3)
    append_batches(engine, 0, [clock.now + 2 * DAY_MS], tag="tail")
    clock.advance(PRODUCER_EXPIRATION_MS + 1)
    reader = make()
    raced: list[int] = []

    def expire_then_truncate() -> int:
        compactor = compactor_of(engine)
        assert compactor.compact_topic(TOPIC).log_start_offsets == {0: 6}
        clock.advance(GRACE_MS + 1)
        return compactor.compact_topic(TOPIC).segments_deleted

    reader.context.objects = Racing(reader.context.objects, raced, expire_then_truncate)

    # When it GETs the segment: missing; it plans again and answers 416 with the bounds
    with pytest.raises(OffsetOutOfRangeError) as raised:
        reader.fetch(TOPIC, 0, 0, max_records=100)
    assert raced == [3]
    assert (raised.value.log_start_offset, raised.value.high_watermark) == (6, 8)


# Helpers ----------------------------------------------------------------------------------


class Racing:
    """An object store whose first GET of an L0 segment first runs ``race`` (recording
    what it returns in ``raced``)."""

    def __init__(self, inner: ObjectStore, raced: list[int], race: Callable[[], int]) -> None:
        self._inner, self._raced, self._race = inner, raced, race

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if "/L0/" in key and not self._raced:
            self._raced.append(self._race())
        return self._inner.get_range(key, start, end)


class FailingDelete:
    """An object store whose deletions fail (a crash before them)."""

    def __init__(self, inner: ObjectStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def delete(self, keys: Sequence[str]) -> None:
        if keys:
            raise InjectedFaultError(FailPoint.AFTER_ENTRIES_DELETE)


class LostFirstReply:
    """A ledger whose first append put succeeds but answers as a conflict with the item it
    put (a lost reply, retried by the SDK and refused by the seq's condition)."""

    def __init__(self, inner: LedgerStore) -> None:
        self._inner, self._lost = inner, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put_item(
        self, topic_id: str, item: ChainItem, producer: ProducerUpdate | None = None
    ) -> None:
        self._inner.put_item(topic_id, item, producer)
        if not self._lost and item.kind == "append":
            self._lost = True
            raise ChainConflict(item)


class Counting:
    """Records the calls of a collect on the engine's object store and ledger."""

    def __init__(self, engine: Engine) -> None:
        self.calls: list[str] = []
        objects, ledger, calls = engine.context.objects, engine.context.ledger, self.calls

        class Objects:
            def __getattr__(self, name: str) -> Any:
                return getattr(objects, name)

            def list(self, prefix: str) -> Iterator[ObjectInfo]:
                calls.append("list")
                return objects.list(prefix)

        class Ledger:
            def __getattr__(self, name: str) -> Any:
                if name in ("query", "get_item", "query_entries"):
                    calls.append(name)
                return getattr(ledger, name)

            def read_tail(self, topic_id: str) -> Any:
                calls.append("read_tail")
                return ledger.read_tail(topic_id)

            def chain(self, topic_id: str) -> Iterator[ChainItem]:
                calls.append("chain")
                return ledger.chain(topic_id)

            def entries(self, topic_id: str, partition: int) -> Iterator[Entry]:
                calls.append("entries")
                return ledger.entries(topic_id, partition)

        engine.context.objects = Objects()
        engine.context.ledger = Ledger()
