"""A topic deleted and re-created under the same name, seen by a process with a warm cache.

A warm process caches the topic's id (30 s) and its chain's tail. Whatever it holds, it
never serves the old topic's records under the name, and never gets an acknowledgement
for a write that a fresh process cannot read (ADR 0012, 1.8 and 4.2).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lakelog import (
    Engine,
    InvalidRequestError,
    LakelogError,
    ProducerBatch,
    Record,
    TopicExistsError,
    TopicNotFoundError,
)
from lakelog.service.fetch import QUERY_ITEMS
from lakelog.storage.faults import FailPoint, FaultyLedgerStore, InjectedFaultError
from lakelog.storage.keys import topic_segments_prefix
from lakelog.types import FetchResult
from tests.conftest import MakeFaulty

NOW_MS = 1_700_000_000_000
"""Every engine's clock: a warm process's cached topic never expires during a test."""
OLD_BATCHES = QUERY_ITEMS + 8
"""Appends to the old topic: one fetch Query from its start reaches neither the seal nor
the meta item, so a reader catching up one record at a time reads the meta item apart."""


def _clock() -> int:
    return NOW_MS


def test_warm_process_appends_to_the_recreated_topic_not_the_old_one(
    make_engine: Callable[..., Engine],
) -> None:
    # Given a process that appended to "t" and cached its topic id and head
    warm = make_engine()
    admin = make_engine()
    admin.create_topic("t")
    warm.append("t", [Record(value=b"old")])

    # When another process deletes "t" and creates it again
    admin.delete_topic("t")
    admin.create_topic("t")

    # Then the warm process's next append lands in the new topic, at offset 0
    acks = warm.append("t", [Record(value=b"new")])
    assert [a.offset for a in acks] == [0]
    assert [r.value for r in admin.fetch("t", 0, 0).records] == [b"new"]
    assert [r.value for r in warm.fetch("t", 0, 0).records] == [b"new"]


def test_warm_process_sees_a_deleted_topic_as_not_found(
    make_engine: Callable[..., Engine],
) -> None:
    warm = make_engine()
    admin = make_engine()
    admin.create_topic("t")
    warm.append("t", [Record(value=b"a")])
    warm.fetch("t", 0, 0)

    admin.delete_topic("t")

    with pytest.raises(TopicNotFoundError):
        warm.append("t", [Record(value=b"b")])
    with pytest.raises(TopicNotFoundError):
        warm.fetch("t", 0, 0)
    with pytest.raises(TopicNotFoundError):
        warm.list_offset("t", 0, "latest")


def test_purge_removes_a_deleted_topics_segments_and_ledger_after_the_grace_period(
    make_engine: Callable[..., Engine],
) -> None:
    now = [10_000_000]
    engine = make_engine(grace_ms=1000, clock_ms=lambda: now[0])
    engine.create_topic("gone", partitions=2)
    engine.append("gone", [Record(value=b"a", partition=0), Record(value=b"b", partition=1)])
    topic_id = engine.describe_topic("gone").topic_id
    engine.delete_topic("gone")

    # Within the grace period nothing is purged (an append may still be in flight)
    assert engine.gc.purge_deleted_topics() == []

    ledger = engine.context.ledger
    assert [item.kind for item in ledger.chain(topic_id)][-1] == "seal"
    assert len(list(engine.context.objects.list(topic_segments_prefix(topic_id)))) == 1

    now[0] += 1001
    assert engine.gc.purge_deleted_topics() == [topic_id]
    assert list(engine.context.objects.list("")) == []
    assert list(ledger.chain(topic_id)) == []
    assert ledger.read_meta(topic_id) is None
    assert ledger.read_tail(topic_id) is None
    assert engine.context.catalog.deleted_topics() == []
    assert engine.gc.purge_deleted_topics() == []


@pytest.mark.parametrize("completed_by", ["delete", "gc"])
def test_a_delete_that_crashed_after_the_seal_never_lets_a_warm_process_acknowledge_a_lost_append(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty, completed_by: str
) -> None:
    # Given a warm process that appended to "t" (it caches the topic id and the tail)
    admin, admin_faults = make_faulty(clock_ms=_clock)
    warm, _ = make_faulty(clock_ms=_clock)
    admin.create_topic("t", partitions=2)
    topic_id = admin.describe_topic("t").topic_id
    warm.append("t", [Record(value=b"old", partition=0)])

    # When a delete seals the chain just before the warm process's next put, then crashes
    chains = warm.context.ledger
    assert isinstance(chains, FaultyLedgerStore)

    def delete_first(_item: object) -> None:
        chains.on_put = None
        admin_faults.arm(FailPoint.AFTER_SEAL)
        with pytest.raises(InjectedFaultError):
            admin.delete_topic("t")

    chains.on_put = delete_first
    # Then that append is refused, and so is any later one while the name is taken
    with pytest.raises(TopicNotFoundError):
        warm.append("t", [Record(value=b"lost?", partition=1)])
    with pytest.raises(TopicNotFoundError):
        warm.append("t", [Record(key=b"k", value=b"lost?")])
    with pytest.raises(TopicExistsError):
        admin.create_topic("t")

    # When the delete is completed (run again, or by gc) and "t" re-created
    if completed_by == "delete":
        admin.delete_topic("t")
    else:
        assert make_engine(clock_ms=lambda: NOW_MS + 2, grace_ms=1).gc.purge_deleted_topics() == []
    admin.create_topic("t", partitions=2)
    fresh = make_engine(clock_ms=_clock)

    # Then every append the warm process is acknowledged for is where a fresh process reads it
    for value, partition in [(b"new-0", 0), (b"new-1", 1), (b"new-2", 0)]:
        [ack] = warm.append("t", [Record(value=value, partition=partition)])
        fetched = fresh.fetch("t", ack.partition, ack.offset, max_records=1).records
        assert [(r.offset, r.value) for r in fetched] == [(ack.offset, value)]
    # And the old chain ends with its one seal: no append ever followed it
    kinds = [item.kind for item in admin.context.ledger.chain(topic_id)]
    assert kinds == ["genesis", "append", "seal"]


def _values_unless_refused(fetch: Callable[[], FetchResult]) -> list[bytes | None]:
    """The values a fetch returned; none when it was refused as a gone topic or a cursor
    of another topic."""
    try:
        return [record.value for record in fetch().records]
    except (TopicNotFoundError, InvalidRequestError):
        return []


@pytest.mark.parametrize(
    "resume",
    ["cursor", "offset", pytest.param("cursor", marks=pytest.mark.moto, id="cursor-moto")],
)
def test_a_warm_process_never_serves_old_records_after_delete_and_recreate(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty, resume: str
) -> None:
    # Given a warm process catching up on "t" one record at a time, far behind its tail
    admin = make_engine(clock_ms=_clock)
    warm, _ = make_faulty(clock_ms=_clock)
    admin.create_topic("t")
    for batch in range(OLD_BATCHES):
        admin.append("t", [Record(value=b"old-%d" % batch)])
    first = warm.fetch("t", 0, 0, max_records=1)
    assert [r.value for r in first.records] == [b"old-0"]

    def delete_and_recreate() -> None:
        admin.delete_topic("t")
        admin.create_topic("t")
        admin.append("t", [Record(value=b"new-%d" % n) for n in range(3)])

    chains = warm.context.ledger
    assert isinstance(chains, FaultyLedgerStore)
    if resume == "cursor":
        # (the consumer's path: no search, so only the meta item tells it the topic is gone)
        delete_and_recreate()
        cursor = first.cursor
    else:
        # (a search found the first item before the delete; the Query runs after it)
        def between_search_and_query(_topic_id: str) -> None:
            chains.on_query = None
            delete_and_recreate()

        chains.on_query = between_search_and_query
        cursor = None

    # When it fetches its next record
    values = _values_unless_refused(
        lambda: warm.fetch("t", 0, first.next_offset, max_records=1, cursor=cursor)
    )

    # Then it got nothing of the old topic: the new topic's record, or a refusal
    assert values in ([], [b"new-1"])
    # And from then on it reads the new topic only
    assert [r.value for r in warm.fetch("t", 0, 0).records] == [b"new-0", b"new-1", b"new-2"]


def test_a_warm_process_never_answers_a_retry_from_the_deleted_topic(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty
) -> None:
    # Given an idempotent request to "t" that committed but whose reply was lost
    admin = make_engine(clock_ms=_clock)
    warm, faults = make_faulty(clock_ms=_clock)
    admin.create_topic("t")
    producer_id = warm.init_producer_id()
    warm.append("t", [Record(value=b"a", partition=0)], ProducerBatch(producer_id, 0, {0: 0}))
    faults.arm(FailPoint.AFTER_LEDGER)
    with pytest.raises(InjectedFaultError):
        warm.append("t", [Record(value=b"b", partition=0)], ProducerBatch(producer_id, 0, {0: 1}))

    # When "t" is deleted and re-created, and the warm process gets the retry
    admin.delete_topic("t")
    admin.create_topic("t")
    try:
        acks = warm.append(
            "t", [Record(value=b"b", partition=0)], ProducerBatch(producer_id, 0, {0: 1})
        )
    except LakelogError:
        acks = []

    # Then it is refused, or acknowledged where a fresh process reads it: never answered
    # with the deleted topic's offsets
    fresh = make_engine(clock_ms=_clock)
    for ack in acks:
        fetched = fresh.fetch("t", ack.partition, ack.offset, max_records=1).records
        assert [(r.offset, r.value) for r in fetched] == [(ack.offset, b"b")]
