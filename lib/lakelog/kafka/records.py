"""Kafka record batches (message format v2, "magic 2"): reader and builder (ADR 0016 §3).

A Produce request carries, per partition, ``records``: one or more record batches back to
back. A Fetch response carries the same. Every integer is big-endian; ``varint`` and
``varlong`` are zigzag-encoded base-128 integers (protobuf's ``sint32``/``sint64``).

A record batch::

    int64   base_offset             the first record's offset (the producer sends 0)
    int32   batch_length            bytes after this field, to the batch's end
    int32   partition_leader_epoch  (the gateway writes 0, reads and ignores it)
    int8    magic                   2 (0 and 1 are the older message sets: refused)
    uint32  crc                     CRC-32C (Castagnoli) of every byte from attributes on
    int16   attributes              bits 0-2 compression: 0 none, 1 gzip, 2 snappy,
                                    3 lz4, 4 zstd; bit 3 timestamp type (0 CreateTime,
                                    1 LogAppendTime); bit 4 transactional; bit 5 control
                                    batch; bit 6 delete horizon set
    int32   last_offset_delta       the last record's offset minus base_offset
    int64   base_timestamp          the first record's timestamp (ms since the epoch)
    int64   max_timestamp           the largest timestamp of the batch
    int64   producer_id             -1 when not idempotent
    int16   producer_epoch          -1 when not idempotent
    int32   base_sequence           the first record's sequence in its partition, or -1
    int32   records_count
    bytes   records                 the records; compressed as one block by the codec
                                    of the attributes (the count stays uncompressed)

A record (inside ``records``)::

    varint  length                  bytes after this field, to the record's end
    int8    attributes              unused (0)
    varlong timestamp_delta         timestamp minus base_timestamp
    varint  offset_delta            offset minus base_offset
    varint  key_length              -1 for a null key
    bytes   key
    varint  value_length            -1 for a null value (a tombstone)
    bytes   value
    varint  headers_count
    header  headers[headers_count]:
        varint  key_length          a header key is a UTF-8 string, never null
        bytes   key
        varint  value_length        -1 for a null value
        bytes   value

Compression (cramjam): gzip is RFC 1952; snappy is either a raw snappy block (librdkafka)
or xerial's framing (Java clients: ``\\x82SNAPPY\\x00``, int32 version, int32 compatible
version, then blocks of int32 length + raw snappy block); lz4 is the LZ4 frame format;
zstd is a zstd frame.

A partition's batches decompress to at most `MAX_DECOMPRESSED_BYTES` together, checked as
they are inflated, so that a few KiB that would inflate to gigabytes (a compression bomb)
are refused (`RecordsTooLargeError`, Kafka's MESSAGE_TOO_LARGE) holding no more than that.

`read_batches` reads every batch of a partition's ``records`` (checking sizes and CRCs);
`encode_batch` builds one batch (tests, and answers that carry records). A corrupt batch
raises `CorruptRecordsError`, an unknown codec `UnsupportedCompressionError`, a message
set of magic 0 or 1 `UnsupportedMagicError`: each one error of the partition's answer.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import cramjam
from crc32c import crc32c
from kio.schema.errors import ErrorCode

__all__ = [
    "BATCH_OVERHEAD",
    "CODECS",
    "MAX_DECOMPRESSED_BYTES",
    "BatchRecord",
    "CorruptRecordsError",
    "RecordBatch",
    "RecordLike",
    "RecordsError",
    "RecordsTooLargeError",
    "UnsupportedCompressionError",
    "UnsupportedMagicError",
    "encode_batch",
    "read_batches",
]

CODECS: Final = ("none", "gzip", "snappy", "lz4", "zstd")
"""Compression codecs by their number in a batch's attributes."""

_COMPRESSION_MASK: Final = 0x07
_TIMESTAMP_TYPE: Final = 0x08
_TRANSACTIONAL: Final = 0x10
_CONTROL: Final = 0x20

_PREFIX: Final = struct.Struct(">qiib")  # base_offset, batch_length, leader epoch, magic
_CRC: Final = struct.Struct(">I")
_BODY: Final = struct.Struct(">hiqqqhii")  # attributes .. records_count
_LOG_OVERHEAD: Final = 12  # base_offset and batch_length: not counted in batch_length
_CRC_START: Final = _PREFIX.size + _CRC.size  # attributes start here
BATCH_OVERHEAD: Final = _CRC_START + _BODY.size
"""Bytes of a batch before its first record (61)."""
_MAGIC_AT: Final = 16  # where the magic byte is in every message format
_XERIAL: Final = b"\x82SNAPPY\x00"
_XERIAL_HEADER: Final = struct.Struct(">8sii")
_XERIAL_BLOCK: Final = 32 * 1024

