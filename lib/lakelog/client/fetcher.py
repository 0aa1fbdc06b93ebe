"""`Fetcher`: fetches records of the assigned partitions and buffers them for iteration.

A round is one multi-partition fetch (`FetchMany`, ``POST /v1/fetch``) for every assigned
partition, from each one's fetch position and cursor, the first partition rotating between
rounds so none is starved by the shared budget. It may carry the member's heartbeat. The
request is sent without any lock held; a partition's records are kept only if it was
neither revoked nor sought meanwhile (else they belong to a reading that no longer
exists).

A round that reached the end of every partition pauses the fetcher for ``fetch_max_wait_ms``
(Kafka's ``fetch.max.wait.ms``, waited here by the client: a service that waited would be
billed for it as Lambda time); a round that stopped short of the end (its budget was spent)
is followed by the next at once. A round that finds nothing makes the pause double after
each such round, up to `IDLE_BACKOFF_MAX_S`. A change of the partitions or positions
(assignment, seek) or a heartbeat falling due (it rides on the fetch) ends a pause.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

from lakelog.client.clock import GroupClock
from lakelog.client.subscription import OffsetReset, PartitionState, SubscriptionState
from lakelog.client.transport import RETRYABLE, Transport
from lakelog.contract.operations import FetchMany, JoinGroup, ListOffset
from lakelog.errors import InvalidRequestError, LakelogError, OffsetOutOfRangeError
from lakelog.limits import MAX_FETCH_RECORDS
from lakelog.types import (
    FetchManyResult,
    FetchPosition,
    FetchResult,
    Header,
    Membership,
    StoredRecord,
    TopicPartition,
)

__all__ = ["IDLE_BACKOFF_MAX_S", "ConsumerRecord", "FetchRound", "Fetched", "Fetcher"]

logger = logging.getLogger("lakelog.client.consumer")

IDLE_BACKOFF_MAX_S: Final = 5.0
"""Longest pause of an idle consumer between two fetches (ADR 0012 §6.1): the pause starts at
``fetch_max_wait_ms`` after a fetch that found nothing and doubles after each one, up to
this (or ``fetch_max_wait_ms`` if that is longer). An idle member thus costs one request
per 5 s, its heartbeats riding on them; the first record after a long idle period waits
up to this long."""


class ConsumerRecord(NamedTuple):
    """One record as a consumer sees it."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Any
    value: Any
    headers: list[Header]


class Fetched(NamedTuple):
    """Records of one partition fetched from ``offset``, for the reading ``seeks`` names."""

    partition: TopicPartition
    state: PartitionState
    seeks: int
    offset: int
    records: list[ConsumerRecord]


class FetchRound(NamedTuple):
    """What one round brought: records by partition, the reply to the heartbeat it carried
    (None when it carried none or the request failed), and a partition's error for the
    caller to raise once it took that reply (then no position moved and ``batches`` is
    empty)."""

    batches: list[Fetched]
    member: Membership | LakelogError | None = None
    error: LakelogError | None = None


class _Asked(NamedTuple):
    partition: TopicPartition
    state: PartitionState
    seeks: int
    offset: int
    cursor: str | None


def _monotonic() -> float:
    """``time.monotonic``, looked up at each call (a simulation replaces this module's time)."""
    return time.monotonic()


def _cursor_refused(error: LakelogError) -> bool:
    """Whether ``error`` refuses a cursor (the service then reads by offset; ADR 0012)."""
    return isinstance(error, InvalidRequestError) and "cursor" in error.message


