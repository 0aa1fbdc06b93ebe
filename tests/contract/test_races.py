"""Conditional writes racing from threads, each on its own stores: exactly one wins.

Every thread is released by one barrier, so the writes really overlap; whichever order the
backend applies them in, the outcome checked is the same: one winner, the losers told so
(with the winner's state where the port returns it), and nothing lost or half-applied.
"""

from __future__ import annotations

import pytest

from lakelog.errors import LeaseFencedError
from lakelog.storage.ports import (
    AclEntry,
    LeaseRecord,
    ProducerIdRecord,
    TopicRecord,
)
from lakelog.types import OffsetCommit
from tests.contract.backends import Backend
from tests.contract.support import race

THREADS = 8


def _topic(name: str, topic_id: str, version: int = 1) -> TopicRecord:
    return TopicRecord(name, topic_id, 1, {"writer": topic_id}, 1, version)


def test_racing_creates_of_one_topic_let_exactly_one_win(backend: Backend, ns: str) -> None:
    catalogs = [backend.stores()[2] for _ in range(THREADS)]

    results = race(THREADS, lambda i: catalogs[i].create_topic(_topic(ns, f"id-{i}")))

    (winner,) = [i for i, created in enumerate(results) if created is True]
    assert results.count(False) == THREADS - 1
    assert catalogs[0].get_topic(ns) == _topic(ns, f"id-{winner}")


def test_racing_updates_at_one_version_let_exactly_one_win(backend: Backend, ns: str) -> None:
    catalogs = [backend.stores()[2] for _ in range(THREADS)]
    catalogs[0].create_topic(_topic(ns, "id"))

    def update(i: int) -> bool:
        changed = TopicRecord(ns, "id", 1 + i, {"writer": i}, 1, version=2)
        return catalogs[i].update_topic(changed, expected_version=1)

    results = race(THREADS, update)

    (winner,) = [i for i, updated in enumerate(results) if updated is True]
    assert results.count(False) == THREADS - 1
    assert catalogs[0].get_topic(ns) == TopicRecord(ns, "id", 1 + winner, {"writer": winner}, 1, 2)


def test_racing_deletes_of_one_topic_let_exactly_one_win(backend: Backend, ns: str) -> None:
    catalogs = [backend.stores()[2] for _ in range(THREADS)]
    catalogs[0].create_topic(_topic(ns, f"{ns}-id"))

    results = race(THREADS, lambda i: catalogs[i].delete_topic(_topic(ns, f"{ns}-id"), i))

    (winner,) = [i for i, deleted in enumerate(results) if deleted is True]
    assert results.count(False) == THREADS - 1
    (marker,) = [t for t in catalogs[0].deleted_topics() if t.topic_id == f"{ns}-id"]
    assert marker.deleted_ms == winner


def test_racing_registrations_of_one_producer_id_let_exactly_one_hold_it(
    backend: Backend, ns: str
) -> None:
    catalogs = [backend.stores()[2] for _ in range(THREADS)]
    producer_id = int(ns[1:], 16)

    results = race(
        THREADS,
        lambda i: catalogs[i].register_producer(ProducerIdRecord(producer_id, f"p{i}", i)),
    )

    (winner,) = [i for i, registered in enumerate(results) if registered is True]
    assert results.count(False) == THREADS - 1
    assert catalogs[0].get_producer(producer_id) == ProducerIdRecord(
        producer_id, f"p{winner}", winner
    )


def test_racing_grants_on_one_rule_all_add_up(backend: Backend, ns: str) -> None:
    catalogs = [backend.stores()[2] for _ in range(THREADS)]

    race(THREADS, lambda i: catalogs[i].add_acl(AclEntry(ns, "t", "allow", frozenset({f"op{i}"}))))

    (rule,) = [a for a in catalogs[0].list_acls() if a.principal == ns]
    assert rule.operations == {f"op{i}" for i in range(THREADS)}


def test_racing_takes_of_one_lease_let_exactly_one_member_hold_it(
    backend: Backend, ns: str
) -> None:
    groups = [backend.stores()[3] for _ in range(THREADS)]
    seen = LeaseRecord.missing("t", 0)

    results = race(THREADS, lambda i: groups[i].take_lease(ns, seen, f"m{i}", "id"))

    (lease,) = [r for r in results if r is not None]
    assert results.count(None) == THREADS - 1
    assert lease.lease_epoch == 1
    assert groups[0].read_group(ns).leases == (lease,)


