"""Consumer groups (ADR 0009): balance, liveness, fenced commits, describe, reset, bad input.

Time is a fake clock shared by every member's engine: sessions end when a test moves it,
never by sleeping. Each member runs on its own engine (own clients and caches), as
separate Lambda containers and SDK processes would.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from lakelog import (
    Engine,
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidRequestError,
    LeaseFencedError,
    OffsetCommit,
    Record,
    ResourceNames,
    ToOffset,
    TopicNotFoundError,
    TopicPartition,
    ToTimestamp,
)
from lakelog.limits import (
    DEFAULT_SESSION_TIMEOUT_MS,
    MAX_OFFSETS_PER_COMMIT,
    MAX_SESSION_TIMEOUT_MS,
    MAX_TOPICS_PER_MEMBER,
    MIN_SESSION_TIMEOUT_MS,
)
from lakelog.storage.groups import MEMBER_TTL_GRACE_MS, DynamoGroupStore
from lakelog.storage.keys import group_pk, member_sort_key
from tests.contract.backends import Backend
from tests.integration.group_support import (
    Clock,
    assert_balanced,
    assert_disjoint_and_complete,
    heartbeat,
    held,
)

SESSION = DEFAULT_SESSION_TIMEOUT_MS


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def member_engine(make_engine: Callable[..., Engine], clock: Clock) -> Callable[[], Engine]:
    """Engines on the shared fake clock."""
    return lambda: make_engine(clock_ms=clock)


@pytest.fixture
def engine(member_engine: Callable[[], Engine]) -> Engine:
    engine = member_engine()
    engine.create_topic("orders", partitions=6)
    return engine


def _partitions(topic: str, count: int) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(count)]


def _commit(engine: Engine, group: str, member: str, tp: TopicPartition, offset: int) -> None:
    """Commit ``offset`` for ``tp`` at the epoch the member's heartbeat reports."""
    epoch = _epoch(engine.describe_group(group), tp)
    engine.commit_offsets(group, member, [OffsetCommit(tp.topic, tp.partition, offset, epoch)])


def _epoch(description: Any, tp: TopicPartition) -> int:
    return next(
        p.lease_epoch
        for p in description.partitions
        if (p.topic, p.partition) == (tp.topic, tp.partition)
    )


# Balance ----------------------------------------------------------------------------------


def test_three_members_on_six_partitions_hold_two_each(engine: Engine) -> None:
    # Given three members joining one after the other
    members = {m: ["orders"] for m in ("a", "b", "c")}
    first = heartbeat(engine, "billing", members, rounds=1)
    assert len(first["a"].assignments) == 6  # the first one took everything

    # When each heartbeats once more
    replies = heartbeat(engine, "billing", members, rounds=1)

    # Then each holds two partitions and every partition has one owner
    assert {m: len(r.assignments) for m, r in replies.items()} == {"a": 2, "b": 2, "c": 2}
    assert_disjoint_and_complete(replies, _partitions("orders", 6))
    assert held(replies["a"]) == set(_partitions("orders", 2))  # kept its lowest ones


