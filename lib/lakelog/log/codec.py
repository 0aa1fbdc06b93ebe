"""Segment codec: records <-> one Parquet object per flush (L0) or per merged run (L1).

Segment format, version 2 (any Parquet reader can open a segment). Two levels share it:

- **L0** (flush segments, ``lakelog.level = "L0"``): one append request's records, one row
  group per partition; offsets are not stored (the chain item gives them).
- **L1** (merged segments, ``lakelog.level = "L1"``, written by the compactor): consecutive
  records of **one** partition in several row groups, with an ``offset`` column, so a query
  engine reading the bucket sees each record's place in its log.

L0 schema

================  =================================  ==========================================
column            Parquet / Arrow type               meaning
================  =================================  ==========================================
``partition``     INT32 / int32, required            partition of the row group's batch
``timestamp``     INT64 TIMESTAMP(MILLIS, UTC) /     record timestamp (given by the producer or
                  timestamp[ms, tz=UTC], required    the append time)
``key``           BYTE_ARRAY / binary, optional      record key; null when the record has none
``value``         BYTE_ARRAY / binary, optional      record value; null is a tombstone
``headers``       LIST<STRUCT<key: STRING required,  record headers in order; empty list when none
                  value: BYTE_ARRAY optional>>,      (the list's element struct is optional in
                  required                           Parquet terms; lakelog never writes null)
================  =================================  ==========================================

L1 schema: the same columns with ``offset`` after ``partition``

================  =================================  ==========================================
column            Parquet / Arrow type               meaning
================  =================================  ==========================================
``partition``     INT32 / int32, required            the segment's partition (one per segment)
``offset``        INT64 / int64, required            the record's offset in its partition
``timestamp``     as in L0                           as in L0
``key``           as in L0                           as in L0
``value``         as in L0                           as in L0
``headers``       as in L0                           as in L0
================  =================================  ==========================================

Rows of a row group are the records of one batch in offset order: the record at row ``i``
of the row group a chain item's batch (L0) has offset ``base_offset + i``. In L1 the
``offset`` column gives each row's offset, ascending through the segment: dense as the
merge writes them, with gaps once key compaction dropped records (ADR 0013, 6), so L1
readers take offsets from that column. File key-value metadata: ``lakelog.format = "2"``
(ledger v2's segments: row groups contiguous from byte 4 in the order written; readers
refuse any other format), ``lakelog.topic_id`` and ``lakelog.level`` (``"L0"`` or
``"L1"``). Statistics are written for ``partition``, ``timestamp`` and (L1) ``offset``
only; every page carries a CRC32 checksum that readers verify; no page index, no bloom
filter, so each row group's column chunks are contiguous and lie before the footer.

A reader that holds the footer (cached per segment key) needs only the row group's byte
range to decode it: `SegmentReader.read_rows`.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lakelog.errors import CorruptSegmentError
from lakelog.limits import record_size
from lakelog.types import Header

__all__ = [
    "FORMAT_VERSION",
    "L1_SCHEMA",
    "SCHEMA",
    "EncodedSegment",
    "RowGroupLocation",
    "SegmentBuilder",
    "SegmentReader",
    "SegmentRow",
    "record_size",
]

FORMAT_VERSION = "2"

_HEADER_TYPE = pa.struct(
    [pa.field("key", pa.string(), nullable=False), pa.field("value", pa.binary())]
)
SCHEMA = pa.schema(
    [
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", pa.list_(_HEADER_TYPE), nullable=False),
    ]
)
L1_SCHEMA = pa.schema(
    [SCHEMA.field("partition"), pa.field("offset", pa.int64(), nullable=False)]
    + [SCHEMA.field(name) for name in SCHEMA.names[1:]]
)
_SCHEMAS = {"L0": SCHEMA, "L1": L1_SCHEMA}
_READ_COLUMNS = ("timestamp", "key", "value", "headers")
_COMPRESSION = {"zstd": "zstd", "snappy": "snappy", "lz4": "lz4", "none": "none"}
_FOOTER_TRAILER = 8  # 4-byte little-endian footer length + b"PAR1"


@dataclass(frozen=True, slots=True)
class SegmentRow:
    """One decoded record, without its offset (the ledger entry gives that)."""

    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]


@dataclass(frozen=True, slots=True)
class RowGroupLocation:
    """Where one partition's batch landed in a segment."""

    partition: int
    row_group: int
    byte_offset: int
    byte_length: int
    rows: int
    min_timestamp: int
    max_timestamp: int


