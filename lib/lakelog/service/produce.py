"""Append: records -> one segment PUT -> one conditional ledger transaction per 50 partitions."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lakelog.config import TopicConfig
from lakelog.errors import (
    InvalidRequestError,
    LedgerConflictError,
    PayloadTooLargeError,
    ThrottledError,
    TopicNotFoundError,
)
from lakelog.limits import (
    MAX_APPEND_BYTES,
    MAX_APPEND_RECORDS,
    MAX_HEADERS_PER_RECORD,
    MAX_PARTITIONS_PER_TRANSACTION,
)
from lakelog.log.codec import SegmentBuilder, record_size
from lakelog.log.ledger import Duplicate, PlannedBatch, check_producer, plan_write
from lakelog.log.partitioner import StickyPartitioner, partition_for_key
from lakelog.service.context import EngineContext
from lakelog.storage.keys import l0_segment_key
from lakelog.storage.ports import AppendConflict, Head, PartitionWrite, TopicRecord
from lakelog.types import ProducerBatch, Record, RecordMetadata

__all__ = ["AppendRetryPolicy", "Appender"]


@dataclass(frozen=True, slots=True)
class AppendRetryPolicy:
    """Jittered exponential backoff for ledger conflicts and throttles (full jitter)."""

    max_attempts: int = 64
    base_seconds: float = 0.004
    cap_seconds: float = 0.25

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to sleep before attempt ``attempt + 1``."""
        return rng.uniform(0.0, min(self.cap_seconds, self.base_seconds * 2**attempt))


@dataclass
class _PartitionBatch:
    partition: int
    append_time_ms: int
    positions: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    size_bytes: int = 0


def _validate_record(record: object, position: int, max_record_bytes: int) -> int:
    if not isinstance(record, Record):
        raise InvalidRequestError(f"record {position} is not a Record")
    for name, data in (("key", record.key), ("value", record.value)):
        if data is not None and not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidRequestError(f"record {position}: {name} must be bytes or None")
    if len(record.headers) > MAX_HEADERS_PER_RECORD:
        raise InvalidRequestError(
            f"record {position} has {len(record.headers)} headers; "
            f"the limit is {MAX_HEADERS_PER_RECORD}"
        )
    for header in record.headers:
        if (
            not isinstance(header, tuple)
            or len(header) != 2
            or not isinstance(header[0], str)
            or not isinstance(header[1], bytes | None)
        ):
            raise InvalidRequestError(f"record {position}: headers must be (str, bytes) pairs")
    if record.timestamp_ms is not None and (
        isinstance(record.timestamp_ms, bool)
        or not isinstance(record.timestamp_ms, int)
        or not 0 <= record.timestamp_ms < 2**63
    ):
        raise InvalidRequestError(f"record {position}: timestamp_ms must be a non-negative int")
    size = record_size(record.key, record.value, record.headers)
    if size > max_record_bytes:
        raise PayloadTooLargeError(
            f"record {position} is {size} bytes; the topic's max_record_bytes is "
            f"{max_record_bytes}"
        )
    return size