def test_a_new_member_gets_a_fresh_id_and_the_session_it_asked_for(engine: Engine) -> None:
    default = engine.join_group("billing", ["orders"])
    custom = engine.join_group("billing", ["orders"], session_timeout_ms=30_000)

    assert len(default.member_id) == 32
    assert default.member_id != custom.member_id
    assert (default.session_timeout_ms, default.heartbeat_interval_ms) == (SESSION, SESSION // 3)
    assert (custom.session_timeout_ms, custom.heartbeat_interval_ms) == (30_000, 10_000)
    assert all(a.lease_epoch == 1 and a.committed_offset is None for a in default.assignments)


@pytest.mark.parametrize(
    ("partitions", "sizes"),
    [(7, [1, 2, 3, 4, 3, 2, 1]), (6, [1, 4, 6, 7, 2]), (2, [1, 3, 1]), (10, [1, 3, 5, 3, 1])],
)
def test_joins_and_leaves_keep_every_member_at_the_floor_or_ceiling(
    member_engine: Callable[[], Engine], partitions: int, sizes: list[int]
) -> None:
    engine = member_engine()
    engine.create_topic("events", partitions=partitions)
    names = (f"member-{i:02d}" for i in itertools.count())
    current: list[str] = []
    for size in sizes:
        # Given members joining or leaving until the group has ``size`` of them
        while len(current) < size:
            current.append(next(names))
        while len(current) > size:
            engine.leave_group("g", current.pop(0))
        members = {m: ["events"] for m in current}

        # When every member heartbeats twice
        replies = heartbeat(engine, "g", members, rounds=2)

        # Then every member holds floor(P/M) or ceil(P/M) and no partition is held twice
        assert_balanced(replies, "events", partitions)
        assert_disjoint_and_complete(replies, _partitions("events", partitions))


def test_members_with_different_subscriptions_share_only_the_topics_they_subscribe_to(
    engine: Engine,
) -> None:
    # Given "a" on orders, "b" on orders and payments, "c" on payments only
    engine.create_topic("payments", partitions=2)
    members = {"a": ["orders"], "b": ["orders", "payments"], "c": ["payments"]}

    replies = heartbeat(engine, "g", members, rounds=2)

    # Then orders is split between a and b, payments between b and c
    by_topic = {m: sorted({a.topic for a in r.assignments}) for m, r in replies.items()}
    assert by_topic == {"a": ["orders"], "b": ["orders", "payments"], "c": ["payments"]}
    assert_disjoint_and_complete(replies, _partitions("orders", 6) + _partitions("payments", 2))
    assert [len(replies[m].assignments) for m in "abc"] == [3, 4, 1]

    # When b drops orders from its subscription, it gives its orders leases up and a takes them
    members["b"] = ["payments"]
    replies = heartbeat(engine, "g", members, rounds=2)
    assert held(replies["a"]) == set(_partitions("orders", 6))
    assert {a.topic for a in replies["b"].assignments} == {"payments"}
    assert_disjoint_and_complete(replies, _partitions("orders", 6) + _partitions("payments", 2))


def test_more_members_than_partitions_leaves_some_members_idle(engine: Engine) -> None:
    engine.create_topic("tiny", partitions=2)
    members = {m: ["tiny"] for m in ("a", "b", "c")}

    replies = heartbeat(engine, "g", members, rounds=2)

    assert sorted(len(r.assignments) for r in replies.values()) == [0, 1, 1]
    assert_disjoint_and_complete(replies, _partitions("tiny", 2))


# Liveness and fencing ---------------------------------------------------------------------


def test_a_member_that_stops_heartbeating_loses_its_partitions_and_its_commit_is_fenced(
    engine: Engine, member_engine: Callable[[], Engine], clock: Clock
) -> None:
    # Given three balanced members; "c" commits offset 3 of one of its partitions, then stops
    engine.append("orders", [Record(value=b"x", partition=p) for p in range(6) for _ in range(5)])
    members = {m: ["orders"] for m in ("a", "b", "c")}
    replies = heartbeat(engine, "g", members, rounds=2)
    lost = replies["c"].assignments[0]
    c_engine = member_engine()
    c_engine.commit_offsets("g", "c", [OffsetCommit("orders", lost.partition, 3, lost.lease_epoch)])
    survivors = {m: ["orders"] for m in ("a", "b")}

    # When the others heartbeat within c's session, nothing moves
    clock.advance(SESSION - 1)
    replies = heartbeat(engine, "g", survivors, rounds=1)
    assert [len(r.assignments) for r in replies.values()] == [2, 2]

    # When c's session has passed, a and b take its partitions at their next heartbeats
    clock.advance(1)
    replies = heartbeat(engine, "g", survivors, rounds=2)
    assert_disjoint_and_complete(replies, _partitions("orders", 6))
    assert [len(r.assignments) for r in replies.values()] == [3, 3]
    taken = next(
        a
        for r in replies.values()
        for a in r.assignments
        if (a.topic, a.partition) == ("orders", lost.partition)
    )
    # The new owner starts where c committed, at a new epoch
    assert taken.committed_offset == 3
    assert taken.lease_epoch == lost.lease_epoch + 1

    # Then c's late commit is fenced and changes nothing
    before = engine.describe_group("g")
    with pytest.raises(LeaseFencedError) as fenced:
        c_engine.commit_offsets(
            "g", "c", [OffsetCommit("orders", lost.partition, 5, lost.lease_epoch)]
        )
    assert fenced.value.code == "fenced"
    assert fenced.value.partitions == (("orders", lost.partition),)
    assert engine.describe_group("g").partitions == before.partitions


def test_committed_offsets_are_handed_to_the_next_owner_after_a_leave(engine: Engine) -> None:
    # Given two members that committed an offset on each of their partitions
    members = {"a": ["orders"], "b": ["orders"]}
    replies = heartbeat(engine, "g", members, rounds=2)
    for member, reply in replies.items():
        engine.commit_offsets(
            "g",
            member,
            [
                OffsetCommit(a.topic, a.partition, 10 + a.partition, a.lease_epoch)
                for a in reply.assignments
            ],
        )

    # When b leaves, its partitions are free at once
    engine.leave_group("g", "b")
    description = engine.describe_group("g")
    assert [m.member_id for m in description.members] == ["a"]
    assert {p.owner for p in description.partitions if p.partition >= 3} == {None}

    # Then a takes them at its next heartbeat, with what b committed, at new epochs
    reply = engine.join_group("g", ["orders"], "a")
    assert {(a.partition, a.committed_offset) for a in reply.assignments} == {
        (p, 10 + p) for p in range(6)
    }
    given_up = {a.partition: a.lease_epoch for a in replies["b"].assignments}
    assert {a.partition: a.lease_epoch for a in reply.assignments if a.partition in given_up} == {
        p: epoch + 2 for p, epoch in given_up.items()
    }


def test_a_member_whose_session_lapsed_gets_its_leases_back_if_nobody_took_them(
    engine: Engine, clock: Clock
) -> None:
    first = engine.join_group("g", ["orders"], "a")
    clock.advance(SESSION * 5)

    again = engine.join_group("g", ["orders"], "a")

    assert again.assignments == first.assignments  # same partitions, same epochs


def test_an_unknown_member_id_is_accepted_as_a_rejoin(engine: Engine) -> None:
    reply = engine.join_group("g", ["orders"], "returning-member-42")

    assert reply.member_id == "returning-member-42"
    assert len(reply.assignments) == 6


def test_leave_is_idempotent_and_leaving_an_unknown_member_changes_nothing(
    engine: Engine, backend: Backend
) -> None:
    engine.join_group("g", ["orders"], "a")
    engine.leave_group("g", "a")
    before = backend.contents()

    engine.leave_group("g", "a")
    engine.leave_group("g", "never-joined")

    assert backend.contents() == before


def test_member_item_carries_its_session_end_and_a_ttl_a_day_later(
    engine: Engine, clock: Clock, dynamodb_client: Any, resources: ResourceNames
) -> None:
    engine.join_group("g", ["orders"], "a", session_timeout_ms=20_000)

    item = dynamodb_client.get_item(
        TableName=resources.catalog_table,
        Key={"pk": {"S": group_pk("g")}, "sk": {"S": member_sort_key("a")}},
    )["Item"]
    assert int(item["expires_ms"]["N"]) == clock.now_ms + 20_000
    assert int(item["expires_at"]["N"]) == (clock.now_ms + 20_000 + MEMBER_TTL_GRACE_MS) // 1000
    state = DynamoGroupStore(dynamodb_client, resources.catalog_table).read_group("g")
    assert [(m.member_id, m.topics) for m in state.members] == [("a", ("orders",))]
    assert len(state.leases) == 6


# Commit -----------------------------------------------------------------------------------


def test_a_commit_of_several_partitions_lands_all_or_nothing(engine: Engine) -> None:
    # Given a member holding all six partitions
    reply = engine.join_group("g", ["orders"], "a")
    offsets = [OffsetCommit(a.topic, a.partition, 7, a.lease_epoch) for a in reply.assignments]

    # When one of the offsets carries a stale epoch, nothing is committed
    stale = [*offsets[:5], OffsetCommit("orders", 5, 7, offsets[5].lease_epoch + 1)]
    with pytest.raises(LeaseFencedError) as fenced:
        engine.commit_offsets("g", "a", stale)
    assert fenced.value.partitions == (("orders", 5),)
    assert {p.committed_offset for p in engine.describe_group("g").partitions} == {None}

    # When every epoch is right, everything is committed
    engine.commit_offsets("g", "a", offsets)
    assert {p.committed_offset for p in engine.describe_group("g").partitions} == {7}


def test_a_commit_by_another_member_or_on_a_partition_nobody_holds_is_fenced(
    engine: Engine,
) -> None:
    engine.create_topic("other", partitions=1)
    reply = engine.join_group("g", ["orders"], "a")
    epoch = reply.assignments[0].lease_epoch

    with pytest.raises(LeaseFencedError):
        engine.commit_offsets("g", "intruder", [OffsetCommit("orders", 0, 1, epoch)])
    with pytest.raises(LeaseFencedError):
        engine.commit_offsets("g", "a", [OffsetCommit("other", 0, 1, 1)])
    engine.commit_offsets("g", "a", [])  # nothing to commit is not an error


# Describe ---------------------------------------------------------------------------------


def test_describe_shows_members_owners_and_lag(engine: Engine, clock: Clock) -> None:
    # Given records on partitions 0 and 1, two members, and commits on partitions 0 and 1
    engine.append("orders", [Record(value=b"v", partition=0) for _ in range(10)])
    engine.append("orders", [Record(value=b"v", partition=1) for _ in range(4)])
    replies = heartbeat(engine, "g", {"a": ["orders"], "b": ["orders"]}, rounds=2)
    _commit(engine, "g", "a", TopicPartition("orders", 0), 6)
    _commit(engine, "g", "a", TopicPartition("orders", 1), 4)

    description = engine.describe_group("g")

    assert description.group == "g"
    assert [(m.member_id, m.topics) for m in description.members] == [
        ("a", ("orders",)),
        ("b", ("orders",)),
    ]
    assert set(description.members[0].assignments) == held(replies["a"])
    assert description.members[0].expires_ms == clock.now_ms + SESSION
    rows = {
        p.partition: (p.owner, p.committed_offset, p.high_watermark, p.lag)
        for p in description.partitions
    }
    assert rows[0] == ("a", 6, 10, 4)
    assert rows[1] == ("a", 4, 4, 0)
    assert rows[5] == ("b", None, 0, None)

    # When the members' sessions end, the partitions show no owner but keep their offsets
    clock.advance(SESSION)
    later = engine.describe_group("g")
    assert later.members == ()
    assert {p.owner for p in later.partitions} == {None}
    assert later.partitions[0].committed_offset == 6


def test_describe_of_an_unknown_group_raises_group_not_found(engine: Engine) -> None:
    with pytest.raises(GroupNotFoundError, match="'nobody' does not exist") as error:
        engine.describe_group("nobody")
    assert error.value.code == "group_not_found"


# Reset ------------------------------------------------------------------------------------


@pytest.fixture
def timed(engine: Engine) -> Engine:
    """'timed': 2 partitions; partition p holds records at 1000, 2000, ... 5000 ms."""
    engine.create_topic("timed", partitions=2)
    for partition in range(2):
        engine.append(
            "timed",
            [
                Record(value=b"t", partition=partition, timestamp_ms=1000 * (i + 1))
                for i in range(5)
            ],
        )
    return engine


def test_reset_is_refused_while_a_member_is_live(
    timed: Engine, clock: Clock, backend: Backend
) -> None:
    # Given a live member (subscribed to another topic, even)
    timed.join_group("g", ["orders"], "a")
    before = backend.contents()

    # Then a reset is refused and changes nothing
    with pytest.raises(GroupNotEmptyError) as error:
        timed.reset_offsets("g", "timed", to="earliest")
    assert error.value.code == "group_not_empty"
    assert error.value.members == ("a",)
    assert backend.contents() == before

    # When the member's session is over, the reset goes through
    clock.advance(SESSION)
    assert timed.reset_offsets("g", "timed", to="earliest") == {0: 0, 1: 0}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({"to": "earliest"}, {0: 0, 1: 0}),
        ({"to": "latest"}, {0: 5, 1: 5}),
        ({"to": ToTimestamp(2500)}, {0: 2, 1: 2}),
        ({"to": ToTimestamp(0)}, {0: 0, 1: 0}),
        ({"to": ToTimestamp(99_999)}, {0: 5, 1: 5}),
        ({"to": ToOffset(3)}, {0: 3, 1: 3}),
        ({"to": ToOffset(1000)}, {0: 5, 1: 5}),
    ],
)
def test_reset_moves_committed_offsets_and_the_next_member_starts_there(
    timed: Engine, clock: Clock, target: dict[str, Any], expected: dict[int, int]
) -> None:
    # Given a group whose member committed offset 1 everywhere, then died
    reply = timed.join_group("g", ["timed"], "a")
    timed.commit_offsets(
        "g", "a", [OffsetCommit(a.topic, a.partition, 1, a.lease_epoch) for a in reply.assignments]
    )
    clock.advance(SESSION)

    # When its offsets are reset
    assert timed.reset_offsets("g", "timed", **target) == expected

    # Then the next member starts at the new offsets, at a new epoch
    again = timed.join_group("g", ["timed"], "b")
    assert {a.partition: a.committed_offset for a in again.assignments} == expected
    assert {a.lease_epoch for a in again.assignments} == {3}
    lag = {p.partition: p.lag for p in timed.describe_group("g").partitions}
    assert lag == {p: 5 - offset for p, offset in expected.items()}