@dataclass(frozen=True, slots=True)
class EncodedSegment:
    """An encoded segment and the location of each row group in it."""

    body: bytes
    row_groups: list[RowGroupLocation]
    footer_offset: int

    @property
    def size(self) -> int:
        """Length of the object in bytes."""
        return len(self.body)


class SegmentBuilder:
    """Accumulates batches and encodes them into one segment, one row group each.

    Parameters
    ----------
    topic_id
        Id of the topic the segment belongs to (written to the file metadata).
    compression
        ``zstd``, ``snappy``, ``lz4`` or ``none``.
    level
        ``"L0"``: a flush segment (one batch per partition). ``"L1"``: a merged segment,
        whose batches each give their ``base_offset`` (stored in the ``offset`` column).
    """

    def __init__(self, topic_id: str, compression: str = "zstd", level: str = "L0") -> None:
        if compression not in _COMPRESSION:
            raise ValueError(f"unknown compression {compression!r}")
        if level not in _SCHEMAS:
            raise ValueError(f"unknown segment level {level!r}")
        self._level = level
        self._schema = _SCHEMAS[level]
        self._topic_id = topic_id
        self._compression = _COMPRESSION[compression]
        self._batches: list[tuple[int, pa.Table]] = []

    def add_batch(
        self,
        partition: int,
        timestamps: Sequence[int],
        keys: Sequence[bytes | None],
        values: Sequence[bytes | None],
        headers: Sequence[Sequence[Header]],
        base_offset: int | None = None,
        offsets: Sequence[int] | None = None,
    ) -> None:
        """Add one partition's batch; the columns are parallel sequences of equal length.

        ``base_offset`` (L1 segments only, where it or ``offsets`` is required) is the
        offset of the batch's first record, the others following densely; ``offsets``
        gives each record's offset instead (ascending, gaps allowed: key compaction's).
        """
        rows = len(timestamps)
        if rows == 0:
            raise ValueError("a batch needs at least one record")
        if (base_offset is None and offsets is None) != (self._level == "L0"):
            raise ValueError(f"a base offset is given for L1 batches only, not {self._level}")
        if offsets is not None and (
            len(offsets) != rows or any(b <= a for a, b in itertools.pairwise(offsets))
        ):
            raise ValueError("offsets must be ascending, one per record")
        header_offsets = [0]
        header_keys: list[str] = []
        header_values: list[bytes | None] = []
        for record_headers in headers:
            for name, data in record_headers:
                header_keys.append(name)
                header_values.append(data)
            header_offsets.append(len(header_keys))
        header_array = pa.ListArray.from_arrays(
            pa.array(header_offsets, pa.int32()),
            pa.StructArray.from_arrays(
                [pa.array(header_keys, pa.string()), pa.array(header_values, pa.binary())],
                fields=list(_HEADER_TYPE),
            ),
            type=SCHEMA.field("headers").type,
        )
        columns = [
            pa.array([partition] * rows, pa.int32()),
            pa.array(timestamps, pa.int64()).cast(SCHEMA.field("timestamp").type),
            pa.array(keys, pa.binary()),
            pa.array(values, pa.binary()),
            header_array,
        ]
        if offsets is not None:
            columns.insert(1, pa.array(offsets, pa.int64()))
        elif base_offset is not None:
            columns.insert(1, pa.array(range(base_offset, base_offset + rows), pa.int64()))
        table = pa.Table.from_arrays(columns, schema=self._schema)
        self._batches.append((partition, table))

    def build(self) -> EncodedSegment:
        """Encode every added batch, in the order added, one row group each."""
        if not self._batches:
            raise ValueError("a segment needs at least one batch")
        sink = io.BytesIO()
        schema = self._schema.with_metadata(
            {
                "lakelog.format": FORMAT_VERSION,
                "lakelog.topic_id": self._topic_id,
                "lakelog.level": self._level,
            }
        )
        with pq.ParquetWriter(
            sink,
            schema,
            compression=self._compression,
            use_dictionary=False,
            write_statistics=["partition", "timestamp"]
            + (["offset"] if self._level == "L1" else []),
            write_page_index=False,
            write_page_checksum=True,
        ) as writer:
            for _, table in self._batches:
                writer.write_table(table, row_group_size=max(table.num_rows, 1))
        body = sink.getvalue()
        metadata = pq.read_metadata(pa.BufferReader(body))
        locations = []
        for index, (partition, table) in enumerate(self._batches):
            start, end = _row_group_span(metadata.row_group(index))
            timestamps = table.column("timestamp").cast(pa.int64())
            bounds = pc.min_max(timestamps)
            locations.append(
                RowGroupLocation(
                    partition=partition,
                    row_group=index,
                    byte_offset=start,
                    byte_length=end - start,
                    rows=table.num_rows,
                    min_timestamp=bounds["min"].as_py(),
                    max_timestamp=bounds["max"].as_py(),
                )
            )
        return EncodedSegment(body=body, row_groups=locations, footer_offset=_footer_offset(body))


