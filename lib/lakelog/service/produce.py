"""Append: records -> one segment PUT -> one conditional ledger transaction per 50 partitions."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lakelog.config import TopicConfig
from lakelog.errors import (
    InvalidRequestError,
    OutOfOrderSequenceError,
    PayloadTooLargeError,
    ProducerFencedError,
    ThrottledError,
    UnavailableError,
)
from lakelog.limits import (
    MAX_APPEND_BYTES,
    MAX_APPEND_RECORDS,
    MAX_HEADERS_PER_RECORD,
    MAX_PARTITIONS_PER_TRANSACTION,
    MAX_TIMESTAMP_MS,
)
from lakelog.log.codec import SegmentBuilder, record_size
from lakelog.log.ledger import Duplicate, PlannedBatch, check_producer, plan_write
from lakelog.log.partitioner import StickyPartitioner, partition_for_key
from lakelog.log.records import Head, PartitionWrite
from lakelog.service.context import EngineContext, retry_if_stale
from lakelog.service.producers import DIRECT_PRINCIPAL, ProducerIds
from lakelog.storage.keys import l0_segment_key
from lakelog.storage.ports import AppendConflict, TopicRecord
from lakelog.types import ProducerBatch, Record, RecordMetadata

__all__ = ["AppendRetryPolicy", "Appender"]


MAX_UPLOAD_AGE_MS = 5 * 60 * 1000
"""Longest time between a segment's PUT and the transaction that references it: well
inside gc's grace period, so gc never deletes a segment an append is about to commit."""


