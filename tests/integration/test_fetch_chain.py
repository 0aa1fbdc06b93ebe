"""Fetch on the ledger v2 chain (ADR 0012, 1.5 and 3): what a fetch costs in AWS requests,
cursors as validated hints, and the multi-partition fetch's budget and errors.

Request counts are taken from botocore's own events on moto clients, so they are the
requests AWS would bill.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from lakelog.errors import InvalidRequestError, OffsetOutOfRangeError, TopicNotFoundError
from lakelog.limits import MAX_FETCH_BYTES
from lakelog.log.chain import Cursor, decode_cursor, encode_cursor
from lakelog.service.context import SegmentBytesCache, SegmentReaderCache
from lakelog.service.engine import Engine
from lakelog.storage.keys import ResourceNames
from lakelog.types import FetchPosition, FetchResult, Record

PARTITIONS = 12
WAIT_S = 60.0
"""Longest a thread waits for another's progress: a backstop only a hang reaches (a loaded
machine may stall a thread for seconds)."""


@contextmanager
def requests(*clients: Any) -> Iterator[Counter[str]]:
    """Count the AWS requests the clients send inside the block, by operation name."""
    seen: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        seen[model.name] += 1

    for client in clients:
        client.meta.events.register("after-call.*.*", count)
    try:
        yield seen
    finally:
        for client in clients:
            client.meta.events.unregister("after-call.*.*", count)


def keyed_append(engine: Engine, topic: str, round_: int) -> None:
    """One append with one record for each of the topic's 12 partitions."""
    engine.append(
        topic, [Record(value=b"r%d-%d" % (round_, p), partition=p) for p in range(PARTITIONS)]
    )


def ok(result: FetchResult | Exception) -> FetchResult:
    assert isinstance(result, FetchResult), result
    return result


@pytest.fixture
def aws_engine(s3_client: Any, dynamodb_client: Any, resources: ResourceNames) -> Engine:
    return Engine.from_clients(s3_client, dynamodb_client, resources)


@pytest.mark.moto
def test_a_member_reading_twelve_partitions_makes_one_query_and_one_get_per_new_segment(
    aws_engine: Engine, s3_client: Any, dynamodb_client: Any
) -> None:
    # Given a keyed topic of 12 partitions and a member that has read it to the end
    engine = aws_engine
    engine.create_topic("orders", partitions=PARTITIONS)
    for round_ in range(3):
        keyed_append(engine, "orders", round_)
    positions = [FetchPosition("orders", p, 0) for p in range(PARTITIONS)]
    first = [ok(r) for r in engine.fetcher.fetch_many(positions, 1 << 20, 10_000)]
    assert [len(r.records) for r in first] == [3] * PARTITIONS

    # When 2 more appends land and the member polls with its cursors
    for round_ in range(3, 5):
        keyed_append(engine, "orders", round_)
    again = [FetchPosition("orders", r.partition, r.next_offset, r.cursor) for r in first]
    with requests(s3_client, dynamodb_client) as seen:
        second = [ok(r) for r in engine.fetcher.fetch_many(again, 1 << 20, 10_000)]

    # Then it made one Query for all 12 partitions and one GET per new segment
    assert seen == Counter({"Query": 1, "GetObject": 2})
    assert [[r.offset for r in result.records] for result in second] == [[3, 4]] * PARTITIONS
    assert [r.value for r in second[5].records] == [b"r3-5", b"r4-5"]
    assert all(r.high_watermark == 5 for r in second)

    # And a poll with nothing new is that one Query alone
    caught_up = [FetchPosition("orders", r.partition, r.next_offset, r.cursor) for r in second]
    with requests(s3_client, dynamodb_client) as seen:
        idle = [ok(r) for r in engine.fetcher.fetch_many(caught_up, 1 << 20, 10_000)]
    assert seen == Counter({"Query": 1})
    assert all(not r.records and r.next_offset == 5 for r in idle)


