"""`SubscriptionState`: what a consumer reads and where it stands in each partition.

The subscribed topics (or the partitions assigned by hand), each assigned partition's
position, fetch position, cursor and lease epoch, and the offsets last committed.
It makes no network call: its lock is held only while these fields change, so a
`lakelog.client.Consumer` stays answerable (``position``, ``seek``, ``assignment``) while
its fetcher or coordinator waits on the service.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

from lakelog.errors import InvalidRequestError
from lakelog.types import Assignment, OffsetCommit, TopicPartition

__all__ = ["ConsumerRebalanceListener", "OffsetReset", "PartitionState", "SubscriptionState"]

OffsetReset = Literal["earliest", "latest", "none"]


class ConsumerRebalanceListener(Protocol):
    """Called from ``poll`` when the consumer's partitions change."""

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Partitions this consumer no longer holds (another member may hold them now)."""

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Partitions this consumer now holds, positioned at their committed offsets."""


class PartitionState:
    """One assigned partition.

    ``position`` is past the last record handed to the caller, ``fetched`` past the last
    record fetched (ahead while iteration buffers records). ``cursor`` is what the last
    fetch gave to continue from ``fetched`` (ADR 0012 §1.5), sent back with it; None to
    fetch by offset. ``seeks`` counts the times the position was set from outside the fetch
    (seek, rewind): records fetched before belong to an older reading and are dropped.
    """

    __slots__ = ("cursor", "epoch", "fetched", "position", "seeks", "start")

    def __init__(self, position: int, epoch: int = 0) -> None:
        self.position = position
        self.fetched = position
        self.start = position
        self.epoch = epoch
        self.cursor: str | None = None
        self.seeks = 0

    def move_to(self, offset: int) -> None:
        """Read from ``offset`` next, dropping what was fetched before (and its cursor)."""
        self.position = self.fetched = offset
        self.cursor = None
        self.seeks += 1