class Fetcher:
    """Fetch rounds over a `SubscriptionState`, and the buffer iteration reads from.

    Parameters
    ----------
    transport, subscription
        Where records come from, and the partitions and positions to fetch.
    reset
        Where a partition without a position (or out of range) starts.
    fetch_max_bytes, fetch_max_wait_s
        Bytes per fetch request (shared by its partitions); the first pause after a fetch
        that found nothing.
    key_deserializer, value_deserializer
        Applied to keys and values that are not None.
    clock
        Times the idle pauses; None: this module's ``time.monotonic``.
    """

    def __init__(
        self,
        transport: Transport,
        subscription: SubscriptionState,
        *,
        reset: OffsetReset,
        fetch_max_bytes: int,
        fetch_max_wait_s: float,
        key_deserializer: Callable[[bytes], Any] | None = None,
        value_deserializer: Callable[[bytes], Any] | None = None,
        clock: GroupClock | None = None,
    ) -> None:
        self._transport = transport
        self._subscription = subscription
        self.reset: OffsetReset = reset
        self._fetch_max_bytes = fetch_max_bytes
        self._fetch_max_wait_s = fetch_max_wait_s
        self._key_deserializer = key_deserializer
        self._value_deserializer = value_deserializer
        self._monotonic = _monotonic if clock is None else clock.monotonic
        self._rotation = 0
        self._buffer: deque[tuple[ConsumerRecord, PartitionState, int]] = deque()
        self.idle_wait = 0.0
        """The pause after the last fetch (0.0: it found records, or none was made)."""
        self._idle_until = 0.0
        self._generation = -1

    def reset_position(self, tp: TopicPartition) -> int:
        """Where ``tp`` starts under ``auto_offset_reset`` (``none`` raises)."""
        if self.reset == "none":
            raise OffsetOutOfRangeError(tp.topic, tp.partition, -1, 0, 0)
        return self._transport.call(ListOffset(tp.topic, tp.partition, self.reset))

    # Fetching --------------------------------------------------------------------------
    def pause_s(self) -> float:
        """Seconds until the next fetch is due (0.0: now)."""
        with self._subscription.lock:
            if self._subscription.generation != self._generation:
                return 0.0
        return max(0.0, self._idle_until - self._monotonic())

    def fetch(self, limit: int, member: JoinGroup | None = None) -> FetchRound:
        """One request for every assigned partition, up to ``limit`` records, when one is
        due (not idle, or ``member``'s heartbeat rides on it).

        If it raises, or returns a partition's error, no position moved, so no record is
        skipped.
        """
        sub = self._subscription
        now = self._monotonic()
        with sub.lock:
            if member is None and sub.generation == self._generation and now < self._idle_until:
                return FetchRound([])
            self._generation = sub.generation
            order = sorted(sub.partitions)
            if order:
                self._rotation = (self._rotation + 1) % len(order)
            asked = [
                _Asked(tp, state, state.seeks, state.fetched, state.cursor)
                for tp in order[self._rotation :] + order[: self._rotation]
                for state in (sub.partitions[tp],)
            ]
        if not asked and member is None:
            return FetchRound([])
        try:
            reply = self._send(asked, limit, member)
        except RETRYABLE as error:  # ask again after a pause
            logger.warning("fetch of %d partitions failed: %s", len(asked), error)
            self._idle(now, found=False, caught_up=True)
            return FetchRound([])
        found: list[Fetched] = []
        try:
            for item, result in zip(asked, reply.partitions, strict=True):
                batch = self._take(item, result)
                if batch is not None:
                    found.append(batch)
        except LakelogError as error:  # the heartbeat's reply still counts
            self._put_back(found)
            return FetchRound([], reply.member, error)
        except BaseException:
            self._put_back(found)
            raise
        caught_up = all(
            isinstance(result, FetchResult) and result.next_offset >= result.high_watermark
            for result in reply.partitions
        )
        self._idle(now, found=bool(found), caught_up=caught_up)
        return FetchRound(found, reply.member)

    def _put_back(self, batches: Sequence[Fetched]) -> None:
        """Fetch ``batches`` again next time: their partitions' positions go back."""
        with self._subscription.lock:
            for batch in batches:
                if self._current(batch.partition, batch.state, batch.seeks):
                    batch.state.fetched = batch.offset

    def _send(self, asked: list[_Asked], limit: int, member: JoinGroup | None) -> FetchManyResult:
        """The fetch of ``asked``; once more by offset if the service refuses the cursors."""
        positions = [
            FetchPosition(a.partition.topic, a.partition.partition, a.offset, a.cursor)
            for a in asked
        ]
        op = FetchMany(positions, self._fetch_max_bytes, min(limit, MAX_FETCH_RECORDS), member)
        try:
            return self._transport.call(op)
        except InvalidRequestError as error:
            if not _cursor_refused(error) or all(a.cursor is None for a in asked):
                raise
            self._drop_cursors(asked)
        by_offset = [FetchPosition(p.topic, p.partition, p.offset) for p in positions]
        return self._transport.call(FetchMany(by_offset, op.max_bytes, op.max_records, member))

    def _drop_cursors(self, asked: Sequence[_Asked]) -> None:
        with self._subscription.lock:
            for a in asked:
                if a.state.cursor == a.cursor:
                    a.state.cursor = None

    def _take(self, asked: _Asked, result: FetchResult | LakelogError) -> Fetched | None:
        """Apply one partition's result to its state; its records, if still current.

        Raises the partition's error (a deleted topic, out of range with
        ``auto_offset_reset="none"``), except 429/503 and a refused cursor.
        """
        tp, state, seeks, offset = asked.partition, asked.state, asked.seeks, asked.offset
        sub = self._subscription
        if isinstance(result, OffsetOutOfRangeError):
            if self.reset == "none":
                raise result
            start = self.reset_position(tp)
            with sub.lock:
                if self._current(tp, state, seeks) and state.fetched == offset:
                    state.fetched = state.position = start
                    state.cursor = None
            return None
        if isinstance(result, LakelogError):
            if _cursor_refused(result):
                self._drop_cursors([asked])
            elif isinstance(result, RETRYABLE):  # asked again at the next round
                logger.warning("fetch of %s-%d failed: %s", tp.topic, tp.partition, result)
            else:  # raised from poll, as a fetch of this partition alone raises it
                raise result
            return None
        records = [self._consumer_record(tp.topic, r) for r in result.records]
        with sub.lock:
            if not self._current(tp, state, seeks) or state.fetched != offset:
                return None  # revoked or sought while the request was out
            state.cursor = result.cursor
            state.fetched = max(state.fetched, result.next_offset)
            if not records:
                return None
        return Fetched(tp, state, seeks, offset, records)

    def still_current(self, batches: Sequence[Fetched]) -> list[Fetched]:
        """Of ``batches``, those whose partition is still read as it was fetched (not
        revoked, not sought since)."""
        with self._subscription.lock:
            return [b for b in batches if self._current(b.partition, b.state, b.seeks)]

    def _current(self, tp: TopicPartition, state: PartitionState, seeks: int) -> bool:
        """Whether ``state`` is still ``tp``'s reading ``seeks`` (call with the lock held)."""
        return self._subscription.partitions.get(tp) is state and state.seeks == seeks

    def _idle(self, now: float, *, found: bool, caught_up: bool) -> None:
        """After a fetch: no pause if records remain to be read, ``fetch_max_wait_ms`` if
        it found records and reached the end of every partition, else a pause that doubles
        from ``fetch_max_wait_ms`` up to `IDLE_BACKOFF_MAX_S`."""
        if found:
            self.idle_wait = 0.0
            self._idle_until = now + self._fetch_max_wait_s if caught_up else 0.0
            return
        ceiling = max(IDLE_BACKOFF_MAX_S, self._fetch_max_wait_s)
        self.idle_wait = min(max(self.idle_wait * 2, self._fetch_max_wait_s), ceiling)
        self._idle_until = now + self.idle_wait

    def _consumer_record(self, topic: str, record: StoredRecord) -> ConsumerRecord:
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

    # Handing records over --------------------------------------------------------------
    def buffer(self, batches: Sequence[Fetched]) -> None:
        """Keep ``batches`` for iteration, which hands their records over one at a time."""
        with self._subscription.lock:
            for batch in batches:
                self._buffer.extend((r, batch.state, batch.seeks) for r in batch.records)

    def next_record(self) -> ConsumerRecord | None:
        """The next buffered record of a reading still current (its position moves past
        it), or None when none is left."""
        with self._subscription.lock:
            while self._buffer:
                record, state, seeks = self._buffer.popleft()
                tp = TopicPartition(record.topic, record.partition)
                if self._current(tp, state, seeks):
                    state.position = record.offset + 1
                    return record
            return None

    def drain(self, limit: int | None = None) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Up to ``limit`` (None: every) buffered records still current, by partition; each
        one's position moves past it, and once nothing is buffered any more every position
        catches up with its fetches."""
        found: dict[TopicPartition, list[ConsumerRecord]] = {}
        taken = 0
        with self._subscription.lock:
            while self._buffer and (limit is None or taken < limit):
                record, state, seeks = self._buffer.popleft()
                tp = TopicPartition(record.topic, record.partition)
                if self._current(tp, state, seeks):
                    state.position = record.offset + 1
                    found.setdefault(tp, []).append(record)
                    taken += 1
            empty = not self._buffer
        if empty:
            self._subscription.handed_over()
        return found
