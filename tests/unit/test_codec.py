"""Segment codec: records <-> one Parquet object, read back by lakelog and by other readers.

The module docstring of `lakelog.log.codec` is the contract: column names, Arrow and Parquet
types, nullability, the file key-value metadata and "any Parquet reader can open a segment".
DuckDB and plain pyarrow.parquet play the part of those other readers.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakelog.errors import CorruptSegmentError
from lakelog.log.codec import (
    FORMAT_VERSION,
    L1_SCHEMA,
    SCHEMA,
    EncodedSegment,
    RowGroupLocation,
    SegmentBuilder,
    SegmentReader,
    SegmentRow,
    record_size,
)
from lakelog.types import Header

COMPRESSIONS = ["zstd", "snappy", "lz4", "none"]

NullableHeader = tuple[str, bytes | None]
"""A header as the codec stores it: the value may be null (``lakelog.types.Header`` says
``bytes`` only, though appends accept and segments keep ``None`` values)."""

TOPIC_ID = "0123456789abcdef0123456789abcdef"


@dataclass
class Batch:
    """One partition's batch as parallel columns, the way `SegmentBuilder.add_batch` takes it."""

    partition: int
    timestamps: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    headers: list[list[NullableHeader]] = field(default_factory=list)

    def add(
        self,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[NullableHeader] | None = None,
    ) -> Batch:
        self.timestamps.append(timestamp)
        self.keys.append(key)
        self.values.append(value)
        self.headers.append(headers or [])
        return self

    def rows(self) -> list[SegmentRow]:
        return [
            SegmentRow(
                timestamp_ms=ts,
                key=key,
                value=value,
                headers=cast("tuple[Header, ...]", tuple(hdrs)),
            )
            for ts, key, value, hdrs in zip(
                self.timestamps, self.keys, self.values, self.headers, strict=True
            )
        ]


def mixed_batch(partition: int = 3) -> Batch:
    """Every shape a record can take: keys None/empty/bytes, tombstones, odd headers."""
    return (
        Batch(partition)
        .add(1_700_000_000_000, None, b"no key")
        .add(1_700_000_000_001, b"", b"empty key")
        .add(1_700_000_000_002, b"k1", None)  # tombstone
        .add(1_699_999_999_000, b"k2", b"", [("trace", b"abc"), ("none", None)])
        .add(1_700_000_000_003, b"\x00\xff\x80", b"\x00" * 3, [("empty", b""), ("", b"x")])
        .add(0, None, None, [("dup", b"1"), ("dup", b"2")])  # same header twice, in order
        .add(1_700_000_000_004, b"k" * 1000, b"v" * 10_000, [("\u00e9t\u00e9", b"\xff")])
    )


def build(batches: list[Batch], compression: str = "zstd") -> EncodedSegment:
    builder = SegmentBuilder(TOPIC_ID, compression)
    for batch in batches:
        headers = cast("list[list[Header]]", batch.headers)
        builder.add_batch(batch.partition, batch.timestamps, batch.keys, batch.values, headers)
    return builder.build()


def three_partition_segment(compression: str = "zstd") -> tuple[EncodedSegment, list[Batch]]:
    batches = [
        mixed_batch(3),
        Batch(0).add(10, b"a", b"A").add(11, b"b", b"B"),
        Batch(7).add(5, None, b"only"),
    ]
    return build(batches, compression), batches


def footer_of(segment: EncodedSegment) -> bytes:
    return segment.body[segment.footer_offset :]


def reader_of(segment: EncodedSegment, key: str = "seg") -> SegmentReader:
    """A reader built the way the fetch path builds it: from the footer alone."""
    return SegmentReader(key, segment.size, segment.footer_offset, footer_of(segment))


def row_group_bytes(segment: EncodedSegment, location: RowGroupLocation) -> bytes:
    return segment.body[location.byte_offset : location.byte_offset + location.byte_length]


def write_temp(tmp_path: Path, body: bytes, name: str = "segment.parquet") -> Path:
    path = tmp_path / name
    path.write_bytes(body)
    return path


def sql_rows(query: str) -> list[tuple[Any, ...]]:
    """Rows of a DuckDB query (in-memory database)."""
    relation = duckdb.sql(query)
    assert relation is not None
    return relation.fetchall()


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


