"""A topic deletion that crashes at any step, then the name re-created, seen by warm processes.

A warm process holds the old topic (id, chain tail) in its caches; a fresh process reads the
catalog. Whatever step the deletion stopped at (ADR 0012, 1.8: marker, seal item, meta item
sealed, catalog swap), the warm process must neither read the old records under the name
nor get an acknowledgement for a write the fresh process cannot see.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace

import pytest

from lakelog import Engine, InvalidRequestError, Record, TopicExistsError, TopicNotFoundError
from lakelog.service.admin import DELETE_ATTEMPTS
from lakelog.storage.faults import FailPoint, FaultyCatalogStore, InjectedFaultError
from lakelog.storage.keys import topic_segments_prefix
from lakelog.storage.ports import TopicRecord
from tests.conftest import MakeFaulty

NOW_MS = 1_700_000_000_000
"""Every engine's clock: the warm process's cached topic never expires during a test."""
OLD_BATCHES = 12
"""Batches on partition 0 before the delete: a reader catching up from offset 0 one record
at a time stops long before the seal, which its one Query still reaches."""

DELETE_STEPS = [
    FailPoint.AFTER_TOPIC_MARK,
    FailPoint.AFTER_SEAL,
    FailPoint.AFTER_META_UPDATE,
    FailPoint.BEFORE_TOPIC_DELETE,
    FailPoint.AFTER_TOPIC_DELETE,
    pytest.param(FailPoint.AFTER_SEAL, marks=pytest.mark.moto, id="after_seal-moto"),
    pytest.param(
        FailPoint.AFTER_TOPIC_DELETE, marks=pytest.mark.moto, id="after_topic_delete-moto"
    ),
]
"""Every step of `TopicAdmin.delete_topic` a crash can stop it after (ADR 0012, 1.8): the
marker, the seal item, the meta item sealed, before and after the catalog swap; two on the
DynamoDB adapter too."""
BEFORE_CATALOG_CHANGE = [
    FailPoint.AFTER_SEAL,
    FailPoint.AFTER_META_UPDATE,
    FailPoint.BEFORE_TOPIC_DELETE,
]
"""Crashes that leave the catalog item in place with the chain already sealed."""


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
    # Given a delete that crashed after sealing the chain but before removing the name
    admin, warm, crash_delete = _old_topic(make_engine, make_faulty)
    topic_id = _current(admin).topic_id
    cursor = warm.fetch("t", 0, 0, max_records=1).cursor
    crash_delete(point)
    fresh = make_engine(clock_ms=_clock)

    # Then the name stays taken, and no process appends to or reads the sealed chain
    with pytest.raises(TopicExistsError):
        admin.create_topic("t")
    for engine in (warm, fresh):
        for partition in (0, 1):
            with pytest.raises(TopicNotFoundError):
                engine.append("t", [Record(value=b"lost?", partition=partition)])
            with pytest.raises(TopicNotFoundError):
                engine.fetch("t", partition, 0)
        with pytest.raises(TopicNotFoundError):
            engine.fetch("t", 0, OLD_BATCHES - 1, max_records=1)
        # (a consumer continuing from its cursor, one record at a time, is told too)
        with pytest.raises(TopicNotFoundError):
            engine.fetch("t", 0, 1, max_records=1, cursor=cursor)
    assert _kinds(admin, topic_id)[-1] == "seal"

    # When the delete is run again, it completes: the name is free, the chain sealed once
    admin.delete_topic("t")
    assert admin.list_topics() == []
    _assert_sealed_once(admin, topic_id)
    assert [t.topic_id for t in admin.context.catalog.deleted_topics()] == [topic_id]


def test_a_delete_crashed_after_the_catalog_change_is_finished_by_gc(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty
) -> None:
    admin, warm, crash_delete = _old_topic(make_engine, make_faulty)
    topic_id = admin.describe_topic("t").topic_id
    crash_delete(FailPoint.AFTER_TOPIC_DELETE)
    _assert_sealed_once(admin, topic_id)
    admin.create_topic("t", partitions=2)
    warm.append("t", [Record(value=b"new", partition=0)])

    later = make_engine(clock_ms=lambda: NOW_MS + 2, grace_ms=1)
    assert later.gc.purge_deleted_topics() == [topic_id]

    _assert_purged(later, topic_id)
    assert [r.value for r in later.fetch("t", 0, 0).records] == [b"new"]


def test_partitions_added_while_a_delete_runs_are_sealed_too(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty
) -> None:
    # Given a delete that has sealed the chain of "t" when another process grows it
    admin, _ = make_faulty(clock_ms=_clock)
    other = make_engine(clock_ms=_clock)
    admin.create_topic("t", partitions=2)
    topic_id = admin.describe_topic("t").topic_id
    catalog = admin.context.catalog
    assert isinstance(catalog, FaultyCatalogStore)
    grown: list[int] = []

    def grow_once(_topic: object) -> None:
        if not grown:
            # The grow is applied; its reply reads the sealed chain: the topic is going
            with pytest.raises(TopicNotFoundError):
                other.alter_topic("t", partitions=3)
            grown.append(_current(other).partitions)

    catalog.on_delete = grow_once
    admin.delete_topic("t")

    # Then the delete saw the new partition: its marker has it, and the one seal covers it
    assert grown == [3]
    assert admin.list_topics() == []
    _assert_sealed_once(other, topic_id)
    assert [t.partitions for t in other.context.catalog.deleted_topics()] == [3]
    with pytest.raises(TopicNotFoundError):
        other.append("t", [Record(value=b"lost?", partition=2)])


@pytest.mark.parametrize("point", BEFORE_CATALOG_CHANGE)
def test_gc_completes_a_delete_that_crashed_after_sealing_the_chain(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty, point: FailPoint
) -> None:
    # Given a delete that crashed after sealing the chain, and nobody runs it again
    admin, _, crash_delete = _old_topic(make_engine, make_faulty)
    topic_id = _current(admin).topic_id
    crash_delete(point)

    # When gc runs past the grace period, it finishes the delete (the name is free at once)
    later = make_engine(clock_ms=lambda: NOW_MS + 2, grace_ms=1)
    assert later.gc.purge_deleted_topics() == []
    assert later.list_topics() == []
    _assert_sealed_once(later, topic_id)
    later.create_topic("t")
    assert later.fetch("t", 0, 0).records == []
    # And a later pass purges what is left of the old topic
    much_later = make_engine(clock_ms=lambda: NOW_MS + 4, grace_ms=1)
    assert much_later.gc.purge_deleted_topics() == [topic_id]
    assert much_later.context.catalog.deleted_topics() == []
    _assert_purged(much_later, topic_id)


def test_gc_drops_the_marker_of_a_delete_that_crashed_before_sealing_the_chain(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty
) -> None:
    # Given a delete that crashed after its marker, before sealing the chain
    admin, warm, crash_delete = _old_topic(make_engine, make_faulty)
    topic_id = _current(admin).topic_id
    crash_delete(FailPoint.AFTER_TOPIC_MARK)
    assert len(admin.context.catalog.deleted_topics()) == 1
    assert "seal" not in _kinds(admin, topic_id)

    # When gc runs past the grace period, the delete never took effect: the topic stays
    later = make_engine(clock_ms=lambda: NOW_MS + 2, grace_ms=1)
    assert later.gc.purge_deleted_topics() == []
    assert later.context.catalog.deleted_topics() == []
    assert len(later.fetch("t", 0, 0).records) == OLD_BATCHES
    ack = warm.append("t", [Record(value=b"kept", partition=1)])[0]
    assert [r.value for r in later.fetch("t", 1, ack.offset).records] == [b"kept"]


def test_a_purge_that_crashed_is_finished_by_the_next_gc_pass(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty
) -> None:
    # Given a deleted topic whose purge crashed before it removed the chain
    admin, _, _ = _old_topic(make_engine, make_faulty)
    topic_id = _current(admin).topic_id
    admin.delete_topic("t")
    collector, injector = make_faulty(clock_ms=lambda: NOW_MS + 2, grace_ms=1)
    injector.arm(FailPoint.BEFORE_CHAIN_DELETE)
    with pytest.raises(InjectedFaultError):
        collector.gc.purge_deleted_topics()

    # Then the marker is kept, so the next pass purges the chain, the segments and the marker
    assert [t.topic_id for t in collector.context.catalog.deleted_topics()] == [topic_id]
    _assert_sealed_once(collector, topic_id)
    assert collector.gc.purge_deleted_topics() == [topic_id]
    _assert_purged(collector, topic_id)
    assert collector.context.catalog.deleted_topics() == []


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


def _kinds(engine: Engine, topic_id: str) -> list[str]:
    return [item.kind for item in engine.context.ledger.chain(topic_id)]


def _assert_sealed_once(engine: Engine, topic_id: str) -> None:
    """The topic's chain ends in its only seal item and its meta item is marked sealed."""
    kinds = _kinds(engine, topic_id)
    assert kinds[-1] == "seal"
    assert kinds.count("seal") == 1
    meta = engine.context.ledger.read_meta(topic_id)
    assert meta is not None
    assert meta.sealed_ms is not None


def _assert_purged(engine: Engine, topic_id: str) -> None:
    """Nothing is left of the topic's chain, meta item or segments."""
    assert list(engine.context.ledger.chain(topic_id)) == []
    assert engine.context.ledger.read_meta(topic_id) is None
    assert list(engine.context.objects.list(topic_segments_prefix(topic_id))) == []
