"""`Producer`: batches records per partition in the background and appends them.

``send`` picks the partition (explicit, Kafka's murmur2 of the key, or sticky for keyless
records), queues the record and returns a future. One sender thread drains the queues:
when a partition's batch reaches ``batch_bytes`` or its oldest record has waited
``linger_ms``, every queued batch of that topic goes out in one append (one segment and
one ledger write), up to the transport's request limits. Requests go one at a time,
so records of a partition keep their order through retries. An idempotent producer sends
its id, epoch and the topic's base sequence (one sequence per topic, counting records
whatever their partition; ADR 0012): a retried append never duplicates.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Final, Literal

from lakelog.client.transport import RETRYABLE, Transport
from lakelog.contract.operations import Append, DescribeTopic, InitProducerId
from lakelog.errors import (
    InvalidRequestError,
    OutOfOrderSequenceError,
    PayloadTooLargeError,
    UnknownProducerError,
)
from lakelog.limits import MAX_APPEND_BYTES, MAX_APPEND_RECORDS, validate_record
from lakelog.log.partitioner import StickyPartitioner, partition_for_key
from lakelog.types import Header, ProducerBatch, Record, RecordMetadata

__all__ = ["FutureRecordMetadata", "Producer", "ProducerMetrics"]

METADATA_MAX_AGE_S: Final = 60.0
DEFAULT_LINGER_MS: Final = 350.0
"""How long a record waits for others by default: about three appends per second for a
steady producer, which keeps the modeled p99 acknowledgement under 600 ms (README)."""
"""How long a topic's partition count is trusted before it is read again."""


class FutureRecordMetadata(Future[RecordMetadata]):
    """Where a sent record landed, once its append is acknowledged."""

    def get(self, timeout: float | None = None) -> RecordMetadata:
        """The record's metadata; raises the append's error or `TimeoutError`."""
        return self.result(timeout)


@dataclass
class ProducerMetrics:
    """Counters of a producer's work (read with `Producer.metrics`)."""

    appends: int = 0
    records: int = 0
    bytes: int = 0
    retries: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class _TopicLimits:
    """What the producer checks before queueing a record for a topic."""

    partitions: int
    max_record_bytes: int


@dataclass
class _Batch:
    """Records queued for one partition, oldest first, with each one's record bytes and
    request bytes (measured once, at send)."""

    created: float
    records: list[Record] = field(default_factory=list)
    futures: list[FutureRecordMetadata] = field(default_factory=list)
    weights: list[tuple[int, int]] = field(default_factory=list)
    size: int = 0