# Round trip ---------------------------------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_round_trip_keeps_keys_values_tombstones_and_headers(compression: str) -> None:
    # Given a batch with every shape of record
    batch = mixed_batch()

    # When it is encoded and decoded from the whole object
    segment = build([batch], compression)
    decoded = SegmentReader.from_bytes("seg", segment.body).read_all(segment.body)

    # Then every record comes back exactly: None stays None, b"" stays b""
    assert decoded == [batch.rows()]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_each_compression_is_recorded_in_the_file(compression: str) -> None:
    segment = build([mixed_batch()], compression)

    metadata = pq.read_metadata(pa.BufferReader(segment.body))

    expected = {"zstd": "ZSTD", "snappy": "SNAPPY", "lz4": "LZ4", "none": "UNCOMPRESSED"}
    codecs = {metadata.row_group(0).column(c).compression for c in range(metadata.num_columns)}
    assert codecs == {expected[compression]}


def test_unknown_compression_is_rejected() -> None:
    with pytest.raises(ValueError, match="gzip"):
        SegmentBuilder(TOPIC_ID, "gzip")


def test_a_segment_needs_at_least_one_batch() -> None:
    with pytest.raises(ValueError, match="at least one batch"):
        SegmentBuilder(TOPIC_ID).build()


def test_a_batch_needs_at_least_one_record() -> None:
    with pytest.raises(ValueError, match="at least one record"):
        SegmentBuilder(TOPIC_ID).add_batch(0, [], [], [], [])


def test_empty_header_list_and_none_header_value_round_trip() -> None:
    batch = Batch(0).add(1, b"k", b"v", []).add(2, b"k", b"v", [("h", None)])

    segment = build([batch])
    rows = SegmentReader.from_bytes("seg", segment.body).read_all(segment.body)[0]

    expected: tuple[NullableHeader, ...] = (("h", None),)
    assert rows[0].headers == ()
    assert rows[1].headers == expected


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_several_partitions_become_row_groups_in_the_order_added(compression: str) -> None:
    segment, batches = three_partition_segment(compression)

    # Then one row group per batch, in the order added, with its partition and bounds
    assert [loc.row_group for loc in segment.row_groups] == [0, 1, 2]
    assert [loc.partition for loc in segment.row_groups] == [3, 0, 7]
    for location, batch in zip(segment.row_groups, batches, strict=True):
        assert location.rows == len(batch.timestamps)
        assert location.min_timestamp == min(batch.timestamps)
        assert location.max_timestamp == max(batch.timestamps)
    decoded = SegmentReader.from_bytes("seg", segment.body).read_all(segment.body)
    assert decoded == [batch.rows() for batch in batches]


def test_row_group_spans_are_contiguous_and_lie_before_the_footer() -> None:
    segment, _ = three_partition_segment()

    spans = [(loc.byte_offset, loc.byte_offset + loc.byte_length) for loc in segment.row_groups]

    assert spans[0][0] == 4  # right after the leading "PAR1"
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end == start
    assert spans[-1][1] <= segment.footer_offset
    assert segment.size == len(segment.body)
    length = int.from_bytes(segment.body[-8:-4], "little")
    assert segment.footer_offset == segment.size - 8 - length


def test_record_size_counts_key_value_and_utf8_header_bytes() -> None:
    assert record_size(None, None, ()) == 0
    assert record_size(b"", b"", ()) == 0
    assert record_size(b"ab", b"cde", ()) == 5
    headers = cast("list[Header]", [("h", None), ("hh", b"xyz")])
    assert record_size(None, b"v", headers) == 1 + 1 + 2 + 3
    assert record_size(None, None, [("\u00e9", b"")]) == 2  # UTF-8 bytes, not characters


# Ranged reads ---------------------------------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_read_rows_needs_only_the_row_group_range_and_the_footer(compression: str) -> None:
    # Given a segment of three row groups and a reader holding only the footer
    segment, batches = three_partition_segment(compression)
    reader = reader_of(segment)

    # When each row group is decoded from its own byte range only
    for location, batch in zip(segment.row_groups, batches, strict=True):
        data = row_group_bytes(segment, location)
        rows = reader.read_rows(location.row_group, data, location.byte_offset)

        # Then it holds that batch's records
        assert rows == batch.rows()