def test_reset_of_a_group_that_does_not_exist_yet_creates_its_offsets(timed: Engine) -> None:
    assert timed.reset_offsets("fresh", "timed", to="latest") == {0: 5, 1: 5}

    description = timed.describe_group("fresh")
    assert [(p.partition, p.owner, p.committed_offset) for p in description.partitions] == [
        (0, None, 5),
        (1, None, 5),
    ]
    reply = timed.join_group("fresh", ["timed"], "a")
    assert {a.committed_offset for a in reply.assignments} == {5}


def test_a_dead_member_that_comes_back_after_a_reset_is_fenced(timed: Engine, clock: Clock) -> None:
    reply = timed.join_group("g", ["timed"], "a")
    clock.advance(SESSION)
    timed.reset_offsets("g", "timed", to="latest")

    with pytest.raises(LeaseFencedError):
        timed.commit_offsets(
            "g",
            "a",
            [OffsetCommit(a.topic, a.partition, 1, a.lease_epoch) for a in reply.assignments],
        )
    assert {p.committed_offset for p in timed.describe_group("g").partitions} == {5}


# Topics deleted and re-created ------------------------------------------------------------


def test_a_recreated_topic_does_not_inherit_the_old_topics_offsets(
    engine: Engine, backend: Backend
) -> None:
    # Given a member that committed offsets on every partition of "orders"
    reply = engine.join_group("g", ["orders"], "a")
    engine.commit_offsets(
        "g", "a", [OffsetCommit(a.topic, a.partition, 9, a.lease_epoch) for a in reply.assignments]
    )

    # When the topic is deleted and created again with fewer partitions
    engine.delete_topic("orders")
    engine.create_topic("orders", partitions=3)

    # Then the group shows no committed offset
    assert [(p.partition, p.committed_offset) for p in engine.describe_group("g").partitions] == [
        (0, None),
        (1, None),
        (2, None),
    ]
    # and the member starts afresh at new epochs, giving up the partitions that are gone
    again = engine.join_group("g", ["orders"], "a")
    assert [(a.partition, a.committed_offset, a.lease_epoch) for a in again.assignments] == [
        (0, None, 2),
        (1, None, 2),
        (2, None, 2),
    ]
    leases = backend.stores()[3].read_group("g").leases
    assert [(lease.partition, lease.owner) for lease in leases][3:] == [
        (3, None),
        (4, None),
        (5, None),
    ]
    # and a commit under the old epochs is fenced
    with pytest.raises(LeaseFencedError):
        engine.commit_offsets("g", "a", [OffsetCommit("orders", 0, 9, 1)])


