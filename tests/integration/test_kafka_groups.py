"""Kafka's classic group protocol over the catalog (ADR 0016 §5), without the wire.

Time is a fake clock: sessions end and rebalance deadlines pass only when a test moves it.
"Gateways" are `KafkaGroups` of separate engines on one `KafkaGroupStore`, as separate
gateway processes on one catalog table would be; no gateway owns a group.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from lakelog import Engine, GroupNotEmptyError, OffsetCommit, ToOffset
from lakelog.service.kafka_groups import (
    COMPLETING,
    EMPTY,
    PREPARING,
    STABLE,
    Joined,
    JoinRequest,
    KafkaGroups,
    Outcome,
)
from lakelog.storage.kafka_groups import (
    DynamoKafkaGroupStore,
    KafkaGroup,
    KafkaGroupStore,
    MemoryKafkaGroupStore,
)
from tests.contract.backends import AwsBackend, Backend
from tests.integration.group_support import Clock

SESSION = 6_000
REBALANCE = 10_000
GROUP = "billing"
RANGE = (("range", b"range-metadata"),)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(backend: Backend) -> KafkaGroupStore:
    if isinstance(backend, AwsBackend):
        return DynamoKafkaGroupStore(backend.client("dynamodb"), backend.names.catalog_table)
    return MemoryKafkaGroupStore()


@pytest.fixture
def gateway(
    make_engine: Callable[..., Engine], clock: Clock, store: KafkaGroupStore
) -> Callable[[], Engine]:
    """Engines (each a gateway's) on the fake clock and one Kafka group store."""
    return lambda: make_engine(clock_ms=clock, kafka_groups=store)


@pytest.fixture
def engine(gateway: Callable[[], Engine]) -> Engine:
    engine = gateway()
    engine.create_topic("orders", partitions=6)
    return engine


@pytest.fixture
def groups(engine: Engine) -> KafkaGroups:
    return engine.kafka_groups


def _request(member_id: str = "", **fields: object) -> JoinRequest:
    values: dict[str, object] = {
        "group": GROUP,
        "member_id": member_id,
        "protocol_type": "consumer",
        "protocols": RANGE,
        "session_timeout_ms": SESSION,
        "rebalance_timeout_ms": REBALANCE,
        "client_id": "app",
        "require_known_member": True,
    }
    values.update(fields)
    return JoinRequest(**values)  # type: ignore[arg-type]


def _join_new(groups: KafkaGroups, **fields: object) -> Joined:
    """A new member's JoinGroup v4+: MEMBER_ID_REQUIRED, then the join with its id."""
    required = groups.join(_request(**fields))
    assert required.outcome is Outcome.MEMBER_ID_REQUIRED
    assert required.member_id.startswith("app-")
    return groups.join(_request(required.member_id, **fields))


@dataclass
class Member:
    """A client as the tests drive it: its id and the generation it is in."""

    member_id: str
    generation: int = -1
    assignment: bytes = b""


def _settle(groups: KafkaGroups, waiting: dict[str, Joined]) -> dict[str, Joined]:
    """Poll each waiting join once more; the answers (waiting ones stay waiting)."""
    return {
        m: groups.poll_join(GROUP, m, joined.since) if joined.waiting else joined
        for m, joined in waiting.items()
    }


def _rebalanced(
    groups: KafkaGroups, members: list[str], instances: dict[str, str] | None = None
) -> dict[str, Member]:
    """Every member of ``members`` joins (again, static ones under their ``instances``),
    the leader assigns each its own id as its assignment, and everyone syncs: the group's
    members by id."""
    instances = instances or {}
    joins = {m: groups.join(_request(m, instance_id=instances.get(m))) for m in members}
    joins = _settle(groups, joins)
    assert not any(j.waiting for j in joins.values()), joins
    generation = {j.generation for j in joins.values()}
    assert len(generation) == 1, joins
    (leader,) = [j for j in joins.values() if j.members]
    assert sorted(m for m, _, _ in leader.members) == sorted(members)
    assert all(metadata == b"range-metadata" for _, _, metadata in leader.members)
    done = {}
    for m in sorted(members, key=lambda m: m != leader.member_id):  # the leader first
        assignments = {x: x.encode() for x in members} if m == leader.member_id else None
        synced = groups.sync(
            GROUP, m, leader.generation, assignments, "consumer", "range", instances.get(m)
        )
        assert (synced.outcome, synced.waiting) == (Outcome.NONE, False)
        done[m] = Member(m, leader.generation, synced.assignment)
    return done


# Joining ---------------------------------------------------------------------------------


def test_three_members_join_one_by_one_and_each_rebalance_gives_everyone_its_assignment(
    groups: KafkaGroups,
) -> None:
    # Given a first member: the group forms at once, with it as leader
    first = _join_new(groups)
    assert (first.outcome, first.waiting, first.generation) == (Outcome.NONE, False, 1)
    assert first.leader == first.member_id
    a = first.member_id
    assert groups.sync(GROUP, a, 1, {a: b"all"}).assignment == b"all"
    assert groups.describe(GROUP).state == STABLE

    # When a second joins, the first hears of the rebalance at its heartbeat
    second = _join_new(groups)
    b = second.member_id
    assert second.waiting
    assert groups.describe(GROUP).state == PREPARING
    assert groups.heartbeat(GROUP, a, 1) is Outcome.REBALANCE_IN_PROGRESS
    # ...and the join completes when it rejoins
    members = _rebalanced(groups, [a, b])
    assert {m.generation for m in members.values()} == {2}
    assert members[b].assignment == b.encode()

    # When a third joins, the same happens again
    c = _join_new(groups).member_id
    assert groups.heartbeat(GROUP, b, 2) is Outcome.REBALANCE_IN_PROGRESS
    members = _rebalanced(groups, [a, b, c])
    assert {m: s.assignment for m, s in members.items()} == {x: x.encode() for x in (a, b, c)}
    group = groups.describe(GROUP)
    assert (group.state, group.generation, group.leader) == (STABLE, 3, a)
    assert all(groups.heartbeat(GROUP, m, 3) is Outcome.NONE for m in (a, b, c))


def test_a_join_waits_until_every_member_joined_and_the_leader_gets_their_metadata(
    groups: KafkaGroups,
) -> None:
    a = _join_new(groups).member_id
    groups.sync(GROUP, a, 1, {})
    b = _join_new(groups, protocols=(("range", b"b-metadata"),))
    assert groups.poll_join(GROUP, b.member_id, b.since).waiting  # a has not rejoined

    rejoined = groups.join(_request(a))

    assert rejoined.generation == 2 and rejoined.leader == a
    assert dict((m, md) for m, _, md in rejoined.members) == {
        a: b"range-metadata",
        b.member_id: b"b-metadata",
    }
    answer = groups.poll_join(GROUP, b.member_id, b.since)
    assert (answer.generation, answer.leader, answer.members) == (2, a, ())
    assert groups.describe(GROUP).state == COMPLETING


def test_members_wait_in_sync_for_the_leaders_assignments(groups: KafkaGroups) -> None:
    a = _join_new(groups).member_id
    groups.sync(GROUP, a, 1, {})
    b = _join_new(groups).member_id
    groups.join(_request(a))
    assert groups.poll_join(GROUP, b, 1).generation == 2

    assert groups.sync(GROUP, b, 2).waiting  # the leader has not synced yet
    assert groups.sync(GROUP, a, 2, {b: b"for-b"}).assignment == b""  # left out: empty
    assert groups.poll_sync(GROUP, b, 2).assignment == b"for-b"


def test_a_known_member_rejoining_unchanged_gets_the_current_generation(
    groups: KafkaGroups,
) -> None:
    members = _rebalanced(groups, [_join_new(groups).member_id])
    (a,) = members
    b = _join_new(groups).member_id
    members = _rebalanced(groups, [a, b])

    again = groups.join(_request(b))  # not the leader, same protocols

    assert (again.waiting, again.generation) == (False, members[b].generation)
    assert groups.describe(GROUP).state == STABLE


def test_the_protocol_is_the_one_every_member_supports_most_prefer(groups: KafkaGroups) -> None:
    both = (("range", b""), ("roundrobin", b""))
    a = _join_new(groups, protocols=both).member_id
    groups.sync(GROUP, a, 1, {})
    b = _join_new(groups, protocols=(("roundrobin", b""), ("range", b""))).member_id
    c = _join_new(groups, protocols=(("roundrobin", b""),)).member_id
    joined = groups.join(_request(a, protocols=both))
    assert joined.protocol == "roundrobin"
    assert {groups.poll_join(GROUP, m, 1).protocol for m in (b, c)} == {"roundrobin"}

    other = groups.join(_request("", protocols=(("sticky", b""),), require_known_member=False))
    assert other.outcome is Outcome.INCONSISTENT_GROUP_PROTOCOL
    wrong_type = groups.join(_request("", protocol_type="connect", require_known_member=False))
    assert wrong_type.outcome is Outcome.INCONSISTENT_GROUP_PROTOCOL


def test_join_v0_to_v3_joins_at_once_and_bad_input_is_refused(groups: KafkaGroups) -> None:
    joined = groups.join(_request(require_known_member=False))
    assert (joined.outcome, joined.generation) == (Outcome.NONE, 1)
    assert groups.join(_request(session_timeout_ms=5_999)).outcome is (
        Outcome.INVALID_SESSION_TIMEOUT
    )
    for reserved in ("subscription.orders.s", "bad#group"):
        assert groups.join(_request(group=reserved)).outcome is Outcome.INVALID_GROUP_ID
        assert groups.heartbeat(reserved, "m", 1) is Outcome.INVALID_GROUP_ID
        assert groups.committed(reserved) is Outcome.INVALID_GROUP_ID


# Leaving and dying -----------------------------------------------------------------------


def test_a_member_leaving_rebalances_the_others(groups: KafkaGroups) -> None:
    a, b, c = (_join_new(groups).member_id for _ in range(3))
    members = _rebalanced(groups, [a, b, c])
    assert {m.generation for m in members.values()} == {2}

    assert groups.leave(GROUP, [(b, None), ("nobody", None)]) == [
        Outcome.NONE,
        Outcome.UNKNOWN_MEMBER_ID,
    ]

    assert groups.heartbeat(GROUP, a, 2) is Outcome.REBALANCE_IN_PROGRESS
    assert groups.heartbeat(GROUP, b, 2) is Outcome.UNKNOWN_MEMBER_ID
    members = _rebalanced(groups, [a, c])
    assert {m.generation for m in members.values()} == {3}

    groups.leave(GROUP, [(a, None)])
    groups.leave(GROUP, [(c, None)])
    group = groups.describe(GROUP)
    assert (group.state, group.members, group.generation) == (EMPTY, (), 4)


def test_a_member_whose_session_ends_is_removed_at_the_next_request(
    groups: KafkaGroups, clock: Clock
) -> None:
    a, b, c = (_join_new(groups).member_id for _ in range(3))
    _rebalanced(groups, [a, b, c])

    # c stops heartbeating; a and b keep to their interval
    for _ in range(5):
        clock.advance(1_000)
        assert groups.heartbeat(GROUP, a, 2) is Outcome.NONE
        assert groups.heartbeat(GROUP, b, 2) is Outcome.NONE
    clock.advance(1_000)  # 6 s since c was last heard: its session ended

    assert groups.heartbeat(GROUP, a, 2) is Outcome.REBALANCE_IN_PROGRESS
    assert [m.member_id for m in groups.describe(GROUP).members] == [a, b]
    assert groups.heartbeat(GROUP, c, 2) is Outcome.UNKNOWN_MEMBER_ID
    assert set(_rebalanced(groups, [a, b])) == {a, b}


def test_members_that_do_not_rejoin_by_the_deadline_are_left_out(
    groups: KafkaGroups, clock: Clock
) -> None:
    a, b = (_join_new(groups).member_id for _ in range(2))
    _rebalanced(groups, [a, b])
    c = _join_new(groups)
    a_again = groups.join(_request(a))
    assert a_again.waiting  # b has not rejoined

    # b keeps heartbeating (each told a rebalance is on) but never rejoins
    for _ in range(4):
        clock.advance(2_000)
        assert groups.heartbeat(GROUP, b, 2) is Outcome.REBALANCE_IN_PROGRESS
    clock.advance(REBALANCE - 8_001)
    assert groups.poll_join(GROUP, a, a_again.since).waiting
    clock.advance(1)  # the deadline: whoever polls completes the phase without b

    answer = groups.poll_join(GROUP, c.member_id, c.since)
    assert (answer.generation, answer.leader) == (3, a)
    assert groups.heartbeat(GROUP, b, 2) is Outcome.UNKNOWN_MEMBER_ID
    assert sorted(m for m, _, _ in groups.poll_join(GROUP, a, a_again.since).members) == sorted(
        [a, c.member_id]
    )


def test_heartbeats_write_only_once_a_third_of_the_session_passed(
    groups: KafkaGroups, store: KafkaGroupStore, clock: Clock
) -> None:
    a = _join_new(groups).member_id
    groups.sync(GROUP, a, 1, {})
    version = _version(store)
    for _ in range(3):
        clock.advance(500)
        assert groups.heartbeat(GROUP, a, 1) is Outcome.NONE
    assert _version(store) == version  # 1.5 s < 2 s: nothing written
    clock.advance(500)
    groups.heartbeat(GROUP, a, 1)
    assert _version(store) == version + 1
    assert groups.heartbeat(GROUP, a, 0) is Outcome.ILLEGAL_GENERATION


def _version(store: KafkaGroupStore) -> int:
    stored = store.read(GROUP)
    assert stored is not None
    return stored.version


# Several gateways ------------------------------------------------------------------------


def test_any_gateway_completes_a_rebalance_another_began(
    gateway: Callable[[], Engine], groups: KafkaGroups, clock: Clock
) -> None:
    # Given a group whose members talk to the first gateway
    a, b = (_join_new(groups).member_id for _ in range(2))
    _rebalanced(groups, [a, b])
    # When a third member joins there and the first gateway then goes away for good
    c = _join_new(groups)
    other = gateway().kafka_groups

    # Then the members reaching a second gateway carry the rebalance to its end
    assert other.heartbeat(GROUP, a, 2) is Outcome.REBALANCE_IN_PROGRESS
    first = other.join(_request(a))
    assert first.waiting
    second = other.join(_request(b))
    assert (second.generation, second.waiting) == (3, False)
    assert other.poll_join(GROUP, c.member_id, c.since).generation == 3
    leader = other.poll_join(GROUP, a, first.since)
    assert leader.leader == a and len(leader.members) == 3
    assert other.sync(GROUP, a, 3, {c.member_id: b"c"}).outcome is Outcome.NONE
    assert other.sync(GROUP, c.member_id, 3).assignment == b"c"


RACE_TIMEOUT_S = 60.0
"""Seconds a racing write waits for the other party at the barrier: a backstop only a party
that never gets there reaches (a loaded machine may stall a thread for seconds)."""


class RacingStore:
    """A `KafkaGroupStore` whose first ``parties`` writes wait for each other at a barrier
    after their reads: those requests then write on the same version, and all but one
    lose. Later writes go straight through."""

    def __init__(self, store: KafkaGroupStore, parties: int) -> None:
        self._store = store
        self._barrier = threading.Barrier(parties, timeout=RACE_TIMEOUT_S)
        self._lock = threading.Lock()
        self._left = parties
        self.refused = 0

    def read(self, group: str) -> KafkaGroup | None:
        return self._store.read(group)

    def write(self, group: KafkaGroup) -> bool:
        with self._lock:
            racing, self._left = self._left > 0, self._left - 1
        if racing:
            self._barrier.wait()
        written = self._store.write(group)
        self.refused += not written
        return written

    def list_groups(self) -> list[str]:
        return self._store.list_groups()


@pytest.mark.parametrize("backend_name", ["memory", pytest.param("moto", marks=pytest.mark.moto)])
def test_joins_racing_on_one_version_are_both_applied(
    make_engine: Callable[..., Engine], clock: Clock, store: KafkaGroupStore, backend_name: str
) -> None:
    racing = RacingStore(store, parties=2)
    gateways = [make_engine(clock_ms=clock, kafka_groups=racing).kafka_groups for _ in range(2)]
    answers: dict[str, Joined] = {}

    def join(index: int) -> None:
        answers[f"m{index}"] = gateways[index].join(_request(f"m{index}"))

    threads = [threading.Thread(target=join, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert racing.refused == 1  # one write lost the race, read again and was applied
    group = gateways[0].describe(GROUP)
    assert sorted(m.member_id for m in group.members) == ["m0", "m1"]
    # The first write formed generation 1; the second, written on it, began a rebalance
    (winner,) = [m for m, joined in answers.items() if not joined.waiting]
    (loser,) = set(answers) - {winner}
    assert answers[winner].generation == 1
    assert (answers[loser].waiting, answers[loser].since) == (True, 1)
    assert group.state == PREPARING
    index = int(winner[1])
    assert gateways[index].join(_request(winner)).generation == 2
    assert gateways[1 - index].poll_join(GROUP, loser, 1).generation == 2


def test_a_stale_leaders_sync_changes_nothing(groups: KafkaGroups) -> None:
    a, b = (_join_new(groups).member_id for _ in range(2))
    _rebalanced(groups, [a, b])
    c = _join_new(groups).member_id
    groups.join(_request(a))
    groups.join(_request(b))
    assert groups.poll_join(GROUP, c, 2).generation == 3

    assert groups.sync(GROUP, a, 2, {a: b"stale"}).outcome is Outcome.ILLEGAL_GENERATION
    assert groups.describe(GROUP).state == COMPLETING


# Offsets ---------------------------------------------------------------------------------


def test_commits_are_checked_against_the_generation_and_land_in_lakelogs_group(
    groups: KafkaGroups, engine: Engine
) -> None:
    a, b = (_join_new(groups).member_id for _ in range(2))
    _rebalanced(groups, [a, b])

    assert groups.commit(GROUP, a, 2, {("orders", 0): 5, ("orders", 1): 7}) == {
        ("orders", 0): Outcome.NONE,
        ("orders", 1): Outcome.NONE,
    }
    assert groups.commit(GROUP, a, 1, {("orders", 0): 9}) == {
        ("orders", 0): Outcome.ILLEGAL_GENERATION
    }
    assert groups.commit(GROUP, "nobody", 2, {("orders", 0): 9}) == {
        ("orders", 0): Outcome.UNKNOWN_MEMBER_ID
    }
    assert groups.commit(GROUP, "", -1, {("orders", 0): 9}) == {
        ("orders", 0): Outcome.UNKNOWN_MEMBER_ID  # standalone commits only when empty
    }
    assert groups.commit(GROUP, a, 2, {("orders", 6): 1, ("nope", 0): 1, ("orders", 2): -1}) == {
        ("orders", 6): Outcome.UNKNOWN_TOPIC_OR_PARTITION,
        ("nope", 0): Outcome.UNKNOWN_TOPIC_OR_PARTITION,
        ("orders", 2): Outcome.INVALID_REQUEST,
    }

    described = {p.partition: p.committed_offset for p in engine.describe_group(GROUP).partitions}
    assert described == {0: 5, 1: 7, 2: None, 3: None, 4: None, 5: None}
    assert groups.committed(GROUP) == {("orders", 0): 5, ("orders", 1): 7}


def test_commits_follow_the_phase_of_the_rebalance(groups: KafkaGroups) -> None:
    a, b = (_join_new(groups).member_id for _ in range(2))
    _rebalanced(groups, [a, b])
    c = _join_new(groups).member_id

    # Preparing: members commit what they processed before giving partitions up
    assert groups.commit(GROUP, b, 2, {("orders", 3): 1}) == {("orders", 3): Outcome.NONE}
    groups.join(_request(a))
    groups.join(_request(b))
    assert groups.poll_join(GROUP, c, 2).generation == 3
    # Completing: no commit until the assignments are out
    assert groups.commit(GROUP, b, 3, {("orders", 3): 2}) == {
        ("orders", 3): Outcome.REBALANCE_IN_PROGRESS
    }


def test_a_standalone_commit_needs_an_empty_group(groups: KafkaGroups) -> None:
    assert groups.commit(GROUP, "", -1, {("orders", 0): 3}) == {("orders", 0): Outcome.NONE}
    assert groups.committed(GROUP) == {("orders", 0): 3}


def test_a_lakelog_group_and_a_kafka_group_of_one_name_share_offsets_not_members(
    groups: KafkaGroups, engine: Engine
) -> None:
    # Given a lakelog SDK member of the group, live and committing
    membership = engine.join_group(GROUP, ["orders"], session_timeout_ms=SESSION)
    lease = membership.assignments[0]
    engine.commit_offsets(
        GROUP, membership.member_id, [OffsetCommit("orders", 0, 11, lease.lease_epoch)]
    )

    # Then Kafka members may not join, nor commit over its leases, but see its offsets
    assert groups.join(_request("k1")).outcome is Outcome.INCONSISTENT_GROUP_PROTOCOL
    assert groups.commit(GROUP, "", -1, {("orders", 0): 1}) == {
        ("orders", 0): Outcome.NON_EMPTY_GROUP
    }
    assert groups.committed(GROUP) == {("orders", 0): 11}

    # When the lakelog member leaves, a Kafka group takes over from its offsets
    engine.leave_group(GROUP, membership.member_id)
    joined = groups.join(_request("k1"))
    assert joined.generation == 1
    groups.sync(GROUP, "k1", 1, {})
    assert groups.commit(GROUP, "k1", 1, {("orders", 0): 12}) == {("orders", 0): Outcome.NONE}
    partition = engine.describe_group(GROUP).partitions[0]
    assert (partition.committed_offset, partition.owner) == (12, None)
    assert replace(partition, lease_epoch=0).lease_epoch == 0


def test_a_lakelog_member_may_not_join_beside_live_kafka_members(
    groups: KafkaGroups, engine: Engine, clock: Clock
) -> None:
    a = _join_new(groups).member_id
    groups.sync(GROUP, a, 1, {})

    with pytest.raises(GroupNotEmptyError):
        engine.join_group(GROUP, ["orders"])
    assert engine.groups.live_members(GROUP) == ()

    clock.advance(SESSION)  # the Kafka member's session ends: the group is free again
    assert engine.join_group(GROUP, ["orders"]).assignments
    # Subscriptions' groups are never Kafka groups: their joins read no Kafka state
    assert groups.members("subscription.orders.s") == ()


def test_offsets_are_reset_only_once_the_kafka_members_are_gone(
    groups: KafkaGroups, engine: Engine
) -> None:
    a = _join_new(groups).member_id
    groups.sync(GROUP, a, 1, {})
    assert groups.commit(GROUP, a, 1, {("orders", 0): 4}) == {("orders", 0): Outcome.NONE}

    with pytest.raises(GroupNotEmptyError):
        engine.reset_offsets(GROUP, "orders", ToOffset(0))

    groups.leave(GROUP, [(a, None)])
    assert engine.reset_offsets(GROUP, "orders", "earliest")[0] == 0
    assert groups.committed(GROUP)[("orders", 0)] == 0


def test_a_static_member_started_again_replaces_its_old_self_which_is_fenced(
    groups: KafkaGroups,
) -> None:
    # Given a static member that is the group's only member, Stable in generation 1
    first = groups.join(_request(instance_id="app-1"))
    assert first.outcome is Outcome.NONE  # no MEMBER_ID_REQUIRED round trip: as Kafka
    assert first.generation == 1
    old = first.member_id
    assert groups.sync(GROUP, old, 1, {old: b"all"}, instance_id="app-1").assignment == b"all"
    # When it starts again under the same instance id (it did not leave)
    second = groups.join(_request(instance_id="app-1"))
    # Then the new member replaces the old one at once
    assert (second.outcome, second.generation, second.leader) == (
        Outcome.NONE,
        2,
        second.member_id,
    )
    described = groups.describe(GROUP)
    assert not isinstance(described, Outcome)
    assert [m.member_id for m in described.members] == [second.member_id]
    # and every request of the old one is fenced, a rejoin under its id included
    fenced = Outcome.FENCED_INSTANCE_ID
    assert groups.heartbeat(GROUP, old, 1, "app-1") is fenced
    assert groups.sync(GROUP, old, 2, {}, instance_id="app-1").outcome is fenced
    assert groups.commit(GROUP, old, 2, {("orders", 0): 5}, "app-1") == {("orders", 0): fenced}
    assert groups.join(_request(old, instance_id="app-1")).outcome is fenced
    assert groups.poll_join(GROUP, old, 1, "app-1").outcome is fenced
    assert groups.committed(GROUP) == {}
    # without its instance id an unknown member is what it is, as in Kafka
    assert groups.heartbeat(GROUP, old, 2) is Outcome.UNKNOWN_MEMBER_ID


def test_leave_by_instance_id_alone_removes_that_static_member(groups: KafkaGroups) -> None:
    # Given a static member and a dynamic one, Stable
    static = groups.join(_request(instance_id="app-1")).member_id
    dynamic = _join_new(groups).member_id
    _rebalanced(groups, [static, dynamic], {static: "app-1"})

    # When an administrator removes the static member by its instance id alone (Kafka's
    # removeMembersFromConsumerGroup: member id ""), naming an unknown instance too
    outcomes = groups.leave(GROUP, [("", "app-1"), ("", "app-9")])

    # Then that member is gone, the unknown one is UNKNOWN_MEMBER_ID, and the rest rebalance
    assert outcomes == [Outcome.NONE, Outcome.UNKNOWN_MEMBER_ID]
    assert groups.heartbeat(GROUP, static, 2, "app-1") is Outcome.UNKNOWN_MEMBER_ID
    assert groups.heartbeat(GROUP, dynamic, 2) is Outcome.REBALANCE_IN_PROGRESS
    members = _rebalanced(groups, [dynamic])
    assert list(members) == [dynamic]


def test_leave_naming_an_instance_under_another_member_id_is_fenced(
    groups: KafkaGroups,
) -> None:
    static = groups.join(_request(instance_id="app-1")).member_id
    generation = _rebalanced(groups, [static], {static: "app-1"})[static].generation

    # An old incarnation's leave does not remove the member that replaced it
    assert groups.leave(GROUP, [("app-old", "app-1")]) == [Outcome.FENCED_INSTANCE_ID]
    assert groups.heartbeat(GROUP, static, generation, "app-1") is Outcome.NONE
    # while the member itself, named by both, leaves
    assert groups.leave(GROUP, [(static, "app-1")]) == [Outcome.NONE]
    described = groups.describe(GROUP)
    assert not isinstance(described, Outcome)
    assert described.members == ()


def test_a_member_named_twice_in_one_leave_leaves_once(groups: KafkaGroups) -> None:
    a, b = (_join_new(groups).member_id for _ in range(2))
    _rebalanced(groups, [a, b])

    # As Kafka handles the list in order: the second naming finds the member gone
    assert groups.leave(GROUP, [(a, None), (a, None)]) == [
        Outcome.NONE,
        Outcome.UNKNOWN_MEMBER_ID,
    ]