@pytest.mark.moto
def test_a_seek_searches_once_and_the_cursor_spares_every_later_fetch_the_search(
    aws_engine: Engine, s3_client: Any, dynamodb_client: Any
) -> None:
    engine = aws_engine
    engine.create_topic("orders")
    for i in range(40):
        engine.append("orders", [Record(value=b"%d" % i)])

    with requests(dynamodb_client) as seen:
        middle = engine.fetch("orders", 0, 17, max_records=3)
    searched = seen["GetItem"]
    assert 1 <= searched <= 7  # about log2(40) probes
    assert [r.offset for r in middle.records] == [17, 18, 19]

    with requests(dynamodb_client) as seen:
        after = engine.fetch("orders", 0, middle.next_offset, max_records=3, cursor=middle.cursor)
    assert seen == Counter({"Query": 1, "GetItem": 1})  # the Query, and the meta when catching up
    assert [r.offset for r in after.records] == [20, 21, 22]


def test_a_cursor_of_another_topic_is_refused(engine: Engine) -> None:
    engine.create_topic("a")
    engine.create_topic("b")
    engine.append("a", [Record(value=b"x")])
    engine.append("b", [Record(value=b"y")])
    cursor = engine.fetch("a", 0, 0).cursor

    with pytest.raises(InvalidRequestError, match="cursor is not from this topic"):
        engine.fetch("b", 0, 1, cursor=cursor)


def test_a_cursor_of_another_partition_is_refused(engine: Engine) -> None:
    engine.create_topic("a", partitions=2)
    engine.append("a", [Record(value=b"x", partition=0)])
    cursor = engine.fetch("a", 0, 0).cursor

    with pytest.raises(InvalidRequestError, match="cursor is not from this topic"):
        engine.fetch("a", 1, 1, cursor=cursor)


@pytest.mark.parametrize("text", ["", "!!", "AAAA", encode_cursor(Cursor("0" * 32, 0, 1, 0))[:-2]])
def test_a_malformed_cursor_is_refused(engine: Engine, text: str) -> None:
    engine.create_topic("a")

    with pytest.raises(InvalidRequestError):
        engine.fetch("a", 0, 0, cursor=text)


@pytest.mark.parametrize("seq_shift", [1, 5, 1_000])
def test_a_cursor_past_the_batch_holding_its_offset_falls_back_to_the_offset(
    engine: Engine, seq_shift: int
) -> None:
    # Given a cursor forged to skip items that hold records at and after its offset
    engine.create_topic("a")
    for i in range(10):
        engine.append("a", [Record(value=b"%d" % i)])
    honest = decode_cursor(engine.fetch("a", 0, 0, max_records=2).cursor)
    forged = encode_cursor(replace(honest, seq=honest.seq + seq_shift))

    # When it is used
    result = engine.fetch("a", 0, honest.offset, max_records=100, cursor=forged)

    # Then nothing is skipped: the fetch fell back to the offset
    assert [r.offset for r in result.records] == list(range(2, 10))


def test_a_cursor_too_early_reads_the_same_records(engine: Engine) -> None:
    engine.create_topic("a")
    for i in range(10):
        engine.append("a", [Record(value=b"%d" % i)])
    cursor = decode_cursor(engine.fetch("a", 0, 0, max_records=6).cursor)
    early = encode_cursor(replace(cursor, seq=1))

    result = engine.fetch("a", 0, cursor.offset, cursor=early)

    assert [r.offset for r in result.records] == [6, 7, 8, 9]


def test_a_cursor_for_another_offset_is_ignored(engine: Engine) -> None:
    engine.create_topic("a")
    for i in range(6):
        engine.append("a", [Record(value=b"%d" % i)])
    cursor = engine.fetch("a", 0, 0, max_records=2).cursor  # names offset 2

    result = engine.fetch("a", 0, 4, cursor=cursor)

    assert [r.offset for r in result.records] == [4, 5]