def _row_group_span(row_group: Any) -> tuple[int, int]:
    start, end = None, 0
    for column in range(row_group.num_columns):
        chunk = row_group.column(column)
        first = (
            chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
        )
        start = first if start is None else min(start, first)
        end = max(end, first + chunk.total_compressed_size)
    return int(start or 0), end


def _footer_offset(body: bytes) -> int:
    if len(body) < 12 or body[-4:] != b"PAR1":
        raise ValueError("not a Parquet file")
    return len(body) - _FOOTER_TRAILER - int.from_bytes(body[-8:-4], "little")


class _SparseFile(io.RawIOBase):
    """A read-only file of ``size`` bytes of which only some ranges are present."""

    def __init__(self, key: str, size: int, pieces: dict[int, bytes]) -> None:
        super().__init__()
        self._key = key
        self._size = size
        self._pieces = sorted(pieces.items())
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._pos + size, self._size)
        for start, data in self._pieces:
            if start <= self._pos and end <= start + len(data):
                chunk = data[self._pos - start : end - start]
                self._pos = end
                return chunk
        raise CorruptSegmentError(
            self._key, f"bytes [{self._pos}, {end}) lie outside the ranges read"
        )

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


class SegmentReader:
    """Decodes row groups of one segment given its footer and the row groups' bytes.

    Parameters
    ----------
    key
        Segment key (for error messages).
    size
        Length of the object.
    footer_offset
        Where the footer starts (``size - 8 - footer length``).
    footer
        Bytes ``[footer_offset, size)`` of the object.
    """

    def __init__(self, key: str, size: int, footer_offset: int, footer: bytes) -> None:
        self.key = key
        self.size = size
        self.footer_offset = footer_offset
        self._footer = footer
        try:
            if len(footer) != size - footer_offset or footer[-4:] != b"PAR1":
                raise ValueError("footer does not end in PAR1")
            # The footer alone, behind the leading magic, is a valid Parquet "file" to
            # parse the metadata from; its offsets still refer to the whole object.
            self.metadata = pq.read_metadata(pa.BufferReader(b"PAR1" + footer))
            schema = self.metadata.schema.to_arrow_schema()
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise CorruptSegmentError(key, str(exc)) from None
        stored_level = (self.metadata.metadata or {}).get(b"lakelog.level", b"L0")
        expected = _SCHEMAS.get(stored_level.decode("ascii", "replace"))
        if expected is None or not schema.remove_metadata().equals(expected):
            raise CorruptSegmentError(key, f"unexpected schema {schema} for level {stored_level}")
        self.level = stored_level.decode()
        """``"L0"`` (flush) or ``"L1"`` (merged), from the file metadata."""
        stored = (self.metadata.metadata or {}).get(b"lakelog.format")
        if stored != FORMAT_VERSION.encode():
            raise CorruptSegmentError(
                key, f"segment format {stored!r}; this version reads {FORMAT_VERSION!r} only"
            )

    @classmethod
    def from_bytes(cls, key: str, body: bytes) -> SegmentReader:
        """A reader over a whole segment held in memory."""
        try:
            footer_offset = _footer_offset(body)
        except ValueError as exc:
            raise CorruptSegmentError(key, str(exc)) from None
        return cls(key, len(body), footer_offset, body[footer_offset:])

    def row_group_span(self, row_group: int) -> tuple[int, int]:
        """Bytes ``[start, end)`` of ``row_group`` in the object."""
        return _row_group_span(self.metadata.row_group(row_group))

    def read_ahead_end(self, start: int, end: int, limit: int) -> int:
        """Where a read that must cover ``[start, end)`` may stop to take whole row groups
        up to ``limit``: the last row group end at or below ``limit`` (``end`` at least)."""
        ends = [
            span[1]
            for span in map(self.row_group_span, range(self.num_row_groups))
            if span[0] >= start and span[1] <= limit
        ]
        return max([end, *ends])

    @property
    def num_row_groups(self) -> int:
        """Row groups (batches) in the segment."""
        return int(self.metadata.num_row_groups)

    def read_rows(
        self, row_group: int, data: bytes, data_offset: int, start: int = 0, limit: int = -1
    ) -> list[SegmentRow]:
        """Decode rows ``start .. start + limit`` of ``row_group``.

        ``data`` holds the object's bytes from ``data_offset``; it must cover the row group.
        """
        group = self._read_group(row_group, data, data_offset, _READ_COLUMNS)
        if start or limit >= 0:
            group = group.slice(start, None if limit < 0 else limit)
        return self._rows(group)

    def read_offset_rows(
        self, row_group: int, data: bytes, data_offset: int
    ) -> list[tuple[int, SegmentRow]]:
        """Every row of an L1 segment's ``row_group`` with its offset (the ``offset``
        column), in order; `CorruptSegmentError` if the segment has no such column."""
        if self.level != "L1":
            raise CorruptSegmentError(self.key, "no offset column (not an L1 segment)")
        group = self._read_group(row_group, data, data_offset, ("offset", *_READ_COLUMNS))
        offsets = group.column("offset").to_pylist()
        return list(zip(offsets, self._rows(group), strict=True))

    def _read_group(
        self, row_group: int, data: bytes, data_offset: int, columns: Sequence[str]
    ) -> pa.Table:
        if not 0 <= row_group < self.num_row_groups:
            raise CorruptSegmentError(self.key, f"no row group {row_group}")
        source = _SparseFile(
            self.key, self.size, {data_offset: data, self.footer_offset: self._footer}
        )
        try:
            parquet = pq.ParquetFile(
                pa.PythonFile(source, mode="r"),
                metadata=self.metadata,
                page_checksum_verification=True,
            )
            return parquet.read_row_group(row_group, columns=list(columns))
        except CorruptSegmentError:
            raise
        except (pa.ArrowException, ValueError, OSError, TypeError) as exc:
            raise CorruptSegmentError(self.key, str(exc)) from None

    def _rows(self, group: pa.Table) -> list[SegmentRow]:
        try:
            timestamps = group.column("timestamp").cast(pa.int64()).to_pylist()
            keys = group.column("key").to_pylist()
            values = group.column("value").to_pylist()
            headers = group.column("headers").to_pylist()
            return [
                SegmentRow(
                    timestamp_ms=ts,
                    key=key,
                    value=value,
                    headers=tuple((h["key"], h["value"]) for h in hdrs) if hdrs else (),
                )
                for ts, key, value, hdrs in zip(timestamps, keys, values, headers, strict=True)
            ]
        except (pa.ArrowException, ValueError, OSError, TypeError) as exc:
            # UnicodeDecodeError is a ValueError: corrupt bytes in a string column.
            raise CorruptSegmentError(self.key, str(exc)) from None

    def read_all(self, body: bytes) -> list[list[SegmentRow]]:
        """Every row group of a segment held whole in ``body``."""
        return [self.read_rows(index, body, 0) for index in range(self.num_row_groups)]