class SubscriptionState:
    """Subscribed topics, assigned partitions with their positions, committed offsets.

    ``lock`` guards every field; the fetcher holds it only to read or update them, never
    during a request. ``generation`` moves whenever the partitions or a position change
    from outside a fetch (assign, leases, seek, rewind): an idle fetcher then fetches at
    once.
    """

    def __init__(self, listener: ConsumerRebalanceListener | None = None) -> None:
        self.lock = threading.Lock()
        self.topics: tuple[str, ...] = ()
        self.manual = False
        self.listener = listener
        self.partitions: dict[TopicPartition, PartitionState] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.generation = 0

    # Subscription and assignment -------------------------------------------------------
    def subscribe(self, topics: Sequence[str], listener: ConsumerRebalanceListener | None) -> None:
        """Read ``topics`` in a group (the coordinator assigns their partitions)."""
        with self.lock:
            self.manual = False
            self.topics = tuple(dict.fromkeys(topics))
            self.listener = listener or self.listener

    def unassigned(self, wanted: Sequence[TopicPartition]) -> list[TopicPartition]:
        """Of ``wanted``, the partitions not assigned yet (refused in a subscription)."""
        with self.lock:
            if self.topics:
                raise InvalidRequestError("assign() cannot be mixed with a group subscription")
            return [tp for tp in dict.fromkeys(wanted) if tp not in self.partitions]

    def assign(
        self, wanted: Sequence[TopicPartition], starts: Mapping[TopicPartition, int]
    ) -> None:
        """Read exactly ``wanted``; a partition not assigned yet starts at ``starts[tp]``."""
        with self.lock:
            if self.topics:
                raise InvalidRequestError("assign() cannot be mixed with a group subscription")
            self.manual = True
            self.generation += 1
            for tp in set(self.partitions) - set(wanted):
                del self.partitions[tp]
            for tp in wanted:
                if tp not in self.partitions:
                    self.partitions[tp] = PartitionState(starts[tp])

    def assignment(self) -> set[TopicPartition]:
        """The assigned partitions."""
        with self.lock:
            return set(self.partitions)

    def unsubscribe(self) -> None:
        """Forget the subscribed topics (so no heartbeat joins for them again)."""
        with self.lock:
            self.topics = ()

    def clear(self) -> None:
        """Forget the subscription and every assigned partition."""
        with self.lock:
            self.topics = ()
            self.partitions.clear()
            self.manual = False

    def revoke(self, leases: Mapping[TopicPartition, Assignment]) -> set[TopicPartition]:
        """Drop the partitions not leased (or leased again at another epoch); returns them."""
        with self.lock:
            revoked = {
                tp
                for tp, state in self.partitions.items()
                if tp not in leases or leases[tp].lease_epoch != state.epoch
            }
            for tp in revoked:
                del self.partitions[tp]
                self.committed.pop(tp, None)
            self.generation += bool(revoked)
            return revoked

    def new_leases(
        self, leases: Mapping[TopicPartition, Assignment]
    ) -> dict[TopicPartition, Assignment]:
        """The leases whose partitions are not assigned yet."""
        with self.lock:
            return {tp: lease for tp, lease in leases.items() if tp not in self.partitions}

    def add_leases(self, starts: Mapping[TopicPartition, tuple[int, int, bool]]) -> None:
        """Assign leased partitions: ``(position, epoch, committed)`` each."""
        with self.lock:
            self.generation += bool(starts)
            for tp, (position, epoch, committed) in starts.items():
                self.partitions[tp] = PartitionState(position, epoch)
                if committed:
                    self.committed[tp] = position

    # Positions -------------------------------------------------------------------------
    def state(self, partition: TopicPartition) -> PartitionState:
        """The state of an assigned partition (call with ``lock`` held)."""
        state = self.partitions.get(TopicPartition(*partition))
        if state is None:
            raise InvalidRequestError(f"{partition.topic}-{partition.partition} is not assigned")
        return state

    def position(self, partition: TopicPartition) -> int:
        """The offset of the next record of ``partition`` the caller gets."""
        with self.lock:
            return self.state(partition).position

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read ``partition`` from ``offset`` next."""
        with self.lock:
            self.state(partition).move_to(offset)
            self.generation += 1

    def handed_over(self) -> None:
        """Nothing is buffered: every position catches up with its fetches."""
        with self.lock:
            for state in self.partitions.values():
                state.position = state.fetched

    # Commits ---------------------------------------------------------------------------
    def moved(self) -> dict[TopicPartition, int]:
        """Positions that differ from the last committed offset of their partition."""
        with self.lock:
            return {
                tp: s.position
                for tp, s in self.partitions.items()
                if self.committed.get(tp) != s.position
            }

    def uncommitted(self, offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Of ``offsets``, those that differ from their partition's last committed offset
        (at its current lease: the only one who can have moved it since)."""
        with self.lock:
            return {tp: o for tp, o in offsets.items() if self.committed.get(tp) != o}

    def commits(
        self, offsets: Mapping[TopicPartition, int]
    ) -> tuple[list[OffsetCommit], TopicPartition | None]:
        """``offsets`` as commits carrying each lease's epoch, in partition order; and the
        first partition that is not assigned, if any (then nothing may be committed)."""
        with self.lock:
            commits: list[OffsetCommit] = []
            for tp, offset in sorted(offsets.items()):
                state = self.partitions.get(tp)
                if state is None:
                    return [], tp
                commits.append(OffsetCommit(tp.topic, tp.partition, offset, state.epoch))
            return commits, None

    def mark_committed(self, commits: Sequence[OffsetCommit]) -> None:
        """Remember ``commits`` as the partitions' last committed offsets."""
        with self.lock:
            for c in commits:
                self.committed[TopicPartition(c.topic, c.partition)] = c.offset

    def rewind(self, commits: Sequence[OffsetCommit]) -> None:
        """After a refused commit, read its partitions again from their last commit.

        The records since are delivered again: to this member if it still holds the
        lease, else to the new owner. So work counted only when its commit succeeds is
        counted exactly once.
        """
        with self.lock:
            for commit in commits:
                tp = TopicPartition(commit.topic, commit.partition)
                state = self.partitions.get(tp)
                if state is not None:
                    state.move_to(self.committed.get(tp, state.start))
                    self.generation += 1
