"""The `GroupStore` contract: members, and leases whose every change of owner is
conditional on the epoch read (ADR 0009). Run on every backend, bare and inside the fault
wrapper with no fault armed (which must pass everything through unchanged)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lakelog import LeaseFencedError, OffsetCommit
from lakelog.storage.faults import FaultInjector, FaultyGroupStore
from lakelog.storage.ports import GroupState, GroupStore, LeaseRecord, MemberRecord
from lakelog.storage.rules import TRANSACTION_ITEMS
from tests.contract.backends import Stores

WRAPPERS: dict[str, Callable[[GroupStore], GroupStore]] = {
    "bare": lambda store: store,
    "faulty": lambda store: FaultyGroupStore(store, FaultInjector()),
}


@pytest.fixture(params=sorted(WRAPPERS))
def store(request: pytest.FixtureRequest, stores: Stores) -> GroupStore:
    return WRAPPERS[request.param](stores[3])


@pytest.fixture
def g(ns: str) -> str:
    """The group the test works on."""
    return f"{ns}-g"


def _leases(store: GroupStore, g: str, count: int) -> list[LeaseRecord]:
    """The leases of partitions ``0 .. count - 1`` of topic "t" in group ``g``, in one read."""
    stored = {x.partition: x for x in store.read_group(g).leases if x.topic == "t"}
    return [stored.get(p) or LeaseRecord.missing("t", p) for p in range(count)]


def _lease(store: GroupStore, g: str, partition: int = 0) -> LeaseRecord:
    return _leases(store, g, partition + 1)[partition]


def test_members_are_put_read_and_deleted(store: GroupStore, g: str) -> None:
    store.put_member(g, MemberRecord("b", ("y", "x"), 5000, 1234))
    store.put_member(g, MemberRecord("a", ("x",), 6000, 99))
    store.put_member(f"{g}-other", MemberRecord("c", ("x",), 6000, 99))

    assert store.read_group(g).members == (
        MemberRecord("a", ("x",), 6000, 99),
        MemberRecord("b", ("x", "y"), 5000, 1234),
    )
    store.delete_member(g, "a")
    store.delete_member(g, "never")
    assert [m.member_id for m in store.read_group(g).members] == ["b"]
    assert store.read_group(f"{g}-nobody").members == ()


def test_take_creates_a_lease_at_epoch_one_and_moves_the_epoch_each_time(
    store: GroupStore, g: str
) -> None:
    first = store.take_lease(g, LeaseRecord.missing("t", 3), "a", "id-1")

    assert first == LeaseRecord("t", 3, "id-1", 1, owner="a")
    assert store.take_lease(g, LeaseRecord.missing("t", 3), "b", "id-1") is None
    second = store.take_lease(g, first, "b", "id-1")
    assert second is not None and (second.owner, second.lease_epoch) == ("b", 2)
    assert store.take_lease(g, first, "c", "id-1") is None  # stale epoch
    assert _lease(store, g, 3) == second


def test_give_up_needs_the_owner_and_the_epoch_and_keeps_the_committed_offset(
    store: GroupStore, g: str
) -> None:
    taken = store.take_lease(g, LeaseRecord.missing("t", 0), "a", "id-1")
    assert taken is not None
    store.commit(g, "a", [OffsetCommit("t", 0, 42, 1)], committed_ms=7)

    assert not store.give_up_lease(g, LeaseRecord("t", 0, "id-1", 1, owner="b"))
    assert not store.give_up_lease(g, LeaseRecord("t", 0, "id-1", 2, owner="a"))
    assert not store.give_up_lease(g, LeaseRecord("t", 0, "id-1", 1))
    assert store.give_up_lease(g, taken)
    assert _lease(store, g) == LeaseRecord("t", 0, "id-1", 2, None, 42, 7)


def test_take_keeps_the_committed_offset_of_the_same_topic_and_drops_another_topics(
    store: GroupStore, g: str
) -> None:
    taken = store.take_lease(g, LeaseRecord.missing("t", 0), "a", "id-1")
    assert taken is not None
    store.commit(g, "a", [OffsetCommit("t", 0, 5, 1)], committed_ms=1)
    seen = _lease(store, g)

    same = store.take_lease(g, seen, "b", "id-1")
    assert same is not None and same.committed_offset == 5
    other = store.take_lease(g, same, "c", "id-2")
    assert other == LeaseRecord("t", 0, "id-2", 3, owner="c")


def test_a_commit_is_all_or_nothing_and_names_the_partitions_that_moved(
    store: GroupStore, g: str
) -> None:
    for partition in range(3):
        store.take_lease(g, LeaseRecord.missing("t", partition), "a", "id-1")
    good = [OffsetCommit("t", p, 10, 1) for p in range(3)]
    bad = [*good[:2], OffsetCommit("t", 2, 10, 9)]

    with pytest.raises(LeaseFencedError) as fenced:
        store.commit(g, "a", bad, committed_ms=1)
    assert fenced.value.partitions == (("t", 2),)
    assert {x.committed_offset for x in _leases(store, g, 3)} == {None}
    with pytest.raises(LeaseFencedError):
        store.commit(g, "b", good[:1], committed_ms=1)
    with pytest.raises(LeaseFencedError):
        store.commit(g, "a", [OffsetCommit("t", 7, 1, 1)], committed_ms=1)  # no such lease

    store.commit(g, "a", good, committed_ms=2)
    assert {x.committed_offset for x in _leases(store, g, 3)} == {10}


def test_reset_writes_leases_in_transactions_of_at_most_100_under_epoch_conditions(
    store: GroupStore, g: str
) -> None:
    # Given 150 partitions, one of which has a lease at epoch 1
    count = TRANSACTION_ITEMS + 50
    store.take_lease(g, LeaseRecord.missing("t", 120), "a", "id-1")
    seen = _leases(store, g, count)

    def resets(offset: int, leases: list[LeaseRecord]) -> list[tuple[LeaseRecord, LeaseRecord]]:
        return [
            (old, LeaseRecord("t", old.partition, "id-1", old.lease_epoch + 1, None, offset, 9))
            for old in leases
        ]

    # When every lease is reset at the epochs read, all are written free at the next epoch
    assert store.reset_leases(g, resets(3, seen))
    after = _leases(store, g, count)
    assert {(x.owner, x.committed_offset) for x in after} == {(None, 3)}
    assert after[120].lease_epoch == 2 and after[0].lease_epoch == 1

    # When one lease of the second transaction moved since, the first is applied, not the second
    store.take_lease(g, after[120], "b", "id-1")
    assert not store.reset_leases(g, resets(4, after))
    final = _leases(store, g, count)
    assert {x.committed_offset for x in final[:TRANSACTION_ITEMS]} == {4}
    assert {x.committed_offset for x in final[TRANSACTION_ITEMS:]} == {3}


def test_a_member_is_replaced_by_its_next_put(store: GroupStore, g: str) -> None:
    store.put_member(g, MemberRecord("a", ("x",), 5000, 10))
    store.put_member(g, MemberRecord("a", ("z", "y"), 7000, 20))

    assert store.read_group(g).members == (MemberRecord("a", ("y", "z"), 7000, 20),)


def test_leases_are_read_in_topic_and_partition_order(store: GroupStore, g: str) -> None:
    for topic, partition in [("t", 10), ("s", 1), ("t", 2), ("t-2", 0)]:
        store.take_lease(g, LeaseRecord.missing(topic, partition), "a", "id-1")

    assert [(x.topic, x.partition) for x in store.read_group(g).leases] == [
        ("s", 1),
        ("t", 2),
        ("t", 10),
        ("t-2", 0),
    ]


def test_giving_up_a_lease_nobody_took_or_a_free_one_fails(store: GroupStore, g: str) -> None:
    assert not store.give_up_lease(g, LeaseRecord("t", 0, "id-1", 1, owner="a"))
    assert not store.give_up_lease(g, LeaseRecord.missing("t", 0))
    taken = store.take_lease(g, LeaseRecord.missing("t", 0), "a", "id-1")
    assert taken is not None and store.give_up_lease(g, taken)

    assert not store.give_up_lease(g, _lease(store, g))  # free: no owner to match
    assert store.read_group(g).leases == (LeaseRecord("t", 0, "id-1", 2),)


def test_an_empty_commit_changes_nothing_and_one_over_the_limit_is_refused(
    store: GroupStore, g: str
) -> None:
    store.commit(g, "a", [], committed_ms=1)
    too_many = [OffsetCommit("t", p, 1, 1) for p in range(TRANSACTION_ITEMS + 1)]

    with pytest.raises(ValueError, match="at most"):
        store.commit(g, "a", too_many, committed_ms=1)
    assert store.read_group(g) == GroupState()


def test_a_commit_of_one_lease_is_fenced_when_its_owner_or_epoch_moved(
    store: GroupStore, g: str
) -> None:
    taken = store.take_lease(g, LeaseRecord.missing("t", 0), "a", "id-1")
    assert taken is not None
    store.commit(g, "a", [OffsetCommit("t", 0, 3, 1)], committed_ms=5)
    store.take_lease(g, _lease(store, g), "b", "id-1")

    with pytest.raises(LeaseFencedError) as fenced:
        store.commit(g, "a", [OffsetCommit("t", 0, 4, 1)], committed_ms=6)

    assert fenced.value.partitions == (("t", 0),)
    assert _lease(store, g) == LeaseRecord("t", 0, "id-1", 2, "b", 3, 5)


def test_a_reset_is_refused_where_a_lease_appeared_since_it_was_read(
    store: GroupStore, g: str
) -> None:
    seen = LeaseRecord.missing("t", 0)
    store.take_lease(g, seen, "a", "id-1")

    assert not store.reset_leases(g, [(seen, LeaseRecord("t", 0, "id-1", 1, None, 0, 1))])
    assert _lease(store, g) == LeaseRecord("t", 0, "id-1", 1, owner="a")
    assert store.reset_leases(g, [])


@pytest.mark.parametrize("partitions", [(0, 1, 2, 3), (0, 99, 100, 250)], ids=["one", "three"])
def test_a_commit_after_losing_one_of_several_partitions_changes_nothing(
    store: GroupStore, g: str, partitions: tuple[int, ...]
) -> None:
    # Given a holds four partitions (in one offsets item, or spread over three) with 5
    # committed, then b takes the third over
    for partition in partitions:
        store.take_lease(g, LeaseRecord.missing("t", partition), "a", "id-1")
    store.commit(g, "a", [OffsetCommit("t", p, 5, 1) for p in partitions], committed_ms=1)
    lost = partitions[2]
    seen = next(x for x in store.read_group(g).leases if x.partition == lost)
    assert store.take_lease(g, seen, "b", "id-1") is not None
    before = store.read_group(g)

    # When a commits all four at the epoch it was given
    with pytest.raises(LeaseFencedError) as fenced:
        store.commit(g, "a", [OffsetCommit("t", p, 9, 1) for p in partitions], committed_ms=2)

    # Then the commit names the lost partition and nothing changed, not even the
    # partitions a still holds
    assert fenced.value.partitions == (("t", lost),)
    assert store.read_group(g) == before


def test_a_lease_given_up_then_taken_by_another_member_takes_only_the_new_owners_commits(
    store: GroupStore, g: str
) -> None:
    # Given a holds partitions 0 and 1, commits 5 on both, then gives up partition 1
    for partition in (0, 1):
        store.take_lease(g, LeaseRecord.missing("t", partition), "a", "id-1")
    store.commit(g, "a", [OffsetCommit("t", p, 5, 1) for p in (0, 1)], committed_ms=1)
    assert store.give_up_lease(g, _leases(store, g, 2)[1])
    free = _leases(store, g, 2)[1]
    assert (free.owner, free.lease_epoch, free.committed_offset) == (None, 2, 5)

    # When b takes it, starting at a's commit, and commits at its epoch
    taken = store.take_lease(g, free, "b", "id-1")
    assert taken is not None and (taken.lease_epoch, taken.committed_offset) == (3, 5)
    store.commit(g, "b", [OffsetCommit("t", 1, 8, 3)], committed_ms=3)

    # Then b's commit landed; a's commits to partition 1 are fenced at any epoch it knew
    # (held, or free after giving it up), and a still commits the partition it holds
    for epoch in (1, 2, 3):
        with pytest.raises(LeaseFencedError):
            store.commit(g, "a", [OffsetCommit("t", 1, 9, epoch)], committed_ms=4)
    store.commit(g, "a", [OffsetCommit("t", 0, 7, 1)], committed_ms=5)
    assert _leases(store, g, 2) == [
        LeaseRecord("t", 0, "id-1", 1, "a", 7, 5),
        LeaseRecord("t", 1, "id-1", 3, "b", 8, 3),
    ]


def test_a_lease_of_a_topic_re_created_under_its_name_keeps_its_own_topic_id(
    store: GroupStore, g: str
) -> None:
    # Given leases of topic "t" taken under its first id, one with an offset committed
    for partition in (0, 1):
        store.take_lease(g, LeaseRecord.missing("t", partition), "a", "id-1")
    store.commit(g, "a", [OffsetCommit("t", 0, 5, 1)], committed_ms=1)
    old = _leases(store, g, 3)

    # When "t" is re-created (id-2) and its partitions are taken again, one never taken before
    retaken = [store.take_lease(g, lease, "b", "id-2") for lease in old]

    # Then each lease is of id-2 at the next epoch (1 for the partition never taken),
    # without the old topic's offset, and b commits to them
    assert retaken == [
        LeaseRecord("t", 0, "id-2", 2, "b"),
        LeaseRecord("t", 1, "id-2", 2, "b"),
        LeaseRecord("t", 2, "id-2", 1, "b"),
    ]
    assert _leases(store, g, 3) == retaken
    store.commit(g, "b", [OffsetCommit("t", p, 3, 2) for p in (0, 1)], committed_ms=2)
    assert [x.committed_offset for x in _leases(store, g, 3)] == [3, 3, None]


def test_deleting_a_group_removes_its_members_leases_and_offsets_only(
    store: GroupStore, g: str
) -> None:
    # Given a group with a member and committed leases of two blocks, and another group
    store.put_member(g, MemberRecord("a", ("t",), 6000, 99))
    for partition in (0, 150):
        taken = store.take_lease(g, LeaseRecord.missing("t", partition), "a", "id-t")
        assert taken is not None
        store.commit(g, "a", [OffsetCommit("t", partition, 7, taken.lease_epoch)], 5)
    store.put_member(f"{g}-other", MemberRecord("b", ("t",), 6000, 99))

    # When the group is deleted (twice: a missing group is not an error)
    store.delete_group(g)
    store.delete_group(g)

    # Then nothing of it is left, and the other group is untouched
    assert store.read_group(g) == GroupState()
    assert [m.member_id for m in store.read_group(f"{g}-other").members] == ["b"]
    fresh = store.take_lease(g, LeaseRecord.missing("t", 0), "c", "id-t")
    assert fresh is not None
    assert (fresh.lease_epoch, fresh.committed_offset) == (1, None)
