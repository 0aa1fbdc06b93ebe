"""The balancing rule and the group key formats of ADR 0009, without AWS."""

from __future__ import annotations

import pytest

from lakelog.service.groups import GroupView, balanced_target
from lakelog.storage.keys import (
    group_pk,
    member_sort_key,
    offsets_block,
    offsets_sort_key,
    parse_group_sort_key,
)
from lakelog.storage.ports import GroupState, LeaseRecord, MemberRecord, TopicRecord

TOPIC = TopicRecord(name="orders", topic_id="id-2", partitions=3, config={}, created_ms=0)


def test_balanced_target_gives_ceilings_to_members_that_already_hold_more_than_the_floor() -> None:
    # 7 partitions over 3 members: q = 2, one ceiling of 3, kept by the member holding 3
    assert balanced_target("b", 7, {"a": 2, "b": 3, "c": 2}) == 3
    assert balanced_target("a", 7, {"a": 2, "b": 3, "c": 2}) == 2
    assert balanced_target("c", 7, {"a": 2, "b": 3, "c": 2}) == 2


def test_balanced_target_breaks_ties_by_member_id() -> None:
    assert [balanced_target(m, 8, {"a": 0, "b": 0, "c": 0}) for m in "abc"] == [3, 3, 2]
    assert [balanced_target(m, 8, {"a": 4, "b": 4, "c": 0}) for m in "abc"] == [3, 3, 2]
    assert balanced_target("z", 6, {"z": 6}) == 6
    assert balanced_target("c", 2, {"a": 1, "b": 1, "c": 0}) == 0


@pytest.mark.parametrize("partitions", range(1, 13))
@pytest.mark.parametrize("members", range(1, 6))
def test_balanced_targets_of_one_view_add_up_to_every_partition(
    partitions: int, members: int
) -> None:
    held = {f"m{i}": (i * 7) % (partitions + 1) for i in range(members)}

    targets = [balanced_target(m, partitions, held) for m in held]

    assert sum(targets) == partitions
    assert set(targets) <= {partitions // members, -(-partitions // members)}


def test_group_view_counts_only_live_owners_of_the_current_topic_id() -> None:
    state = GroupState(
        members=(
            MemberRecord("live", ("orders",), 10_000, expires_ms=2_000),
            MemberRecord("dead", ("orders",), 10_000, expires_ms=1_000),
        ),
        leases=(
            LeaseRecord("orders", 0, "id-2", 3, owner="live", committed_offset=5),
            LeaseRecord("orders", 1, "id-2", 4, owner="dead"),
            LeaseRecord("orders", 2, "id-1", 7, owner="live", committed_offset=9),
        ),
    )
    view = GroupView.of(state, now_ms=1_000)

    assert list(view.live) == ["live"]
    assert [view.owner(view.lease("orders", p), TOPIC) for p in range(3)] == ["live", None, None]
    assert [view.committed(view.lease("orders", p), TOPIC) for p in range(3)] == [5, None, None]
    assert view.lease("orders", 5) == LeaseRecord.missing("orders", 5)
    assert view.subscribers("orders") == ["live"]


def test_group_keys_round_trip() -> None:
    assert group_pk("billing") == "g#billing"
    assert member_sort_key("m-1") == "m#m-1"
    assert offsets_sort_key("orders.eu", 7) == "o#orders.eu#007"
    assert [offsets_block(p) for p in (0, 99, 100, 999)] == [0, 0, 1, 9]
    assert parse_group_sort_key(member_sort_key("m-1")) == "m-1"
    assert parse_group_sort_key(offsets_sort_key("orders.eu", 9)) == ("orders.eu", 9)
    assert parse_group_sort_key("x#other") is None
    assert parse_group_sort_key("o#broken") is None
    assert parse_group_sort_key("l#orders#00001") is None  # the former per-lease items
    assert sorted(offsets_sort_key("t", b) for b in (9, 2, 0)) == [
        offsets_sort_key("t", b) for b in (0, 2, 9)
    ]