@pytest.mark.parametrize(
    ("start", "limit"),
    [(0, -1), (0, 0), (0, 1), (2, -1), (2, 3), (6, -1), (6, 10), (7, -1), (3, 100), (0, 7)],
)
def test_read_rows_slices_start_and_limit(start: int, limit: int) -> None:
    batch = mixed_batch()
    segment = build([batch])
    location = segment.row_groups[0]

    rows = reader_of(segment).read_rows(
        0, row_group_bytes(segment, location), location.byte_offset, start, limit
    )

    expected = batch.rows()[start:] if limit < 0 else batch.rows()[start : start + limit]
    assert rows == expected


def test_read_rows_accepts_a_range_that_covers_more_than_the_row_group() -> None:
    segment, batches = three_partition_segment()
    location = segment.row_groups[1]

    # When the caller fetched from the row group to the end of the object in one GET
    data = segment.body[location.byte_offset :]
    rows = reader_of(segment).read_rows(1, data, location.byte_offset)

    assert rows == batches[1].rows()


def test_reading_a_row_group_outside_the_given_ranges_raises_corrupt_segment() -> None:
    # Given only row group 1's bytes
    segment, _ = three_partition_segment()
    location = segment.row_groups[1]
    data = row_group_bytes(segment, location)

    # When row group 0 (which lies elsewhere) is asked for
    with pytest.raises(CorruptSegmentError, match="outside the ranges read") as caught:
        reader_of(segment, key="segments/t/L0/x.parquet").read_rows(0, data, location.byte_offset)

    # Then the error names the segment
    assert caught.value.segment_key == "segments/t/L0/x.parquet"


def test_a_range_shorter_than_the_row_group_raises_corrupt_segment() -> None:
    segment, _ = three_partition_segment()
    location = segment.row_groups[0]
    data = row_group_bytes(segment, location)[:-10]

    with pytest.raises(CorruptSegmentError):
        reader_of(segment).read_rows(0, data, location.byte_offset)


@pytest.mark.parametrize("row_group", [-1, 3, 100])
def test_a_row_group_that_does_not_exist_raises_corrupt_segment(row_group: int) -> None:
    segment, _ = three_partition_segment()

    with pytest.raises(CorruptSegmentError, match=f"no row group {row_group}"):
        reader_of(segment).read_rows(row_group, segment.body, 0)


def test_reader_reports_the_number_of_row_groups() -> None:
    segment, _ = three_partition_segment()

    assert reader_of(segment).num_row_groups == 3


def test_a_footer_that_does_not_match_the_object_size_raises_corrupt_segment() -> None:
    segment, _ = three_partition_segment()

    with pytest.raises(CorruptSegmentError):
        SegmentReader("seg", segment.size + 1, segment.footer_offset, footer_of(segment))
    with pytest.raises(CorruptSegmentError):
        SegmentReader("seg", segment.size, segment.footer_offset, footer_of(segment)[:-1])


# Corrupt bytes ------------------------------------------------------------------------------


def decode_or_corrupt(body: bytes) -> list[list[SegmentRow]] | None:
    """Decode a whole object; None when it raised `CorruptSegmentError` (any other escapes)."""
    try:
        return SegmentReader.from_bytes("seg", body).read_all(body)
    except CorruptSegmentError:
        return None


def test_a_flipped_byte_in_a_data_page_fails_the_page_checksum() -> None:
    # Given an uncompressed segment whose value bytes are then altered in place
    builder = SegmentBuilder(TOPIC_ID, "none")
    builder.add_batch(0, [1], [None], [b"VALUEMARK" * 4], [[]])
    body = builder.build().body
    index = body.index(b"VALUEMARK")
    altered = body[:index] + b"X" + body[index + 1 :]

    # Then reading it raises a named error instead of returning other bytes
    assert decode_or_corrupt(altered) is None


def test_a_header_key_that_is_not_utf8_raises_corrupt_segment() -> None:
    # Given an uncompressed segment whose header key bytes are made invalid UTF-8
    builder = SegmentBuilder(TOPIC_ID, "none")
    builder.add_batch(0, [1], [None], [b"v"], [[("KEYMARK", b"x")]])
    body = builder.build().body
    index = body.index(b"KEYMARK")
    altered = body[:index] + b"\xff" + body[index + 1 :]

    # Then decoding it raises a named error, not UnicodeDecodeError
    assert decode_or_corrupt(altered) is None