MAX_DECOMPRESSED_BYTES: Final = 16 * 1024 * 1024
"""The most a partition's batches of one Produce request may hold once decompressed
(records with their framing). One append takes at most `MAX_APPEND_BYTES` (6 MiB) of
record bytes in `MAX_APPEND_RECORDS` (10,000) records, whose v2 framing adds under 2 MiB:
anything larger could not be appended anyway."""
_OVERFLOWS: Final = ("failed to write whole buffer", "smaller than required")
"""What cramjam's ``decompress_into`` says when the output does not fit its buffer."""


class RecordsError(Exception):
    """A partition's records that cannot be appended; ``code`` is the Kafka answer."""

    code: ErrorCode = ErrorCode.corrupt_message


class CorruptRecordsError(RecordsError):
    """Sizes that do not add up, a CRC mismatch, bytes that do not decompress."""

    code = ErrorCode.corrupt_message


class RecordsTooLargeError(RecordsError):
    """Batches that decompress to more than `MAX_DECOMPRESSED_BYTES`."""

    code = ErrorCode.message_too_large


class UnsupportedCompressionError(RecordsError):
    """A compression codec number Kafka does not define."""

    code = ErrorCode.unsupported_compression_type


class UnsupportedMagicError(RecordsError):
    """A message set of magic 0 or 1: Produce v3 and later carry magic 2 only, and Kafka's
    brokers refuse the older formats in them as INVALID_RECORD."""

    code = ErrorCode.invalid_record


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One record of a batch: its offset within the batch and absolute timestamp."""

    offset_delta: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """One record batch as read (header fields and decompressed records)."""

    base_offset: int
    partition_leader_epoch: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: tuple[BatchRecord, ...]

    @property
    def compression(self) -> str:
        """The codec the batch was sent with (``none``, ``gzip``, ...)."""
        return CODECS[self.attributes & _COMPRESSION_MASK]

    @property
    def log_append_time(self) -> bool:
        """Whether the batch's timestamps are the broker's (LogAppendTime)."""
        return bool(self.attributes & _TIMESTAMP_TYPE)

    @property
    def transactional(self) -> bool:
        """Whether the batch belongs to a transaction."""
        return bool(self.attributes & _TRANSACTIONAL)

    @property
    def control(self) -> bool:
        """Whether the batch is a control batch (transaction markers)."""
        return bool(self.attributes & _CONTROL)

    @property
    def idempotent(self) -> bool:
        """Whether an idempotent producer sent the batch."""
        return self.producer_id >= 0


class RecordLike(Protocol):
    """What `encode_batch` reads of a record (`lakelog.types.StoredRecord` is one)."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...

    @property
    def timestamp_ms(self) -> int: ...


# --- reading ------------------------------------------------------------------------------


def read_batches(
    data: bytes | memoryview, max_bytes: int = MAX_DECOMPRESSED_BYTES
) -> list[RecordBatch]:
    """Every record batch of one partition's ``records``, in order; their records may
    take ``max_bytes`` once decompressed.

    Raises
    ------
    CorruptRecordsError
        A truncated batch, a size that does not add up, a CRC mismatch, bytes that do not
        decompress, a header key that is not UTF-8.
    RecordsTooLargeError
        Records of more than ``max_bytes`` once decompressed (found before inflating more).
    UnsupportedMagicError
        A message set of magic 0 or 1.
    UnsupportedCompressionError
        A codec number other than 0 to 4.
    """
    view = memoryview(data)
    batches = []
    position = 0
    while position < len(view):
        if len(view) - position < _MAGIC_AT + 1:
            raise CorruptRecordsError(f"{len(view) - position} bytes left: not a record batch")
        magic = view[position + _MAGIC_AT]
        if magic != 2:
            raise UnsupportedMagicError(f"a message set of magic {magic}; only magic 2 is read")
        _, length, _, _ = _PREFIX.unpack_from(view, position)
        end = position + _LOG_OVERHEAD + length
        if length < BATCH_OVERHEAD - _LOG_OVERHEAD or end > len(view):
            raise CorruptRecordsError(f"a record batch of length {length} in {len(view)} bytes")
        batch, size = _read_batch(view[position:end], max_bytes)
        batches.append(batch)
        max_bytes -= size
        position = end
    if not batches:
        raise CorruptRecordsError("no record batch")
    return batches