def test_a_process_with_a_stale_cache_keeps_the_offsets_of_the_recreated_topic(
    engine: Engine, member_engine: Callable[[], Engine]
) -> None:
    # Given a process that cached "orders" before it was deleted and created again
    stale = member_engine()
    stale.join_group("other-group", ["orders"], "x")
    engine.delete_topic("orders")
    engine.create_topic("orders", partitions=6)
    # and a member of "g" on the new topic that committed offsets
    reply = engine.join_group("g", ["orders"], "a")
    engine.commit_offsets(
        "g", "a", [OffsetCommit(a.topic, a.partition, 4, a.lease_epoch) for a in reply.assignments]
    )
    engine.leave_group("g", "a")

    # When a member joins through the stale process
    again = stale.join_group("g", ["orders"], "b")

    # Then it reads the new topic's id from the catalog and keeps the committed offsets
    assert {a.committed_offset for a in again.assignments} == {4}


# Bad input --------------------------------------------------------------------------------


@contextmanager
def changes_nothing(backend: Backend) -> Iterator[None]:
    before = backend.contents()
    yield
    assert backend.contents() == before


BAD_GROUP_IDS: list[object] = ["", ".", "has space", "a/b", "g#1", "caf\u00e9", "x" * 250, None, 7]

GROUP_OPERATIONS: dict[str, Callable[[Engine, Any], object]] = {
    "join": lambda e, g: e.join_group(g, ["orders"], "a"),
    "leave": lambda e, g: e.leave_group(g, "a"),
    "commit": lambda e, g: e.commit_offsets(g, "a", [OffsetCommit("orders", 0, 1, 1)]),
    "describe": lambda e, g: e.describe_group(g),
    "reset": lambda e, g: e.reset_offsets(g, "orders", to="earliest"),
}