def test_every_truncation_raises_corrupt_segment() -> None:
    segment, _ = three_partition_segment()

    for length in range(segment.size):
        assert decode_or_corrupt(segment.body[:length]) is None, length


def test_missing_data_before_an_intact_footer_raises_corrupt_segment() -> None:
    # Given an object that lost bytes in its middle but still ends in a valid footer
    segment, _ = three_partition_segment()
    body = segment.body[:100] + footer_of(segment)

    # Then the row groups the footer points at cannot be decoded
    assert decode_or_corrupt(body) is None


@pytest.mark.parametrize("position", ["magic", "length", "first", "middle"])
def test_flipped_structural_footer_bytes_raise_corrupt_segment(position: str) -> None:
    segment, _ = three_partition_segment()
    index = {
        "magic": segment.size - 1,
        "length": segment.size - 6,
        "first": segment.footer_offset,
        "middle": segment.footer_offset + 1,
    }[position]
    body = bytearray(segment.body)
    body[index] ^= 0xFF

    assert decode_or_corrupt(bytes(body)) is None


@pytest.mark.parametrize("mask", [0xFF, 0x01])
def test_any_flipped_footer_byte_is_detected_or_harmless(mask: int) -> None:
    # Given every single-byte corruption of the footer
    segment, batches = three_partition_segment("none")
    expected = [batch.rows() for batch in batches]

    for index in range(segment.footer_offset, segment.size):
        body = bytearray(segment.body)
        body[index] ^= mask

        # Then decoding raises CorruptSegmentError (no other exception type, no crash)
        # or yields exactly the original records (the byte was in unused metadata)
        decoded = decode_or_corrupt(bytes(body))
        assert decoded is None or decoded == expected, index


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"PAR1",
        b"PAR1PAR1",
        b"not parquet at all",
        b'{"records": []}',
        b"PAR1" + b"\x00" * 64 + b"PAR1",
        b"PAR1" + b"\x00" * 8 + b"\xff\xff\xff\x7fPAR1",  # footer longer than the object
        b"PAR1" + b"\xff" * 64 + (64).to_bytes(4, "little") + b"PAR1",
        bytes(range(256)) * 4,
    ],
    ids=[
        "empty",
        "magic-only",
        "two-magics",
        "text",
        "json",
        "zero-footer",
        "huge-footer-length",
        "garbage-footer",
        "binary",
    ],
)
def test_bytes_that_are_not_parquet_raise_corrupt_segment(body: bytes) -> None:
    assert decode_or_corrupt(body) is None


def _schema_variants() -> dict[str, pa.Table]:
    headers_type = SCHEMA.field("headers").type
    good = {
        "partition": pa.array([0], pa.int32()),
        "timestamp": pa.array([1], pa.timestamp("ms", tz="UTC")),
        "key": pa.array([None], pa.binary()),
        "value": pa.array([b"v"], pa.binary()),
        "headers": pa.array([[]], headers_type),
    }
    return {
        "unrelated": pa.table({"a": [1, 2, 3]}),
        "missing-column": pa.table({k: v for k, v in good.items() if k != "headers"}),
        "extra-column": pa.table({**good, "offset": pa.array([0], pa.int64())}),
        "timestamp-in-us": pa.table(
            {**good, "timestamp": pa.array([1], pa.timestamp("us", tz="UTC"))}
        ),
        "timestamp-without-tz": pa.table({**good, "timestamp": pa.array([1], pa.timestamp("ms"))}),
        "value-as-string": pa.table({**good, "value": pa.array(["v"], pa.string())}),
        "partition-int64": pa.table({**good, "partition": pa.array([0], pa.int64())}),
        "nullable-partition": pa.table(good),  # pa.table makes every field nullable
        "columns-reordered": pa.table({k: good[k] for k in reversed(list(good))}),
    }


@pytest.mark.parametrize("variant", sorted(_schema_variants()))
def test_parquet_with_another_schema_raises_corrupt_segment(variant: str) -> None:
    # Given a perfectly valid Parquet file written by pyarrow, but not in the segment layout
    body = parquet_bytes(_schema_variants()[variant])
    assert pq.read_table(pa.BufferReader(body)).num_rows >= 1

    # Then lakelog refuses it by name
    with pytest.raises(CorruptSegmentError, match="unexpected schema"):
        SegmentReader.from_bytes("seg", body)


