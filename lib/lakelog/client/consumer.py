"""`Consumer`: reads partitions it leases in a group, or partitions assigned by hand.

A poll makes one request for all the consumer's partitions (``POST /v1/fetch``); after
one that found nothing the consumer waits longer before the next, from ``fetch_max_wait_ms``
doubling up to `IDLE_BACKOFF_MAX_S` (5 s), until a record comes.

In a group (``group_id`` and topics), the consumer joins on its first ``poll`` and
heartbeats every ``heartbeat_interval_ms`` the service asks for: inside the fetch of a
``poll`` when it is called often enough (no request of its own), else from a background
thread so a long pause in processing does not cost the session. Every heartbeat answers
with the member's leases; changes are applied at the start of the next ``poll``
(``on_partitions_revoked`` then ``on_partitions_assigned``), or right after the fetch that
carried it (records of a partition it revoked are dropped), so partitions move between
batches, not in the middle of one.
A new lease starts at the group's committed offset, else at ``auto_offset_reset``.
Commits carry each lease's epoch: a commit for a lease that moved raises
`CommitFailedError`, changes nothing, and rewinds the commit's partitions to their last
committed offsets, so records are delivered again rather than skipped (ADR 0009, 0010).

As in kafka-python, the consumer composes three parts with one job each:
`lakelog.client.subscription.SubscriptionState` (assignment, positions, committed offsets),
`lakelog.client.fetcher.Fetcher` (fetch rounds and the iteration buffer) and
`lakelog.client.coordinator.ConsumerCoordinator` (membership, heartbeats, commits). No lock
is held during a request, so ``position``, ``seek`` and ``assignment`` answer, and the
heartbeat thread runs, while a fetch or a join waits on the service.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from lakelog.client.clock import SYSTEM_CLOCK, GroupClock
from lakelog.client.coordinator import CommitFailedError, ConsumerCoordinator, OffsetAndMetadata
from lakelog.client.fetcher import IDLE_BACKOFF_MAX_S, ConsumerRecord, Fetched, Fetcher
from lakelog.client.subscription import ConsumerRebalanceListener, OffsetReset, SubscriptionState
from lakelog.client.transport import Transport
from lakelog.contract.operations import DescribeTopic, ListOffset, OffsetForTime
from lakelog.errors import InvalidRequestError
from lakelog.limits import MAX_API_FETCH_MANY_BYTES, MAX_FETCH_RECORDS
from lakelog.types import OffsetAndTimestamp, TopicPartition

__all__ = [
    "IDLE_BACKOFF_MAX_S",
    "CommitFailedError",
    "Consumer",
    "ConsumerRebalanceListener",
    "ConsumerRecord",
    "OffsetAndMetadata",
    "OffsetAndTimestamp",
]


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
        Records per `poll`, bytes per fetch request (shared by all partitions; default
        3 MiB, the most one HTTP fetch returns; records beyond ``max_poll_records`` wait
        for the next `poll` in the consumer's buffer), and the
        first pause after a fetch that found nothing (it doubles up to
        `IDLE_BACKOFF_MAX_S` while nothing comes).
    session_timeout_ms
        How long the group waits for a silent member before its leases move.
    consumer_timeout_ms
        Iteration stops after this long without a record (None: never).
    key_deserializer, value_deserializer
        Applied to keys and values that are not None.
    _clock, _fetch_clock
        The clocks group membership and idle pauses keep
        (`lakelog.client.clock.GroupClock`): not kafka-python settings, for tests that move
        time themselves; the real one by default.
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
        fetch_max_bytes: int = MAX_API_FETCH_MANY_BYTES,
        fetch_max_wait_ms: int = 500,
        session_timeout_ms: int | None = None,
        consumer_timeout_ms: float | None = None,
        listener: ConsumerRebalanceListener | None = None,
        key_deserializer: Callable[[bytes], Any] | None = None,
        value_deserializer: Callable[[bytes], Any] | None = None,
        _clock: GroupClock = SYSTEM_CLOCK,
        _fetch_clock: GroupClock | None = None,
    ) -> None:
        if auto_offset_reset not in ("earliest", "latest", "none"):
            raise InvalidRequestError("auto_offset_reset must be earliest, latest or none")
        if max_poll_records < 1 or fetch_max_bytes < 1:
            raise InvalidRequestError("max_poll_records and fetch_max_bytes must be positive")
        self._transport = transport
        self.group_id = group_id
        self._max_poll_records = max_poll_records
        self._consumer_timeout_s = (
            None if consumer_timeout_ms is None else consumer_timeout_ms / 1000
        )
        self._closed = False
        self._subscription = SubscriptionState(listener)
        self._fetcher = Fetcher(
            transport,
            self._subscription,
            reset=auto_offset_reset,
            fetch_max_bytes=fetch_max_bytes,
            fetch_max_wait_s=fetch_max_wait_ms / 1000,
            key_deserializer=key_deserializer,
            value_deserializer=value_deserializer,
            clock=_fetch_clock,
        )
        self._coordinator = (
            None
            if group_id is None
            else ConsumerCoordinator(
                transport,
                group_id,
                self._subscription,
                self._fetcher.reset_position,
                session_timeout_ms=session_timeout_ms,
                auto_commit_s=auto_commit_interval_ms / 1000 if enable_auto_commit else None,
                clock=_clock,
            )
        )
        if topics and group_id is None:  # kafka-python: every partition, no group
            self.assign(
                [
                    TopicPartition(topic, info.partition)
                    for topic in dict.fromkeys(topics)
                    for info in transport.call(DescribeTopic(topic)).partitions
                ]
            )
        elif topics:
            self.subscribe(topics, listener)

    # Subscription and assignment -----------------------------------------------------
    def subscribe(
        self, topics: Sequence[str], listener: ConsumerRebalanceListener | None = None
    ) -> None:
        """Join ``group_id`` for ``topics`` (at the next `poll`); one name is one topic,
        as in kafka-python (a string is a sequence of one-letter names too)."""
        if isinstance(topics, str):
            topics = [topics]
        if self._coordinator is None:
            raise InvalidRequestError("subscribe needs a group_id; use assign() without one")
        if not topics:
            raise InvalidRequestError("subscribe to at least one topic")
        self._subscription.subscribe(topics, listener)
        self._coordinator.heartbeat_now()

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read exactly ``partitions``, outside any group's assignment."""
        wanted = [TopicPartition(*tp) for tp in partitions]
        starts = {
            tp: self._fetcher.reset_position(tp) for tp in self._subscription.unassigned(wanted)
        }
        self._subscription.assign(wanted, starts)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer reads now."""
        return self._subscription.assignment()

    def subscription(self) -> set[str]:
        """The subscribed topics."""
        return set(self._subscription.topics)

    def unsubscribe(self) -> None:
        """Leave the group (releasing its leases) and forget the subscription."""
        self._subscription.clear()  # first: no heartbeat joins again after the leave
        if self._coordinator is not None:
            self._coordinator.leave()

    # Reading ---------------------------------------------------------------------------
    def poll(
        self, timeout_ms: float = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Records of the assigned partitions, waiting up to ``timeout_ms`` for some."""
        limit = max_records or self._max_poll_records
        found = self._fetcher.drain(limit)  # records fetched before, not handed over yet
        if found:
            return found
        # A fetch is bounded by fetch_max_bytes, not by max_poll_records: what this poll
        # does not hand over waits in the buffer for the next one (as Kafka's consumer).
        self._fetcher.buffer(self._poll(timeout_ms, MAX_FETCH_RECORDS, hand_over=False))
        return self._fetcher.drain(limit)

    def _poll(self, timeout_ms: float, limit: int, *, hand_over: bool) -> list[Fetched]:
        """Fetch up to ``limit`` records; ``hand_over``: they count as handed over (their
        partitions' positions move past them), else iteration moves positions per record."""
        self._check_open()
        deadline = time.monotonic() + timeout_ms / 1000
        coordinator = self._coordinator
        while True:
            if coordinator is not None:
                coordinator.maintain(carry=True)
            found = self._fetch(limit)
            if hand_over:
                self._subscription.handed_over()
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            heartbeat_s = 3.0 if coordinator is None else coordinator.heartbeat_s
            time.sleep(min(left, max(0.005, self._fetcher.pause_s()), heartbeat_s))

    def _fetch(self, limit: int) -> list[Fetched]:
        """One fetch round, carrying the member's heartbeat when one is due."""
        coordinator = self._coordinator
        carried = None if coordinator is None else coordinator.carried()
        if carried is None or coordinator is None:
            fetched = self._fetcher.fetch(limit)
        else:
            member = None
            try:
                fetched = self._fetcher.fetch(limit, carried)
                member = fetched.member
            finally:
                coordinator.carried_reply(member)
            coordinator.apply_pending()
        if fetched.error is not None:
            raise fetched.error
        return self._fetcher.still_current(fetched.batches)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        return self

    def __next__(self) -> ConsumerRecord:
        started = time.monotonic()
        while (record := self._fetcher.next_record()) is None:
            self._subscription.handed_over()
            waited = time.monotonic() - started
            if self._consumer_timeout_s is not None and waited >= self._consumer_timeout_s:
                raise StopIteration
            timeout = 1.0 if self._consumer_timeout_s is None else self._consumer_timeout_s - waited
            self._fetcher.buffer(
                self._poll(timeout * 1000, self._max_poll_records, hand_over=False)
            )
        return record

    # Positions -------------------------------------------------------------------------
    def position(self, partition: TopicPartition) -> int:
        """The offset the next record of ``partition`` will have."""
        return self._subscription.position(partition)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read ``partition`` from ``offset`` at the next `poll`."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidRequestError(f"offset must be an integer >= 0, not {offset!r}")
        self._subscription.seek(partition, offset)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        """Read from each partition's log start (every assigned one when none given)."""
        self._seek_to("earliest", partitions)

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        """Read only records appended from now on."""
        self._seek_to("latest", partitions)

    def _seek_to(
        self, spec: Literal["earliest", "latest"], partitions: Sequence[TopicPartition]
    ) -> None:
        for tp in partitions or sorted(self._subscription.assignment()):
            self.seek(tp, self._transport.call(ListOffset(tp.topic, tp.partition, spec)))

    def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's log start offset."""
        return {
            tp: self._transport.call(ListOffset(tp.topic, tp.partition, "earliest"))
            for tp in partitions
        }

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's high watermark."""
        return {
            tp: self._transport.call(ListOffset(tp.topic, tp.partition, "latest"))
            for tp in partitions
        }

    def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """The first offset of each partition with a timestamp >= the given one, or None."""
        found: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for tp, timestamp in timestamps.items():
            found[tp] = self._transport.call(OffsetForTime(tp.topic, tp.partition, timestamp))
        return found

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
        if self._coordinator is None:
            raise InvalidRequestError("commit needs a group_id and a joined group")
        self._coordinator.commit(
            None
            if offsets is None
            else {
                TopicPartition(*tp): o.offset if isinstance(o, OffsetAndMetadata) else int(o)
                for tp, o in offsets.items()
            }
        )

    def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset of ``partition``, or None."""
        return None if self._coordinator is None else self._coordinator.committed(partition)

    # Lifecycle -------------------------------------------------------------------------
    def close(self, autocommit: bool = True) -> None:
        """Commit (with auto-commit on), leave the group at once and stop heartbeating."""
        if self._closed:
            return
        coordinator = self._coordinator
        if coordinator is None:
            self._closed = True
            return
        coordinator.close()
        try:
            if autocommit and coordinator.auto_commits and coordinator.member_id:
                coordinator.auto_commit()
            self._subscription.unsubscribe()
            coordinator.leave()
        finally:
            self._closed = True
        coordinator.join_thread()

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidRequestError("the consumer is closed")

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