def _read_batch(view: memoryview, max_bytes: int) -> tuple[RecordBatch, int]:
    """The batch, and the bytes of its records (decompressed): at most ``max_bytes``."""
    base_offset, _, leader_epoch, _ = _PREFIX.unpack_from(view, 0)
    (crc,) = _CRC.unpack_from(view, _PREFIX.size)
    if crc32c(view[_CRC_START:]) != crc:
        raise CorruptRecordsError("record batch CRC mismatch")
    (
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    ) = _BODY.unpack_from(view, _CRC_START)
    codec = attributes & _COMPRESSION_MASK
    if codec >= len(CODECS):
        raise UnsupportedCompressionError(f"compression codec {codec} is not Kafka's")
    body = view[BATCH_OVERHEAD:]
    if codec:
        body = memoryview(_decompress(CODECS[codec], body, max_bytes))
    elif len(body) > max_bytes:
        raise RecordsTooLargeError(_too_large("uncompressed", max_bytes))
    if count < 0:
        raise CorruptRecordsError(f"a record batch of {count} records")
    records = _read_records(body, count, base_timestamp)
    batch = RecordBatch(
        base_offset=base_offset,
        partition_leader_epoch=leader_epoch,
        attributes=attributes,
        last_offset_delta=last_offset_delta,
        base_timestamp=base_timestamp,
        max_timestamp=max_timestamp,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        records=records,
    )
    return batch, len(body)


def _read_records(view: memoryview, count: int, base_timestamp: int) -> tuple[BatchRecord, ...]:
    records = []
    position = 0
    try:
        for _ in range(count):
            length, position = _varint(view, position)
            end = position + length
            if length < 0 or end > len(view):
                raise CorruptRecordsError(f"a record of length {length} past the batch's end")
            position += 1  # attributes
            timestamp_delta, position = _varint(view, position)
            offset_delta, position = _varint(view, position)
            key, position = _bytes(view, position)
            value, position = _bytes(view, position)
            header_count, position = _varint(view, position)
            if header_count < 0:
                raise CorruptRecordsError(f"a record with {header_count} headers")
            headers = []
            for _ in range(header_count):
                name, position = _bytes(view, position)
                data, position = _bytes(view, position)
                if name is None:
                    raise CorruptRecordsError("a record header with a null key")
                headers.append((name.decode(), data))
            if position != end:
                raise CorruptRecordsError("a record's fields do not add up to its length")
            records.append(
                BatchRecord(
                    offset_delta, base_timestamp + timestamp_delta, key, value, tuple(headers)
                )
            )
    except (IndexError, UnicodeDecodeError) as exc:
        raise CorruptRecordsError(f"a truncated or malformed record: {exc}") from None
    if position != len(view):
        raise CorruptRecordsError(f"{len(view) - position} bytes after the batch's last record")
    return tuple(records)


def _varint(view: memoryview, position: int) -> tuple[int, int]:
    """A zigzag varint (or varlong) at ``position``; the value and the next position."""
    result = 0
    shift = 0
    while True:
        byte = view[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), position
        shift += 7
        if shift > 63:
            raise CorruptRecordsError("a varint longer than 10 bytes")


def _bytes(view: memoryview, position: int) -> tuple[bytes | None, int]:
    length, position = _varint(view, position)
    if length < 0:
        return None, position
    end = position + length
    if end > len(view):
        raise CorruptRecordsError(f"a field of {length} bytes past the batch's end")
    return bytes(view[position:end]), end


def _decompress(codec: str, data: memoryview, max_bytes: int) -> bytes:
    """``data`` decompressed, refused once it would pass ``max_bytes``."""
    try:
        if codec == "snappy":
            return _snappy_decompress(data, max_bytes)
        return _decompress_into(codec, data, max_bytes)
    except cramjam.DecompressionError as exc:
        raise CorruptRecordsError(f"{codec} records that do not decompress: {exc}") from None


def _decompress_into(codec: str, data: memoryview, max_bytes: int) -> bytes:
    """gzip, lz4 or zstd ``data`` inflated into a buffer of ``max_bytes``: an anonymous
    mapping, whose pages are only made as the output reaches them."""
    with mmap.mmap(-1, max(1, max_bytes)) as out:
        try:
            size = getattr(cramjam, codec).decompress_into(data, out)
        except cramjam.DecompressionError as exc:
            if max_bytes <= 0 or any(text in str(exc) for text in _OVERFLOWS):
                raise RecordsTooLargeError(_too_large(codec, max_bytes)) from None
            raise
        if size > max_bytes:  # only when max_bytes is 0: the mapping has one byte
            raise RecordsTooLargeError(_too_large(codec, max_bytes))
        return out[:size]