def test_fetch_many_shares_one_budget_and_always_returns_the_first_record(engine: Engine) -> None:
    engine.create_topic("a", partitions=3)
    for round_ in range(4):
        engine.append("a", [Record(value=bytes([round_]) * 100, partition=p) for p in range(3)])
    positions = [FetchPosition("a", p, 0) for p in range(3)]

    tiny = [ok(r) for r in engine.fetcher.fetch_many(positions, max_bytes=1, max_records=100)]
    assert [len(r.records) for r in tiny] == [1, 0, 0]
    assert [r.next_offset for r in tiny] == [1, 0, 0]

    some = [ok(r) for r in engine.fetcher.fetch_many(positions, max_bytes=450, max_records=100)]
    # in chain order: round 0 of p0, p1, p2, then round 1 of p0 — 4 records of 100 bytes
    assert [len(r.records) for r in some] == [2, 1, 1]

    capped = [ok(r) for r in engine.fetcher.fetch_many(positions, max_bytes=1 << 20, max_records=5)]
    assert sum(len(r.records) for r in capped) == 5

    # and following each partition's next offset and cursor reads everything exactly once
    seen: dict[int, list[int]] = {p: [] for p in range(3)}
    current = positions
    for _ in range(20):
        results = [
            ok(r) for r in engine.fetcher.fetch_many(current, max_bytes=250, max_records=100)
        ]
        for r in results:
            seen[r.partition].extend(rec.offset for rec in r.records)
        current = [FetchPosition("a", r.partition, r.next_offset, r.cursor) for r in results]
    assert seen == {p: [0, 1, 2, 3] for p in range(3)}


def test_a_position_s_own_max_bytes_stops_only_that_partition(engine: Engine) -> None:
    # Given partition 0 with a backlog first in the chain, then partitions 1 and 2
    engine.create_topic("a", partitions=3)
    engine.append("a", [Record(value=b"0" * 100, partition=0)] * 20)
    for round_ in range(5):
        engine.append("a", [Record(value=bytes([round_]) * 100, partition=p) for p in (1, 2)])
    positions = [
        FetchPosition("a", 0, 0, max_bytes=350),
        FetchPosition("a", 1, 0),
        FetchPosition("a", 2, 0, max_bytes=200),
    ]

    # When one fetch with room for all of it reads them
    results = [ok(r) for r in engine.fetcher.fetch_many(positions, 1 << 20, 1000)]

    # Then partition 0 stops at its own 350 bytes and 2 at 200, while 1 reads to its end
    assert [len(r.records) for r in results] == [3, 5, 2]
    assert [r.next_offset for r in results] == [3, 5, 2]
    # ... and each one's next offset and cursor read on exactly from there
    again = [
        ok(r)
        for r in engine.fetcher.fetch_many(
            [FetchPosition("a", r.partition, r.next_offset, r.cursor, 10_000) for r in results],
            1 << 20,
            1000,
        )
    ]
    assert [[rec.offset for rec in r.records] for r in again] == [
        list(range(3, 20)),
        [],
        [2, 3, 4],
    ]


def test_the_first_record_of_a_fetch_passes_its_position_s_own_max_bytes(engine: Engine) -> None:
    engine.create_topic("a", partitions=2)
    engine.append("a", [Record(value=b"x" * 1000, partition=p) for p in (0, 1)])
    positions = [FetchPosition("a", p, 0, max_bytes=10) for p in (0, 1)]

    results = [ok(r) for r in engine.fetcher.fetch_many(positions, 1 << 20, 1000)]

    assert [len(r.records) for r in results] == [1, 0]


@pytest.mark.parametrize("max_bytes", [0, -1, MAX_FETCH_BYTES + 1, True])
def test_a_position_s_own_max_bytes_must_be_positive(engine: Engine, max_bytes: int) -> None:
    engine.create_topic("a", partitions=1)
    with pytest.raises(InvalidRequestError, match="max_bytes"):
        engine.fetcher.fetch_many([FetchPosition("a", 0, 0, max_bytes=max_bytes)], 100, 100)