def test_parquet_with_exactly_the_segment_schema_written_by_pyarrow_is_readable() -> None:
    # The other side of the schema check: the layout (and the format version every segment
    # names in its metadata) is all that matters, not the writer
    table = pa.Table.from_pylist(
        [{"partition": 0, "timestamp": 5, "key": None, "value": b"v", "headers": []}],
        schema=SCHEMA.with_metadata({"lakelog.format": FORMAT_VERSION}),
    )

    rows = decode_or_corrupt(parquet_bytes(table))

    assert rows == [[SegmentRow(timestamp_ms=5, key=None, value=b"v", headers=())]]


def test_corrupt_segment_error_carries_key_and_reason() -> None:
    with pytest.raises(CorruptSegmentError) as caught:
        SegmentReader.from_bytes("segments/abc/L0/1.parquet", b"junk")

    assert caught.value.segment_key == "segments/abc/L0/1.parquet"
    assert caught.value.reason
    assert caught.value.code == "corrupt_segment"
    assert "segments/abc/L0/1.parquet" in str(caught.value)


# Independent readers: the documented schema -----------------------------------------------


EXPECTED_PARQUET_COLUMNS = [
    # (path, physical type, logical type prefix, max definition level, max repetition level)
    ("partition", "INT32", "None", 0, 0),
    ("timestamp", "INT64", "Timestamp(isAdjustedToUTC=true, timeUnit=milliseconds", 0, 0),
    ("key", "BYTE_ARRAY", "None", 1, 0),
    ("value", "BYTE_ARRAY", "None", 1, 0),
    ("headers.list.element.key", "BYTE_ARRAY", "String", 2, 1),
    ("headers.list.element.value", "BYTE_ARRAY", "None", 3, 1),
]


def test_pyarrow_sees_the_documented_arrow_schema() -> None:
    segment, _ = three_partition_segment()

    schema = pq.read_schema(pa.BufferReader(segment.body))

    assert schema.names == ["partition", "timestamp", "key", "value", "headers"]
    assert schema.field("partition").type == pa.int32()
    assert not schema.field("partition").nullable
    assert schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert not schema.field("timestamp").nullable
    assert schema.field("key").type == pa.binary()
    assert schema.field("key").nullable
    assert schema.field("value").type == pa.binary()
    assert schema.field("value").nullable
    headers = schema.field("headers")
    assert not headers.nullable
    assert pa.types.is_list(headers.type)
    element = headers.type.value_type
    assert pa.types.is_struct(element)
    assert element.field("key").type == pa.string()
    assert not element.field("key").nullable
    assert element.field("value").type == pa.binary()
    assert element.field("value").nullable
    assert schema.remove_metadata().equals(SCHEMA)


def test_pyarrow_sees_the_documented_parquet_physical_and_logical_types() -> None:
    segment, _ = three_partition_segment()

    parquet_schema = pq.ParquetFile(pa.BufferReader(segment.body)).schema

    columns = [parquet_schema.column(i) for i in range(len(parquet_schema))]
    assert len(columns) == len(EXPECTED_PARQUET_COLUMNS)
    for column, (path, physical, logical, definition, repetition) in zip(
        columns, EXPECTED_PARQUET_COLUMNS, strict=True
    ):
        assert column.path == path
        assert column.physical_type == physical
        assert str(column.logical_type).startswith(logical), (path, column.logical_type)
        assert column.max_definition_level == definition, path
        assert column.max_repetition_level == repetition, path


def test_file_key_value_metadata_names_format_topic_and_level() -> None:
    segment, _ = three_partition_segment()

    metadata = pq.read_metadata(pa.BufferReader(segment.body)).metadata

    assert metadata[b"lakelog.format"] == FORMAT_VERSION.encode() == b"2"
    assert metadata[b"lakelog.topic_id"] == TOPIC_ID.encode()
    assert metadata[b"lakelog.level"] == b"L0"
    lakelog_keys = {key for key in metadata if key.startswith(b"lakelog.")}
    assert lakelog_keys == {b"lakelog.format", b"lakelog.topic_id", b"lakelog.level"}


