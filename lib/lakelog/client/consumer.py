"""`Consumer`: reads partitions it leases in a group, or partitions assigned by hand.

In a group (``group_id`` and topics), the consumer joins on its first ``poll`` and
heartbeats every ``heartbeat_interval_ms`` the service asks for: from ``poll`` when it is
called often enough, else from a background thread so a long pause in processing does
not cost the session. Every heartbeat answers with the member's leases; changes are applied
at the start of the next ``poll`` (``on_partitions_revoked`` then
``on_partitions_assigned``), so partitions move between batches, not in the middle of one.
A new lease starts at the group's committed offset, else at ``auto_offset_reset``.
Commits carry each lease's epoch: a commit for a lease that moved raises
`CommitFailedError`, changes nothing, and rewinds the commit's partitions to their last
committed offsets, so records are delivered again rather than skipped (ADR 0009, 0010).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal, NamedTuple, Protocol

from lakelog.client.transport import RETRYABLE, Transport
from lakelog.errors import (
    GroupNotFoundError,
    InvalidRequestError,
    LakelogError,
    LeaseFencedError,
    OffsetOutOfRangeError,
)
from lakelog.limits import MAX_FETCH_RECORDS
from lakelog.types import Assignment, Header, Membership, OffsetCommit, TopicPartition

__all__ = [
    "CommitFailedError",
    "Consumer",
    "ConsumerRebalanceListener",
    "ConsumerRecord",
    "OffsetAndMetadata",
    "OffsetAndTimestamp",
]

logger = logging.getLogger(__name__)

OffsetReset = Literal["earliest", "latest", "none"]
COMMIT_CHUNK: Final = 100
"""Offsets per commit request (the service's limit)."""
IDLE_BACKOFF_S: Final = 0.05
"""First pause before fetching again from a partition that had nothing new."""


class ConsumerRecord(NamedTuple):
    """One record as a consumer sees it."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Any
    value: Any
    headers: list[Header]


class OffsetAndMetadata(NamedTuple):
    """An offset to commit (kafka-python's shape; ``metadata`` is not stored)."""

    offset: int
    metadata: str = ""


class OffsetAndTimestamp(NamedTuple):
    """The first offset at or after a time, and that record's timestamp."""

    offset: int
    timestamp: int


class CommitFailedError(LeaseFencedError):
    """A commit was refused because a lease moved to another member; nothing changed."""


def _commit_failed(
    message: str, group: str, member_id: str, partitions: tuple[tuple[str, int], ...] = ()
) -> CommitFailedError:
    error = CommitFailedError.__new__(CommitFailedError)
    LakelogError.__init__(error, message)
    error.group, error.member_id, error.partitions = group, member_id, partitions
    return error


class ConsumerRebalanceListener(Protocol):
    """Called from ``poll`` when the consumer's partitions change."""

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Partitions this consumer no longer holds (another member may hold them now)."""

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Partitions this consumer now holds, positioned at their committed offsets."""


class _PartitionState:
    """One assigned partition: ``position`` is past the last record handed to the caller,
    ``fetched`` past the last record fetched (ahead while iteration buffers records)."""

    __slots__ = ("epoch", "fetched", "idle_until", "idle_wait", "position", "start")

    def __init__(self, position: int, epoch: int = 0) -> None:
        self.position = position
        self.fetched = position
        self.start = position
        self.epoch = epoch
        self.idle_until = 0.0
        self.idle_wait = 0.0


class Consumer:
    """Poll records; see the module docstring.

    Parameters
    ----------
    transport
        Where records and groups live (`lakelog.Client.consumer` passes the client's).
    topics
        Topics to subscribe to with ``group_id``; without one, every partition of them is
        assigned (as kafka-python does). Or call `subscribe` or `assign` later.
    group_id
        The consumer group; None reads manually assigned partitions without commits.
    auto_offset_reset
        Where a partition without a committed offset starts, and where a position that fell
        out of range moves: ``earliest``, ``latest``, or ``none`` (raise).
    enable_auto_commit, auto_commit_interval_ms
        Commit the positions of returned records every interval, before each heartbeat
        and on `close`.
    max_poll_records, fetch_max_bytes, fetch_max_wait_ms
        Records per `poll`, bytes per fetch request, and the longest pause before asking
        an idle partition again.
    session_timeout_ms
        How long the group waits for a silent member before its leases move.
    consumer_timeout_ms
        Iteration stops after this long without a record (None: never).
    key_deserializer, value_deserializer
        Applied to keys and values that are not None.
    """

    def __init__(
        self,
        transport: Transport,
        *topics: str,
        group_id: str | None = None,
        auto_offset_reset: OffsetReset = "latest",
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5000,
        max_poll_records: int = 500,
        fetch_max_bytes: int = 1 << 20,
        fetch_max_wait_ms: int = 500,
        session_timeout_ms: int | None = None,
        consumer_timeout_ms: float | None = None,
        listener: ConsumerRebalanceListener | None = None,
        key_deserializer: Callable[[bytes], Any] | None = None,
        value_deserializer: Callable[[bytes], Any] | None = None,
    ) -> None:
        if auto_offset_reset not in ("earliest", "latest", "none"):
            raise InvalidRequestError("auto_offset_reset must be earliest, latest or none")
        if max_poll_records < 1 or fetch_max_bytes < 1:
            raise InvalidRequestError("max_poll_records and fetch_max_bytes must be positive")
        self._transport = transport
        self.group_id = group_id
        self._reset: OffsetReset = auto_offset_reset
        self._auto_commit = enable_auto_commit and group_id is not None
        self._auto_commit_s = auto_commit_interval_ms / 1000
        self._max_poll_records = max_poll_records
        self._fetch_max_bytes = fetch_max_bytes
        self._fetch_max_wait_s = fetch_max_wait_ms / 1000
        self._session_timeout_ms = session_timeout_ms
        self._consumer_timeout_s = (
            None if consumer_timeout_ms is None else consumer_timeout_ms / 1000
        )
        self._key_deserializer = key_deserializer
        self._value_deserializer = value_deserializer
        self._listener = listener
        self._subscription: tuple[str, ...] = ()
        self._manual = False
        self._partitions: dict[TopicPartition, _PartitionState] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._member_id: str | None = None
        self._membership: Membership | None = None
        self._applied: Membership | None = None
        self._heartbeat_s = 3.0
        self._last_heartbeat = 0.0
        self._next_auto_commit = time.monotonic() + self._auto_commit_s
        self._rotation = 0
        self._buffer: deque[ConsumerRecord] = deque()
        self._closed = False
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._heartbeater: threading.Thread | None = None
        if topics and group_id is None:  # kafka-python: every partition, no group
            self.assign(
                [
                    TopicPartition(topic, info.partition)
                    for topic in dict.fromkeys(topics)
                    for info in transport.describe_topic(topic).partitions
                ]
            )
        elif topics:
            self.subscribe(topics, listener)

    # Subscription and assignment -----------------------------------------------------
    def subscribe(
        self, topics: Sequence[str], listener: ConsumerRebalanceListener | None = None
    ) -> None:
        """Join ``group_id`` for ``topics`` (at the next `poll`)."""
        if self.group_id is None:
            raise InvalidRequestError("subscribe needs a group_id; use assign() without one")
        if not topics:
            raise InvalidRequestError("subscribe to at least one topic")
        with self._lock:
            self._manual = False
            self._subscription = tuple(dict.fromkeys(topics))
            self._listener = listener or self._listener
            self._last_heartbeat = 0.0

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read exactly ``partitions``, outside any group's assignment."""
        with self._lock:
            if self._subscription:
                raise InvalidRequestError("assign() cannot be mixed with a group subscription")
            self._manual = True
            wanted = {TopicPartition(*tp) for tp in partitions}
            for tp in set(self._partitions) - wanted:
                del self._partitions[tp]
            for tp in wanted - set(self._partitions):
                self._partitions[tp] = _PartitionState(self._reset_position(tp))

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer reads now."""
        with self._lock:
            return set(self._partitions)

    def subscription(self) -> set[str]:
        """The subscribed topics."""
        return set(self._subscription)

    def unsubscribe(self) -> None:
        """Leave the group (releasing its leases) and forget the subscription."""
        with self._lock:
            self._leave()
            self._subscription = ()
            self._partitions.clear()
            self._manual = False

    # Reading ---------------------------------------------------------------------------
    def poll(
        self, timeout_ms: float = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Records of the assigned partitions, waiting up to ``timeout_ms`` for some."""
        if self._buffer:  # records iteration fetched but has not handed over yet
            found: dict[TopicPartition, list[ConsumerRecord]] = {}
            while self._buffer:
                record = self._buffer.popleft()
                found.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
            self._handed_over()
            return found
        return self._poll(timeout_ms, max_records or self._max_poll_records, returned=True)

    def _poll(
        self, timeout_ms: float, limit: int, *, returned: bool
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Fetch up to ``limit`` records; ``returned``: they count as handed over (their
        partitions' positions move past them), else iteration moves positions per record."""
        self._check_open()
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            with self._lock:
                self._maintain()
                found = self._fetch(limit)
                if returned:
                    for state in self._partitions.values():
                        state.position = state.fetched
                wake = min((s.idle_until for s in self._partitions.values()), default=0.0)
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return {}
            pause = max(0.005, wake - time.monotonic()) if wake else 0.05
            time.sleep(min(left, pause, self._heartbeat_s))

    def __iter__(self) -> Iterator[ConsumerRecord]:
        return self

    def __next__(self) -> ConsumerRecord:
        started = time.monotonic()
        while not self._buffer:
            self._handed_over()
            waited = time.monotonic() - started
            if self._consumer_timeout_s is not None and waited >= self._consumer_timeout_s:
                raise StopIteration
            timeout = 1.0 if self._consumer_timeout_s is None else self._consumer_timeout_s - waited
            polled = self._poll(timeout * 1000, self._max_poll_records, returned=False)
            for records in polled.values():
                self._buffer.extend(records)
        record = self._buffer.popleft()
        with self._lock:
            state = self._partitions.get(TopicPartition(record.topic, record.partition))
            if state is not None:
                state.position = record.offset + 1
        return record

    def _handed_over(self) -> None:
        """Nothing is buffered: every partition's position catches up with its fetches."""
        with self._lock:
            for state in self._partitions.values():
                state.position = state.fetched

    def _discard_buffered(self, partitions: set[TopicPartition]) -> None:
        """Forget iteration's buffered records of ``partitions`` (sought, revoked, rewound)."""
        if self._buffer:
            self._buffer = deque(
                r for r in self._buffer if TopicPartition(r.topic, r.partition) not in partitions
            )

    def _fetch(self, limit: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        """One round over the assigned partitions. If a fetch raises, every partition of
        the round is put back where it was, so no record is skipped."""
        found: dict[TopicPartition, list[ConsumerRecord]] = {}
        order = sorted(self._partitions)
        if not order:
            return found
        self._rotation = (self._rotation + 1) % len(order)
        now = time.monotonic()
        before = {tp: s.fetched for tp, s in self._partitions.items()}
        try:
            for tp in order[self._rotation :] + order[: self._rotation]:
                state = self._partitions[tp]
                if limit <= 0 or state.idle_until > now:
                    continue
                records = self._fetch_partition(tp, state, limit, now)
                if records:
                    found[tp] = records
                    limit -= len(records)
        except BaseException:
            for tp, fetched in before.items():
                self._partitions[tp].fetched = fetched
            raise
        return found

    def _fetch_partition(
        self, tp: TopicPartition, state: _PartitionState, limit: int, now: float
    ) -> list[ConsumerRecord]:
        try:
            result = self._transport.fetch(
                tp.topic,
                tp.partition,
                state.fetched,
                min(limit, MAX_FETCH_RECORDS),
                self._fetch_max_bytes,
            )
        except OffsetOutOfRangeError:
            if self._reset == "none":
                raise
            state.fetched = state.position = self._reset_position(tp)
            return []
        except RETRYABLE as error:  # try this partition again after a pause
            logger.warning("fetch of %s-%d failed: %s", tp.topic, tp.partition, error)
            self._idle(state, now)
            return []
        if not result.records:
            self._idle(state, now)
            state.fetched = max(state.fetched, result.next_offset)
            return []
        state.idle_wait = state.idle_until = 0.0
        state.fetched = result.next_offset
        return [self._consumer_record(tp.topic, r) for r in result.records]

    def _idle(self, state: _PartitionState, now: float) -> None:
        """Ask this partition again after a pause that doubles up to ``fetch_max_wait_ms``."""
        state.idle_wait = min(max(state.idle_wait * 2, IDLE_BACKOFF_S), self._fetch_max_wait_s)
        state.idle_until = now + state.idle_wait

    def _consumer_record(self, topic: str, record: Any) -> ConsumerRecord:
        key, value = record.key, record.value
        if key is not None and self._key_deserializer:
            key = self._key_deserializer(key)
        if value is not None and self._value_deserializer:
            value = self._value_deserializer(value)
        return ConsumerRecord(
            topic,
            record.partition,
            record.offset,
            record.timestamp_ms,
            key,
            value,
            list(record.headers),
        )

    # Positions -------------------------------------------------------------------------
    def position(self, partition: TopicPartition) -> int:
        """The offset the next record of ``partition`` will have."""
        return self._state(partition).position

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read ``partition`` from ``offset`` at the next `poll`."""
        if offset < 0:
            raise InvalidRequestError(f"offset must be >= 0, not {offset}")
        with self._lock:
            state = self._state(partition)
            state.position = state.fetched = offset
            state.idle_until = 0.0
            self._discard_buffered({TopicPartition(*partition)})

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        """Read from each partition's log start (every assigned one when none given)."""
        self._seek_to("earliest", partitions)

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        """Read only records appended from now on."""
        self._seek_to("latest", partitions)

    def _seek_to(
        self, spec: Literal["earliest", "latest"], partitions: Sequence[TopicPartition]
    ) -> None:
        with self._lock:
            for tp in partitions or sorted(self._partitions):
                self.seek(tp, self._transport.list_offset(tp.topic, tp.partition, spec))

    def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's log start offset."""
        return {
            tp: self._transport.list_offset(tp.topic, tp.partition, "earliest") for tp in partitions
        }

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's high watermark."""
        return {
            tp: self._transport.list_offset(tp.topic, tp.partition, "latest") for tp in partitions
        }

    def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """The first offset of each partition with a timestamp >= the given one, or None."""
        found: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for tp, timestamp in timestamps.items():
            offset = self._transport.offset_for_time(tp.topic, tp.partition, timestamp)
            if offset is None:
                found[tp] = None
                continue
            records = self._transport.fetch(tp.topic, tp.partition, offset, 1, 1).records
            found[tp] = OffsetAndTimestamp(
                offset, records[0].timestamp_ms if records else timestamp
            )
        return found

    def _state(self, partition: TopicPartition) -> _PartitionState:
        state = self._partitions.get(TopicPartition(*partition))
        if state is None:
            raise InvalidRequestError(f"{partition.topic}-{partition.partition} is not assigned")
        return state

    def _reset_position(self, tp: TopicPartition) -> int:
        if self._reset == "none":
            raise OffsetOutOfRangeError(tp.topic, tp.partition, -1, 0, 0)
        return self._transport.list_offset(tp.topic, tp.partition, self._reset)

    # Commits ---------------------------------------------------------------------------
    def commit(
        self, offsets: Mapping[TopicPartition, int | OffsetAndMetadata] | None = None
    ) -> None:
        """Commit ``offsets`` (next offsets to read), or the positions that moved since the
        last commit (no request when none did).

        Raises `CommitFailedError` if a lease moved: nothing is committed then, and the
        partitions of the commit go back to their last committed offsets (their records
        since are delivered again, here or to the lease's new owner).
        """
        if self.group_id is None or self._member_id is None:
            raise InvalidRequestError("commit needs a group_id and a joined group")
        group, member_id = self.group_id, self._member_id
        with self._lock:
            if offsets is None:  # what moved since the last commit
                wanted = {
                    tp: s.position
                    for tp, s in self._partitions.items()
                    if self._committed.get(tp) != s.position
                }
            else:
                wanted = {
                    TopicPartition(*tp): o.offset if isinstance(o, OffsetAndMetadata) else int(o)
                    for tp, o in offsets.items()
                }
            commits: list[OffsetCommit] = []
            for tp, offset in sorted(wanted.items()):
                state = self._partitions.get(tp)
                if state is None:
                    raise _commit_failed(
                        f"{tp.topic}-{tp.partition} is not assigned to this member",
                        group,
                        member_id,
                        ((tp.topic, tp.partition),),
                    )
                commits.append(OffsetCommit(tp.topic, tp.partition, offset, state.epoch))
            for start in range(0, len(commits), COMMIT_CHUNK):
                chunk = commits[start : start + COMMIT_CHUNK]
                try:
                    self._transport.commit_offsets(group, member_id, chunk)
                except LeaseFencedError as error:
                    self._rewind(chunk)
                    self._last_heartbeat = 0.0  # learn the new assignment at once
                    raise _commit_failed(
                        error.message, group, member_id, getattr(error, "partitions", ())
                    ) from error
                for c in chunk:
                    self._committed[TopicPartition(c.topic, c.partition)] = c.offset

    def _rewind(self, commits: Sequence[OffsetCommit]) -> None:
        """After a refused commit, read its partitions again from their last commit.

        The records since are delivered again: to this member if it still holds the
        lease, else to the new owner. So work counted only when its commit succeeds is
        counted exactly once.
        """
        for commit in commits:
            tp = TopicPartition(commit.topic, commit.partition)
            state = self._partitions.get(tp)
            if state is not None:
                state.position = state.fetched = self._committed.get(tp, state.start)
                state.idle_until = 0.0
                self._discard_buffered({tp})

    def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset of ``partition``, or None."""
        if self.group_id is None:
            return None
        try:
            group = self._transport.describe_group(self.group_id)
        except GroupNotFoundError:
            return None
        for lag in group.partitions:
            if (lag.topic, lag.partition) == tuple(partition):
                return lag.committed_offset
        return None

    def _auto_commit_now(self) -> None:
        try:
            self.commit()
        except LakelogError as error:
            logger.warning("auto-commit of group %s failed: %s", self.group_id, error)

    # Group membership ------------------------------------------------------------------
    def _maintain(self) -> None:
        """Apply an assignment a background heartbeat brought, auto-commit and heartbeat
        when due, and apply what that heartbeat brought.

        Applying first keeps auto-commit from naming a lease the member already gave up
        (the whole commit would be refused and its other partitions rewound)."""
        if not self._subscription:
            return
        self._apply_pending()
        now = time.monotonic()
        heartbeat_due = now - self._last_heartbeat >= self._heartbeat_s
        if (
            self._auto_commit
            and self._member_id
            and (heartbeat_due or now >= self._next_auto_commit)
        ):
            self._auto_commit_now()
            self._next_auto_commit = now + self._auto_commit_s
        if heartbeat_due:
            try:
                self._heartbeat()
            except RETRYABLE as error:  # keep polling what is held; try again soon
                logger.warning("heartbeat of group %s failed: %s", self.group_id, error)
                self._last_heartbeat = now - self._heartbeat_s * 3 / 4
        self._apply_pending()

    def _apply_pending(self) -> None:
        if self._membership is not None and self._membership is not self._applied:
            self._apply(self._membership)

    def _heartbeat(self) -> None:
        assert self.group_id is not None
        membership = self._transport.join_group(
            self.group_id, self._subscription, self._member_id, self._session_timeout_ms
        )
        self._member_id = membership.member_id
        self._heartbeat_s = membership.heartbeat_interval_ms / 1000
        self._last_heartbeat = time.monotonic()
        self._membership = membership
        if self._heartbeater is None:
            self._heartbeater = threading.Thread(
                target=self._heartbeat_loop, name="lakelog-heartbeat", daemon=True
            )
            self._heartbeater.start()

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self._heartbeat_s / 4):
            with self._lock:
                if self._stop.is_set() or self._closed:
                    return  # close() ran while this thread waited for the lock
                if (
                    self._subscription
                    and time.monotonic() - self._last_heartbeat >= self._heartbeat_s
                ):
                    try:
                        self._heartbeat()
                    except Exception as error:  # the next round tries again
                        logger.warning("heartbeat of group %s failed: %s", self.group_id, error)

    def _apply(self, membership: Membership) -> None:
        leases: dict[TopicPartition, Assignment] = {
            TopicPartition(a.topic, a.partition): a for a in membership.assignments
        }
        revoked = {
            tp
            for tp, state in self._partitions.items()
            if tp not in leases or leases[tp].lease_epoch != state.epoch
        }
        if revoked:
            for tp in revoked:
                del self._partitions[tp]
                self._committed.pop(tp, None)
            self._discard_buffered(revoked)
            if self._listener:
                self._listener.on_partitions_revoked(revoked)
        assigned = set(leases) - set(self._partitions)
        for tp in assigned:
            lease = leases[tp]
            if lease.committed_offset is not None:
                position = lease.committed_offset
                self._committed[tp] = position
            else:
                position = self._reset_position(tp)
            self._partitions[tp] = _PartitionState(position, lease.lease_epoch)
        self._applied = membership
        if assigned and self._listener:
            self._listener.on_partitions_assigned(assigned)

    def _leave(self) -> None:
        if self.group_id is not None and self._member_id is not None:
            try:
                self._transport.leave_group(self.group_id, self._member_id)
            finally:
                self._member_id = None
                self._membership = self._applied = None

    # Lifecycle -------------------------------------------------------------------------
    def close(self, autocommit: bool = True) -> None:
        """Commit (with auto-commit on), leave the group at once and stop heartbeating."""
        if self._closed:
            return
        self._stop.set()
        with self._lock:
            try:
                if autocommit and self._auto_commit and self._member_id:
                    self._auto_commit_now()
                self._leave()
            finally:
                self._closed = True
                self._subscription = ()
        if self._heartbeater is not None:
            self._heartbeater.join(timeout=5)

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidRequestError("the consumer is closed")

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