def test_bad_group_ids_are_rejected_by_every_operation(
    engine: Engine, backend: Backend, subtests: pytest.Subtests
) -> None:
    engine.join_group("g", ["orders"], "a")
    with changes_nothing(backend):
        for group in BAD_GROUP_IDS:
            for operation, call in GROUP_OPERATIONS.items():
                with (
                    subtests.test(group=group, operation=operation),
                    pytest.raises(InvalidRequestError, match="group id"),
                ):
                    call(engine, group)


BAD_JOINS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"topics": []}, InvalidRequestError, "at least one topic"),
    ({"topics": "orders"}, InvalidRequestError, "list of topic names"),
    ({"topics": None}, InvalidRequestError, "list of topic names"),
    ({"topics": ["orders", "bad name"]}, InvalidRequestError, "topic name"),
    (
        {"topics": ["orders", "missing"], "member_id": None},
        TopicNotFoundError,
        "'missing' does not exist",
    ),
    (
        {"topics": [f"t{i}" for i in range(MAX_TOPICS_PER_MEMBER + 1)]},
        InvalidRequestError,
        "at most",
    ),
    ({"member_id": ""}, InvalidRequestError, "member id"),
    ({"member_id": "m#1"}, InvalidRequestError, "member id"),
    ({"session_timeout_ms": MIN_SESSION_TIMEOUT_MS - 1}, InvalidRequestError, "between"),
    ({"session_timeout_ms": MAX_SESSION_TIMEOUT_MS + 1}, InvalidRequestError, "between"),
    ({"session_timeout_ms": 0}, InvalidRequestError, "between"),
    ({"session_timeout_ms": "10000"}, InvalidRequestError, "integer"),
    ({"session_timeout_ms": True}, InvalidRequestError, "integer"),
]


