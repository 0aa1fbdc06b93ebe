"""Invariant 6 and "no partition owned twice" under racing members, and under faults.

Members race on their own engines (own clients and caches) in threads; moto's DynamoDB is
serialized (`lakelog.local.serialize_moto_dynamodb`, applied by the ``aws`` fixture), so
each request is atomic as in DynamoDB. The fault injector's group store hooks interleave
one member's request at an exact point of another's.

No test here needs the threads to interleave one way: an outcome that depends on the order
is forced with the hooks (and barriers), and the threaded tests assert only what holds in
every order.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from lakelog import Engine, LeaseFencedError, Membership, OffsetCommit, TopicPartition
from lakelog.errors import UnavailableError
from lakelog.limits import DEFAULT_SESSION_TIMEOUT_MS
from lakelog.storage.faults import FailPoint, FaultyGroupStore
from lakelog.storage.ports import LeaseRecord
from tests.conftest import MakeFaulty
from tests.integration.group_support import (
    Clock,
    assert_balanced,
    assert_disjoint_and_complete,
    heartbeat,
    held,
)
from tests.support import run_in_threads

MEMBERS = 6
PARTITIONS = 12
ROUNDS = 8
SESSION = DEFAULT_SESSION_TIMEOUT_MS


RACE_TIMEOUT = 60.0
"""Seconds a forced race waits for its other party (only reached if a member never gets
there: a broken barrier then fails the test instead of hanging it)."""


def _first_waits(
    barrier: threading.Barrier, then: Callable[[LeaseRecord], None]
) -> Callable[[LeaseRecord], None]:
    """An ``on_lease`` hook: every move goes to ``then``; the first then waits at ``barrier``."""
    waited = threading.Event()

    def hook(seen: LeaseRecord) -> None:
        then(seen)
        if not waited.is_set():
            waited.set()
            barrier.wait()

    return hook


@pytest.mark.slow
def test_members_joining_at_once_never_hold_one_lease_together_and_converge(
    make_engine: Callable[..., Engine], make_faulty: MakeFaulty
) -> None:
    # Given six members, each on its own engine, and a clock that keeps them all live
    clock = Clock()
    admin = make_engine(clock_ms=clock)
    admin.create_topic("orders", partitions=PARTITIONS)
    engines = [make_faulty(seed=i, clock_ms=clock)[0] for i in range(MEMBERS)]
    grants: dict[tuple[int, int], set[str]] = defaultdict(set)
    lock = threading.Lock()
    barrier = threading.Barrier(MEMBERS)
    moves: list[LeaseRecord] = []  # every take or give-up a member attempted
    # The race is forced, not hoped for: each member's first move waits until all six have
    # read the group, so all six first try the lowest free partition with the same view.
    first_moves = threading.Barrier(MEMBERS, timeout=RACE_TIMEOUT)
    for engine in engines:
        store = engine.groups.store
        assert isinstance(store, FaultyGroupStore)
        store.on_lease = _first_waits(first_moves, then=moves.append)

    def member(index: int) -> None:
        for _ in range(ROUNDS):
            barrier.wait()  # every round, all six heartbeat at the same instant
            reply = engines[index].join_group("g", ["orders"], f"member-{index}")
            with lock:
                for a in reply.assignments:
                    grants[(a.partition, a.lease_epoch)].add(reply.member_id)

    # When they join and heartbeat concurrently, round after round
    run_in_threads(MEMBERS, member)

    # Then all six raced for partition 0, as nobody had taken it yet, and one won
    assert [m.partition for m in moves[:MEMBERS]] == [0] * MEMBERS
    assert len({m.lease_epoch for m in moves[:MEMBERS]}) == 1
    assert len(grants[(0, moves[0].lease_epoch + 1)]) == 1
    # and no lease at one epoch was ever handed to two members
    shared = {lease: owners for lease, owners in grants.items() if len(owners) > 1}
    assert not shared, shared

    # And the group converges: each holds 2 partitions after two more rounds, one owner each
    subscriptions = {f"member-{i}": ["orders"] for i in range(MEMBERS)}
    replies = heartbeat(admin, "g", subscriptions, rounds=2)
    assert_balanced(replies, "orders", PARTITIONS)
    assert_disjoint_and_complete(replies, [TopicPartition("orders", p) for p in range(PARTITIONS)])

    # And only the current owner of each lease can commit to it
    current = {a.partition: (m, a.lease_epoch) for m, r in replies.items() for a in r.assignments}
    for (partition, epoch), owners in grants.items():
        for owner in owners:
            commit = [OffsetCommit("orders", partition, 1, epoch)]
            if current[partition] == (owner, epoch):
                admin.commit_offsets("g", owner, commit)
            else:
                with pytest.raises(LeaseFencedError):
                    admin.commit_offsets("g", owner, commit)


@pytest.mark.slow
def test_members_racing_for_the_free_leases_of_a_dead_member_take_each_exactly_once(
    make_engine: Callable[..., Engine],
) -> None:
    # Given six members balanced on twelve partitions, one of which dies
    clock = Clock()
    admin = make_engine(clock_ms=clock)
    admin.create_topic("orders", partitions=PARTITIONS)
    subscriptions = {f"member-{i}": ["orders"] for i in range(MEMBERS)}
    before = heartbeat(admin, "g", subscriptions, rounds=2)
    dead = before.pop("member-5")
    survivors = sorted(before)
    engines = [make_engine(clock_ms=clock) for _ in survivors]
    replies: dict[str, list[Membership]] = defaultdict(list)
    clock.advance(SESSION - 1)
    heartbeat(admin, "g", {m: ["orders"] for m in survivors}, rounds=1)
    clock.advance(1)

    # When the survivors heartbeat at once, twice
    def member(index: int) -> None:
        for _ in range(2):
            name = survivors[index]
            replies[name].append(engines[index].join_group("g", ["orders"], name))

    run_in_threads(len(survivors), member)

    # Then each of the dead member's leases was taken once, by one member, at the next epoch
    grants: dict[tuple[int, int], set[str]] = defaultdict(set)
    for name, history in replies.items():
        for reply in history:
            for a in reply.assignments:
                grants[(a.partition, a.lease_epoch)].add(name)
    assert all(len(owners) == 1 for owners in grants.values()), grants
    for lost in dead.assignments:
        epochs = {epoch for (partition, epoch) in grants if partition == lost.partition}
        assert epochs == {lost.lease_epoch + 1}
    final = heartbeat(admin, "g", {m: ["orders"] for m in survivors}, rounds=2)
    assert_balanced(final, "orders", PARTITIONS)


# A commit racing a takeover ------------------------------------------------------------------


def _dead_owner(
    make_faulty: MakeFaulty, clock: Clock, committed: int | None = 5
) -> tuple[Engine, Engine, FaultyGroupStore, FaultyGroupStore, int]:
    """Members "a" (holding partition 0 of "orders", ``committed``, session over) and "b".

    Returns both engines, their group stores and a's lease epoch.
    """
    a, _ = make_faulty(seed=1, clock_ms=clock)
    b, _ = make_faulty(seed=2, clock_ms=clock)
    a.create_topic("orders", partitions=1)
    epoch = a.join_group("g", ["orders"], "a").assignments[0].lease_epoch
    if committed is not None:
        a.commit_offsets("g", "a", [OffsetCommit("orders", 0, committed, epoch)])
    clock.advance(SESSION)
    stores = a.groups.store, b.groups.store
    assert isinstance(stores[0], FaultyGroupStore) and isinstance(stores[1], FaultyGroupStore)
    return a, b, stores[0], stores[1], epoch


def test_a_commit_that_lands_just_before_a_takeover_is_where_the_new_owner_starts(
    make_faulty: MakeFaulty,
) -> None:
    clock = Clock()
    a, b, _, b_store, epoch = _dead_owner(make_faulty, clock)

    # Given a's commit lands between b's read of the group and b's take of the lease
    def commit_first(seen: LeaseRecord) -> None:
        b_store.on_lease = None
        a.commit_offsets("g", "a", [OffsetCommit("orders", 0, 7, epoch)])

    b_store.on_lease = commit_first

    # When b takes the lease
    reply = b.join_group("g", ["orders"], "b")

    # Then b starts after a's last commit, at the next epoch, and a is fenced from now on
    assert [(x.partition, x.committed_offset, x.lease_epoch) for x in reply.assignments] == [
        (0, 7, epoch + 1)
    ]
    with pytest.raises(LeaseFencedError):
        a.commit_offsets("g", "a", [OffsetCommit("orders", 0, 8, epoch)])


def test_a_commit_that_arrives_just_after_a_takeover_is_fenced_and_changes_nothing(
    make_faulty: MakeFaulty,
) -> None:
    clock = Clock()
    a, b, a_store, _, epoch = _dead_owner(make_faulty, clock)

    # Given b takes the lease between a's decision to commit and its write
    taken: list[Membership] = []

    def takeover(_offsets: Any) -> None:
        a_store.on_commit = None
        taken.append(b.join_group("g", ["orders"], "b"))

    a_store.on_commit = takeover

    # When a's commit reaches the store, it is fenced
    with pytest.raises(LeaseFencedError):
        a.commit_offsets("g", "a", [OffsetCommit("orders", 0, 9, epoch)])

    # Then b started from a's earlier commit, and the lease still says so
    assert [(x.committed_offset, x.lease_epoch) for x in taken[0].assignments] == [(5, epoch + 1)]
    partition = b.describe_group("g").partitions[0]
    assert (partition.owner, partition.committed_offset) == ("b", 5)


COMMITS = 8
"""Offsets 1 to 8 that a dead member commits, one after another, while it is taken over."""


@dataclass
class _Commits:
    """Commits of member "a" to partition 0 of "orders" at ``epoch``, by outcome."""

    engine: Engine
    epoch: int
    landed: list[int] = field(default_factory=list)
    fenced: list[int] = field(default_factory=list)

    def __call__(self, offset: int) -> None:
        try:
            self.engine.commit_offsets("g", "a", [OffsetCommit("orders", 0, offset, self.epoch)])
        except LeaseFencedError:
            self.fenced.append(offset)
        else:
            self.landed.append(offset)


@pytest.mark.parametrize("cut", [1, 4, COMMITS])
@pytest.mark.parametrize("first", ["takeover", "commit"])
def test_commits_racing_a_takeover_either_land_before_it_or_are_fenced(
    make_faulty: MakeFaulty, first: str, cut: int
) -> None:
    # Given a dead member "a" that commits offsets 1, 2, ... one after another, and a
    # takeover by "b" that meets a's commit of offset ``cut`` in one of the two orders:
    # b takes the lease between a's decision to commit and its write ("takeover"), or a's
    # commit lands between b's read of the group and b's take ("commit")
    clock = Clock()
    a, b, a_store, b_store, epoch = _dead_owner(make_faulty, clock, committed=None)
    commit = _Commits(a, epoch)
    took: list[Membership] = []

    def takeover(_seen: Any = None) -> None:
        a_store.on_commit = None
        took.append(b.join_group("g", ["orders"], "b"))

    def commit_cut(_seen: LeaseRecord) -> None:
        b_store.on_lease = None
        commit(cut)

    # When a commits every offset and b takes over at ``cut``, in the order chosen
    for offset in range(1, COMMITS + 1):
        if offset == cut and first == "commit":
            b_store.on_lease = commit_cut
            takeover()
            continue
        if offset == cut:
            a_store.on_commit = takeover
        commit(offset)

    # Then the commits before the takeover landed and every one after it was fenced
    last = cut if first == "commit" else cut - 1
    assert commit.landed == list(range(1, last + 1))
    assert commit.fenced == list(range(last + 1, COMMITS + 1))
    # and b starts at the last commit that landed, as the lease says from then on
    starts_at = last or None
    assert [(x.committed_offset, x.lease_epoch) for x in took[0].assignments] == [
        (starts_at, epoch + 1)
    ]
    assert b.describe_group("g").partitions[0].committed_offset == starts_at


@pytest.mark.slow
def test_commits_racing_a_takeover_in_threads_are_a_landed_run_then_fenced(
    make_faulty: MakeFaulty,
) -> None:
    # Given a dead member "a" that keeps committing increasing offsets from a thread
    a, b, _, _, epoch = _dead_owner(make_faulty, Clock(), committed=None)
    commit = _Commits(a, epoch)
    took: list[Membership] = []

    def race(index: int) -> None:
        if index == 1:
            took.append(b.join_group("g", ["orders"], "b"))
            return
        for offset in range(1, 100):
            commit(offset)
            if len(commit.fenced) >= 5:
                return

    # When b takes the lease over while a commits, in whatever order the threads run
    run_in_threads(2, race)

    # Then, however they interleaved, a run of commits landed and every later one was
    # fenced (either run may be empty), and b starts at the last commit that landed
    sent = commit.landed + commit.fenced
    assert sent == list(range(1, len(sent) + 1))
    starts_at = commit.landed[-1] if commit.landed else None
    assert took[0].assignments[0].committed_offset == starts_at
    assert b.describe_group("g").partitions[0].committed_offset == starts_at


# Faults ------------------------------------------------------------------------------------


def test_a_take_whose_reply_is_lost_is_returned_by_the_next_heartbeat_with_the_same_epoch(
    make_faulty: MakeFaulty,
) -> None:
    # Given the store fails right after the first take succeeded
    engine, injector = make_faulty(clock_ms=Clock())
    engine.create_topic("orders", partitions=3)
    injector.arm(FailPoint.AFTER_LEASE)

    with pytest.raises(UnavailableError, match="after_lease"):
        engine.join_group("g", ["orders"], "a")

    # When the member heartbeats again, it holds every lease, the first at the epoch it took
    reply = engine.join_group("g", ["orders"], "a")
    assert [(x.partition, x.lease_epoch) for x in reply.assignments] == [(0, 1), (1, 1), (2, 1)]


def test_a_give_up_that_fails_before_the_write_leaves_the_lease_with_its_owner(
    make_faulty: MakeFaulty,
) -> None:
    engine, injector = make_faulty(clock_ms=Clock())
    engine.create_topic("orders", partitions=2)
    engine.join_group("g", ["orders"], "a")
    engine.join_group("g", ["orders"], "b")
    injector.arm(FailPoint.BEFORE_LEASE)

    # When a's give-up of its surplus partition fails
    with pytest.raises(UnavailableError, match="before_lease"):
        engine.join_group("g", ["orders"], "a")

    # Then a still holds both; the next rounds balance the group
    assert {p.owner for p in engine.describe_group("g").partitions} == {"a"}
    replies = heartbeat(engine, "g", {"a": ["orders"], "b": ["orders"]}, rounds=2)
    assert [len(held(r)) for r in replies.values()] == [1, 1]


@pytest.mark.parametrize(
    ("point", "committed"), [(FailPoint.BEFORE_COMMIT, None), (FailPoint.AFTER_COMMIT, 4)]
)
def test_a_failed_commit_is_all_or_nothing_and_may_be_retried(
    make_faulty: MakeFaulty, point: FailPoint, committed: int | None
) -> None:
    engine, injector = make_faulty(clock_ms=Clock())
    engine.create_topic("orders", partitions=2)
    reply = engine.join_group("g", ["orders"], "a")
    offsets = [OffsetCommit(x.topic, x.partition, 4, x.lease_epoch) for x in reply.assignments]
    injector.arm(point)

    with pytest.raises(UnavailableError, match=str(point)):
        engine.commit_offsets("g", "a", offsets)
    assert {p.committed_offset for p in engine.describe_group("g").partitions} == {committed}

    engine.commit_offsets("g", "a", offsets)  # the retry (a second time, after the fact)
    assert {p.committed_offset for p in engine.describe_group("g").partitions} == {4}
