"""Record batches of Fetch replies, read back by kio's reader (written from Kafka's
specification, not by us): offsets with gaps, null versus empty, headers, and the CRC."""

from __future__ import annotations

import pytest
from kio.records.readers import read_batch

from lakelog.kafka.batches import MAX_BATCH_RECORDS, encode_batch, encode_batches, encode_records
from lakelog.types import StoredRecord


def _read_all(data: bytes) -> list[tuple[int, bytes | None, bytes | None, tuple[object, ...]]]:
    """Every record of the batches in ``data``: offset, key, value, headers."""
    seen = []
    offset = 0
    while offset < len(data):
        batch, used = read_batch(memoryview(data), offset)
        offset += used
        seen.extend(
            (
                int(r.offset),
                r.key,
                r.value,
                tuple((h.key.decode() if h.key is not None else None, h.value) for h in r.headers),
            )
            for r in batch.records
        )
    return seen


def test_a_batch_keeps_each_record_at_its_own_offset_across_gaps() -> None:
    records = [
        StoredRecord(0, offset, 1_700_000_000_000 + offset, b"k%d" % offset, b"v")
        for offset in (3, 4, 9, 250, 251)
    ]

    data = encode_batch(records)
    batch, used = read_batch(memoryview(data), 0)

    assert used == len(data)
    assert int(batch.base_offset) == 3
    assert int(batch.last_offset_delta) == 248
    assert [int(r.offset) for r in batch.records] == [3, 4, 9, 250, 251]


def test_null_and_empty_keys_values_and_header_values_stay_apart() -> None:
    records = [
        StoredRecord(0, 0, 5, None, None),
        StoredRecord(0, 1, 5, b"", b""),
        StoredRecord(0, 2, 5, b"k", b"\x00\xff", (("a", None), ("b", b""), ("é", b"\x80"))),
    ]

    assert _read_all(encode_records(records)) == [
        (0, None, None, ()),
        (1, b"", b"", ()),
        (2, b"k", b"\x00\xff", (("a", None), ("b", b""), ("é", b"\x80"))),
    ]


def test_timestamps_may_go_back_within_a_batch() -> None:
    # the batch's base timestamp is its first record's; a later, older one has a negative delta
    records = [StoredRecord(0, 0, 10_000, None, b"a"), StoredRecord(0, 1, 4_000, None, b"b")]

    batch, _ = read_batch(memoryview(encode_batch(records)), 0)

    assert int(batch.base_timestamp) == 10_000
    assert int(batch.max_timestamp) == 10_000


def test_a_corrupted_batch_fails_its_crc() -> None:
    data = bytearray(encode_batch([StoredRecord(0, 0, 1, b"k", b"value")]))
    data[-1] ^= 0xFF
    with pytest.raises(ValueError, match="Checksum"):
        read_batch(memoryview(bytes(data)), 0)


def test_many_records_are_cut_into_batches_in_order() -> None:
    records = [StoredRecord(0, i, i, None, b"%d" % i) for i in range(2 * MAX_BATCH_RECORDS + 1)]

    batches = encode_batches(records)

    assert len(batches) == 3
    assert [offset for offset, *_ in _read_all(b"".join(batches))] == list(range(len(records)))


def test_a_batch_needs_a_record() -> None:
    with pytest.raises(ValueError, match="at least one record"):
        encode_batch([])
    assert encode_records([]) == b""