class Producer:
    """Send records to topics; see the module docstring.

    Parameters
    ----------
    transport
        Where appends go (`lakelog.Client.producer` passes the client's).
    linger_ms
        How long a record may wait for others to join its batch (default 350 ms). Each
        append costs an S3 PUT, a ledger write and, over HTTPS, an API Gateway request and
        a Lambda invocation, so a shorter linger buys latency with money: see the README's
        cost table for ``linger_ms=0``.
    batch_bytes
        A partition's batch is sent once it holds this many record bytes.
    idempotent
        Send producer id, epoch and sequences, so retries never duplicate.
    retries, retry_backoff_ms, delivery_timeout_ms
        Retries of throttled, unavailable or conflicting appends: full-jitter exponential
        backoff from ``retry_backoff_ms``, given up after ``retries`` attempts or once
        ``delivery_timeout_ms`` has passed since the first.
    buffer_bytes, max_block_ms
        ``send`` blocks while this many record bytes wait, for at most ``max_block_ms``.
    compression_type
        ``"gzip"`` compresses request bodies over HTTP (fewer bytes on the wire and fewer
        billed API Gateway request units); in direct mode segments are always compressed
        with the topic's codec, so it changes nothing there.
    seed
        Seeds the sticky partitioner and the backoff jitter (tests).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        linger_ms: float = DEFAULT_LINGER_MS,
        batch_bytes: int = 1 << 20,
        idempotent: bool = True,
        retries: int = 20,
        retry_backoff_ms: float = 100,
        delivery_timeout_ms: float = 120_000,
        buffer_bytes: int = 32 << 20,
        max_block_ms: float = 60_000,
        compression_type: Literal["gzip"] | None = None,
        seed: int | None = None,
    ) -> None:
        if not linger_ms >= 0 or batch_bytes < 1 or buffer_bytes < 1 or math.isnan(max_block_ms):
            raise InvalidRequestError(
                "linger_ms must be >= 0, batch_bytes and buffer_bytes > 0, max_block_ms a number"
            )
        if compression_type not in (None, "gzip"):
            raise InvalidRequestError(f"compression_type {compression_type!r}: use 'gzip' or None")
        self._transport = transport.compressed(compression_type) if compression_type else transport
        self._linger_s = linger_ms / 1000
        self._batch_bytes = batch_bytes
        self._idempotent = idempotent
        self._retries = retries
        self._backoff_s = retry_backoff_ms / 1000
        self._delivery_timeout_s = delivery_timeout_ms / 1000
        self._buffer_bytes = buffer_bytes
        self._max_block_s = max_block_ms / 1000
        # What one request may carry, in the transport's own measure (HTTP: encoded JSON).
        self._request_limit = transport.max_request_bytes
        self._cost = transport.request_bytes
        self._random = random.Random(seed)
        self._partitioner = StickyPartitioner(seed)
        self._sticky: dict[str, int] = {}
        self._topics: dict[str, tuple[_TopicLimits, float]] = {}
        self._batches: dict[str, dict[int, _Batch]] = {}
        self._in_flight: list[FutureRecordMetadata] = []
        self._buffered = 0
        self._flushing = 0
        self._closed = False
        self._producer_id: int | None = None
        self._epoch = 0
        self._sequences: dict[str, int] = {}
        self._metrics = ProducerMetrics()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._sender = threading.Thread(target=self._run, name="lakelog-producer", daemon=True)
        self._sender.start()

    # Public API ----------------------------------------------------------------------
    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Iterable[Header] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> FutureRecordMetadata:
        """Queue one record; the future resolves to its `RecordMetadata`.

        Raises at once for what can never succeed (closed producer, unknown topic, a
        field of the wrong type or range, as the engine checks it: `validate_record`,
        partition out of range, a record over the topic's ``max_record_bytes`` or larger
        than one request); other errors arrive through the future. A future cancelled
        before its record is sent is not sent.
        """
        if not isinstance(headers, Iterable | None) or isinstance(headers, Mapping):
            raise InvalidRequestError(f"headers must be (str, bytes) pairs, not {headers!r}")
        record = Record(
            value=value,
            key=key,
            headers=tuple(headers or ()),
            timestamp_ms=int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        )
        size = validate_record(record, None, self._topic(topic).max_record_bytes)
        chosen = self._partition(topic, key, partition)
        record = dataclasses.replace(record, partition=chosen)
        cost = self._cost(record)
        if cost > self._request_limit:
            raise PayloadTooLargeError(
                f"record takes {cost} bytes of a request; one carries at most {self._request_limit}"
            )
        future = FutureRecordMetadata()
        deadline = time.monotonic() + self._max_block_s
        with self._wake:
            while self._buffered + size > self._buffer_bytes and self._buffered > 0:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise TimeoutError(f"send blocked {self._max_block_s:.1f}s on a full buffer")
                self._wake.wait(left)
            if self._closed:
                raise InvalidRequestError("the producer is closed")
            batch = self._batches.setdefault(topic, {}).get(chosen)
            if batch is None:
                batch = self._batches[topic][chosen] = _Batch(created=time.monotonic())
            batch.records.append(record)
            batch.futures.append(future)
            batch.weights.append((size, cost))
            batch.size += size
            self._buffered += size
            if batch.size >= self._batch_bytes or len(batch.records) == 1:
                self._wake.notify_all()
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Send what is queued now and wait until each of those records is acknowledged or
        failed (records sent meanwhile by other threads are not waited for)."""
        with self._wake:
            waiting = [f for b in self._queued() for f in b.futures] + self._in_flight
            self._flushing += 1
            self._wake.notify_all()
        try:
            _, left = wait(waiting, timeout)
        finally:
            with self._wake:
                self._flushing -= 1
        if left:
            raise TimeoutError(f"{len(left)} records still in flight")

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the sender thread; later sends raise."""
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            with self._wake:
                self._closed = True
                self._wake.notify_all()
            self._sender.join(timeout)

    def partitions_for(self, topic: str) -> set[int]:
        """The partitions of ``topic``."""
        return set(range(self._topic(topic).partitions))

    def metrics(self) -> ProducerMetrics:
        """A copy of the producer's counters."""
        with self._lock:
            return ProducerMetrics(**vars(self._metrics))

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Partitioning --------------------------------------------------------------------
    def _topic(self, topic: str, refresh: bool = False) -> _TopicLimits:
        cached = self._topics.get(topic)
        now = time.monotonic()
        if cached is None or refresh or now - cached[1] > METADATA_MAX_AGE_S:
            description = self._transport.call(DescribeTopic(topic))
            limits = _TopicLimits(
                len(description.partitions),
                int(str(description.config.get("max_record_bytes", MAX_APPEND_BYTES))),
            )
            self._topics[topic] = cached = (limits, now)
        return cached[0]

    def _partition(self, topic: str, key: bytes | None, partition: int | None) -> int:
        count = self._topic(topic).partitions
        if partition is not None:
            if isinstance(partition, bool) or not isinstance(partition, int):
                raise InvalidRequestError(f"partition must be an integer, not {partition!r}")
            if not 0 <= partition < count:
                count = self._topic(topic, refresh=True).partitions
            if not 0 <= partition < count:
                raise InvalidRequestError(
                    f"partition {partition} of {topic!r} does not exist (it has {count})"
                )
            return partition
        if key is not None:
            return partition_for_key(key, count)
        with self._lock:
            sticky = self._sticky.get(topic)
            if sticky is None or sticky >= count:
                sticky = self._sticky[topic] = self._partitioner.next_partition(topic, count)
            return sticky

    # Sender --------------------------------------------------------------------------
    def _queued(self) -> Iterator[_Batch]:
        for batches in self._batches.values():
            yield from batches.values()

    def _ready_topic(self, now: float) -> tuple[str | None, float | None]:
        """A topic with a batch ready to go (oldest first), else how long until one is."""
        ready: tuple[float, str] | None = None
        wait_s: float | None = None
        for topic, batches in self._batches.items():
            for batch in batches.values():
                due = batch.created + self._linger_s
                if self._flushing or self._closed or batch.size >= self._batch_bytes or due <= now:
                    if ready is None or batch.created < ready[0]:
                        ready = (batch.created, topic)
                else:
                    wait_s = due - now if wait_s is None else min(wait_s, due - now)
        return (ready[1], None) if ready else (None, wait_s)

    def _drain(self, topic: str) -> dict[int, _Batch]:
        """Take up to one request's worth of the topic's queued records, per partition.

        Records whose future was cancelled are dropped here; the others can no longer be
        cancelled.
        """
        batches = self._batches[topic]
        taken: dict[int, _Batch] = {}
        total_cost = total_records = 0
        for partition in sorted(batches):
            batch = batches[partition]
            part = _Batch(batch.created)
            count = 0
            for record, future, (size, cost) in zip(
                batch.records, batch.futures, batch.weights, strict=True
            ):
                fits = total_cost + cost <= self._request_limit or total_records == 0
                if total_records >= MAX_APPEND_RECORDS or not fits:
                    break
                if part.records and part.size + size > self._batch_bytes:
                    break
                count += 1
                batch.size -= size
                if not future.set_running_or_notify_cancel():
                    self._buffered -= size
                    continue
                part.records.append(record)
                part.futures.append(future)
                part.weights.append((size, cost))
                part.size += size
                total_cost += cost
                total_records += 1
            del batch.records[:count], batch.futures[:count], batch.weights[:count]
            if part.records:
                taken[partition] = part
            if not batch.records:
                del batches[partition]
        if not batches:
            del self._batches[topic]
        self._sticky.pop(topic, None)
        return taken

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    topic, wait_s = self._ready_topic(time.monotonic())
                    if topic is not None or (self._closed and not self._batches):
                        break
                    self._wake.wait(wait_s)
                if topic is None:
                    return
                taken = self._drain(topic)
                self._in_flight = [f for b in taken.values() for f in b.futures]
                self._wake.notify_all()
            if taken:
                self._send(topic, taken)

    def _send(self, topic: str, taken: dict[int, _Batch]) -> None:
        records = [r for b in taken.values() for r in b.records]
        futures = [f for b in taken.values() for f in b.futures]
        size = sum(b.size for b in taken.values())
        try:
            acks = self._append(topic, records)
        except Exception as error:  # every failure reaches the futures, never the thread
            self._finish(futures, size, error=error)
        else:
            self._finish(futures, size, acks=acks)

    def _append(self, topic: str, records: Sequence[Record]) -> list[RecordMetadata]:
        """One append, retried with the same sequence; a fresh producer id when the
        service has forgotten this one (topic re-created, 24 h idle, id expired) or after a failure
        whose outcome is unknown."""
        started = time.monotonic()
        attempt = 0
        renewed = False
        sequence: int | None = None
        while True:
            try:
                producer: ProducerBatch | None = None
                if self._idempotent:
                    if self._producer_id is None:
                        self._producer_id, self._epoch = self._transport.call(InitProducerId()), 0
                        self._sequences.clear()
                        sequence = None
                    if sequence is None:
                        sequence = self._sequences.get(topic, 0)
                    producer = ProducerBatch(self._producer_id, self._epoch, sequence=sequence)
                acks = self._transport.call(Append(topic, records, producer))
            except RETRYABLE:
                attempt += 1
                pause = self._random.uniform(0, min(self._backoff_s * 2**attempt, 5.0))
                if (
                    attempt > self._retries
                    or time.monotonic() + pause - started > self._delivery_timeout_s
                ):
                    self._forget_identity()
                    raise
                with self._lock:
                    self._metrics.retries += 1
                time.sleep(pause)
            except (OutOfOrderSequenceError, UnknownProducerError):
                # Nothing of this request was written: start over under a fresh id, once.
                self._forget_identity()
                if renewed:
                    raise
                renewed = True
            except Exception:
                self._forget_identity()
                raise
            else:
                self._sequences[topic] = self._sequences.get(topic, 0) + len(records)
                return acks

    def _forget_identity(self) -> None:
        """Continue under a fresh producer id from the next append."""
        self._producer_id = None

    def _finish(
        self,
        futures: list[FutureRecordMetadata],
        size: int,
        acks: list[RecordMetadata] | None = None,
        error: BaseException | None = None,
    ) -> None:
        with self._wake:
            self._buffered -= size
            self._in_flight = []
            if acks is not None:
                self._metrics.appends += 1
                self._metrics.records += len(futures)
                self._metrics.bytes += size
            else:
                self._metrics.errors += 1
            self._wake.notify_all()
        for index, future in enumerate(futures):
            if acks is not None:
                future.set_result(acks[index])
            else:
                future.set_exception(error)

    def __repr__(self) -> str:
        return f"Producer(transport={type(self._transport).__name__})"