def test_a_commit_racing_a_takeover_lands_before_it_or_is_fenced(backend: Backend, ns: str) -> None:
    # Given member a holds a lease at epoch 1 with offset 5 committed
    a, b = backend.stores()[3], backend.stores()[3]
    held = a.take_lease(ns, LeaseRecord.missing("t", 0), "a", "id")
    assert held is not None
    a.commit(ns, "a", [OffsetCommit("t", 0, 5, 1)], committed_ms=1)
    seen = a.read_group(ns).leases[0]

    # When a commits 9 while b takes the lease over
    def act(i: int) -> object:
        if i == 0:
            a.commit(ns, "a", [OffsetCommit("t", 0, 9, 1)], committed_ms=2)
            return "committed"
        return b.take_lease(ns, seen, "b", "id")

    committed, taken = race(2, act)

    # Then the takeover won, and b holds the lease with the offset a had when it took over
    assert isinstance(taken, LeaseRecord)
    (final,) = b.read_group(ns).leases
    assert (final.owner, final.lease_epoch) == ("b", 2)
    if committed == "committed":  # landed first: b's take kept it
        assert final.committed_offset == 9 and taken.committed_offset == 9
    else:  # came after the take: fenced, and changed nothing
        assert isinstance(committed, LeaseFencedError)
        assert final.committed_offset == 5 and taken.committed_offset == 5


COMMITS = 20
"""Commits a member sends, one after another, while its lease is taken over."""


@pytest.mark.parametrize(
    ("partitions", "taken"),
    [((0, 1, 2), 1), ((98, 99, 100), 100)],
    ids=["one-offsets-item", "two-offsets-items"],
)
def test_commits_of_several_partitions_racing_a_takeover_of_one_are_a_landed_run_then_fenced(
    backend: Backend, ns: str, partitions: tuple[int, ...], taken: int
) -> None:
    # Given member a holds three partitions (in one offsets item, or across two: then each
    # commit is a transaction), and b is about to take one of them over
    a, b = backend.stores()[3], backend.stores()[3]
    for partition in partitions:
        assert a.take_lease(ns, LeaseRecord.missing("t", partition), "a", "id") is not None
    seen = next(x for x in a.read_group(ns).leases if x.partition == taken)
    outcomes: list[bool] = []  # True: landed, False: fenced

    def act(i: int) -> object:
        if i == 1:
            return b.take_lease(ns, seen, "b", "id")
        for offset in range(1, COMMITS + 1):
            try:
                a.commit(ns, "a", [OffsetCommit("t", p, offset, 1) for p in partitions], offset)
            except LeaseFencedError as fenced:
                assert fenced.partitions == (("t", taken),)
                outcomes.append(False)
            else:
                outcomes.append(True)
        return None

    # When a commits all three again and again while b takes one over, released together
    committed, took = race(2, act)
    assert committed is None, committed

    # Then, however they interleaved, a run of whole commits landed, every later one was
    # fenced whole, and b's lease starts at the last commit that landed
    landed = outcomes.count(True)
    assert outcomes == [True] * landed + [False] * (COMMITS - landed)
    last = landed or None
    assert isinstance(took, LeaseRecord)
    assert (took.owner, took.lease_epoch, took.committed_offset) == ("b", 2, last)
    final = {x.partition: x for x in b.read_group(ns).leases}
    assert {p: final[p].committed_offset for p in partitions} == dict.fromkeys(partitions, last)
    assert {p: final[p].owner for p in partitions} == {
        p: "b" if p == taken else "a" for p in partitions
    }


def test_a_reset_racing_a_commit_wins_whichever_lands_first(backend: Backend, ns: str) -> None:
    # Given member a holds two partitions with offset 5 committed (its session over, so a
    # reset of the group may run)
    a, admin = backend.stores()[3], backend.stores()[3]
    for partition in (0, 1):
        a.take_lease(ns, LeaseRecord.missing("t", partition), "a", "id")
    a.commit(ns, "a", [OffsetCommit("t", p, 5, 1) for p in (0, 1)], committed_ms=1)
    seen = a.read_group(ns).leases
    resets = [(x, LeaseRecord("t", x.partition, "id", 2, None, 0, 9)) for x in seen]

    # When a commits 9 while the reset moves both partitions back to 0
    def act(i: int) -> object:
        if i == 0:
            a.commit(ns, "a", [OffsetCommit("t", p, 9, 1) for p in (0, 1)], committed_ms=2)
            return "committed"
        return admin.reset_leases(ns, resets)

    committed, reset = race(2, act)

    # Then the reset applied in either order (a commit does not move the epoch), a commit
    # that came after it was fenced, and the leases are free at offset 0
    assert reset is True
    assert committed == "committed" or isinstance(committed, LeaseFencedError)
    assert admin.read_group(ns).leases == tuple(new for _, new in resets)
