"""The ledger protocol without storage: planning writes, named invariants, producer checks."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lakelog.errors import InvalidRequestError, OutOfOrderSequenceError, ProducerFencedError
from lakelog.limits import MAX_PRODUCERS_PER_PARTITION
from lakelog.log.ledger import (
    PRODUCER_BATCHES_KEPT,
    PRODUCER_EXPIRATION_MS,
    Duplicate,
    InvariantViolation,
    PlannedBatch,
    check_producer,
    check_write,
    contiguous_run,
    forgotten_producers,
    plan_write,
)
from lakelog.log.records import Entry, Head, PartitionWrite, ProducerState

PK = "p#topic#0"
PRODUCER = 17


def planned(
    rows: int,
    *,
    min_ts: int = 100,
    max_ts: int = 200,
    sequence: int | None = None,
    append_time_ms: int = 1_000,
    segment_key: str = "segments/topic/L0/0000000000001-a.parquet",
) -> PlannedBatch:
    return PlannedBatch(
        pk=PK,
        partition=0,
        segment_key=segment_key,
        row_group=2,
        byte_offset=4,
        byte_length=300,
        segment_size=1_000,
        footer_offset=700,
        rows=rows,
        min_timestamp=min_ts,
        max_timestamp=max_ts,
        size_bytes=300,
        append_time_ms=append_time_ms,
        sequence=sequence,
    )


def apply(head: Head, write: PartitionWrite) -> Head:
    """What the DynamoDB transaction does to the head when its condition holds."""
    assert write.expected_high_watermark == head.high_watermark
    producers = dict(head.producers)
    if write.producer_id is not None and write.producer_state is not None:
        producers[write.producer_id] = write.producer_state
    return Head(
        high_watermark=write.new_high_watermark,
        log_start_offset=head.log_start_offset,
        size_bytes=head.size_bytes + write.entry.size_bytes,
        max_timestamp=write.new_max_timestamp,
        producers=producers,
    )


def entry(base: int, last: int, max_cum: int = 0) -> Entry:
    return Entry(
        base_offset=base,
        last_offset=last,
        segment_key="s",
        row_group=0,
        byte_offset=4,
        byte_length=10,
        segment_size=100,
        footer_offset=50,
        min_timestamp=0,
        max_timestamp=max_cum,
        max_timestamp_cum=max_cum,
        size_bytes=10,
    )


def head_after(*batches: tuple[int, int], epoch: int = 0, start: Head | None = None) -> Head:
    """A head after idempotent batches ``(sequence, rows)`` of PRODUCER, in order."""
    head = start or Head()
    for index, (sequence, rows) in enumerate(batches):
        batch = planned(rows, sequence=sequence, append_time_ms=1_000 + index)
        head = apply(head, plan_write(head, batch, (PRODUCER, epoch)))
    return head


# plan_write -------------------------------------------------------------------------------


def test_plan_write_on_an_empty_partition_starts_at_offset_zero() -> None:
    write = plan_write(Head(), planned(3), None)

    assert write.pk == PK
    assert write.expected_high_watermark == 0
    assert (write.entry.base_offset, write.entry.last_offset) == (0, 2)
    assert write.new_high_watermark == 3
    assert write.producer_id is None
    assert write.producer_state is None


def test_plan_write_produces_dense_offsets_from_the_high_watermark() -> None:
    # Given a partition whose high watermark is 42
    head = Head(high_watermark=42, log_start_offset=40, max_timestamp=5)
    ranges = []

    # When batches of several sizes are planned and applied one after the other
    for rows in (1, 5, 2, 10):
        write = plan_write(head, planned(rows), None)
        ranges.append((write.entry.base_offset, write.entry.last_offset))
        head = apply(head, write)

    # Then they tile the offsets from 42 without gap or overlap
    assert ranges == [(42, 42), (43, 47), (48, 49), (50, 59)]
    assert head.high_watermark == 60
    assert head.log_start_offset == 40


def test_plan_write_copies_where_the_batch_lives() -> None:
    batch = planned(4, min_ts=7, max_ts=9)

    written = plan_write(Head(high_watermark=3), batch, None).entry

    assert written.segment_key == batch.segment_key
    assert (written.row_group, written.byte_offset, written.byte_length) == (2, 4, 300)
    assert (written.segment_size, written.footer_offset) == (1_000, 700)
    assert (written.min_timestamp, written.max_timestamp) == (7, 9)
    assert written.size_bytes == 300
    assert written.record_count == 4


def test_max_timestamp_cum_is_monotone_along_the_log() -> None:
    # Given batches whose own maximum timestamps go up and down
    head = Head()
    cums = []
    for max_ts in (100, 50, 300, 299, 10, 301):
        write = plan_write(head, planned(1, min_ts=0, max_ts=max_ts), None)
        cums.append(write.entry.max_timestamp_cum)
        assert write.new_max_timestamp == write.entry.max_timestamp_cum
        assert write.entry.max_timestamp == max_ts  # the batch's own maximum is kept
        head = apply(head, write)

    # Then the cumulative maximum never decreases
    assert cums == [100, 100, 300, 300, 300, 301]
    assert head.max_timestamp == 301


def test_plan_write_records_the_producer_batch() -> None:
    write = plan_write(Head(high_watermark=10), planned(3, sequence=0, append_time_ms=77), (5, 2))

    assert write.producer_id == 5
    assert write.producer_state == ProducerState(
        epoch=2, last_sequence=2, batches=((0, 2, 10, 77),)
    )


def test_plan_write_keeps_only_the_last_batches_of_a_producer() -> None:
    # Given more idempotent batches than the partition remembers
    head = head_after(*[(seq, 1) for seq in range(PRODUCER_BATCHES_KEPT + 3)])

    state = head.producers[PRODUCER]

    # Then only the newest PRODUCER_BATCHES_KEPT are kept, newest last
    assert len(state.batches) == PRODUCER_BATCHES_KEPT
    assert [b[0] for b in state.batches] == list(range(3, PRODUCER_BATCHES_KEPT + 3))
    assert state.last_sequence == PRODUCER_BATCHES_KEPT + 2


def test_plan_write_in_a_new_epoch_forgets_the_old_epochs_batches() -> None:
    head = head_after((0, 2), (2, 2), epoch=0)

    write = plan_write(head, planned(1, sequence=0), (PRODUCER, 1))

    assert write.producer_state is not None
    assert write.producer_state.epoch == 1
    assert write.producer_state.batches == ((0, 0, 4, 1_000),)


# check_write: named invariants ----------------------------------------------------------


def _full_head(now_ms: int = 5_000) -> Head:
    """A head remembering the most producers it may: ids 100.., the lower the older."""
    return Head(
        producers={
            100 + i: ProducerState(0, 0, ((0, 0, i, now_ms - 1_000 + i),))
            for i in range(MAX_PRODUCERS_PER_PARTITION)
        }
    )


def test_a_new_producer_on_a_full_head_forgets_the_least_recently_used() -> None:
    head = _full_head()

    write = plan_write(head, planned(1, sequence=0, append_time_ms=5_000), (PRODUCER, 0))

    assert write.expired_producers == (100,)
    after = write.applied_to(head)
    assert len(after.producers) == MAX_PRODUCERS_PER_PARTITION
    assert PRODUCER in after.producers


def test_a_known_producer_on_a_full_head_forgets_no_one() -> None:
    head = _full_head()
    known = 100 + MAX_PRODUCERS_PER_PARTITION // 2

    write = plan_write(head, planned(1, sequence=1, append_time_ms=5_000), (known, 0))

    assert write.expired_producers == ()


def test_producers_are_forgotten_down_to_the_bound_and_idle_ones_always() -> None:
    # Given a head over the bound (written under a larger one), one producer idle too long
    head = _full_head()
    producers = dict(head.producers)
    producers[1] = ProducerState(0, 0, ((0, 0, 0, 0),))
    producers[2] = ProducerState(0, 0, ((0, 0, 0, 4_990),))
    crowded = replace(head, producers=producers)
    now = 4_000 + PRODUCER_EXPIRATION_MS  # only producer 1 is idle that long

    forgotten = forgotten_producers(crowded, None, now)

    # Then the idle one goes, and the oldest until the bound holds; a non-idempotent
    # append needs no room for itself
    assert forgotten == (1, 100)
    assert forgotten_producers(crowded, PRODUCER, now) == (1, 100, 101)


def good_write(head: Head, rows: int = 3) -> PartitionWrite:
    return plan_write(head, planned(rows), None)


def test_check_write_accepts_what_plan_write_builds() -> None:
    head = Head(high_watermark=5, max_timestamp=150)

    check_write(head, good_write(head), 3)


def test_entry_not_starting_at_the_high_watermark_violates_dense() -> None:
    head = Head(high_watermark=5)
    write = good_write(head)
    shifted = replace(write, entry=replace(write.entry, base_offset=6, last_offset=8))

    with pytest.raises(InvariantViolation, match="DENSE") as caught:
        check_write(head, replace(shifted, new_high_watermark=9), 3)

    assert caught.value.invariant == "DENSE"


def test_entry_overlapping_the_log_violates_dense() -> None:
    head = Head(high_watermark=5)
    write = good_write(head)
    overlapping = replace(write, entry=replace(write.entry, base_offset=4, last_offset=6))

    with pytest.raises(InvariantViolation, match="DENSE"):
        check_write(head, replace(overlapping, new_high_watermark=7), 3)


def test_entry_spanning_other_than_its_rows_violates_dense() -> None:
    head = Head(high_watermark=5)
    write = good_write(head)

    with pytest.raises(InvariantViolation, match="DENSE"):
        check_write(head, write, 4)


def test_empty_batch_violates_dense() -> None:
    head = Head()
    write = good_write(head, rows=1)
    empty = replace(write, entry=replace(write.entry, last_offset=-1), new_high_watermark=0)

    with pytest.raises(InvariantViolation, match="DENSE"):
        check_write(head, empty, 0)


def test_high_watermark_not_moving_to_last_offset_plus_one_violates_dense() -> None:
    head = Head(high_watermark=5)
    write = good_write(head)

    with pytest.raises(InvariantViolation, match="DENSE"):
        check_write(head, replace(write, new_high_watermark=write.new_high_watermark + 1), 3)


def test_max_timestamp_cum_going_backwards_violates_monotone_time() -> None:
    head = Head(high_watermark=5, max_timestamp=500)
    write = good_write(head)
    backwards = replace(write, entry=replace(write.entry, max_timestamp_cum=499))

    with pytest.raises(InvariantViolation, match="MONOTONE_TIME") as caught:
        check_write(head, backwards, 3)

    assert caught.value.invariant == "MONOTONE_TIME"


def test_producer_batch_skipping_a_sequence_violates_sequence() -> None:
    head = head_after((0, 3))  # last_sequence 2
    write = plan_write(head, planned(2, sequence=3), (PRODUCER, 0))
    assert write.producer_state is not None
    skipping = replace(
        write,
        producer_state=replace(
            write.producer_state,
            last_sequence=5,
            batches=(*write.producer_state.batches[:-1], (4, 5, 3, 1_000)),
        ),
    )

    with pytest.raises(InvariantViolation, match="SEQUENCE") as caught:
        check_write(head, skipping, 2)

    assert caught.value.invariant == "SEQUENCE"


def test_new_producer_epoch_not_starting_at_zero_violates_sequence() -> None:
    head = head_after((0, 3), epoch=0)
    bad = replace(
        plan_write(head, planned(1, sequence=0), (PRODUCER, 1)),
        producer_state=ProducerState(epoch=1, last_sequence=3, batches=((3, 3, 3, 1_000),)),
    )

    with pytest.raises(InvariantViolation, match="SEQUENCE"):
        check_write(head, bad, 1)


def test_plan_write_refuses_a_sequence_that_does_not_continue() -> None:
    # plan_write checks its own output: a caller that skipped check_producer is stopped
    head = head_after((0, 3))

    with pytest.raises(InvariantViolation, match="SEQUENCE"):
        plan_write(head, planned(1, sequence=7), (PRODUCER, 0))


def test_invariant_violation_is_never_mistaken_for_bad_input() -> None:
    # A broken invariant is a bug in lakelog, not a 4xx: it is not a LakelogError
    violation = InvariantViolation("DENSE", "detail")

    assert not isinstance(violation, InvalidRequestError)
    assert str(violation) == "DENSE: detail"


# check_producer ---------------------------------------------------------------------------


def test_new_producer_starting_at_zero_is_accepted() -> None:
    assert check_producer(Head(), PRODUCER, 0, 0, 3, 0) is None


def test_new_producer_must_start_at_sequence_zero() -> None:
    with pytest.raises(OutOfOrderSequenceError) as caught:
        check_producer(Head(), PRODUCER, 0, 4, 1, 2)

    assert (caught.value.sequence, caught.value.expected) == (4, 0)
    assert caught.value.partition == 2
    assert caught.value.producer_id == PRODUCER


def test_next_sequence_is_accepted() -> None:
    head = head_after((0, 3), (3, 2))

    assert check_producer(head, PRODUCER, 0, 5, 4, 0) is None


def test_sequence_gap_raises_out_of_order_sequence() -> None:
    head = head_after((0, 3))  # next expected: 3

    with pytest.raises(OutOfOrderSequenceError) as caught:
        check_producer(head, PRODUCER, 0, 4, 1, 0)

    assert caught.value.expected == 3
    assert caught.value.code == "out_of_order_sequence"
    assert isinstance(caught.value, InvalidRequestError)  # a 400: nothing was written


def test_stale_epoch_is_fenced() -> None:
    head = head_after((0, 1), epoch=3)

    with pytest.raises(ProducerFencedError) as caught:
        check_producer(head, PRODUCER, 2, 1, 1, 0)

    assert (caught.value.epoch, caught.value.current_epoch) == (2, 3)
    assert caught.value.code == "producer_fenced"


def test_stale_epoch_is_fenced_even_when_its_batch_was_written_before() -> None:
    head = head_after((0, 1), epoch=0)
    head = head_after((0, 1), epoch=1, start=head)

    with pytest.raises(ProducerFencedError):
        check_producer(head, PRODUCER, 0, 0, 1, 0)


def test_newer_epoch_restarts_at_sequence_zero() -> None:
    head = head_after((0, 5), epoch=0)

    assert check_producer(head, PRODUCER, 1, 0, 2, 0) is None
    with pytest.raises(OutOfOrderSequenceError) as caught:
        check_producer(head, PRODUCER, 1, 5, 2, 0)
    assert caught.value.expected == 0


def test_retried_batch_is_a_duplicate_with_its_original_base_offset() -> None:
    # Given three batches at offsets 0..2, 3..6 and 7
    head = head_after((0, 3), (3, 4), (7, 1))

    # When the middle one is sent again
    duplicate = check_producer(head, PRODUCER, 0, 3, 4, 0)

    # Then it is recognised, with its original offset and append time
    assert duplicate == Duplicate(base_offset=3, append_time_ms=1_001)


def test_every_remembered_batch_is_answered_as_a_duplicate() -> None:
    batches = [(seq, 1) for seq in range(PRODUCER_BATCHES_KEPT + 2)]
    head = head_after(*batches)

    remembered = batches[-PRODUCER_BATCHES_KEPT:]
    for sequence, rows in remembered:
        duplicate = check_producer(head, PRODUCER, 0, sequence, rows, 0)
        assert duplicate is not None
        assert duplicate.base_offset == sequence  # one record per batch from offset 0


def test_duplicate_older_than_the_remembered_batches_is_rejected() -> None:
    # Given six batches: the first is no longer remembered
    head = head_after(*[(seq, 1) for seq in range(PRODUCER_BATCHES_KEPT + 1)])

    # When it is retried
    with pytest.raises(InvalidRequestError, match="older than the last 5 batches") as caught:
        check_producer(head, PRODUCER, 0, 0, 1, 0)

    # Then it is refused as an old duplicate, not as a sequence gap
    assert type(caught.value) is InvalidRequestError


def test_retry_with_a_different_batch_size_is_not_a_duplicate() -> None:
    head = head_after((0, 3))

    with pytest.raises(InvalidRequestError):
        check_producer(head, PRODUCER, 0, 0, 2, 0)


def test_producers_are_tracked_independently() -> None:
    head = head_after((0, 3))

    assert check_producer(head, PRODUCER + 1, 0, 0, 1, 0) is None
    with pytest.raises(OutOfOrderSequenceError):
        check_producer(head, PRODUCER + 1, 0, 3, 1, 0)


# contiguous_run -----------------------------------------------------------------------------


def test_contiguous_run_returns_every_dense_entry_from_the_offset() -> None:
    entries = [entry(0, 4), entry(5, 9), entry(10, 14)]

    assert contiguous_run(entries, 0) == entries


def test_contiguous_run_starts_with_the_batch_that_holds_the_offset() -> None:
    # Query(sk >= 7) returns the batch 5..9 first
    entries = [entry(5, 9), entry(10, 14)]

    assert contiguous_run(entries, 7) == entries
    assert contiguous_run(entries, 9) == entries
    assert contiguous_run(entries[1:], 10) == [entry(10, 14)]


def test_contiguous_run_stops_at_an_overlapping_entry() -> None:
    # Given a batch 3..6 observed after 0..4: the log is not dense there
    entries = [entry(0, 4), entry(3, 6), entry(7, 9)]

    assert contiguous_run(entries, 2) == [entry(0, 4)]


def test_contiguous_run_stops_at_a_gap() -> None:
    # Given a later batch observed without its predecessor 5..9
    entries = [entry(0, 4), entry(10, 14), entry(15, 20)]

    assert contiguous_run(entries, 2) == [entry(0, 4)]


def test_contiguous_run_is_empty_when_the_first_entry_does_not_hold_the_offset() -> None:
    assert contiguous_run([entry(10, 14)], 5) == []
    assert contiguous_run([entry(0, 4)], 5) == []
    assert contiguous_run([], 0) == []