def test_statistics_only_for_partition_and_timestamp_and_no_dictionary_or_page_index() -> None:
    segment, batches = three_partition_segment()

    metadata = pq.read_metadata(pa.BufferReader(segment.body))

    for index, batch in enumerate(batches):
        row_group = metadata.row_group(index)
        assert row_group.num_rows == len(batch.timestamps)
        stats_set = {}
        for c in range(row_group.num_columns):
            chunk = row_group.column(c)
            stats_set[chunk.path_in_schema] = chunk.is_stats_set
            assert not chunk.has_dictionary_page, chunk.path_in_schema
            assert not chunk.has_column_index, chunk.path_in_schema
            assert not chunk.has_offset_index, chunk.path_in_schema
        assert {path for path, is_set in stats_set.items() if is_set} == {
            "partition",
            "timestamp",
        }
        partition_stats = row_group.column(0).statistics
        assert partition_stats.min == partition_stats.max == batch.partition


def test_pyarrow_reads_the_same_records() -> None:
    segment, batches = three_partition_segment()

    table = pq.read_table(pa.BufferReader(segment.body))

    assert table.num_rows == sum(len(batch.timestamps) for batch in batches)
    rows = table.to_pylist()
    expected = [
        (batch.partition, ts, key, value, [{"key": k, "value": v} for k, v in hdrs])
        for batch in batches
        for ts, key, value, hdrs in zip(
            batch.timestamps, batch.keys, batch.values, batch.headers, strict=True
        )
    ]
    timestamps = table.column("timestamp").cast(pa.int64()).to_pylist()
    got = [
        (row["partition"], ts, row["key"], row["value"], row["headers"])
        for row, ts in zip(rows, timestamps, strict=True)
    ]
    assert got == expected


def test_duckdb_sees_the_documented_types(tmp_path: Path) -> None:
    segment, _ = three_partition_segment()
    path = write_temp(tmp_path, segment.body)

    described = sql_rows(f"DESCRIBE SELECT * FROM read_parquet('{path}')")

    assert [(row[0], row[1]) for row in described] == [
        ("partition", "INTEGER"),
        ("timestamp", "TIMESTAMP WITH TIME ZONE"),
        ("key", "BLOB"),
        ("value", "BLOB"),
        ("headers", 'STRUCT("key" VARCHAR, "value" BLOB)[]'),
    ]


def test_duckdb_sees_required_and_optional_columns_as_documented(tmp_path: Path) -> None:
    segment, _ = three_partition_segment()
    path = write_temp(tmp_path, segment.body)

    rows = sql_rows(
        f"SELECT name, type, repetition_type, converted_type "
        f"FROM parquet_schema('{path}') WHERE name IN "
        f"('partition', 'timestamp', 'key', 'value', 'headers') ORDER BY name"
    )
    leaf_keys = sql_rows(
        f"SELECT name, type, repetition_type, converted_type FROM parquet_schema('{path}') "
        f"WHERE name = 'key' OR name = 'value'"
    )

    by_name = {(name, repetition): (kind, converted) for name, kind, repetition, converted in rows}
    assert by_name[("partition", "REQUIRED")] == ("INT32", None)
    assert by_name[("timestamp", "REQUIRED")] == ("INT64", "TIMESTAMP_MILLIS")
    assert by_name[("key", "OPTIONAL")] == ("BYTE_ARRAY", None)
    assert by_name[("value", "OPTIONAL")] == ("BYTE_ARRAY", None)
    assert by_name[("headers", "REQUIRED")] == (None, "LIST")
    # the header struct's key is a required UTF8 string, its value an optional byte array
    assert ("key", "BYTE_ARRAY", "REQUIRED", "UTF8") in leaf_keys
    assert ("value", "BYTE_ARRAY", "OPTIONAL", None) in leaf_keys


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_duckdb_reads_the_same_records(tmp_path: Path, compression: str) -> None:
    # Given a segment of several partitions in any compression
    segment, batches = three_partition_segment(compression)
    path = write_temp(tmp_path, segment.body)

    # When DuckDB reads it, in file order
    got = sql_rows(
        f"SELECT partition, epoch_ms(timestamp), key, value, headers "
        f"FROM read_parquet('{path}', file_row_number = true) ORDER BY file_row_number"
    )

    # Then it sees exactly what lakelog wrote, nulls and empty values included
    expected: list[tuple[Any, ...]] = [
        (batch.partition, ts, key, value, [{"key": k, "value": v} for k, v in hdrs])
        for batch in batches
        for ts, key, value, hdrs in zip(
            batch.timestamps, batch.keys, batch.values, batch.headers, strict=True
        )
    ]
    assert got == expected


