"""The consumer's subscription state and commit error, without a service."""

from __future__ import annotations

import pytest

from lakelog.client.coordinator import CommitFailedError
from lakelog.client.subscription import SubscriptionState
from lakelog.errors import InvalidRequestError, LeaseFencedError
from lakelog.types import Assignment, OffsetCommit, TopicPartition

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


def _lease(tp: TopicPartition, epoch: int) -> Assignment:
    return Assignment(tp.topic, tp.partition, epoch, None)


def test_a_seek_starts_a_new_reading_of_the_partition() -> None:
    state = SubscriptionState()
    state.assign([TP0], {TP0: 5})
    before = state.partitions[TP0].seeks
    state.seek(TP0, 2)
    assert state.position(TP0) == 2
    assert state.partitions[TP0].fetched == 2
    assert state.partitions[TP0].seeks == before + 1


def test_a_refused_commit_rewinds_to_the_last_commit_else_the_start() -> None:
    state = SubscriptionState()
    state.assign([TP0, TP1], {TP0: 3, TP1: 7})
    state.mark_committed([OffsetCommit("t", 0, 4, 0)])
    for tp in (TP0, TP1):
        state.partitions[tp].position = state.partitions[tp].fetched = 9
    state.rewind([OffsetCommit("t", 0, 9, 0), OffsetCommit("t", 1, 9, 0)])
    assert (state.position(TP0), state.position(TP1)) == (4, 7)


def test_commits_name_the_first_partition_not_assigned() -> None:
    state = SubscriptionState()
    state.assign([TP0], {TP0: 0})
    assert state.commits({TP0: 1}) == ([OffsetCommit("t", 0, 1, 0)], None)
    assert state.commits({TP1: 1, TP0: 1}) == ([], TP1)


def test_leases_at_another_epoch_are_revoked_and_new_ones_added() -> None:
    state = SubscriptionState()
    state.subscribe(["t"], None)
    state.add_leases({TP0: (0, 1, False), TP1: (5, 1, True)})
    leases = {TP0: _lease(TP0, 1), TP1: _lease(TP1, 2)}  # TP1 moved away and back
    assert state.revoke(leases) == {TP1}
    assert TP1 not in state.committed
    assert state.new_leases(leases) == {TP1: leases[TP1]}


def test_assign_is_refused_while_subscribed() -> None:
    state = SubscriptionState()
    state.subscribe(["t"], None)
    with pytest.raises(InvalidRequestError, match="cannot be mixed"):
        state.unassigned([TP0])


def test_commit_failed_is_a_lease_fenced_error_with_its_fields() -> None:
    error = CommitFailedError("t-0 is not assigned to this member", "g", "m1", (("t", 0),))
    assert isinstance(error, LeaseFencedError)
    assert (error.code, error.group, error.member_id) == ("fenced", "g", "m1")
    assert error.partitions == (("t", 0),)
    assert str(error) == error.message == "t-0 is not assigned to this member"
