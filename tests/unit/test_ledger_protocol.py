"""Per-partition entries read as a dense run (`contiguous_run`): how the compactor's L1
entries will be read (ADR 0012, 1.5)."""

from __future__ import annotations

from lakelog.log.ledger import contiguous_run
from lakelog.log.records import Entry


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