def test_bad_joins_raise_and_change_nothing(
    engine: Engine, backend: Backend, subtests: pytest.Subtests
) -> None:
    engine.join_group("g", ["orders"], "a")
    with changes_nothing(backend):
        for overrides, error, message in BAD_JOINS:
            arguments: dict[str, Any] = {"topics": ["orders"], "member_id": "b", **overrides}
            with subtests.test(overrides=str(overrides)[:60]), pytest.raises(error, match=message):
                engine.join_group("g", **arguments)


def _bad_commits(epoch: int) -> list[tuple[list[Any], type[Exception], str]]:
    def one(**fields: Any) -> list[Any]:
        values: dict[str, Any] = {
            "topic": "orders",
            "partition": 0,
            "offset": 1,
            "lease_epoch": epoch,
        }
        return [OffsetCommit(**{**values, **fields})]

    too_many = [OffsetCommit("orders", p % 6, 1, epoch) for p in range(MAX_OFFSETS_PER_COMMIT + 1)]
    return [
        (one(offset=-1), InvalidRequestError, "offset must be non-negative"),
        (one(partition=-1), InvalidRequestError, "partition must be non-negative"),
        (one(partition=6), InvalidRequestError, "partition 6 does not exist"),
        (one(lease_epoch=-1), InvalidRequestError, "lease_epoch"),
        (one(offset="1"), InvalidRequestError, "offset must be an integer"),
        (one(topic="missing"), TopicNotFoundError, "'missing'"),
        (one(topic="bad name"), InvalidRequestError, "topic name"),
        (too_many, InvalidRequestError, f"at most {MAX_OFFSETS_PER_COMMIT}"),
        (one() + one(offset=2), InvalidRequestError, "twice"),
        ([("orders", 0, 1, epoch)], InvalidRequestError, "not an offset commit"),
    ]


