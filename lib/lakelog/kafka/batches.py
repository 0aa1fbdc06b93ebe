"""Records as Kafka record batches (magic 2) for Fetch replies (ADR 0016 §4).

A batch is, big-endian::

    int64  base_offset             the first record's offset
    int32  batch_length            bytes after this field
    int32  partition_leader_epoch  0
    int8   magic                   2
    uint32 crc                     CRC32C of everything after it
    int16  attributes              0: uncompressed, create time, not transactional
    int32  last_offset_delta       last record's offset - base_offset
    int64  base_timestamp          the first record's timestamp
    int64  max_timestamp
    int64  producer_id             -1
    int16  producer_epoch          -1
    int32  base_sequence           -1
    int32  record count
    records

and a record is zigzag varints: ``length``, ``attributes`` (int8 0), ``timestamp_delta``,
``offset_delta``, the key and the value (length -1 for null), the header count and each
header's key (UTF-8) and value (length -1 for null). Each record carries its own offset
delta, so the gaps key compaction leaves between offsets stay gaps; a null key, value or
header value stays null and an empty one stays empty.

The batches are written here rather than with ``kio.records``' writer, which takes
timestamps as datetimes and builds each record in its own buffer: the reply is encoded on
the event loop, once per record fetched.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

import crc32c

from lakelog.types import StoredRecord

__all__ = ["MAX_BATCH_RECORDS", "encode_batch", "encode_batches", "encode_records"]

MAX_BATCH_RECORDS: Final = 1000
"""Records in one batch at most; a partition's records are cut into batches of this many
(a consumer that stops inside a batch re-reads from its position, not the batch's start)."""

_HEAD: Final = struct.Struct(">qiibI")
_BODY_HEAD: Final = struct.Struct(">hiqqqhii")
_NO_PRODUCER: Final = -1


def _varint(value: int, out: bytearray) -> None:
    """Append ``value`` as a zigzag varint (Kafka's varint and varlong)."""
    unsigned = (value << 1) ^ (value >> 63)
    while unsigned >= 0x80:
        out.append((unsigned & 0x7F) | 0x80)
        unsigned >>= 7
    out.append(unsigned)


def _data(data: bytes | None, out: bytearray) -> None:
    """Append a nullable byte string: its length (-1 for None), then its bytes."""
    if data is None:
        _varint(-1, out)
    else:
        _varint(len(data), out)
        out += data


def _record(record: StoredRecord, base_offset: int, base_timestamp: int, out: bytearray) -> None:
    body = bytearray(b"\0")  # attributes
    _varint(record.timestamp_ms - base_timestamp, body)
    _varint(record.offset - base_offset, body)
    _data(record.key, body)
    _data(record.value, body)
    _varint(len(record.headers), body)
    for name, value in record.headers:
        _data(name.encode(), body)
        _data(value, body)
    _varint(len(body), out)
    out += body


def encode_batch(records: Sequence[StoredRecord]) -> bytes:
    """One uncompressed batch of ``records`` (at least one, ascending offsets)."""
    if not records:
        raise ValueError("a record batch holds at least one record")
    first, last = records[0], records[-1]
    base_offset, base_timestamp = first.offset, first.timestamp_ms
    body = bytearray(_BODY_HEAD.size)
    _BODY_HEAD.pack_into(
        body,
        0,
        0,
        last.offset - base_offset,
        base_timestamp,
        max(record.timestamp_ms for record in records),
        _NO_PRODUCER,
        _NO_PRODUCER,
        _NO_PRODUCER,
        len(records),
    )
    for record in records:
        _record(record, base_offset, base_timestamp, body)
    # batch_length counts the epoch (4), magic (1) and crc (4) before the body
    head = _HEAD.pack(base_offset, len(body) + 9, 0, 2, crc32c.crc32c(body))
    return head + bytes(body)


def encode_batches(records: Sequence[StoredRecord]) -> list[bytes]:
    """``records`` (ascending offsets) as batches of at most `MAX_BATCH_RECORDS` each."""
    return [
        encode_batch(records[start : start + MAX_BATCH_RECORDS])
        for start in range(0, len(records), MAX_BATCH_RECORDS)
    ]


def encode_records(records: Sequence[StoredRecord]) -> bytes:
    """The ``records`` field of a Fetch reply's partition: its batches back to back."""
    return b"".join(encode_batches(records))