@dataclass(frozen=True, slots=True)
class AppendRetryPolicy:
    """Jittered exponential backoff for ledger conflicts and throttles (full jitter).

    A conflict means another append to the partition won, so the log is progressing; an
    append gives up only after ``max_attempts`` or ``deadline_seconds`` (on the engine's clock),
    whichever first.
    """

    max_attempts: int = 1000
    deadline_seconds: float = 15.0
    base_seconds: float = 0.005
    cap_seconds: float = 0.4

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to sleep before attempt ``attempt + 1``."""
        return rng.uniform(0.0, min(self.cap_seconds, self.base_seconds * 2**attempt))


@dataclass
class _PartitionBatch:
    """The records of one request bound for one partition, in request order."""

    partition: int
    append_time_ms: int
    positions: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    size_bytes: int = 0
    sequence: int | None = None


@dataclass
class _Request:
    """One append request while it is being planned and committed."""

    topic: TopicRecord
    records: Sequence[Record]
    producer: ProducerBatch | None
    batches: dict[int, _PartitionBatch]
    results: list[RecordMetadata | None]
    uploaded_ms: int = 0

    def check_producer(self, head: Head, partition: int) -> Duplicate | None:
        """Whether the batch for ``partition`` is new or a retry of one already written."""
        batch = self.batches[partition]
        if self.producer is None or batch.sequence is None:
            return None
        return check_producer(
            head,
            self.producer.producer_id,
            self.producer.epoch,
            batch.sequence,
            len(batch.positions),
            partition,
        )

    def fill(self, partition: int, base_offset: int, duplicate: Duplicate | None = None) -> None:
        """Record where the batch for ``partition`` landed."""
        batch, topic, results = self.batches[partition], self.topic.name, self.results
        for index, (position, timestamp) in enumerate(
            zip(batch.positions, batch.timestamps, strict=True), start=base_offset
        ):
            appended_at = timestamp
            if duplicate is not None and self.records[position].timestamp_ms is None:
                appended_at = duplicate.append_time_ms
            results[position] = RecordMetadata(topic, partition, index, appended_at)


def _validate_record(record: object, position: int, max_record_bytes: int) -> int:
    """Check one record against the documented rules; its size in bytes.

    Runs once per record of every append: the common case (bytes key and value, no
    headers, no timestamp) is decided with exact type checks before anything slower.
    """
    if type(record) is not Record and not isinstance(record, Record):
        raise InvalidRequestError(f"record {position} is not a Record")
    key, value, headers, timestamp = record.key, record.value, record.headers, record.timestamp_ms
    for name, data in (("key", key), ("value", value)):
        if data is not None and type(data) is not bytes and not isinstance(data, bytearray):
            raise InvalidRequestError(f"record {position}: {name} must be bytes or None")
    if headers or not isinstance(headers, tuple | list):
        _check_headers(headers, position)
    if timestamp is not None and (
        type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP_MS
    ):
        raise InvalidRequestError(
            f"record {position}: timestamp_ms must be an integer from 0 to {MAX_TIMESTAMP_MS}"
        )
    size = record_size(key, value, headers)
    if size > max_record_bytes:
        raise PayloadTooLargeError(
            f"record {position} is {size} bytes; the topic's max_record_bytes is {max_record_bytes}"
        )
    return size


def _check_headers(headers: object, position: int) -> None:
    """Raise `InvalidRequestError` unless ``headers`` is a short list of (str, bytes) pairs."""
    if not isinstance(headers, tuple | list):
        raise InvalidRequestError(f"record {position}: headers must be a list of pairs")
    if len(headers) > MAX_HEADERS_PER_RECORD:
        raise InvalidRequestError(
            f"record {position} has {len(headers)} headers; the limit is {MAX_HEADERS_PER_RECORD}"
        )
    for header in headers:
        if (
            not isinstance(header, tuple)
            or len(header) != 2
            or not isinstance(header[0], str)
            or not isinstance(header[1], bytes | bytearray | None)
        ):
            raise InvalidRequestError(f"record {position}: headers must be (str, bytes) pairs")
        try:
            header[0].encode()
        except UnicodeEncodeError:
            raise InvalidRequestError(
                f"record {position}: header name {header[0]!r} is not valid UTF-8"
            ) from None


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
    seed
        Seeds the backoff jitter and the sticky partitioner.
    producers
        Which principal holds each producer id (shared with `TopicAdmin`, which issues them).
    """

    def __init__(
        self,
        context: EngineContext,
        retry: AppendRetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
        producers: ProducerIds | None = None,
    ) -> None:
        self._ctx = context
        self._producers = producers or ProducerIds(context.catalog, context.clock_ms)
        self._retry = retry or AppendRetryPolicy()
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._sticky = StickyPartitioner(seed)

    @retry_if_stale
    def append(
        self,
        topic_name: str,
        records: Sequence[Record],
        producer: ProducerBatch | None = None,
        *,
        principal: str = DIRECT_PRINCIPAL,
    ) -> list[RecordMetadata]:
        """Append ``records`` and return where each landed, in request order.

        All of one partition's records form one batch at dense offsets; an append over
        at most `MAX_PARTITIONS_PER_TRANSACTION` partitions is all-or-nothing. An
        idempotent append (``producer`` given) is accepted only from the ``principal``
        that obtained its producer id.

        Raises
        ------
        InvalidRequestError, PayloadTooLargeError
            Bad input; nothing was written.
        TopicNotFoundError
            The topic does not exist.
        ProducerFencedError, OutOfOrderSequenceError
            The idempotent producer is stale or skipped sequences; nothing was written.
        UnknownProducerError
            ``principal`` does not hold the producer id; nothing was written.
        ThrottledError, UnavailableError
            The ledger could not be moved; nothing acknowledged (retry idempotently).
        """
        if not isinstance(records, Sequence) or isinstance(records, str | bytes):
            raise InvalidRequestError("records must be a list")
        explicit = [r.partition for r in records if isinstance(r, Record)]
        highest = max((p for p in explicit if isinstance(p, int)), default=-1)
        topic = self._ctx.caches.topics.get(topic_name, min_partitions=highest + 1)
        config = TopicConfig.parse(topic.config)
        batches = self._assign(topic, records, config.max_record_bytes)
        self._bind_sequences(producer, batches)
        if producer is not None:
            self._producers.check(producer.producer_id, principal)
        request = _Request(topic, records, producer, batches, [None] * len(records))
        pks = {p: self._ctx.partition_pk(topic, p) for p in batches}
        pending = self._new_batches(request, pks)
        if pending:
            planned = self._upload(request, config, pending, pks)
            for start in range(0, len(planned), MAX_PARTITIONS_PER_TRANSACTION):
                self._commit(request, planned[start : start + MAX_PARTITIONS_PER_TRANSACTION])
        return [result for result in request.results if result is not None]

    def _new_batches(self, request: _Request, pks: dict[int, str]) -> list[int]:
        """Partitions whose batch is new; retried ones are answered with their offsets.

        The cached heads decide only the common case (every batch new). A duplicate or a
        sequence error is confirmed on heads read from the ledger first: a cached head may
        be older than the producer's latest batches (another process appended since).
        """
        heads = self._ctx.caches.heads.get_many(self._ctx.ledger, list(pks.values()))
        try:
            decisions = {
                p: request.check_producer(self._head(heads, pks[p], request.topic), p)
                for p in request.batches
            }
        except (OutOfOrderSequenceError, ProducerFencedError, InvalidRequestError):
            decisions = {}
        if request.producer is not None and (
            not decisions or any(d is not None for d in decisions.values())
        ):
            fresh = self._ctx.ledger.read_heads(list(pks.values()))
            self._ctx.caches.heads.update(fresh)
            decisions = {
                p: request.check_producer(self._head(fresh, pks[p], request.topic), p)
                for p in request.batches
            }
        pending: list[int] = []
        for partition, duplicate in decisions.items():
            if duplicate is None:
                pending.append(partition)
            else:
                request.fill(partition, duplicate.base_offset, duplicate)
        return pending

    def _assign(
        self, topic: TopicRecord, records: Sequence[Record], max_record_bytes: int
    ) -> dict[int, _PartitionBatch]:
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
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = _PartitionBatch(partition, now)
            batch.positions.append(position)
            batch.timestamps.append(now if record.timestamp_ms is None else record.timestamp_ms)
            batch.size_bytes += size
        if total > MAX_APPEND_BYTES:
            raise PayloadTooLargeError(
                f"append of {total} bytes; the limit is {MAX_APPEND_BYTES} bytes per request"
            )
        return dict(sorted(batches.items()))

    @staticmethod
    def _bind_sequences(
        producer: ProducerBatch | None, batches: dict[int, _PartitionBatch]
    ) -> None:
        if producer is None:
            return
        for name in ("producer_id", "epoch"):
            value = getattr(producer, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidRequestError(f"producer {name} must be a non-negative integer")
        sequences = dict(producer.sequences)
        if producer.sequence is not None:
            if sequences or len(batches) != 1:
                raise InvalidRequestError(
                    "a single producer sequence needs every record in one partition; "
                    f"this request spans partitions {sorted(batches)}: give sequences per partition"
                )
            sequences = {next(iter(batches)): producer.sequence}
        missing = [p for p in batches if p not in sequences]
        if missing:
            raise InvalidRequestError(f"producer sequences missing for partitions {missing}")
        for partition, batch in batches.items():
            sequence = sequences[partition]
            if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
                raise InvalidRequestError(
                    f"producer sequence for partition {partition} must be a non-negative int"
                )
            batch.sequence = sequence

    def _head(self, heads: dict[str, Head], pk: str, topic: TopicRecord) -> Head:
        head = heads.get(pk)
        if head is None:
            raise self._ctx.stale(topic)
        return head

    def _upload(
        self,
        request: _Request,
        config: TopicConfig,
        pending: Sequence[int],
        pks: dict[int, str],
    ) -> list[PlannedBatch]:
        """Encode the pending batches into one segment and PUT it, once per request."""
        topic_id = request.topic.topic_id
        builder = SegmentBuilder(topic_id, config.compression)
        for partition in pending:
            batch = request.batches[partition]
            chosen = [request.records[i] for i in batch.positions]
            builder.add_batch(
                partition,
                batch.timestamps,
                [None if r.key is None else bytes(r.key) for r in chosen],
                [None if r.value is None else bytes(r.value) for r in chosen],
                [
                    tuple((name, None if data is None else bytes(data)) for name, data in r.headers)
                    for r in chosen
                ],
            )
        segment = builder.build()
        uploaded_ms = self._ctx.clock_ms()
        key = l0_segment_key(topic_id, uploaded_ms)
        self._ctx.objects.put(key, segment.body)
        request.uploaded_ms = uploaded_ms
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
                append_time_ms=request.batches[location.partition].append_time_ms,
                sequence=request.batches[location.partition].sequence,
            )
            for location in segment.row_groups
        ]

    def _commit(self, request: _Request, chunk: Sequence[PlannedBatch]) -> None:
        """Move the heads of ``chunk`` in one transaction, re-planning on conflicts."""
        topic, producer = request.topic, request.producer
        identity = (producer.producer_id, producer.epoch) if producer else None
        heads = self._ctx.caches.heads.get_many(self._ctx.ledger, [b.pk for b in chunk])
        deadline_ms = self._ctx.clock_ms() + self._retry.deadline_seconds * 1000
        for attempt in range(self._retry.max_attempts):
            writes: list[PartitionWrite] = []
            planned: list[PlannedBatch] = []
            for batch in chunk:
                head = self._head(heads, batch.pk, topic)
                duplicate = request.check_producer(head, batch.partition)
                if duplicate is not None:
                    # An earlier attempt of this very request did land (lost reply).
                    request.fill(batch.partition, duplicate.base_offset, duplicate)
                    continue
                writes.append(plan_write(head, batch, identity))
                planned.append(batch)
            if not writes:
                return
            self._check_segment_still_safe(request)
            try:
                self._ctx.ledger.append(writes)
            except AppendConflict as conflict:
                self._refresh(topic, heads, conflict)
            except ThrottledError:
                if attempt + 1 == self._retry.max_attempts or self._ctx.clock_ms() > deadline_ms:
                    raise
            else:
                self._remember(heads, writes)
                for batch, write in zip(planned, writes, strict=True):
                    request.fill(batch.partition, write.entry.base_offset)
                return
            if self._ctx.clock_ms() > deadline_ms:
                break
            self._sleep(self._retry.delay(attempt, self._rng))
        raise UnavailableError(
            f"append to {topic.name!r} kept conflicting with other appends for "
            f"{attempt + 1} attempts; nothing was written, retry later"
        )

    def _check_segment_still_safe(self, request: _Request) -> None:
        """Refuse to reference a segment gc may already consider an orphan.

        gc deletes unreferenced segments older than its grace period (an hour by default);
        an append that stalled (a paused process, a suspended laptop) for longer than
        `MAX_UPLOAD_AGE_MS` after its PUT gives up instead of committing a dangling entry.
        """
        age = self._ctx.clock_ms() - request.uploaded_ms
        if age > MAX_UPLOAD_AGE_MS:
            raise UnavailableError(
                f"append stalled {age} ms after uploading its segment; nothing was written, "
                "retry the append"
            )

    def _refresh(
        self, topic: TopicRecord, heads: dict[str, Head], conflict: AppendConflict
    ) -> None:
        """Take the current heads a cancelled transaction returned."""
        for pk, current in conflict.heads.items():
            if current is None:
                self._ctx.caches.heads.forget([pk])
                raise self._ctx.stale(topic)
            heads[pk] = current
        self._ctx.caches.heads.update({pk: heads[pk] for pk in conflict.heads})

    def _remember(self, heads: dict[str, Head], writes: Sequence[PartitionWrite]) -> None:
        fresh = {write.pk: write.applied_to(heads[write.pk]) for write in writes}
        self._ctx.caches.heads.update(fresh)
