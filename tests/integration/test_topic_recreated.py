"""A topic deleted and re-created under the same name, seen by a process with a warm cache."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lakelog import Engine, Record, TopicNotFoundError


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

    now[0] += 1001
    assert engine.gc.purge_deleted_topics() == [topic_id]
    assert list(engine.context.objects.list("")) == []
    assert engine.context.catalog.deleted_topics() == []
    assert engine.gc.purge_deleted_topics() == []
