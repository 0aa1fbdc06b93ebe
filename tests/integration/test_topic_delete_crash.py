"""A topic deletion that crashes at any step, then the name re-created, seen by warm processes.

A warm process holds the old topic (id, heads) in its caches; a fresh process reads the
catalog. Whatever step the deletion stopped at, the warm process must neither read the old
records under the name nor get an acknowledgement for a write the fresh process cannot see.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace

import pytest

from lakelog import Engine, InvalidRequestError, Record, TopicExistsError, TopicNotFoundError
from lakelog.service.admin import DELETE_ATTEMPTS
from lakelog.storage.faults import FailPoint, FaultyCatalogStore, InjectedFaultError
from lakelog.storage.keys import partition_pk
from lakelog.storage.ports import TopicRecord
from tests.conftest import MakeFaulty

NOW_MS = 1_700_000_000_000
"""Every engine's clock: the warm process's cached topic never expires during a test."""
OLD_BATCHES = 12
"""Batches on partition 0 before the delete: more than one fetch query reads, so a reader
catching up from offset 0 does not see the head in its first query."""

DELETE_STEPS = [
    FailPoint.BEFORE_PARTITION_CLOSE,
    FailPoint.AFTER_PARTITION_CLOSE,
    FailPoint.BEFORE_TOPIC_DELETE,
    FailPoint.AFTER_TOPIC_DELETE,
    FailPoint.BEFORE_PARTITION_DELETE,
    pytest.param(
        FailPoint.AFTER_TOPIC_DELETE, marks=pytest.mark.moto, id="after_topic_delete-moto"
    ),
]
"""Every step of `TopicAdmin.delete_topic` a crash can stop it at (ADR 0005); one on the
DynamoDB adapter too."""
BEFORE_CATALOG_CHANGE = [FailPoint.AFTER_PARTITION_CLOSE, FailPoint.BEFORE_TOPIC_DELETE]
"""Crashes that leave the catalog item in place with the ledger already (partly) closed."""


def _clock() -> int:
    return NOW_MS


def _old_topic(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty
) -> tuple[Engine, Engine, Callable[[FailPoint], None]]:
    """An admin engine and a warm one that appended to and read both partitions of "t"."""
    admin, injector = make_faulty(clock_ms=_clock)
    warm = make_engine(clock_ms=_clock)
    admin.create_topic("t", partitions=2)
    for batch in range(OLD_BATCHES):
        admin.append("t", [Record(value=b"old-%d" % batch, partition=0)])
    warm.append("t", [Record(value=b"old-warm", partition=1)])
    assert len(warm.fetch("t", 0, 0).records) == OLD_BATCHES
    assert len(warm.fetch("t", 1, 0).records) == 1

    def crash_delete(point: FailPoint) -> None:
        injector.arm(point)
        with pytest.raises(InjectedFaultError):
            admin.delete_topic("t")
        assert injector.hits[point] == 1

    return admin, warm, crash_delete


@pytest.mark.parametrize("point", DELETE_STEPS)
def test_after_a_crashed_delete_and_a_recreate_warm_processes_see_only_the_new_topic(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty, point: FailPoint
) -> None:
    # Given a delete of "t" that crashed at one of its steps
    admin, warm, crash_delete = _old_topic(make_engine, make_faulty)
    crash_delete(point)

    # When the delete is run again (a no-op once the name is gone) and "t" is re-created
    with suppress(TopicNotFoundError):
        admin.delete_topic("t")
    admin.create_topic("t", partitions=2)
    fresh = make_engine(clock_ms=_clock)

    # Then the warm process reads nothing of the old topic under the name
    assert warm.fetch("t", 0, 0).records == []
    assert warm.fetch("t", 1, 0).records == []
    # And every append it is acknowledged for is where a fresh process reads it
    acks = warm.append(
        "t", [Record(value=b"new-0", partition=0), Record(value=b"new-1", partition=1)]
    )
    assert [(a.partition, a.offset) for a in acks] == [(0, 0), (1, 0)]
    for ack, value in zip(acks, [b"new-0", b"new-1"], strict=True):
        assert [r.value for r in fresh.fetch("t", ack.partition, 0).records] == [value]
        assert [r.value for r in warm.fetch("t", ack.partition, 0).records] == [value]


@pytest.mark.parametrize("point", BEFORE_CATALOG_CHANGE)
def test_a_topic_whose_delete_crashed_takes_no_appends_and_shows_no_records_until_it_is_rerun(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty, point: FailPoint
) -> None:
    # Given a delete that crashed after closing the ledger but before removing the name
    admin, warm, crash_delete = _old_topic(make_engine, make_faulty)
    crash_delete(point)
    fresh = make_engine(clock_ms=_clock)

    # Then the name stays taken, and no process appends to or reads a closed partition
    # (partition 0 is closed first; at AFTER_PARTITION_CLOSE partition 1 is still open)
    with pytest.raises(TopicExistsError):
        admin.create_topic("t")
    for engine in (warm, fresh):
        with pytest.raises(TopicNotFoundError):
            engine.append("t", [Record(value=b"lost?", partition=0)])
        with pytest.raises(TopicNotFoundError):
            engine.fetch("t", 0, 0)
        with pytest.raises(TopicNotFoundError):
            engine.fetch("t", 0, OLD_BATCHES - 1)

    # When the delete is run again, it completes: the name is free and the ledger is gone
    topic_id = admin.context.catalog.get_topic("t").topic_id  # type: ignore[union-attr]
    admin.delete_topic("t")
    assert admin.list_topics() == []
    pks = [partition_pk(topic_id, p) for p in range(2)]
    assert admin.context.ledger.read_heads(pks) == {}
    assert [list(admin.context.ledger.entries(pk)) for pk in pks] == [[], []]


def test_a_delete_crashed_after_the_catalog_change_is_finished_by_gc(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty
) -> None:
    admin, warm, crash_delete = _old_topic(make_engine, make_faulty)
    topic_id = admin.describe_topic("t").topic_id
    crash_delete(FailPoint.AFTER_TOPIC_DELETE)
    admin.create_topic("t", partitions=2)
    warm.append("t", [Record(value=b"new", partition=0)])

    later = make_engine(clock_ms=lambda: NOW_MS + 2, grace_ms=1)
    assert later.gc.purge_deleted_topics() == [topic_id]

    pks = [partition_pk(topic_id, p) for p in range(2)]
    assert later.context.ledger.read_heads(pks) == {}
    assert [r.value for r in later.fetch("t", 0, 0).records] == [b"new"]


def test_partitions_added_while_a_delete_runs_are_closed_too(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty
) -> None:
    # Given a delete that has closed both partitions of "t" when another process grows it
    admin, _ = make_faulty(clock_ms=_clock)
    other = make_engine(clock_ms=_clock)
    admin.create_topic("t", partitions=2)
    topic_id = admin.describe_topic("t").topic_id
    catalog = admin.context.catalog
    assert isinstance(catalog, FaultyCatalogStore)
    grown: list[int] = []

    def grow_once(_topic: object) -> None:
        if not grown:
            # The grow is applied; its reply reads the closed heads: the topic is going
            with pytest.raises(TopicNotFoundError):
                other.alter_topic("t", partitions=3)
            grown.append(other.context.catalog.get_topic("t").partitions)  # type: ignore[union-attr]

    catalog.on_delete = grow_once
    admin.delete_topic("t")

    # Then the delete saw the new partition, closed and removed it with the others
    assert grown == [3]
    assert admin.list_topics() == []
    pks = [partition_pk(topic_id, p) for p in range(3)]
    assert other.context.ledger.read_heads(pks) == {}
    assert [t.partitions for t in other.context.catalog.deleted_topics()] == [3]
    with pytest.raises(TopicNotFoundError):
        other.append("t", [Record(value=b"lost?", partition=2)])


@pytest.mark.parametrize("point", BEFORE_CATALOG_CHANGE)
def test_gc_completes_a_delete_that_crashed_after_closing_a_partition(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty, point: FailPoint
) -> None:
    # Given a delete that crashed after closing partition 0, and nobody runs it again
    admin, _, crash_delete = _old_topic(make_engine, make_faulty)
    topic_id = admin.context.catalog.get_topic("t").topic_id  # type: ignore[union-attr]
    crash_delete(point)

    # When gc runs past the grace period, it finishes the delete (the name is free at once)
    later = make_engine(clock_ms=lambda: NOW_MS + 2, grace_ms=1)
    assert later.gc.purge_deleted_topics() == []
    assert later.list_topics() == []
    later.create_topic("t")
    assert later.fetch("t", 0, 0).records == []
    # And a later pass purges what is left of the old topic
    pks = [partition_pk(topic_id, p) for p in range(2)]
    assert later.context.ledger.read_heads(pks) == {}
    much_later = make_engine(clock_ms=lambda: NOW_MS + 4, grace_ms=1)
    assert much_later.gc.purge_deleted_topics() == [topic_id]
    assert much_later.context.catalog.deleted_topics() == []


def test_gc_drops_the_marker_of_a_delete_that_crashed_before_closing_anything(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty
) -> None:
    # Given a delete that crashed after its marker, before closing any partition
    admin, warm, crash_delete = _old_topic(make_engine, make_faulty)
    crash_delete(FailPoint.BEFORE_PARTITION_CLOSE)
    assert len(admin.context.catalog.deleted_topics()) == 1

    # When gc runs past the grace period, the delete never took effect: the topic stays
    later = make_engine(clock_ms=lambda: NOW_MS + 2, grace_ms=1)
    assert later.gc.purge_deleted_topics() == []
    assert later.context.catalog.deleted_topics() == []
    assert len(later.fetch("t", 0, 0).records) == OLD_BATCHES
    ack = warm.append("t", [Record(value=b"kept", partition=1)])[0]
    assert [r.value for r in later.fetch("t", 1, ack.offset).records] == [b"kept"]


def test_a_delete_that_concurrent_alters_keep_outrunning_gives_up_and_can_be_run_again(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty
) -> None:
    # Given another process that changes the topic's config before each catalog removal
    admin, _ = make_faulty(clock_ms=_clock)
    other = make_engine(clock_ms=_clock)
    admin.create_topic("t")
    catalog = admin.context.catalog
    assert isinstance(catalog, FaultyCatalogStore)
    changes: list[int] = []

    def change(_topic: object) -> None:
        changes.append(len(changes))
        other.context.catalog.update_topic(
            replace(_current(other), version=len(changes) + 1), expected_version=len(changes)
        )

    catalog.on_delete = change

    # Then the delete gives up after a bounded number of rounds, naming the reason
    with pytest.raises(InvalidRequestError, match="kept changing"):
        admin.delete_topic("t")
    assert len(changes) == DELETE_ATTEMPTS
    # And once the alters stop, running it again completes it
    catalog.on_delete = None
    admin.delete_topic("t")
    assert admin.list_topics() == []


def _current(engine: Engine) -> TopicRecord:
    topic = engine.context.catalog.get_topic("t")
    assert topic is not None
    return topic
