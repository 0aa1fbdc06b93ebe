"""The ledger protocol: how an append moves a partition head, and what must hold before.

Append (per partition, inside one DynamoDB transaction for up to
`MAX_PARTITIONS_PER_TRANSACTION` partitions)::

    condition  head.high_watermark == expected          (the head we planned against)
    put        entry(sk = last_offset)  if absent
    update     head.high_watermark = last_offset + 1, max_timestamp, producers[pid]

Named invariants, checked by `check_write` before every conditional write:

``DENSE``          the entry starts at the head's high watermark and spans exactly its rows
``MONOTONE_TIME``  ``max_timestamp_cum`` never decreases along the log
``SEQUENCE``       an idempotent batch continues its producer's sequence in this partition

On a cancelled transaction the adapter returns the current heads and the caller plans
again from them: the segment is already stored and offsets are not inside it, so a
retry never uploads twice. Readers (`contiguous_run`) only ever return a dense run of
entries from the requested offset, so a batch is never visible without its predecessor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lakelog.errors import InvalidRequestError, OutOfOrderSequenceError, ProducerFencedError
from lakelog.limits import MAX_PRODUCERS_PER_PARTITION
from lakelog.log.chain import PRODUCER_EXPIRATION_MS, InvariantViolation
from lakelog.log.records import Entry, Head, PartitionWrite, ProducerState

__all__ = [
    "PRODUCER_BATCHES_KEPT",
    "PRODUCER_EXPIRATION_MS",
    "Duplicate",
    "InvariantViolation",
    "PlannedBatch",
    "check_producer",
    "check_write",
    "contiguous_run",
    "forgotten_producers",
    "plan_write",
]

PRODUCER_BATCHES_KEPT = 5
"""Recent batches remembered per producer and partition, as Kafka does for in-flight ones."""


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """One partition's batch, encoded in the segment and waiting for offsets."""

    pk: str
    partition: int
    segment_key: str
    row_group: int
    byte_offset: int
    byte_length: int
    segment_size: int
    footer_offset: int
    rows: int
    min_timestamp: int
    max_timestamp: int
    size_bytes: int
    append_time_ms: int
    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The batch was written before: its original base offset and append time."""

    base_offset: int
    append_time_ms: int


def check_producer(
    head: Head, producer_id: int, epoch: int, sequence: int, rows: int, partition: int
) -> Duplicate | None:
    """Decide an idempotent batch against the head: new (None), a duplicate, or an error.

    Raises
    ------
    ProducerFencedError
        A newer epoch of this producer id has written to the partition.
    OutOfOrderSequenceError
        The sequence leaves a gap, or restarts at other than 0 in a new epoch.
    """
    state = head.producers.get(producer_id)
    if state is None or epoch > state.epoch:
        if sequence != 0:
            raise OutOfOrderSequenceError(producer_id, partition, sequence, 0)
        return None
    if epoch < state.epoch:
        raise ProducerFencedError(producer_id, epoch, state.epoch)
    last = sequence + rows - 1
    for first_seq, last_seq, base_offset, append_time in state.batches:
        if (first_seq, last_seq) == (sequence, last):
            return Duplicate(base_offset=base_offset, append_time_ms=append_time)
        if first_seq == sequence:
            raise InvalidRequestError(
                f"producer {producer_id} retried sequence {sequence} to partition {partition} "
                f"with {rows} records; the original batch had {last_seq - first_seq + 1}"
            )
    if sequence == state.last_sequence + 1:
        return None
    if sequence <= state.last_sequence:
        raise InvalidRequestError(
            f"producer {producer_id} sequence {sequence} to partition {partition} is a "
            f"duplicate older than the last {PRODUCER_BATCHES_KEPT} batches"
        )
    raise OutOfOrderSequenceError(producer_id, partition, sequence, state.last_sequence + 1)


def plan_write(head: Head, batch: PlannedBatch, producer: tuple[int, int] | None) -> PartitionWrite:
    """The conditional write that appends ``batch`` after ``head``."""
    base = head.high_watermark
    last = base + batch.rows - 1
    entry = Entry(
        base_offset=base,
        last_offset=last,
        segment_key=batch.segment_key,
        row_group=batch.row_group,
        byte_offset=batch.byte_offset,
        byte_length=batch.byte_length,
        segment_size=batch.segment_size,
        footer_offset=batch.footer_offset,
        min_timestamp=batch.min_timestamp,
        max_timestamp=batch.max_timestamp,
        max_timestamp_cum=max(head.max_timestamp, batch.max_timestamp),
        size_bytes=batch.size_bytes,
    )
    producer_id: int | None = None
    state: ProducerState | None = None
    if producer is not None and batch.sequence is not None:
        producer_id, epoch = producer
        previous = head.producers.get(producer_id)
        kept = previous.batches if previous is not None and previous.epoch == epoch else ()
        last_sequence = batch.sequence + batch.rows - 1
        state = ProducerState(
            epoch=epoch,
            last_sequence=last_sequence,
            batches=(
                *kept[-(PRODUCER_BATCHES_KEPT - 1) :],
                (batch.sequence, last_sequence, base, batch.append_time_ms),
            ),
        )
    expired = forgotten_producers(head, producer_id, batch.append_time_ms)
    write = PartitionWrite(
        pk=batch.pk,
        expected_high_watermark=head.high_watermark,
        new_high_watermark=last + 1,
        new_max_timestamp=entry.max_timestamp_cum,
        entry=entry,
        producer_id=producer_id,
        producer_state=state,
        expired_producers=expired,
    )
    check_write(head, write, batch.rows)
    return write


def _last_used_ms(state: ProducerState) -> int:
    return state.batches[-1][3] if state.batches else -1


def forgotten_producers(head: Head, producer_id: int | None, now_ms: int) -> tuple[int, ...]:
    """The producers an append by ``producer_id`` (None: not idempotent) removes from ``head``.

    Those idle for `PRODUCER_EXPIRATION_MS`, and then the least recently used (oldest last
    batch, lowest id first on a tie) until the head keeps at most
    `lakelog.limits.MAX_PRODUCERS_PER_PARTITION` producers, the writing one included. The
    writing producer is never forgotten. A forgotten producer's next batch with a sequence
    above 0 is refused with `OutOfOrderSequenceError` (ADR 0004).
    """
    others = sorted(
        (_last_used_ms(known), pid) for pid, known in head.producers.items() if pid != producer_id
    )
    room = MAX_PRODUCERS_PER_PARTITION - (producer_id is not None)
    idle = {pid for used, pid in others if used < now_ms - PRODUCER_EXPIRATION_MS}
    kept = [pid for _, pid in others if pid not in idle]
    evicted = set(kept[: max(0, len(kept) - room)])
    return tuple(sorted(idle | evicted))


def check_write(head: Head, write: PartitionWrite, rows: int) -> None:
    """Raise `InvariantViolation` unless ``write`` keeps every named invariant."""
    entry = write.entry
    if rows < 1 or entry.base_offset != head.high_watermark or entry.record_count != rows:
        raise InvariantViolation(
            "DENSE",
            f"entry [{entry.base_offset}, {entry.last_offset}] of {rows} rows after "
            f"high watermark {head.high_watermark}",
        )
    if write.new_high_watermark != entry.last_offset + 1:
        raise InvariantViolation("DENSE", "high watermark must move to last_offset + 1")
    if entry.max_timestamp_cum < head.max_timestamp:
        raise InvariantViolation("MONOTONE_TIME", "max_timestamp_cum went backwards")
    state = write.producer_state
    if state is not None and write.producer_id is not None:
        previous = head.producers.get(write.producer_id)
        first_seq = state.batches[-1][0]
        continues = previous is not None and previous.epoch == state.epoch
        expected = previous.last_sequence + 1 if continues and previous else 0
        if first_seq != expected:
            raise InvariantViolation(
                "SEQUENCE", f"sequence {first_seq} does not follow {expected - 1}"
            )


def contiguous_run(entries: Sequence[Entry], offset: int) -> list[Entry]:
    """The entries that form a dense run starting with the batch that holds ``offset``.

    Entries after a gap are dropped: a reader must never see a batch without its
    predecessor, even if a query observed a later transaction before an earlier one.
    """
    run: list[Entry] = []
    expected = offset
    for entry in entries:
        starts_here = entry.base_offset == expected or (not run and entry.base_offset <= expected)
        if not starts_here or entry.last_offset < expected:
            break
        run.append(entry)
        expected = entry.last_offset + 1
    return run
