"""Ledger v2 records for the chain store's contract tests (ADR 0012)."""

from __future__ import annotations

import hashlib
import uuid

from lakelog.log.records import (
    BatchRef,
    ChainItem,
    PartitionMark,
    ProducerRequest,
    ProducerStamp,
    ProducerUpdate,
    TopicProducerState,
)

__all__ = [
    "APPEND_MS",
    "EXPIRES_MS",
    "appended",
    "digest",
    "genesis",
    "new_topic_id",
    "producer_update",
]

APPEND_MS = 1_767_225_600_000
"""An append time: 2026-01-01, 13 digits as every real one."""
EXPIRES_MS = APPEND_MS + 24 * 3600 * 1000
"""When a producer state written at `APPEND_MS` expires (whole seconds: it reads back exactly)."""


def new_topic_id() -> str:
    """A topic id as the catalog draws them: 32 hex digits."""
    return uuid.uuid4().hex


def digest(text: str) -> bytes:
    """An 8-byte request digest."""
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def genesis(partitions: int = 3) -> ChainItem:
    """The genesis item of a topic of ``partitions``."""
    return ChainItem(
        seq=0,
        append_time_ms=APPEND_MS,
        max_timestamp=-1,
        partitions=partitions,
        snapshot=(),
        kind="genesis",
    )


def appended(
    after: ChainItem,
    counts: dict[int, int],
    producer: ProducerStamp | None = None,
    sticky: int | None = None,
) -> ChainItem:
    """The item appending ``counts[p]`` records to each partition ``p`` after ``after``."""
    width = max(after.partitions, len(after.snapshot), *(p + 1 for p in counts))
    batches = tuple(
        BatchRef(
            partition=p,
            record_count=counts[p],
            byte_length=100 * counts[p],
            record_bytes=90 * counts[p],
            max_timestamp=APPEND_MS - 5,
        )
        for p in sorted(counts)
    )
    snapshot = tuple(
        PartitionMark(
            after.mark(p).high_watermark + counts.get(p, 0),
            after.mark(p).cumulative_bytes + 100 * counts.get(p, 0),
        )
        for p in range(width)
    )
    return ChainItem(
        seq=after.seq + 1,
        append_time_ms=APPEND_MS + after.seq + 1,
        max_timestamp=max(after.max_timestamp, APPEND_MS - 5),
        partitions=after.partitions,
        snapshot=snapshot,
        batches=batches,
        segment_id=(APPEND_MS + after.seq).to_bytes(8, "big") + uuid.uuid4().bytes,
        segment_size=4 + sum(b.byte_length for b in batches) + 50,
        footer_offset=4 + sum(b.byte_length for b in batches),
        sticky=sticky,
        producer=producer,
    )


def producer_update(
    producer_id: int,
    epoch: int,
    first: int,
    count: int,
    seq: int,
    *,
    continues: bool,
    now_ms: int = APPEND_MS,
    earlier: tuple[ProducerRequest, ...] = (),
) -> tuple[ProducerStamp, ProducerUpdate]:
    """The stamp and producer update of an idempotent request ``first … first+count-1``."""
    request = ProducerRequest(first, count, seq, digest(f"{producer_id}/{epoch}/{first}"))
    stamp = ProducerStamp(producer_id, epoch, first, count, request.digest)
    state = TopicProducerState(
        producer_id=producer_id,
        epoch=epoch,
        last_sequence=first + count - 1,
        requests=(*earlier, request)[-5:],
        expires_ms=EXPIRES_MS,
    )
    return stamp, ProducerUpdate(state=state, continues=continues, now_ms=now_ms)