class Appender:
    """The append use case.

    Parameters
    ----------
    context
        Stores, caches and clock.
    retry
        Backoff for ledger conflicts and throttles.
    sleep
        Injected for tests; `time.sleep` by default.
    """

    def __init__(
        self,
        context: EngineContext,
        retry: AppendRetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        self._ctx = context
        self._retry = retry or AppendRetryPolicy()
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._sticky = StickyPartitioner(seed)

    def append(
        self,
        topic_name: str,
        records: Sequence[Record],
        producer: ProducerBatch | None = None,
    ) -> list[RecordMetadata]:
        """Append ``records`` and return where each landed, in request order.

        All of one partition's records form one batch at dense offsets; an append over
        at most `MAX_PARTITIONS_PER_TRANSACTION` partitions is all-or-nothing.

        Raises
        ------
        InvalidRequestError, PayloadTooLargeError
            Bad input; nothing was written.
        TopicNotFoundError
            The topic does not exist.
        ProducerFencedError, OutOfOrderSequenceError
            The idempotent producer is stale or skipped sequences; nothing was written.
        LedgerConflictError, ThrottledError, UnavailableError
            The ledger could not be moved; nothing acknowledged (retry idempotently).
        """
        topic = self._ctx.caches.topics.get(topic_name)
        config = TopicConfig.parse(topic.config)
        batches = self._assign(topic, records, config.max_record_bytes)
        pks = {b.partition: self._ctx.partition_pk(topic, b.partition) for b in batches}
        sequences = self._sequences(producer, batches)
        heads = self._ctx.caches.heads.get_many(self._ctx.ledger, list(pks.values()))
        results: list[RecordMetadata | None] = [None] * len(records)

        # Answer retried batches from the heads we have; encode only the new ones.
        pending: list[_PartitionBatch] = []
        for batch in batches:
            head = self._head(heads, pks[batch.partition], topic)
            duplicate = self._check_producer(head, producer, sequences, batch)
            if duplicate is None:
                pending.append(batch)
            else:
                self._fill(results, topic, batch, records, duplicate.base_offset, duplicate)
        if pending:
            planned = self._upload(topic, config, records, pending, pks, sequences)
            by_partition = {b.partition: b for b in pending}
            for start in range(0, len(planned), MAX_PARTITIONS_PER_TRANSACTION):
                chunk = planned[start : start + MAX_PARTITIONS_PER_TRANSACTION]
                self._commit(topic, chunk, producer, records, by_partition, results)
        return [result for result in results if result is not None]

    def _assign(
        self, topic: TopicRecord, records: Sequence[Record], max_record_bytes: int
    ) -> list[_PartitionBatch]:
        if not isinstance(records, Sequence) or isinstance(records, str | bytes):
            raise InvalidRequestError("records must be a list")
        if not records:
            raise InvalidRequestError("an append needs at least one record")
        if len(records) > MAX_APPEND_RECORDS:
            raise PayloadTooLargeError(
                f"{len(records)} records in one append; the limit is {MAX_APPEND_RECORDS}"
            )
        now = self._ctx.clock_ms()
        sticky: int | None = None
        batches: dict[int, _PartitionBatch] = {}
        total = 0
        for position, record in enumerate(records):
            size = _validate_record(record, position, max_record_bytes)
            total += size
            if record.partition is not None:
                partition = record.partition
                self._ctx.partition_pk(topic, partition)
            elif record.key is not None:
                partition = partition_for_key(bytes(record.key), topic.partitions)
            else:
                if sticky is None:
                    sticky = self._sticky.next_partition(topic.name, topic.partitions)
                partition = sticky
            batch = batches.setdefault(partition, _PartitionBatch(partition, now))
            batch.positions.append(position)
            batch.timestamps.append(now if record.timestamp_ms is None else record.timestamp_ms)
            batch.size_bytes += size
        if total > MAX_APPEND_BYTES:
            raise PayloadTooLargeError(
                f"append of {total} bytes; the limit is {MAX_APPEND_BYTES} bytes per request"
            )
        return sorted(batches.values(), key=lambda b: b.partition)

    @staticmethod
    def _sequences(
        producer: ProducerBatch | None, batches: Sequence[_PartitionBatch]
    ) -> dict[int, int]:
        if producer is None:
            return {}
        for name in ("producer_id", "epoch"):
            value = getattr(producer, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidRequestError(f"producer {name} must be a non-negative integer")
        missing = [b.partition for b in batches if b.partition not in producer.sequences]
        if missing:
            raise InvalidRequestError(f"producer sequences missing for partitions {missing}")
        for partition, sequence in producer.sequences.items():
            if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
                raise InvalidRequestError(
                    f"producer sequence for partition {partition} must be a non-negative int"
                )
        return dict(producer.sequences)

    def _head(self, heads: dict[str, Head], pk: str, topic: TopicRecord) -> Head:
        head = heads.get(pk)
        if head is None:
            self._ctx.caches.topics.invalidate(topic.name)
            raise TopicNotFoundError(topic.name)
        return head

    @staticmethod
    def _check_producer(
        head: Head,
        producer: ProducerBatch | None,
        sequences: dict[int, int],
        batch: _PartitionBatch,
    ) -> Duplicate | None:
        if producer is None:
            return None
        return check_producer(
            head,
            producer.producer_id,
            producer.epoch,
            sequences[batch.partition],
            len(batch.positions),
            batch.partition,
        )

    def _upload(
        self,
        topic: TopicRecord,
        config: TopicConfig,
        records: Sequence[Record],
        pending: Sequence[_PartitionBatch],
        pks: dict[int, str],
        sequences: dict[int, int],
    ) -> list[PlannedBatch]:
        builder = SegmentBuilder(topic.topic_id, config.compression)
        for batch in pending:
            chosen = [records[i] for i in batch.positions]
            builder.add_batch(
                batch.partition,
                batch.timestamps,
                [None if r.key is None else bytes(r.key) for r in chosen],
                [None if r.value is None else bytes(r.value) for r in chosen],
                [r.headers for r in chosen],
            )
        segment = builder.build()
        key = l0_segment_key(topic.topic_id, self._ctx.clock_ms())
        self._ctx.objects.put(key, segment.body)
        append_time = {batch.partition: batch.append_time_ms for batch in pending}
        return [
            PlannedBatch(
                pk=pks[location.partition],
                partition=location.partition,
                segment_key=key,
                row_group=location.row_group,
                byte_offset=location.byte_offset,
                byte_length=location.byte_length,
                segment_size=segment.size,
                footer_offset=segment.footer_offset,
                rows=location.rows,
                min_timestamp=location.min_timestamp,
                max_timestamp=location.max_timestamp,
                size_bytes=location.byte_length,
                append_time_ms=append_time[location.partition],
                sequence=sequences.get(location.partition),
            )
            for location in segment.row_groups
        ]

    def _commit(
        self,
        topic: TopicRecord,
        chunk: Sequence[PlannedBatch],
        producer: ProducerBatch | None,
        records: Sequence[Record],
        by_partition: dict[int, _PartitionBatch],
        results: list[RecordMetadata | None],
    ) -> None:
        identity = (producer.producer_id, producer.epoch) if producer else None
        heads = self._ctx.caches.heads.get_many(self._ctx.ledger, [b.pk for b in chunk])
        for attempt in range(self._retry.max_attempts):
            writes: list[PartitionWrite] = []
            planned: list[PlannedBatch] = []
            for batch in chunk:
                head = self._head(heads, batch.pk, topic)
                source = by_partition[batch.partition]
                duplicate = self._check_producer(
                    head, producer, {batch.partition: batch.sequence or 0}, source
                )
                if duplicate is not None:
                    # An earlier attempt of this very request did land (lost reply).
                    self._fill(results, topic, source, records, duplicate.base_offset, duplicate)
                    continue
                writes.append(plan_write(head, batch, identity))
                planned.append(batch)
            if not writes:
                return
            try:
                self._ctx.ledger.append(writes)
            except AppendConflict as conflict:
                for pk, head in conflict.heads.items():
                    if head is None:
                        self._ctx.caches.heads.forget([pk])
                        self._ctx.caches.topics.invalidate(topic.name)
                        raise TopicNotFoundError(topic.name) from None
                    heads[pk] = head
                self._ctx.caches.heads.update({pk: heads[pk] for pk in conflict.heads})
            except ThrottledError:
                if attempt + 1 == self._retry.max_attempts:
                    raise
            else:
                self._remember(heads, writes)
                for batch, write in zip(planned, writes, strict=True):
                    source = by_partition[batch.partition]
                    self._fill(results, topic, source, records, write.entry.base_offset, None)
                return
            self._sleep(self._retry.delay(attempt, self._rng))
        raise LedgerConflictError(
            f"append to {topic.name!r} conflicted {self._retry.max_attempts} times; retry later"
        )

    def _remember(self, heads: dict[str, Head], writes: Sequence[PartitionWrite]) -> None:
        fresh: dict[str, Head] = {}
        for write in writes:
            old = heads[write.pk]
            producers = dict(old.producers)
            if write.producer_id is not None and write.producer_state is not None:
                producers[write.producer_id] = write.producer_state
            fresh[write.pk] = Head(
                high_watermark=write.new_high_watermark,
                log_start_offset=old.log_start_offset,
                size_bytes=old.size_bytes + write.entry.size_bytes,
                max_timestamp=write.new_max_timestamp,
                producers=producers,
            )
        self._ctx.caches.heads.update(fresh)

    @staticmethod
    def _fill(
        results: list[RecordMetadata | None],
        topic: TopicRecord,
        batch: _PartitionBatch,
        records: Sequence[Record],
        base_offset: int,
        duplicate: Duplicate | None,
    ) -> None:
        for index, (position, timestamp) in enumerate(
            zip(batch.positions, batch.timestamps, strict=True)
        ):
            if duplicate is not None and records[position].timestamp_ms is None:
                timestamp = duplicate.append_time_ms
            results[position] = RecordMetadata(
                topic.name, batch.partition, base_offset + index, timestamp
            )