def test_duckdb_reads_the_file_key_value_metadata(tmp_path: Path) -> None:
    segment, _ = three_partition_segment()
    path = write_temp(tmp_path, segment.body)

    rows = sql_rows(f"SELECT key, value FROM parquet_kv_metadata('{path}')")

    metadata = dict(rows)
    assert metadata[b"lakelog.format"] == b"2"
    assert metadata[b"lakelog.topic_id"] == TOPIC_ID.encode()
    assert metadata[b"lakelog.level"] == b"L0"


def test_duckdb_counts_each_partitions_records(tmp_path: Path) -> None:
    segment, batches = three_partition_segment()
    path = write_temp(tmp_path, segment.body)

    counts = dict(
        sql_rows(f"SELECT partition, count(*) FROM read_parquet('{path}') GROUP BY partition")
    )

    assert counts == {batch.partition: len(batch.timestamps) for batch in batches}


def test_a_segment_of_another_format_version_is_refused() -> None:
    segment, _ = three_partition_segment()
    table = pq.read_table(pa.BufferReader(segment.body))
    older = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"lakelog.format": b"1"}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(older, sink)
    body = sink.getvalue().to_pybytes()

    with pytest.raises(CorruptSegmentError, match="format"):
        SegmentReader.from_bytes("segments/t/L0/old.parquet", body)


# L1 (merged) segments ---------------------------------------------------------------------


def l1_segment(compression: str = "zstd") -> tuple[EncodedSegment, list[tuple[int, Batch]]]:
    """An L1 segment of partition 3: two row groups, offsets 100-106 then 107-108."""
    first = mixed_batch(3)
    second = Batch(3).add(20, b"x", b"X", [("h", b"1")]).add(21, None, None)
    builder = SegmentBuilder(TOPIC_ID, compression, level="L1")
    groups = [(100, first), (107, second)]
    for base, batch in groups:
        headers = cast("list[list[Header]]", batch.headers)
        builder.add_batch(3, batch.timestamps, batch.keys, batch.values, headers, base_offset=base)
    return builder.build(), groups


def test_pyarrow_sees_the_documented_l1_schema_and_metadata() -> None:
    segment, _ = l1_segment()

    schema = pq.read_schema(pa.BufferReader(segment.body))

    assert schema.remove_metadata().equals(L1_SCHEMA)
    assert schema.names == ["partition", "offset", "timestamp", "key", "value", "headers"]
    assert not schema.field("offset").nullable
    assert schema.metadata[b"lakelog.level"] == b"L1"
    assert schema.metadata[b"lakelog.format"] == FORMAT_VERSION.encode()


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_duckdb_reads_an_l1_segment_with_each_records_offset(
    tmp_path: Path, compression: str
) -> None:
    # Given an L1 segment of two row groups
    segment, groups = l1_segment(compression)
    path = write_temp(tmp_path, segment.body)

    # When DuckDB reads it
    got = sql_rows(
        f'SELECT partition, "offset", epoch_ms(timestamp), key, value, headers '
        f"FROM read_parquet('{path}') ORDER BY \"offset\""
    )
    level = dict(sql_rows(f"SELECT key, value FROM parquet_kv_metadata('{path}')"))

    # Then every record carries its partition and its dense offset, in order
    expected: list[tuple[Any, ...]] = [
        (3, base + i, ts, key, value, [{"key": k, "value": v} for k, v in hdrs])
        for base, batch in groups
        for i, (ts, key, value, hdrs) in enumerate(
            zip(batch.timestamps, batch.keys, batch.values, batch.headers, strict=True)
        )
    ]
    assert got == expected
    assert level[b"lakelog.level"] == b"L1"


def test_l1_row_groups_are_located_and_read_back_by_the_segment_reader() -> None:
    segment, groups = l1_segment()
    reader = reader_of(segment)

    assert reader.level == "L1"
    assert [(loc.row_group, loc.rows) for loc in segment.row_groups] == [(0, 7), (1, 2)]
    for location, (_, batch) in zip(segment.row_groups, groups, strict=True):
        data = row_group_bytes(segment, location)
        rows = reader.read_rows(location.row_group, data, location.byte_offset)
        assert rows == batch.rows()
        assert location.min_timestamp == min(batch.timestamps)
        assert location.max_timestamp == max(batch.timestamps)


