"""Fetch semantics on moto: offsets, limits, list offsets, offsets-for-times, placement."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import duckdb
import pytest

from lakelog import Engine, Record, StoredRecord
from lakelog.log.partitioner import partition_for_key
from lakelog.service.fetch import QUERY_ITEMS
from lakelog.storage.keys import l0_segment_key_from_id, topic_segments_prefix
from lakelog.types import Header
from tests.contract.backends import Backend

NOW_MS = 1_700_000_000_000


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    """An engine whose clock stands still at NOW_MS (the append time of keyless stamps)."""
    return make_engine(sleep=lambda _seconds: None, clock_ms=lambda: NOW_MS)


def nullable_header(name: str, value: bytes | None) -> Header:
    """A header with a possibly null value, which appends accept and fetches return
    (``lakelog.types.Header`` is typed ``tuple[str, bytes]`` only)."""
    return cast(Header, (name, value))


def sql_rows(query: str) -> list[tuple[Any, ...]]:
    """Rows of a DuckDB query (in-memory database)."""
    relation = duckdb.sql(query)
    assert relation is not None
    return relation.fetchall()


def values(records: list[StoredRecord]) -> list[bytes | None]:
    return [record.value for record in records]


def read_all(engine: Engine, topic: str, partition: int, **limits: int) -> list[StoredRecord]:
    """Every record of a partition, following next_offset until the high watermark."""
    records: list[StoredRecord] = []
    offset = 0
    while True:
        result = engine.fetch(topic, partition, offset, **limits)
        records.extend(result.records)
        if result.next_offset == result.high_watermark:
            return records
        assert result.records, "a fetch below the high watermark must make progress"
        offset = result.next_offset


def append_batches(engine: Engine, topic: str, sizes: list[int], partition: int = 0) -> None:
    """Appends batches of the given sizes; record n has value b"n" over the whole partition."""
    n = 0
    for size in sizes:
        engine.append(
            topic, [Record(value=str(n + i).encode(), partition=partition) for i in range(size)]
        )
        n += size


# Offsets ----------------------------------------------------------------------------------------


def test_fetch_returns_records_at_absolute_offsets(engine: Engine) -> None:
    # Given two batches in partition 1 of a topic
    engine.create_topic("orders", partitions=2)
    engine.append("orders", [Record(value=b"a", partition=1), Record(value=b"b", partition=1)])
    engine.append("orders", [Record(value=b"c", partition=1)])

    result = engine.fetch("orders", 1, 0)

    # Then offsets continue across batches and the result says where to read next
    assert [(r.partition, r.offset, r.value) for r in result.records] == [
        (1, 0, b"a"),
        (1, 1, b"b"),
        (1, 2, b"c"),
    ]
    assert (result.topic, result.partition) == ("orders", 1)
    assert result.next_offset == 3
    assert result.high_watermark == 3
    assert result.log_start_offset == 0


def test_fetch_returns_keys_headers_tombstones_and_timestamps_as_appended(engine: Engine) -> None:
    engine.create_topic("orders")
    records = [
        Record(
            value=b"v", key=b"k", headers=(("h", b"1"), nullable_header("h", None)), timestamp_ms=5
        ),
        Record(value=None, key=b"k"),  # tombstone, stamped with the append time
        Record(value=b"", key=b""),
        Record(),
    ]

    acks = engine.append("orders", records)
    fetched = engine.fetch("orders", 0, 0).records

    assert [(r.key, r.value, r.headers, r.timestamp_ms) for r in fetched] == [
        (b"k", b"v", (("h", b"1"), ("h", None)), 5),
        (b"k", None, (), NOW_MS),
        (b"", b"", (), NOW_MS),
        (None, None, (), NOW_MS),
    ]
    assert [ack.timestamp for ack in acks] == [5, NOW_MS, NOW_MS, NOW_MS]
    assert [ack.offset for ack in acks] == [0, 1, 2, 3]


def test_fetch_at_high_watermark_returns_no_records(engine: Engine) -> None:
    engine.create_topic("orders")
    append_batches(engine, "orders", [3])

    result = engine.fetch("orders", 0, 3)

    assert result.records == []
    assert result.next_offset == 3
    assert result.high_watermark == 3


def test_fetch_of_an_empty_partition_at_offset_zero_returns_no_records(engine: Engine) -> None:
    engine.create_topic("orders")

    result = engine.fetch("orders", 0, 0)

    assert (result.records, result.next_offset, result.high_watermark) == ([], 0, 0)


def test_fetch_starting_mid_batch_returns_the_rest_of_it(engine: Engine) -> None:
    engine.create_topic("orders")
    append_batches(engine, "orders", [5, 3])

    result = engine.fetch("orders", 0, 2)

    assert [r.offset for r in result.records] == [2, 3, 4, 5, 6, 7]
    assert values(result.records) == [b"2", b"3", b"4", b"5", b"6", b"7"]
    assert result.next_offset == 8


@pytest.mark.parametrize("offset", [0, 1, 4, 5, 9])
def test_fetch_from_every_kind_of_offset_returns_the_rest_of_the_log(
    engine: Engine, offset: int
) -> None:
    # batches: [0], [1..4], [5..9]
    engine.create_topic("orders")
    append_batches(engine, "orders", [1, 4, 5])

    result = engine.fetch("orders", 0, offset)

    assert [r.offset for r in result.records] == list(range(offset, 10))
    assert values(result.records) == [str(i).encode() for i in range(offset, 10)]


def test_fetch_spanning_many_batches_reads_every_record_once_in_order(engine: Engine) -> None:
    # Given more batches than one ledger query returns
    engine.create_topic("orders")
    sizes = [1, 3, 2] * ((QUERY_ITEMS * 2) // 3 + 2)
    append_batches(engine, "orders", sizes)
    total = sum(sizes)

    # When the partition is read by following next_offset
    records = read_all(engine, "orders", 0)

    # Then every offset comes once, in order, with its own record
    assert [r.offset for r in records] == list(range(total))
    assert values(records) == [str(i).encode() for i in range(total)]


def test_single_fetch_continues_over_several_batches(engine: Engine) -> None:
    engine.create_topic("orders")
    append_batches(engine, "orders", [2, 2, 2])

    result = engine.fetch("orders", 0, 1)

    assert [r.offset for r in result.records] == [1, 2, 3, 4, 5]


# Limits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_records", [1, 2, 3, 4, 7, 10])
def test_fetch_honours_max_records(engine: Engine, max_records: int) -> None:
    engine.create_topic("orders")
    append_batches(engine, "orders", [3, 4])

    result = engine.fetch("orders", 0, 0, max_records=max_records)

    expected = min(max_records, 7)
    assert [r.offset for r in result.records] == list(range(expected))
    assert result.next_offset == expected
    assert result.high_watermark == 7


def test_reading_with_max_records_one_visits_every_offset(engine: Engine) -> None:
    engine.create_topic("orders")
    append_batches(engine, "orders", [3, 1, 2])

    records = read_all(engine, "orders", 0, max_records=1)

    assert [r.offset for r in records] == list(range(6))


def test_fetch_honours_max_bytes(engine: Engine) -> None:
    # Given records of 100 bytes each, in two batches
    engine.create_topic("orders")
    engine.append("orders", [Record(value=bytes([i]) * 100) for i in range(3)])
    engine.append("orders", [Record(value=bytes([i]) * 100) for i in range(3, 6)])

    # Then a fetch returns as many whole records as fit, across batches
    assert len(engine.fetch("orders", 0, 0, max_bytes=250).records) == 2
    assert len(engine.fetch("orders", 0, 0, max_bytes=300).records) == 3
    assert len(engine.fetch("orders", 0, 0, max_bytes=450).records) == 4
    result = engine.fetch("orders", 0, 1, max_bytes=399)
    assert [r.offset for r in result.records] == [1, 2, 3]
    assert result.next_offset == 4


def test_max_bytes_counts_keys_values_and_headers(engine: Engine) -> None:
    engine.create_topic("orders")
    record = Record(key=b"k" * 10, value=b"v" * 20, headers=(("hh", b"x" * 8),))  # 40 bytes
    engine.append("orders", [record] * 5)

    assert len(engine.fetch("orders", 0, 0, max_bytes=120).records) == 3
    assert len(engine.fetch("orders", 0, 0, max_bytes=119).records) == 2


def test_fetch_returns_one_record_even_if_larger_than_max_bytes(engine: Engine) -> None:
    # Given a first record far larger than the fetch's max_bytes
    engine.create_topic("orders")
    engine.append("orders", [Record(value=b"x" * 10_000), Record(value=b"y")])

    result = engine.fetch("orders", 0, 0, max_bytes=10)

    # Then it is returned alone, so a consumer never gets stuck behind it
    assert values(result.records) == [b"x" * 10_000]
    assert result.next_offset == 1


def test_large_record_after_the_first_waits_for_the_next_fetch(engine: Engine) -> None:
    engine.create_topic("orders")
    engine.append("orders", [Record(value=b"a"), Record(value=b"x" * 1000)])

    first = engine.fetch("orders", 0, 0, max_bytes=10)
    second = engine.fetch("orders", 0, first.next_offset, max_bytes=10)

    assert values(first.records) == [b"a"]
    assert values(second.records) == [b"x" * 1000]


def test_max_records_and_max_bytes_together_stop_at_whichever_comes_first(
    engine: Engine,
) -> None:
    engine.create_topic("orders")
    engine.append("orders", [Record(value=b"v" * 10) for _ in range(10)])

    assert len(engine.fetch("orders", 0, 0, max_records=3, max_bytes=1000).records) == 3
    assert len(engine.fetch("orders", 0, 0, max_records=9, max_bytes=50).records) == 5


# List offsets ------------------------------------------------------------------------------------


def test_list_offset_earliest_and_latest(engine: Engine) -> None:
    engine.create_topic("orders", partitions=2)
    assert engine.list_offset("orders", 0, "earliest") == 0
    assert engine.list_offset("orders", 0, "latest") == 0

    append_batches(engine, "orders", [3, 2])

    assert engine.list_offset("orders", 0, "earliest") == 0
    assert engine.list_offset("orders", 0, "latest") == 5
    assert engine.list_offset("orders", 1, "latest") == 0


def test_latest_offset_seen_by_another_engine(make_engine: Callable[..., Engine]) -> None:
    writer, reader = make_engine(), make_engine()
    writer.create_topic("orders")
    assert reader.list_offset("orders", 0, "latest") == 0

    append_batches(writer, "orders", [4])

    assert reader.list_offset("orders", 0, "latest") == 4
    assert reader.fetch("orders", 0, 0).high_watermark == 4


# Offsets for times -------------------------------------------------------------------------------


def append_stamped(engine: Engine, topic: str, batches: list[list[int]]) -> list[int]:
    """Append batches of records with the given timestamps; returns all timestamps in order."""
    for stamps in batches:
        engine.append(topic, [Record(value=b"v", timestamp_ms=ts, partition=0) for ts in stamps])
    return [ts for stamps in batches for ts in stamps]


def first_offset_at_or_after(timestamps: list[int], t: int) -> int | None:
    return next((offset for offset, ts in enumerate(timestamps) if ts >= t), None)


def test_offset_for_time_finds_the_first_offset_with_a_timestamp_at_or_after(
    engine: Engine,
) -> None:
    engine.create_topic("orders")
    append_stamped(engine, "orders", [[100, 200], [300], [400, 500, 600]])

    assert engine.offset_for_time("orders", 0, 0) == 0
    assert engine.offset_for_time("orders", 0, 100) == 0
    assert engine.offset_for_time("orders", 0, 101) == 1
    assert engine.offset_for_time("orders", 0, 300) == 2
    assert engine.offset_for_time("orders", 0, 301) == 3
    assert engine.offset_for_time("orders", 0, 550) == 5
    assert engine.offset_for_time("orders", 0, 600) == 5


def test_offset_for_time_beyond_every_timestamp_is_none(engine: Engine) -> None:
    engine.create_topic("orders")
    append_stamped(engine, "orders", [[100, 200], [300]])

    assert engine.offset_for_time("orders", 0, 301) is None
    assert engine.offset_for_time("orders", 0, 2**62) is None


def test_offset_for_time_on_an_empty_partition_is_none(engine: Engine) -> None:
    engine.create_topic("orders")

    assert engine.offset_for_time("orders", 0, 0) is None


def test_offset_for_time_with_out_of_order_timestamps_inside_a_batch(engine: Engine) -> None:
    # Given one batch whose timestamps go up and down
    engine.create_topic("orders")
    append_stamped(engine, "orders", [[100, 300, 200, 50, 400]])

    # Then the answer is the first offset (not the smallest timestamp) that qualifies
    assert engine.offset_for_time("orders", 0, 150) == 1
    assert engine.offset_for_time("orders", 0, 250) == 1
    assert engine.offset_for_time("orders", 0, 301) == 4
    assert engine.offset_for_time("orders", 0, 50) == 0


def test_offset_for_time_with_out_of_order_timestamps_across_batches(engine: Engine) -> None:
    # Given a later batch whose timestamps are older than an earlier batch's
    engine.create_topic("orders")
    append_stamped(engine, "orders", [[100, 500], [200, 300], [50, 600], [700]])

    assert engine.offset_for_time("orders", 0, 150) == 1  # 500, not the later 200
    assert engine.offset_for_time("orders", 0, 501) == 5
    assert engine.offset_for_time("orders", 0, 650) == 6
    assert engine.offset_for_time("orders", 0, 700) == 6


def test_offset_for_time_matches_a_linear_scan_over_many_batches(engine: Engine) -> None:
    # Given many batches of jittered timestamps (seeded), more than one query page
    rng = random.Random(20240601)
    batches = [
        [1_000 * b + rng.randrange(-1_500, 1_500) for _ in range(rng.randrange(1, 4))]
        for b in range(QUERY_ITEMS * 2 + 3)
    ]
    engine.create_topic("orders")
    timestamps = append_stamped(engine, "orders", [[max(ts, 0) for ts in b] for b in batches])

    # Then binary search over the ledger agrees with scanning every record
    probes = sorted({0, *timestamps[::3], *(ts + 1 for ts in timestamps[1::4]), 10**9})
    for t in probes:
        assert engine.offset_for_time("orders", 0, t) == first_offset_at_or_after(timestamps, t), t


def test_offset_for_time_uses_the_append_time_for_unstamped_records(
    make_engine: Callable[..., Engine],
) -> None:
    clock = {"now": 1_000}
    engine = make_engine(clock_ms=lambda: clock["now"])
    engine.create_topic("orders")
    for now in (1_000, 2_000, 3_000):
        clock["now"] = now
        engine.append("orders", [Record(value=b"v")])

    assert engine.offset_for_time("orders", 0, 1_500) == 1
    assert engine.offset_for_time("orders", 0, 3_000) == 2


# Placement -------------------------------------------------------------------------------------


def test_keyed_records_land_on_kafkas_partition_for_key(engine: Engine) -> None:
    # Given a topic of 7 partitions and many keys
    engine.create_topic("orders", partitions=7)
    keys = [f"customer-{i}".encode() for i in range(60)] + [b"", b"\x00", b"\xff" * 9]

    acks = engine.append("orders", [Record(key=key, value=key) for key in keys])

    # Then each record is on the partition Kafka's default partitioner picks
    assert [ack.partition for ack in acks] == [partition_for_key(key, 7) for key in keys]
    for partition in range(7):
        stored = engine.fetch("orders", partition, 0).records
        assert all(partition_for_key(r.key or b"", 7) == partition for r in stored)


def test_the_same_key_always_lands_on_the_same_partition(engine: Engine) -> None:
    engine.create_topic("orders", partitions=5)

    partitions = {
        engine.append("orders", [Record(key=b"stable", value=b"%d" % i)])[0].partition
        for i in range(5)
    }

    assert partitions == {partition_for_key(b"stable", 5)}


def test_explicit_partition_wins_over_the_key(engine: Engine) -> None:
    engine.create_topic("orders", partitions=4)
    key = b"k"
    other = (partition_for_key(key, 4) + 1) % 4

    [ack] = engine.append("orders", [Record(key=key, value=b"v", partition=other)])

    assert ack.partition == other
    assert engine.fetch("orders", other, 0).records[0].key == key


def test_keyless_records_of_one_append_land_in_one_partition(engine: Engine) -> None:
    engine.create_topic("orders", partitions=6)

    acks = engine.append("orders", [Record(value=b"%d" % i) for i in range(20)])

    assert len({ack.partition for ack in acks}) == 1
    assert [ack.offset for ack in acks] == list(range(20))


def test_successive_keyless_appends_rotate_over_partitions(engine: Engine) -> None:
    engine.create_topic("orders", partitions=4)

    chosen = [engine.append("orders", [Record(value=b"v")])[0].partition for _ in range(8)]

    for previous, current in itertools.pairwise(chosen):
        assert current == (previous + 1) % 4
    assert [p.high_watermark for p in engine.describe_topic("orders").partitions] == [2] * 4


def test_keyless_records_mixed_with_keyed_ones_still_share_one_partition(engine: Engine) -> None:
    engine.create_topic("orders", partitions=5)
    records = [Record(value=b"a"), Record(key=b"k", value=b"b"), Record(value=b"c")]

    acks = engine.append("orders", records)

    assert acks[0].partition == acks[2].partition
    assert acks[1].partition == partition_for_key(b"k", 5)


def test_results_come_in_request_order_for_a_multi_partition_append(engine: Engine) -> None:
    # Given an append whose records interleave three partitions
    engine.create_topic("orders", partitions=3)
    engine.append("orders", [Record(value=b"pre", partition=1)])
    targets = [2, 0, 1, 0, 2, 2, 1]

    acks = engine.append(
        "orders", [Record(value=b"%d" % i, partition=p) for i, p in enumerate(targets)]
    )

    # Then result i describes record i, and each partition's records are dense in request order
    assert [ack.partition for ack in acks] == targets
    assert [ack.offset for ack in acks] == [0, 0, 1, 1, 1, 2, 2]
    assert all(ack.topic == "orders" for ack in acks)
    for ack, index in zip(acks, range(len(targets)), strict=True):
        stored = engine.fetch("orders", ack.partition, ack.offset, max_records=1).records[0]
        assert stored.value == b"%d" % index


def test_append_over_many_partitions_keeps_request_order(engine: Engine) -> None:
    partitions = 60
    engine.create_topic("wide", partitions=partitions)
    targets = [(i * 7) % partitions for i in range(partitions * 2)]

    acks = engine.append(
        "wide", [Record(value=b"%d" % i, partition=p) for i, p in enumerate(targets)]
    )

    assert [ack.partition for ack in acks] == targets
    described = engine.describe_topic("wide").partitions
    assert [p.high_watermark for p in described] == [2] * partitions
    by_partition: dict[int, list[int]] = defaultdict(list)
    for ack in acks:
        by_partition[ack.partition].append(ack.offset)
    assert all(offsets == [0, 1] for offsets in by_partition.values())


# Segments read by DuckDB --------------------------------------------------------------------------


def test_segments_in_the_bucket_read_back_with_duckdb_give_the_same_records(
    engine: Engine, backend: Backend, tmp_path: Path
) -> None:
    # Given a few appends over three partitions, keyed, keyless and explicit, with headers
    topic = engine.create_topic("orders", partitions=3)
    engine.append("orders", [Record(key=b"k%d" % i, value=b"v%d" % i) for i in range(12)])
    engine.append(
        "orders", [Record(value=b"free", headers=(("h", b"1"), nullable_header("n", None)))]
    )
    engine.append("orders", [Record(value=None, key=b"k1", partition=2, timestamp_ms=42)])

    # When every segment object is downloaded and read with DuckDB
    objects, *_ = backend.stores()
    paths: dict[str, Path] = {}
    for index, info in enumerate(objects.list(topic_segments_prefix(topic.topic_id))):
        path = tmp_path / f"segment-{index}.parquet"
        path.write_bytes(objects.get_range(info.key, 0, info.size))
        paths[info.key] = path
    assert len(paths) == 3  # one segment per append

    # Then placing each row at its batch's base offset + row index gives exactly what
    # fetch returns
    for partition in range(3):
        from_duckdb: list[tuple[Any, ...]] = []
        for item in engine.context.ledger.chain(topic.topic_id):
            batch = item.batch(partition)
            if batch is None or item.segment_id is None:
                continue
            key = l0_segment_key_from_id(topic.topic_id, item.segment_id)
            rows = sql_rows(
                f"SELECT epoch_ms(timestamp), key, value, headers "
                f"FROM read_parquet('{paths[key]}', file_row_number = true) "
                f"WHERE partition = {partition} ORDER BY file_row_number"
            )
            assert len(rows) == batch.record_count
            for index, (ts, key_bytes, value, headers) in enumerate(rows):
                pairs = tuple((h["key"], h["value"]) for h in headers)
                from_duckdb.append(
                    (item.base_offset(partition) + index, ts, key_bytes, value, pairs)
                )
        fetched = [
            (r.offset, r.timestamp_ms, r.key, r.value, r.headers)
            for r in read_all(engine, "orders", partition)
        ]
        assert from_duckdb == fetched


def test_fetch_over_many_small_batches_fills_max_records_in_one_call(engine: Engine) -> None:
    engine.create_topic("t")
    for i in range(25):
        engine.append("t", [Record(value=str(i).encode())])

    result = engine.fetch("t", 0, 0, max_records=22)

    assert [r.offset for r in result.records] == list(range(22))
    assert result.next_offset == 22
