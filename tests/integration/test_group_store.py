"""The `GroupStore` contract, run against every group store: DynamoDB, and the fault
wrapper around it with no fault armed (it must pass everything through unchanged)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lakelog import LeaseFencedError, OffsetCommit
from lakelog.storage.faults import FaultInjector, FaultyGroupStore
from lakelog.storage.groups import TRANSACTION_ITEMS, DynamoGroupStore
from lakelog.storage.keys import ResourceNames
from lakelog.storage.ports import GroupStore, LeaseRecord, MemberRecord

STORES: dict[str, Callable[[DynamoGroupStore], GroupStore]] = {
    "dynamodb": lambda store: store,
    "faulty": lambda store: FaultyGroupStore(store, FaultInjector()),
}


@pytest.fixture(params=sorted(STORES))
def store(
    request: pytest.FixtureRequest, dynamodb_client: Any, resources: ResourceNames
) -> GroupStore:
    return STORES[request.param](DynamoGroupStore(dynamodb_client, resources.catalog_table))


def _leases(store: GroupStore, count: int) -> list[LeaseRecord]:
    """The leases of partitions ``0 .. count - 1`` of topic "t" in group "g", in one read."""
    stored = {x.partition: x for x in store.read_group("g").leases if x.topic == "t"}
    return [stored.get(p) or LeaseRecord.missing("t", p) for p in range(count)]


def _lease(store: GroupStore, partition: int = 0) -> LeaseRecord:
    return _leases(store, partition + 1)[partition]


def test_members_are_put_read_and_deleted(store: GroupStore) -> None:
    store.put_member("g", MemberRecord("b", ("y", "x"), 5000, 1234))
    store.put_member("g", MemberRecord("a", ("x",), 6000, 99))
    store.put_member("other", MemberRecord("c", ("x",), 6000, 99))

    assert store.read_group("g").members == (
        MemberRecord("a", ("x",), 6000, 99),
        MemberRecord("b", ("x", "y"), 5000, 1234),
    )
    store.delete_member("g", "a")
    store.delete_member("g", "never")
    assert [m.member_id for m in store.read_group("g").members] == ["b"]
    assert store.read_group("nobody").members == ()


def test_take_creates_a_lease_at_epoch_one_and_moves_the_epoch_each_time(
    store: GroupStore,
) -> None:
    first = store.take_lease("g", LeaseRecord.missing("t", 3), "a", "id-1")

    assert first == LeaseRecord("t", 3, "id-1", 1, owner="a")
    assert store.take_lease("g", LeaseRecord.missing("t", 3), "b", "id-1") is None
    second = store.take_lease("g", first, "b", "id-1")
    assert second is not None and (second.owner, second.lease_epoch) == ("b", 2)
    assert store.take_lease("g", first, "c", "id-1") is None  # stale epoch
    assert _lease(store, 3) == second


def test_give_up_needs_the_owner_and_the_epoch_and_keeps_the_committed_offset(
    store: GroupStore,
) -> None:
    taken = store.take_lease("g", LeaseRecord.missing("t", 0), "a", "id-1")
    assert taken is not None
    store.commit("g", "a", [OffsetCommit("t", 0, 42, 1)], committed_ms=7)

    assert not store.give_up_lease("g", LeaseRecord("t", 0, "id-1", 1, owner="b"))
    assert not store.give_up_lease("g", LeaseRecord("t", 0, "id-1", 2, owner="a"))
    assert not store.give_up_lease("g", LeaseRecord("t", 0, "id-1", 1))
    assert store.give_up_lease("g", taken)
    assert _lease(store) == LeaseRecord("t", 0, "id-1", 2, None, 42, 7)


def test_take_keeps_the_committed_offset_of_the_same_topic_and_drops_another_topics(
    store: GroupStore,
) -> None:
    taken = store.take_lease("g", LeaseRecord.missing("t", 0), "a", "id-1")
    assert taken is not None
    store.commit("g", "a", [OffsetCommit("t", 0, 5, 1)], committed_ms=1)
    seen = _lease(store)

    same = store.take_lease("g", seen, "b", "id-1")
    assert same is not None and same.committed_offset == 5
    other = store.take_lease("g", same, "c", "id-2")
    assert other == LeaseRecord("t", 0, "id-2", 3, owner="c")


def test_a_commit_is_all_or_nothing_and_names_the_partitions_that_moved(
    store: GroupStore,
) -> None:
    for partition in range(3):
        store.take_lease("g", LeaseRecord.missing("t", partition), "a", "id-1")
    good = [OffsetCommit("t", p, 10, 1) for p in range(3)]
    bad = [*good[:2], OffsetCommit("t", 2, 10, 9)]

    with pytest.raises(LeaseFencedError) as fenced:
        store.commit("g", "a", bad, committed_ms=1)
    assert fenced.value.partitions == (("t", 2),)
    assert {x.committed_offset for x in _leases(store, 3)} == {None}
    with pytest.raises(LeaseFencedError):
        store.commit("g", "b", good[:1], committed_ms=1)
    with pytest.raises(LeaseFencedError):
        store.commit("g", "a", [OffsetCommit("t", 7, 1, 1)], committed_ms=1)  # no such lease

    store.commit("g", "a", good, committed_ms=2)
    assert {x.committed_offset for x in _leases(store, 3)} == {10}


def test_reset_writes_leases_in_transactions_of_at_most_100_under_epoch_conditions(
    store: GroupStore,
) -> None:
    # Given 150 partitions, one of which has a lease at epoch 1
    count = TRANSACTION_ITEMS + 50
    store.take_lease("g", LeaseRecord.missing("t", 120), "a", "id-1")
    seen = _leases(store, count)

    def resets(offset: int, leases: list[LeaseRecord]) -> list[tuple[LeaseRecord, LeaseRecord]]:
        return [
            (old, LeaseRecord("t", old.partition, "id-1", old.lease_epoch + 1, None, offset, 9))
            for old in leases
        ]

    # When every lease is reset at the epochs read, all are written free at the next epoch
    assert store.reset_leases("g", resets(3, seen))
    after = _leases(store, count)
    assert {(x.owner, x.committed_offset) for x in after} == {(None, 3)}
    assert after[120].lease_epoch == 2 and after[0].lease_epoch == 1

    # When one lease of the second transaction moved since, the first is applied, not the second
    store.take_lease("g", after[120], "b", "id-1")
    assert not store.reset_leases("g", resets(4, after))
    final = _leases(store, count)
    assert {x.committed_offset for x in final[:TRANSACTION_ITEMS]} == {4}
    assert {x.committed_offset for x in final[TRANSACTION_ITEMS:]} == {3}