def test_duckdb_uses_l1_offset_statistics_to_find_a_row_group(tmp_path: Path) -> None:
    segment, _ = l1_segment()
    path = write_temp(tmp_path, segment.body)

    stats = sql_rows(
        f"SELECT row_group_id, stats_min, stats_max FROM parquet_metadata('{path}') "
        f"WHERE path_in_schema = 'offset' ORDER BY row_group_id"
    )

    assert [(group, int(low), int(high)) for group, low, high in stats] == [
        (0, 100, 106),
        (1, 107, 108),
    ]


def test_an_l1_batch_needs_its_base_offset_and_an_l0_batch_must_not_have_one() -> None:
    with pytest.raises(ValueError, match="base offset"):
        SegmentBuilder(TOPIC_ID, level="L1").add_batch(0, [1], [None], [b"v"], [[]])
    with pytest.raises(ValueError, match="base offset"):
        SegmentBuilder(TOPIC_ID).add_batch(0, [1], [None], [b"v"], [[]], base_offset=5)
    with pytest.raises(ValueError, match="level"):
        SegmentBuilder(TOPIC_ID, level="L2")


def test_an_l1_schema_under_an_l0_level_is_refused() -> None:
    segment, _ = l1_segment()
    table = pq.read_table(pa.BufferReader(segment.body))
    mislabelled = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"lakelog.level": b"L0"}
    )

    with pytest.raises(CorruptSegmentError, match="unexpected schema"):
        SegmentReader.from_bytes("seg", parquet_bytes(mislabelled))


def test_read_ahead_stops_at_the_last_whole_row_group_within_the_limit() -> None:
    segment, _ = three_partition_segment("none")
    reader = reader_of(segment)
    spans = [reader.row_group_span(i) for i in range(reader.num_row_groups)]
    assert spans == [
        (loc.byte_offset, loc.byte_offset + loc.byte_length) for loc in segment.row_groups
    ]
    (s0, e0), (s1, e1), (_, e2) = spans

    assert reader.read_ahead_end(s0, e0, e1) == e1
    assert reader.read_ahead_end(s0, e0, e1 - 1) == e0  # the next group does not fit whole
    assert reader.read_ahead_end(s1, e1, e2 + 100) == e2
    assert reader.read_ahead_end(s0, e0, s0) == e0  # never less than what must be read


def test_an_l1_batch_with_gaps_stores_and_reads_back_each_rows_offset() -> None:
    # Given the records key compaction kept, at offsets with gaps between them
    batch = Batch(3).add(20, b"a", b"A", [("h", b"1")]).add(21, b"b", None).add(22, None, b"C")
    builder = SegmentBuilder(TOPIC_ID, level="L1")
    headers = cast("list[list[Header]]", batch.headers)
    builder.add_batch(3, batch.timestamps, batch.keys, batch.values, headers, offsets=[5, 9, 40])
    segment = builder.build()
    reader = reader_of(segment)
    (location,) = segment.row_groups

    # When the row group is read with its offsets
    data = row_group_bytes(segment, location)
    rows = reader.read_offset_rows(0, data, location.byte_offset)

    # Then each row comes with the offset it was written at
    assert rows == list(zip([5, 9, 40], batch.rows(), strict=True))


@pytest.mark.parametrize("offsets", [[5, 5, 6], [6, 5, 7], [1, 2]])
def test_l1_offsets_must_ascend_one_per_record(offsets: list[int]) -> None:
    with pytest.raises(ValueError, match="ascending"):
        SegmentBuilder(TOPIC_ID, level="L1").add_batch(
            0, [1, 2, 3], [None] * 3, [b"v"] * 3, [[], [], []], offsets=offsets
        )


def test_offsets_are_read_from_l1_segments_only() -> None:
    segment = build([mixed_batch()])
    location = segment.row_groups[0]

    with pytest.raises(CorruptSegmentError, match="offset column"):
        reader_of(segment).read_offset_rows(0, row_group_bytes(segment, location), 4)
