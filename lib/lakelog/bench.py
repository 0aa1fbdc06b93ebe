"""Throughput of a producer and a consumer through any `Client`: HTTP or in-process.

`run_producer` sends ``records`` random values of ``record_bytes`` each and flushes;
`run_consumer` reads that many records back; `run` does both on a scratch topic and deletes
it after. ``lakelog bench`` prints what they return, and ``benchmarks/`` can call the same
functions on a ``Client.direct(...)``.

Values are random bytes (they do not compress, the worst case for segment size); records
have no key, so the producer's sticky partitioner fills one partition per append.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from lakelog.errors import LakelogError
from lakelog.types import RecordMetadata, TopicPartition

if TYPE_CHECKING:
    from lakelog.client import Client

__all__ = [
    "BenchResult",
    "BenchTimeoutError",
    "ConsumerResult",
    "ProducerResult",
    "run",
    "run_consumer",
    "run_producer",
]

MIB: Final = 1 << 20
Progress = Callable[[int], None]
"""Called with the number of records just acknowledged or read (maybe from another thread)."""


class BenchTimeoutError(LakelogError):
    """The consumer read fewer records than were produced before it gave up waiting."""

    code = "timeout"


@dataclass(frozen=True, slots=True)
class ProducerResult:
    """What one producer run sent, how long it took, and how many appends it made.

    ``seconds`` runs from the first ``send`` to the end of ``flush``; ``bytes`` counts keys,
    values and headers (`lakelog.log.codec.record_size`); ``appends`` are the acknowledged
    append requests (each one segment and one ledger transaction).
    """

    records: int
    bytes: int
    seconds: float
    records_per_s: float
    mib_per_s: float
    appends: int
    appends_per_1000: float
    retries: int


@dataclass(frozen=True, slots=True)
class ConsumerResult:
    """What one consumer run read and how long it took (first ``poll`` to last record).

    ``bytes`` counts keys and values; ``polls`` are the polls that returned records.
    """

    records: int
    bytes: int
    seconds: float
    records_per_s: float
    mib_per_s: float
    polls: int


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One `run`: the topic it used, the workload and both measurements."""

    topic: str
    partitions: int
    records: int
    record_bytes: int
    producer: ProducerResult
    consumer: ConsumerResult


def _rates(records: int, size: int, seconds: float) -> tuple[float, float]:
    seconds = max(seconds, 1e-9)
    return records / seconds, size / MIB / seconds


def run_producer(
    client: Client,
    topic: str,
    records: int,
    record_bytes: int,
    *,
    progress: Progress | None = None,
    **producer_options: Any,
) -> ProducerResult:
    """Send ``records`` random values of ``record_bytes`` to ``topic`` and flush.

    Parameters
    ----------
    client
        Where the topic lives.
    topic
        An existing topic.
    records, record_bytes
        How many values, and the size of each.
    progress
        Called with 1 each time a record is acknowledged (from the producer's thread).
    **producer_options
        Passed to `Client.producer` (``linger_ms``, ``batch_bytes``, ...).

    Raises
    ------
    LakelogError
        The first error an append reported (after every record was acknowledged or failed).
    """
    failures: list[BaseException] = []
    lock = threading.Lock()

    def done(future: Future[RecordMetadata]) -> None:
        error = future.exception()
        if error is not None:
            with lock:
                failures.append(error)
        elif progress is not None:
            progress(1)

    with client.producer(**producer_options) as producer:
        started = time.perf_counter()
        for _ in range(records):
            if failures:
                break
            producer.send(topic, value=os.urandom(record_bytes)).add_done_callback(done)
        producer.flush()
        seconds = time.perf_counter() - started
        metrics = producer.metrics()
    if failures:
        raise failures[0]
    records_per_s, mib_per_s = _rates(metrics.records, metrics.bytes, seconds)
    return ProducerResult(
        records=metrics.records,
        bytes=metrics.bytes,
        seconds=seconds,
        records_per_s=records_per_s,
        mib_per_s=mib_per_s,
        appends=metrics.appends,
        appends_per_1000=metrics.appends * 1000 / max(metrics.records, 1),
        retries=metrics.retries,
    )


