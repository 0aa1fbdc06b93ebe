"""`ConsumerCoordinator`: a consumer's membership in its group, its leases and commits.

It joins on the first ``poll`` and heartbeats every ``heartbeat_interval_ms`` the service
asks for: inside the fetch of a ``poll`` when it is called often enough (`carried`, no
request of its own; ADR 0012 §3), else from a background thread so a long pause in
processing does not cost the session. Every heartbeat answers with the
member's leases; the consumer applies them at the start of its next ``poll``
(`apply_pending`). Commits carry each lease's epoch: a commit for a lease that moved raises
`CommitFailedError` and rewinds its partitions to their last committed offsets.

No lock is held during a request. One membership request (join, heartbeat or leave) is out
at a time: a heartbeat falling due while another is out is skipped, and leaving waits for
the one out to answer, so a member never joins again after it left.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Final, NamedTuple

from lakelog.client.clock import SYSTEM_CLOCK, GroupClock
from lakelog.client.subscription import SubscriptionState
from lakelog.client.transport import RETRYABLE, Transport
from lakelog.contract.operations import CommitOffsets, DescribeGroup, JoinGroup, LeaveGroup
from lakelog.errors import GroupNotFoundError, InvalidRequestError, LakelogError, LeaseFencedError
from lakelog.types import Membership, TopicPartition

__all__ = ["COMMIT_CHUNK", "CommitFailedError", "ConsumerCoordinator", "OffsetAndMetadata"]

logger = logging.getLogger("lakelog.client.consumer")

COMMIT_CHUNK: Final = 100
"""Offsets per commit request (the service's limit)."""


class OffsetAndMetadata(NamedTuple):
    """An offset to commit (kafka-python's shape; ``metadata`` is not stored)."""

    offset: int
    metadata: str = ""


class CommitFailedError(LeaseFencedError):
    """A commit was refused because a lease moved to another member; nothing changed."""

    def __init__(
        self,
        message: str,
        group: str,
        member_id: str,
        partitions: tuple[tuple[str, int], ...] = (),
    ) -> None:
        super().__init__(group, member_id, partitions)
        self.message = message
        self.args = (message,)


class ConsumerCoordinator:
    """Group membership, the heartbeat thread, commits and the group's committed offsets.

    Parameters
    ----------
    transport, group_id, subscription
        Where the group lives, its name, and the state leases are applied to.
    start_of
        Where a newly leased partition without a committed offset starts.
    session_timeout_ms
        How long the group waits for a silent member before its leases move.
    auto_commit_s
        Commit moved positions this often (and before each heartbeat); None: never.
    clock
        When heartbeats and auto-commits fall due, and how the heartbeat thread waits.
    """

    def __init__(
        self,
        transport: Transport,
        group_id: str,
        subscription: SubscriptionState,
        start_of: Callable[[TopicPartition], int],
        *,
        session_timeout_ms: int | None = None,
        auto_commit_s: float | None = None,
        clock: GroupClock = SYSTEM_CLOCK,
    ) -> None:
        self._transport = transport
        self.group_id = group_id
        self._subscription = subscription
        self._start_of = start_of
        self._session_timeout_ms = session_timeout_ms
        self._auto_commit_s = auto_commit_s
        self._clock = clock
        self._next_auto_commit = clock.monotonic() + (auto_commit_s or 0.0)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._requesting = False  # a join, heartbeat or leave is out
        self._requester: int | None = None  # the thread whose request it is
        self.member_id: str | None = None
        self._membership: Membership | None = None
        self._applied: Membership | None = None
        self.heartbeat_s = 3.0
        self._last_heartbeat = 0.0
        self._alone = False  # the next heartbeat goes on its own (a carried one failed)
        self._stop = threading.Event()
        self._heartbeater: threading.Thread | None = None

    # Membership ------------------------------------------------------------------------
    def heartbeat_now(self) -> None:
        """Join or heartbeat at the next chance (a new subscription, a refused commit)."""
        with self._lock:
            self._last_heartbeat = 0.0

    def maintain(self, *, carry: bool = False) -> None:
        """Apply an assignment a background heartbeat brought, auto-commit and heartbeat
        when due, and apply what that heartbeat brought.

        With ``carry``, a member that joined leaves a due heartbeat to the fetch that
        follows (`carried`); only a join is sent on its own. Applying first keeps
        auto-commit from naming a lease the member already gave up (the whole commit would
        be refused and its other partitions rewound)."""
        if not self._subscription.topics:
            return
        self.apply_pending()
        now = self._clock.monotonic()
        with self._lock:
            heartbeat_due = now - self._last_heartbeat >= self.heartbeat_s
            joined = self.member_id is not None
            carried = carry and joined and not self._alone
        if (
            self._auto_commit_s is not None
            and joined
            and (heartbeat_due or now >= self._next_auto_commit)
        ):
            self.auto_commit()
            self._next_auto_commit = now + self._auto_commit_s
        if heartbeat_due and not carried:
            try:
                self._heartbeat()
            except RETRYABLE as error:  # keep polling what is held; try again soon
                self._retry_soon(now, error)
        self.apply_pending()

    def _retry_soon(self, now: float, error: LakelogError) -> None:
        logger.warning("heartbeat of group %s failed: %s", self.group_id, error)
        with self._lock:
            self._last_heartbeat = now - self.heartbeat_s * 3 / 4

    def carried(self) -> JoinGroup | None:
        """The heartbeat for the next fetch to carry, if one is due and the member joined.

        It takes the turn of membership requests: the fetch's reply must be given to
        `carried_reply`, or None if the fetch failed, whatever happens."""
        if not self._subscription.topics or self._stop.is_set():
            return None
        with self._lock:
            due = self._clock.monotonic() - self._last_heartbeat >= self.heartbeat_s
            if not due or self.member_id is None or self._alone or self._busy():
                return None
            self._take_turn()
            return JoinGroup(
                self.group_id, self._subscription.topics, self.member_id, self._session_timeout_ms
            )

    def carried_reply(self, reply: Membership | LakelogError | None) -> None:
        """Take the reply to a heartbeat a fetch carried (None: the fetch failed), as the
        reply to a heartbeat of its own, and give the turn back."""
        try:
            if isinstance(reply, Membership):
                self._joined(reply)
            elif isinstance(reply, RETRYABLE):
                self._retry_soon(self._clock.monotonic(), reply)
            elif reply is not None:  # sent again on its own at once, raising as it does
                logger.warning("heartbeat of group %s failed: %s", self.group_id, reply)
                with self._lock:
                    self._alone = True
                    self._last_heartbeat = 0.0
        finally:
            self._end_request()

    def _begin_request(self, *, wait: bool) -> bool:
        """Take the turn to send a membership request: wait for it, or give up at once."""
        with self._lock:
            if wait:
                self._idle.wait_for(lambda: not self._busy())
            elif self._busy():
                return False
            self._take_turn()
            return True

    def _busy(self) -> bool:
        """Whether another thread's membership request is out (called with the lock held).

        A turn this thread holds is of a request that an exception abandoned between
        taking the turn and the ``finally`` that gives it back: a `KeyboardInterrupt`,
        which Python raises wherever the main thread is. Waiting for it would wait forever
        (`leave` on the way out of a ``with`` block, for one)."""
        return self._requesting and self._requester != threading.get_ident()

    def _take_turn(self) -> None:  # called with the lock held
        self._requesting = True
        self._requester = threading.get_ident()

    def _end_request(self) -> None:
        with self._lock:
            self._requesting = False
            self._requester = None
            self._idle.notify_all()

    def _heartbeat(self) -> None:
        """Join or heartbeat, unless another membership request is out or the consumer
        stopped reading its topics."""
        if not self._begin_request(wait=False):
            return
        try:
            topics = self._subscription.topics
            if not topics or self._stop.is_set():
                return
            membership = self._transport.call(
                JoinGroup(self.group_id, topics, self.member_id, self._session_timeout_ms)
            )
            self._joined(membership)
        finally:
            self._end_request()
        if self._heartbeater is None:
            self._heartbeater = threading.Thread(
                target=self._heartbeat_loop, name="lakelog-heartbeat", daemon=True
            )
            self._heartbeater.start()

    def _joined(self, membership: Membership) -> None:
        """Keep the reply of a join or heartbeat (applied at the next `apply_pending`)."""
        with self._lock:
            self.member_id = membership.member_id
            self.heartbeat_s = membership.heartbeat_interval_ms / 1000
            self._last_heartbeat = self._clock.monotonic()
            self._membership = membership
            self._alone = False

    def _heartbeat_loop(self) -> None:
        while not self._clock.wait(self._stop, self.heartbeat_s / 4):
            with self._lock:
                due = self._clock.monotonic() - self._last_heartbeat >= self.heartbeat_s
            if due and self._subscription.topics:
                try:
                    self._heartbeat()
                except Exception as error:  # the next round tries again
                    logger.warning("heartbeat of group %s failed: %s", self.group_id, error)

    def apply_pending(self) -> None:
        """Apply the leases of the last heartbeat if they are not applied yet: revoked
        partitions go (``on_partitions_revoked``), new ones start at their committed offset
        or ``auto_offset_reset`` (``on_partitions_assigned``)."""
        with self._lock:
            membership = self._membership
            if membership is None or membership is self._applied:
                return
        sub = self._subscription
        leases = {TopicPartition(a.topic, a.partition): a for a in membership.assignments}
        revoked = sub.revoke(leases)
        if revoked and sub.listener:
            sub.listener.on_partitions_revoked(revoked)
        starts: dict[TopicPartition, tuple[int, int, bool]] = {}
        for tp, lease in sub.new_leases(leases).items():
            committed = lease.committed_offset
            position = self._start_of(tp) if committed is None else committed
            starts[tp] = (position, lease.lease_epoch, committed is not None)
        sub.add_leases(starts)
        with self._lock:
            self._applied = membership
        if starts and sub.listener:
            sub.listener.on_partitions_assigned(set(starts))

    def leave(self) -> None:
        """Leave the group at once (after a heartbeat that is out has answered)."""
        self._begin_request(wait=True)
        try:
            member_id = self.member_id
            if member_id is not None:
                self._transport.call(LeaveGroup(self.group_id, member_id))
        finally:
            with self._lock:
                self.member_id = None
                self._membership = self._applied = None
            self._end_request()

    def close(self) -> None:
        """Stop heartbeating: no heartbeat starts from now on."""
        self._stop.set()

    def join_thread(self) -> None:
        """Wait (up to 5 s) for the heartbeat thread to end after `close`."""
        if self._heartbeater is not None:
            self._heartbeater.join(timeout=5)

    # Commits ---------------------------------------------------------------------------
    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets``, or the positions that moved since the last commit.

        Offsets equal to the partition's last successful commit are left out: a commit
        with nothing left sends no request (auto-commit of an idle member costs nothing).
        Offsets go in chunks of `COMMIT_CHUNK` (one all-or-nothing service commit each).
        Raises `CommitFailedError` if a lease moved: the chunk that met it is not committed
        and its partitions go back to their last committed offsets; chunks before it are
        committed, and those after it are left for the next commit.
        """
        member_id = self.member_id
        if member_id is None:
            raise InvalidRequestError("commit needs a group_id and a joined group")
        group, sub = self.group_id, self._subscription
        commits, unassigned = sub.commits(
            sub.moved() if offsets is None else sub.uncommitted(offsets)
        )
        if unassigned is not None:
            raise CommitFailedError(
                f"{unassigned.topic}-{unassigned.partition} is not assigned to this member",
                group,
                member_id,
                ((unassigned.topic, unassigned.partition),),
            )
        for start in range(0, len(commits), COMMIT_CHUNK):
            chunk = commits[start : start + COMMIT_CHUNK]
            try:
                self._transport.call(CommitOffsets(group, member_id, chunk))
            except LeaseFencedError as error:
                sub.rewind(chunk)
                self.heartbeat_now()  # learn the new assignment at once
                raise CommitFailedError(
                    error.message, group, member_id, error.partitions
                ) from error
            sub.mark_committed(chunk)

    def auto_commit(self) -> None:
        """Commit moved positions; a failure is logged (the next commit tries again)."""
        try:
            self.commit()
        except LakelogError as error:
            logger.warning("auto-commit of group %s failed: %s", self.group_id, error)

    @property
    def auto_commits(self) -> bool:
        """Whether positions are committed automatically."""
        return self._auto_commit_s is not None

    def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset of ``partition``, or None."""
        try:
            group = self._transport.call(DescribeGroup(self.group_id))
        except GroupNotFoundError:
            return None
        for lag in group.partitions:
            if (lag.topic, lag.partition) == tuple(partition):
                return lag.committed_offset
        return None