def _snappy_decompress(data: memoryview, max_bytes: int) -> bytes:
    """A raw snappy block, or xerial's framing of several; each block states its size,
    so all are checked against ``max_bytes`` before any is inflated."""
    blocks = _xerial_blocks(data) if bytes(data[: len(_XERIAL)]) == _XERIAL else [data]
    if sum(cramjam.snappy.decompress_raw_len(block) for block in blocks) > max_bytes:
        raise RecordsTooLargeError(_too_large("snappy", max_bytes))
    return b"".join(bytes(cramjam.snappy.decompress_raw(block)) for block in blocks)


def _xerial_blocks(data: memoryview) -> list[memoryview]:
    blocks = []
    position = _XERIAL_HEADER.size
    while position < len(data):
        if position + 4 > len(data):
            raise CorruptRecordsError("a truncated xerial snappy block")
        (size,) = struct.unpack_from(">i", data, position)
        position += 4
        if size < 0 or position + size > len(data):
            raise CorruptRecordsError(f"a xerial snappy block of {size} bytes past the end")
        blocks.append(data[position : position + size])
        position += size
    return blocks


def _too_large(codec: str, max_bytes: int) -> str:
    return (
        f"{codec} records of more than the {max_bytes:,} bytes left of a partition's "
        f"{MAX_DECOMPRESSED_BYTES:,}"
    )


# --- building ------------------------------------------------------------------------------


def encode_batch(
    base_offset: int,
    records: Sequence[RecordLike],
    *,
    offsets: Sequence[int] | None = None,
    compression: str = "none",
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = 0,
) -> bytes:
    """One record batch of ``records`` (CreateTime timestamps).

    ``offsets`` are the records' absolute offsets (a compacted log has gaps); dense from
    ``base_offset`` when not given. ``compression`` is one of `CODECS` (snappy is written
    in xerial's framing, which every client reads).

    Raises
    ------
    ValueError
        No records, an unknown codec, or offsets that do not match the records.
    """
    if not records:
        raise ValueError("a record batch holds at least one record")
    if compression not in CODECS:
        raise ValueError(f"unknown compression {compression!r}; one of {CODECS}")
    if offsets is None:
        offsets = range(base_offset, base_offset + len(records))
    if len(offsets) != len(records):
        raise ValueError("one offset per record")
    base_timestamp = records[0].timestamp_ms
    max_timestamp = max(record.timestamp_ms for record in records)
    body = bytearray()
    for offset, record in zip(offsets, records, strict=True):
        body += _encode_record(record, offset - base_offset, record.timestamp_ms - base_timestamp)
    codec = CODECS.index(compression)
    payload = bytes(body) if codec == 0 else _compress(compression, bytes(body))
    attributes = codec
    after_crc = (
        _BODY.pack(
            attributes,
            offsets[-1] - base_offset,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            len(records),
        )
        + payload
    )
    length = len(after_crc) + _CRC_START - _LOG_OVERHEAD
    prefix = _PREFIX.pack(base_offset, length, partition_leader_epoch, 2)
    return prefix + _CRC.pack(crc32c(after_crc)) + after_crc


def _encode_record(record: RecordLike, offset_delta: int, timestamp_delta: int) -> bytes:
    fields = bytearray(b"\0")
    fields += _zigzag(timestamp_delta)
    fields += _zigzag(offset_delta)
    for data in (record.key, record.value):
        fields += _encode_bytes(data)
    fields += _zigzag(len(record.headers))
    for name, data in record.headers:
        fields += _encode_bytes(name.encode())
        fields += _encode_bytes(data)
    return _zigzag(len(fields)) + bytes(fields)


def _encode_bytes(data: bytes | None) -> bytes:
    if data is None:
        return _zigzag(-1)
    return _zigzag(len(data)) + bytes(data)


def _zigzag(value: int) -> bytes:
    encoded = (value << 1) ^ (value >> 63)
    out = bytearray()
    while encoded > 0x7F:
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7
    out.append(encoded)
    return bytes(out)


def _compress(codec: str, data: bytes) -> bytes:
    if codec == "gzip":
        return bytes(cramjam.gzip.compress(data))
    if codec == "snappy":
        out = bytearray(_XERIAL_HEADER.pack(_XERIAL, 1, 1))
        for start in range(0, len(data), _XERIAL_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(data[start : start + _XERIAL_BLOCK]))
            out += struct.pack(">i", len(block)) + block
        return bytes(out)
    if codec == "lz4":
        return bytes(cramjam.lz4.compress(data))
    return bytes(cramjam.zstd.compress(data))