def test_fetch_many_answers_each_partitions_error_in_its_place(engine: Engine) -> None:
    engine.create_topic("a", partitions=2)
    engine.append("a", [Record(value=b"x", partition=0)])
    positions = [
        FetchPosition("a", 0, 0),
        FetchPosition("a", 1, 7),
        FetchPosition("missing", 0, 0),
        FetchPosition("a", 5, 0),
    ]

    results = engine.fetcher.fetch_many(positions, 1 << 20, 100)

    assert [r.value for r in ok(results[0]).records] == [b"x"]
    assert isinstance(results[1], OffsetOutOfRangeError)
    assert (results[1].log_start_offset, results[1].high_watermark) == (0, 0)
    assert isinstance(results[2], TopicNotFoundError)
    assert isinstance(results[3], InvalidRequestError)


def test_the_segments_of_one_fetch_are_read_in_parallel(engine: Engine) -> None:
    # Given three appends (three segments) and an object store whose GETs each wait for
    # the other two: a fetch that read them one after another could never finish
    engine.create_topic("a")
    for i in range(3):
        engine.append("a", [Record(value=b"%d" % i)])
    objects = engine.context.objects
    barrier = threading.Barrier(3, timeout=WAIT_S)

    class Gathering:
        def __getattr__(self, name: str) -> Any:
            return getattr(objects, name)

        def get_range(self, key: str, start: int, end: int) -> bytes:
            barrier.wait()
            return objects.get_range(key, start, end)

    engine.context.objects = Gathering()  # type: ignore[assignment]

    result = engine.fetch("a", 0, 0)

    assert [r.value for r in result.records] == [b"0", b"1", b"2"]


def test_a_fetch_above_the_high_watermark_is_out_of_range_even_with_a_cursor(
    engine: Engine,
) -> None:
    engine.create_topic("a")
    engine.append("a", [Record(value=b"x")])
    cursor = decode_cursor(engine.fetch("a", 0, 0).cursor)
    beyond = encode_cursor(replace(cursor, offset=5))

    with pytest.raises(OffsetOutOfRangeError):
        engine.fetch("a", 0, 5, cursor=beyond)


@pytest.mark.moto
def test_the_rest_of_a_segment_a_fetch_stopped_inside_is_read_without_a_second_get(
    aws_engine: Engine, s3_client: Any
) -> None:
    engine = aws_engine
    engine.create_topic("orders", partitions=PARTITIONS)
    keyed_append(engine, "orders", 0)
    positions = [FetchPosition("orders", p, 0) for p in range(PARTITIONS)]

    with requests(s3_client) as seen:
        first = [ok(r) for r in engine.fetcher.fetch_many(positions, 1 << 20, 5)]
    assert seen == Counter({"GetObject": 1})
    assert sum(len(r.records) for r in first) == 5

    rest = [FetchPosition("orders", r.partition, r.next_offset, r.cursor) for r in first]
    with requests(s3_client) as seen:
        second = [ok(r) for r in engine.fetcher.fetch_many(rest, 1 << 20, 100)]
    assert seen == Counter()
    assert sum(len(r.records) for r in second) == PARTITIONS - 5
    assert [r.value for result in second[5:6] for r in result.records] == [b"r0-5"]


def test_the_segment_bytes_cache_serves_only_ranges_it_holds_and_stays_in_its_bound() -> None:
    cache = SegmentBytesCache(capacity_bytes=10)
    cache.put("a", 4, b"abcdef")  # bytes 4..9 of segment a

    assert cache.get("a", 5, 8) == b"bcd"
    assert cache.get("a", 4, 10) == b"abcdef"
    assert cache.get("a", 3, 6) is None
    assert cache.get("a", 8, 11) is None
    assert cache.get("b", 4, 6) is None

    cache.put("b", 0, b"12345")  # 11 bytes in all: a, the oldest, goes
    assert cache.get("a", 5, 8) is None
    assert cache.get("b", 1, 3) == b"23"
    cache.put("c", 0, b"x" * 11)  # larger than the whole cache: not kept
    assert cache.get("c", 0, 1) is None
    assert cache.get("b", 0, 5) == b"12345"