def run_consumer(
    client: Client,
    topic: str,
    records: int,
    *,
    start_offsets: Mapping[int, int] | None = None,
    idle_timeout_s: float = 30.0,
    progress: Progress | None = None,
    **consumer_options: Any,
) -> ConsumerResult:
    """Read ``records`` records of ``topic`` from every partition, without a group.

    Parameters
    ----------
    client
        Where the topic lives.
    topic
        The topic to read; every partition is assigned.
    records
        Stop once this many were read.
    start_offsets
        Partition -> first offset to read; a partition not listed starts at its log start.
    idle_timeout_s
        Give up after this long without a record.
    progress
        Called with the number of records each poll returned.
    **consumer_options
        Passed to `Client.consumer` (``max_poll_records``, ``fetch_max_bytes``, ...).

    Raises
    ------
    BenchTimeoutError
        Fewer than ``records`` records arrived before ``idle_timeout_s`` without one.
    """
    partitions = [
        TopicPartition(topic, p.partition) for p in client.describe_topic(topic).partitions
    ]
    start_offsets = start_offsets or {}
    consumer = client.consumer(
        auto_offset_reset="earliest", enable_auto_commit=False, **consumer_options
    )
    try:
        consumer.assign(partitions)
        for tp in partitions:
            if tp.partition in start_offsets:
                consumer.seek(tp, start_offsets[tp.partition])
        read = size = polls = 0
        started = last = time.perf_counter()
        while read < records:
            batch = consumer.poll(timeout_ms=200, max_records=records - read)
            now = time.perf_counter()
            if not batch:
                if now - last > idle_timeout_s:
                    raise BenchTimeoutError(
                        f"read {read} of {records} records of {topic!r}; "
                        f"nothing more arrived in {idle_timeout_s:g} s"
                    )
                continue
            last = now
            polls += 1
            count = 0
            for found in batch.values():
                count += len(found)
                size += sum(len(r.value or b"") + len(r.key or b"") for r in found)
            read += count
            if progress is not None:
                progress(count)
        seconds = time.perf_counter() - started
    finally:
        consumer.close()
    records_per_s, mib_per_s = _rates(read, size, seconds)
    return ConsumerResult(
        records=read,
        bytes=size,
        seconds=seconds,
        records_per_s=records_per_s,
        mib_per_s=mib_per_s,
        polls=polls,
    )


def run(
    client: Client,
    *,
    records: int,
    record_bytes: int,
    topic: str | None = None,
    partitions: int = 1,
    produced: Progress | None = None,
    consumed: Progress | None = None,
    producer_options: Mapping[str, Any] | None = None,
    consumer_options: Mapping[str, Any] | None = None,
) -> BenchResult:
    """Produce ``records`` values, then read them back; both measured.

    Parameters
    ----------
    client
        Where to run.
    records, record_bytes
        The workload.
    topic
        An existing topic to use (kept); None creates a scratch topic ``bench-<hex>`` with
        ``partitions`` partitions and deletes it afterwards, whatever happens.
    partitions
        Partitions of the scratch topic.
    produced, consumed
        Progress callbacks of `run_producer` and `run_consumer`.
    producer_options, consumer_options
        Passed to `Client.producer` and `Client.consumer`.
    """
    scratch = topic is None
    name = f"bench-{uuid.uuid4().hex[:12]}" if topic is None else topic
    if scratch:
        client.create_topic(name, partitions=partitions)
    try:
        description = client.describe_topic(name)
        # Read back exactly what this run appends, even on a topic that already has records.
        start = {p.partition: p.high_watermark for p in description.partitions}
        producer = run_producer(
            client, name, records, record_bytes, progress=produced, **(producer_options or {})
        )
        consumer = run_consumer(
            client,
            name,
            producer.records,
            start_offsets=start,
            progress=consumed,
            **(consumer_options or {}),
        )
    finally:
        if scratch:
            client.delete_topic(name)
    return BenchResult(
        topic=name,
        partitions=len(description.partitions),
        records=records,
        record_bytes=record_bytes,
        producer=producer,
        consumer=consumer,
    )