def test_bad_commits_raise_and_change_nothing(
    engine: Engine, backend: Backend, subtests: pytest.Subtests
) -> None:
    epoch = engine.join_group("g", ["orders"], "a").assignments[0].lease_epoch
    with changes_nothing(backend):
        for offsets, error, message in _bad_commits(epoch):
            with subtests.test(message=message), pytest.raises(error, match=message):
                engine.commit_offsets("g", "a", offsets)
        with pytest.raises(InvalidRequestError, match="member id"):
            engine.commit_offsets("g", "", [OffsetCommit("orders", 0, 1, epoch)])


BAD_RESETS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"to": None}, InvalidRequestError, "'earliest' or 'latest'"),
    ({"to": 1}, InvalidRequestError, "'earliest' or 'latest'"),
    ({"to": {"offset": 1}}, InvalidRequestError, "'earliest' or 'latest'"),
    ({"to": "sideways"}, InvalidRequestError, "'earliest' or 'latest'"),
    ({"to": ToOffset(-1)}, InvalidRequestError, "non-negative"),
    ({"to": ToTimestamp(-5)}, InvalidRequestError, "non-negative"),
    ({"to": ToOffset(1.5)}, InvalidRequestError, "integer"),
    ({"topic": "missing", "to": "latest"}, TopicNotFoundError, "'missing'"),
    ({"topic": "bad name", "to": "latest"}, InvalidRequestError, "topic name"),
]


def test_bad_resets_raise_and_change_nothing(
    engine: Engine, backend: Backend, subtests: pytest.Subtests
) -> None:
    with changes_nothing(backend):
        for arguments, error, message in BAD_RESETS:
            target = dict(arguments)
            topic = target.pop("topic", "orders")
            with subtests.test(arguments=str(arguments)), pytest.raises(error, match=message):
                engine.reset_offsets("g", topic, **target)


def test_bad_member_ids_on_leave_raise_and_change_nothing(engine: Engine, backend: Backend) -> None:
    engine.join_group("g", ["orders"], "a")
    with changes_nothing(backend):
        for member_id in ["", "m#a", "a b", None]:
            with pytest.raises(InvalidRequestError, match="member id"):
                engine.leave_group("g", member_id)  # type: ignore[arg-type]


def test_a_heartbeat_leaves_out_a_deleted_topic_and_keeps_the_others(engine: Engine) -> None:
    engine.create_topic("short-lived", partitions=2)
    joined = engine.join_group("g", ["orders", "short-lived"], "a")
    assert len(joined.assignments) == 8
    engine.delete_topic("short-lived")
    beat = engine.join_group("g", ["orders", "short-lived"], "a")
    assert {a.topic for a in beat.assignments} == {"orders"}
    assert [a.lease_epoch for a in beat.assignments] == [
        a.lease_epoch for a in joined.assignments if a.topic == "orders"
    ]
    engine.delete_topic("orders")
    with pytest.raises(TopicNotFoundError):
        engine.join_group("g", ["orders", "short-lived"], "a")