def test_the_segment_bytes_cache_joins_ranges_of_a_segment_that_overlap_or_touch() -> None:
    cache = SegmentBytesCache(capacity_bytes=12)
    cache.put("a", 4, b"efgh")  # bytes 4..7
    cache.put("a", 2, b"cd")  # touches it: 2..7
    assert cache.get("a", 2, 8) == b"cdefgh"
    cache.put("a", 6, b"ghij")  # overlaps it: 2..9
    assert cache.get("a", 2, 10) == b"cdefghij"
    cache.put("a", 11, b"l")  # apart: replaces it
    assert (cache.get("a", 2, 3), cache.get("a", 11, 12)) == (None, b"l")
    cache.put("a", 0, b"abcdefghijk")  # joined it would pass the bound: replaces it
    assert cache.get("a", 0, 11) == b"abcdefghijk"


def test_threads_reading_one_segment_at_once_send_one_get(engine: Engine) -> None:
    # Given a segment this process has not read, and a store whose GET waits until every
    # reader is waiting for its turn at the segment
    engine.create_topic("orders")
    engine.append("orders", [Record(value=b"v%d" % i) for i in range(3)])
    objects = engine.context.objects
    get_range = objects.get_range
    cache = engine.context.caches.segment_bytes = SegmentBytesCache()
    engine.context.caches.segments = SegmentReaderCache()
    gets: list[tuple[str, int, int]] = []
    readers = 4

    def held(key: str, start: int, end: int) -> bytes:
        gets.append((key, start, end))
        deadline = time.monotonic() + WAIT_S
        while cache.readers(key) < readers and time.monotonic() < deadline:
            time.sleep(0.001)  # waits for a state, not for a time
        return get_range(key, start, end)

    objects.get_range = held  # type: ignore[method-assign]
    results: list[list[bytes | None]] = []

    def read() -> None:
        results.append([record.value for record in engine.fetch("orders", 0, 0).records])

    # When four threads fetch it at once
    threads = [threading.Thread(target=read) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)

    # Then one GET served them all
    assert results == [[b"v0", b"v1", b"v2"]] * readers
    assert len(gets) == 1
    assert cache.readers(gets[0][0]) == 0


def test_a_budget_planned_from_batch_averages_never_passes_max_bytes_nor_skips_a_record(
    engine: Engine,
) -> None:
    # Given a first batch of 100 bytes, then a batch whose first record is a 4-byte
    # tombstone and whose average (502 bytes) is far over what is left after the first
    engine.create_topic("a", partitions=2)
    engine.append("a", [Record(value=b"x" * 100, partition=0)])
    engine.append(
        "a",
        [Record(key=b"tomb", value=None, partition=0), Record(value=b"y" * 1000, partition=0)],
    )

    # When a fetch's budget, or a position's own max_bytes, ends right after the tombstone
    alone = engine.fetch("a", 0, 0, max_bytes=104)
    positions = [FetchPosition("a", 1, 0), FetchPosition("a", 0, 0, max_bytes=104)]
    _, own = [ok(r) for r in engine.fetcher.fetch_many(positions, 1 << 20, 100)]

    # Then each returns the first record (the plan, from the averages, may stop before the
    # tombstone, never after it), and the next fetch goes on from exactly there
    for result in (alone, own):
        assert [r.offset for r in result.records] == [0]
        rest = engine.fetch("a", 0, result.next_offset, cursor=result.cursor)
        assert [r.offset for r in rest.records] == [1, 2]
        assert rest.records[0].key == b"tomb"
