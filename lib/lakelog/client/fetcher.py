"""`Fetcher`: fetches records of the assigned partitions and buffers them for iteration.

A round asks each assigned partition that is not pausing for records, from its fetch
position, rotating the first partition between rounds so none is starved. The request is
sent without any lock held; its records are kept only if the partition was neither
revoked nor sought meanwhile (else they belong to a reading that no longer exists). A
partition with nothing new pauses, doubling up to ``fetch_max_wait_ms``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

from lakelog.client.subscription import OffsetReset, PartitionState, SubscriptionState
from lakelog.client.transport import RETRYABLE, Transport
from lakelog.contract.operations import Fetch, ListOffset
from lakelog.errors import OffsetOutOfRangeError
from lakelog.limits import MAX_FETCH_RECORDS
from lakelog.types import Header, StoredRecord, TopicPartition

__all__ = ["IDLE_BACKOFF_S", "ConsumerRecord", "Fetched", "Fetcher"]

logger = logging.getLogger("lakelog.client.consumer")

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


class Fetched(NamedTuple):
    """Records of one partition fetched from ``offset``, for the reading ``seeks`` names."""

    partition: TopicPartition
    state: PartitionState
    seeks: int
    offset: int
    records: list[ConsumerRecord]


class Fetcher:
    """Fetch rounds over a `SubscriptionState`, and the buffer iteration reads from.

    Parameters
    ----------
    transport, subscription
        Where records come from, and the partitions and positions to fetch.
    reset
        Where a partition without a position (or out of range) starts.
    fetch_max_bytes, fetch_max_wait_s
        Bytes per fetch request; the longest pause before asking an idle partition again.
    key_deserializer, value_deserializer
        Applied to keys and values that are not None.
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
    ) -> None:
        self._transport = transport
        self._subscription = subscription
        self.reset: OffsetReset = reset
        self._fetch_max_bytes = fetch_max_bytes
        self._fetch_max_wait_s = fetch_max_wait_s
        self._key_deserializer = key_deserializer
        self._value_deserializer = value_deserializer
        self._rotation = 0
        self._buffer: deque[tuple[ConsumerRecord, PartitionState, int]] = deque()

    def reset_position(self, tp: TopicPartition) -> int:
        """Where ``tp`` starts under ``auto_offset_reset`` (``none`` raises)."""
        if self.reset == "none":
            raise OffsetOutOfRangeError(tp.topic, tp.partition, -1, 0, 0)
        return self._transport.call(ListOffset(tp.topic, tp.partition, self.reset))

    # Fetching --------------------------------------------------------------------------
    def fetch(self, limit: int) -> list[Fetched]:
        """One round over the assigned partitions, up to ``limit`` records. If a fetch
        raises, the partitions of the round are put back where they were, so no record is
        skipped."""
        sub = self._subscription
        with sub.lock:
            order = sorted(sub.partitions)
            if not order:
                return []
            self._rotation = (self._rotation + 1) % len(order)
        now = time.monotonic()
        found: list[Fetched] = []
        try:
            for tp in order[self._rotation :] + order[: self._rotation]:
                if limit <= 0:
                    break
                batch = self._fetch_partition(tp, limit, now)
                if batch is not None:
                    found.append(batch)
                    limit -= len(batch.records)
        except BaseException:
            with sub.lock:
                for batch in found:
                    if self._current(batch.partition, batch.state, batch.seeks):
                        batch.state.fetched = batch.offset
            raise
        return found

    def _current(self, tp: TopicPartition, state: PartitionState, seeks: int) -> bool:
        """Whether ``state`` is still ``tp``'s reading ``seeks`` (call with the lock held)."""
        return self._subscription.partitions.get(tp) is state and state.seeks == seeks

    def _fetch_partition(self, tp: TopicPartition, limit: int, now: float) -> Fetched | None:
        sub = self._subscription
        with sub.lock:
            state = sub.partitions.get(tp)
            if state is None or state.idle_until > now:
                return None
            offset, seeks = state.fetched, state.seeks
        try:
            result = self._transport.call(
                Fetch(
                    tp.topic,
                    tp.partition,
                    offset,
                    min(limit, MAX_FETCH_RECORDS),
                    self._fetch_max_bytes,
                )
            )
        except OffsetOutOfRangeError:
            if self.reset == "none":
                raise
            start = self.reset_position(tp)
            with sub.lock:
                if self._current(tp, state, seeks) and state.fetched == offset:
                    state.fetched = state.position = start
            return None
        except RETRYABLE as error:  # try this partition again after a pause
            logger.warning("fetch of %s-%d failed: %s", tp.topic, tp.partition, error)
            with sub.lock:
                self._idle(state, now)
            return None
        records = [self._consumer_record(tp.topic, r) for r in result.records]
        with sub.lock:
            if not self._current(tp, state, seeks) or state.fetched != offset:
                return None  # revoked or sought while the request was out
            if not records:
                self._idle(state, now)
                state.fetched = max(state.fetched, result.next_offset)
                return None
            state.idle_wait = state.idle_until = 0.0
            state.fetched = result.next_offset
        return Fetched(tp, state, seeks, offset, records)

    def _idle(self, state: PartitionState, now: float) -> None:
        """Ask this partition again after a pause that doubles up to ``fetch_max_wait_ms``."""
        state.idle_wait = min(max(state.idle_wait * 2, IDLE_BACKOFF_S), self._fetch_max_wait_s)
        state.idle_until = now + state.idle_wait

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

    def wake_at(self) -> float:
        """When the first pausing partition may be asked again (0.0: none pauses)."""
        with self._subscription.lock:
            return min((s.idle_until for s in self._subscription.partitions.values()), default=0.0)

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

    def drain(self) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Every buffered record still current, by partition; positions then catch up with
        the fetches (nothing is buffered any more)."""
        found: dict[TopicPartition, list[ConsumerRecord]] = {}
        with self._subscription.lock:
            while self._buffer:
                record, state, seeks = self._buffer.popleft()
                tp = TopicPartition(record.topic, record.partition)
                if self._current(tp, state, seeks):
                    found.setdefault(tp, []).append(record)
        self._subscription.handed_over()
        return found
