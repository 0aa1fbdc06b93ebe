"""Invariant 7: bad input gets the named error and changes nothing.

Every test takes a snapshot of what storage holds (high watermarks, configs, and every
object, ledger item and catalog item of the backend) before the bad calls and compares it
after: a rejected request must not leave a segment, a ledger item or a moved head behind.
Families of bad values run as subtests of one test, so each is reported on its own while
the setup is paid once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakelog import (
    CorruptSegmentError,
    Engine,
    InvalidRequestError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    PayloadTooLargeError,
    ProducerBatch,
    Record,
    TopicExistsError,
    TopicNotFoundError,
    UnknownProducerError,
)
from lakelog.limits import (
    MAX_APPEND_BYTES,
    MAX_APPEND_RECORDS,
    MAX_FETCH_BYTES,
    MAX_FETCH_RECORDS,
    MAX_HEADERS_PER_RECORD,
    MAX_PARTITIONS,
    MAX_TIMESTAMP_MS,
)
from lakelog.service.context import SegmentBytesCache
from lakelog.storage.keys import topic_segments_prefix
from lakelog.storage.ports import ObjectInfo
from lakelog.types import Header
from tests.contract.backends import Backend

MIB = 1024 * 1024
SMALL_LIMIT = 100

# What storage holds -------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    high_watermarks: dict[str, list[int]]
    configs: dict[str, dict[str, object]]
    stored: Any


@dataclass
class World:
    """Two topics with data, and a way to see everything storage holds."""

    engine: Engine
    backend: Backend

    def snapshot(self) -> Snapshot:
        descriptions = [self.engine.describe_topic(t) for t in self.engine.list_topics()]
        return Snapshot(
            high_watermarks={
                d.name: [p.high_watermark for p in d.partitions] for d in descriptions
            },
            configs={d.name: d.config for d in descriptions},
            stored=self.backend.contents(),
        )

    def _segments(self, topic: str) -> list[ObjectInfo]:
        prefix = topic_segments_prefix(self.engine.describe_topic(topic).topic_id)
        return list(self.backend.stores()[0].list(prefix))

    def topic_segments(self, topic: str) -> list[str]:
        return [info.key for info in self._segments(topic)]

    def object_size(self, key: str) -> int:
        (size,) = [info.size for info in self.backend.stores()[0].list(key) if info.key == key]
        return size

    def read(self, key: str) -> bytes:
        return self.backend.stores()[0].get_range(key, 0, self.object_size(key))

    def overwrite(self, key: str, body: bytes) -> None:
        self.backend.stores()[0].put(key, body)


@pytest.fixture
def world(engine: Engine, backend: Backend) -> World:
    engine.create_topic("orders", partitions=3)
    engine.append("orders", [Record(value=b"a", partition=0), Record(value=b"b", partition=1)])
    engine.append("orders", [Record(value=b"c", partition=0)])
    engine.create_topic("small", config={"max_record_bytes": SMALL_LIMIT})
    engine.append("small", [Record(value=b"s")])
    return World(engine, backend)


@contextmanager
def changes_nothing(world: World) -> Iterator[None]:
    """Fail unless storage holds exactly the same after the block as before it."""
    before = world.snapshot()
    yield
    assert world.snapshot() == before


# Topic names and unknown topics ---------------------------------------------------------------

BAD_TOPIC_NAMES: list[object] = [
    "",
    ".",
    "..",
    "has space",
    "a/b",
    "caf\u00e9",
    "x" * 250,
    None,
    42,
    b"orders",
]

TOPIC_OPERATIONS: dict[str, Callable[[Engine, Any], object]] = {
    "create": lambda e, t: e.create_topic(t),
    "describe": lambda e, t: e.describe_topic(t),
    "alter": lambda e, t: e.alter_topic(t, config={"retention_ms": 1}),
    "delete": lambda e, t: e.delete_topic(t),
    "append": lambda e, t: e.append(t, [Record(value=b"v")]),
    "fetch": lambda e, t: e.fetch(t, 0, 0),
    "list_offset": lambda e, t: e.list_offset(t, 0, "latest"),
    "offset_for_time": lambda e, t: e.offset_for_time(t, 0, 0),
}


def test_bad_topic_names_are_rejected_by_every_operation(
    world: World, subtests: pytest.Subtests
) -> None:
    with changes_nothing(world):
        for name in BAD_TOPIC_NAMES:
            for operation, call in TOPIC_OPERATIONS.items():
                with (
                    subtests.test(name=name, operation=operation),
                    pytest.raises(InvalidRequestError, match="topic name"),
                ):
                    call(world.engine, name)


def test_unknown_topic_is_rejected_by_every_operation_but_create(
    world: World, subtests: pytest.Subtests
) -> None:
    with changes_nothing(world):
        for operation, call in TOPIC_OPERATIONS.items():
            if operation == "create":
                continue
            with (
                subtests.test(operation=operation),
                pytest.raises(TopicNotFoundError, match="'missing' does not exist"),
            ):
                call(world.engine, "missing")


def test_creating_an_existing_topic_changes_nothing(world: World) -> None:
    with changes_nothing(world), pytest.raises(TopicExistsError):
        world.engine.create_topic("orders", partitions=7, config={"compression": "none"})


def test_create_topic_with_bad_partition_count_creates_nothing(
    world: World, subtests: pytest.Subtests
) -> None:
    with changes_nothing(world):
        for partitions in [0, -1, MAX_PARTITIONS + 1, True, "3", 1.5, None]:
            with (
                subtests.test(partitions=partitions),
                pytest.raises(InvalidRequestError, match="partitions must be"),
            ):
                world.engine.create_topic("new", partitions=partitions)  # type: ignore[arg-type]


def test_create_topic_with_bad_config_creates_nothing(
    world: World, subtests: pytest.Subtests
) -> None:
    configs: list[dict[str, object]] = [
        {"retention_ms": -2},
        {"retention_bytes": 10**40},  # past Kafka's LONG and what a DynamoDB number holds
        {"cleanup_policy": "archive"},
        {"compression": "gzip"},
        {"max_record_bytes": MAX_APPEND_BYTES + 1},
        {"unknown_key": 1},
    ]
    with changes_nothing(world):
        for config in configs:
            with (
                subtests.test(config=config),
                pytest.raises(InvalidRequestError, match="invalid topic config"),
            ):
                world.engine.create_topic("new", config=config)


def test_create_topic_with_a_config_that_is_not_a_mapping_creates_nothing(world: World) -> None:
    with changes_nothing(world), pytest.raises(InvalidRequestError, match="must be an object"):
        world.engine.create_topic("new", config=["retention_ms"])  # type: ignore[arg-type]


def test_alter_to_fewer_partitions_changes_nothing(world: World) -> None:
    with changes_nothing(world), pytest.raises(InvalidRequestError, match="can only be added"):
        world.engine.alter_topic("orders", config={"retention_ms": 5}, partitions=2)


# Partitions -----------------------------------------------------------------------------------


def test_bad_partition_is_rejected_by_append_and_reads(
    world: World, subtests: pytest.Subtests
) -> None:
    engine = world.engine
    operations: dict[str, Callable[[Any], object]] = {
        "append": lambda p: engine.append("orders", [Record(value=b"v", partition=p)]),
        "fetch": lambda p: engine.fetch("orders", p, 0),
        "list_offset": lambda p: engine.list_offset("orders", p, "earliest"),
        "offset_for_time": lambda p: engine.offset_for_time("orders", p, 0),
    }
    with changes_nothing(world):
        for partition in [-1, 3, 1000, True, False, "0", 1.0]:
            for operation, call in operations.items():
                with (
                    subtests.test(partition=partition, operation=operation),
                    pytest.raises(InvalidRequestError, match="partition"),
                ):
                    call(partition)


def test_out_of_range_partition_message_names_the_valid_range(world: World) -> None:
    with pytest.raises(InvalidRequestError, match=r"partition 3 does not exist.*0\.\.2"):
        world.engine.fetch("orders", 3, 0)


def test_one_bad_partition_rejects_the_whole_append(world: World) -> None:
    records = [Record(value=b"ok", partition=0), Record(value=b"bad", partition=9)]

    with changes_nothing(world), pytest.raises(InvalidRequestError, match="partition 9"):
        world.engine.append("orders", records)


# Sizes --------------------------------------------------------------------------------------------


def test_record_over_max_record_bytes_is_payload_too_large(
    world: World, subtests: pytest.Subtests
) -> None:
    # Given topic "small" accepts records of at most 100 bytes (key + value + headers)
    records = {
        "value": Record(value=b"v" * (SMALL_LIMIT + 1)),
        "key": Record(key=b"k" * (SMALL_LIMIT + 1)),
        "key+value": Record(key=b"k" * 50, value=b"v" * 51),
        "headers": Record(value=b"v" * 90, headers=(("header", b"x" * 5),)),
        "utf8-header-name": Record(value=b"v" * 99, headers=(cast(Header, ("\u00e9", None)),)),
    }
    with changes_nothing(world):
        for case, record in records.items():
            with subtests.test(case=case):
                with pytest.raises(PayloadTooLargeError, match="max_record_bytes is 100") as err:
                    world.engine.append("small", [record])
                assert err.value.code == "payload_too_large"


def test_record_of_exactly_max_record_bytes_is_accepted(world: World) -> None:
    record = Record(key=b"k" * 10, value=b"v" * 80, headers=(("hh", b"x" * 8),))

    world.engine.append("small", [record])

    assert world.engine.fetch("small", 0, 1).records[0].value == b"v" * 80


def test_one_oversized_record_rejects_the_whole_append(world: World) -> None:
    records = [Record(value=b"ok"), Record(value=b"x" * (SMALL_LIMIT + 1)), Record(value=b"ok")]

    with (
        changes_nothing(world),
        pytest.raises(PayloadTooLargeError, match="record 1 is 101 bytes"),
    ):
        world.engine.append("small", records)


def test_request_over_max_append_bytes_is_payload_too_large(world: World) -> None:
    # Given records that each fit the topic's 1 MiB limit but together exceed 6 MiB
    chunk = b"x" * MIB
    records = [Record(value=chunk, partition=2) for _ in range(MAX_APPEND_BYTES // MIB)]
    records.append(Record(value=b"!", partition=2))

    with (
        changes_nothing(world),
        pytest.raises(PayloadTooLargeError, match=f"the limit is {MAX_APPEND_BYTES} bytes"),
    ):
        world.engine.append("orders", records)


def test_request_of_exactly_max_append_bytes_is_accepted(world: World) -> None:
    chunk = b"x" * MIB
    records = [Record(value=chunk, partition=2) for _ in range(MAX_APPEND_BYTES // MIB)]

    results = world.engine.append("orders", records)

    assert [r.offset for r in results] == list(range(6))


def test_request_over_max_append_records_is_payload_too_large(world: World) -> None:
    records = [Record(value=b"")] * (MAX_APPEND_RECORDS + 1)

    with (
        changes_nothing(world),
        pytest.raises(PayloadTooLargeError, match=f"the limit is {MAX_APPEND_RECORDS}"),
    ):
        world.engine.append("orders", records)


def test_request_of_exactly_max_append_records_is_accepted(world: World) -> None:
    records = [Record(value=b"", partition=2)] * MAX_APPEND_RECORDS

    results = world.engine.append("orders", records)

    assert results[-1].offset == MAX_APPEND_RECORDS - 1


# Shapes of records ----------------------------------------------------------------------------


def test_records_must_be_a_non_empty_list(world: World, subtests: pytest.Subtests) -> None:
    cases: list[Any] = [[], (), None, "records", b"records", Record(value=b"v"), {"v": b"v"}, 7]
    with changes_nothing(world):
        for records in cases:
            with (
                subtests.test(records=records),
                pytest.raises(
                    InvalidRequestError, match=r"records must be a list|at least one record"
                ),
            ):
                world.engine.append("orders", records)


def test_items_that_are_not_records_are_rejected(world: World, subtests: pytest.Subtests) -> None:
    with changes_nothing(world):
        for item in [None, b"value", "value", {"value": b"v"}, (b"k", b"v"), 1]:
            records: list[Any] = [Record(value=b"ok"), Record(value=b"ok"), item]
            with (
                subtests.test(item=item),
                pytest.raises(InvalidRequestError, match="record 2 is not a Record"),
            ):
                world.engine.append("orders", records)


def test_keys_and_values_must_be_bytes_or_none(world: World, subtests: pytest.Subtests) -> None:
    with changes_nothing(world):
        for field in ("key", "value"):
            for data in ["text", 1, [1, 2], True]:
                record = Record(**{field: data})  # type: ignore[arg-type]
                with (
                    subtests.test(field=field, data=data),
                    pytest.raises(
                        InvalidRequestError, match=f"record 0: {field} must be bytes or None"
                    ),
                ):
                    world.engine.append("orders", [record])


def test_bad_headers_are_rejected(world: World, subtests: pytest.Subtests) -> None:
    cases: list[Any] = [
        (["name", b"value"],),  # a list, not a pair
        (("name",),),
        (("name", b"value", b"extra"),),
        ((b"name", b"value"),),  # bytes name
        ((1, b"value"),),
        (("name", "value"),),  # str value
        (("name", 1),),
        ("name",),
        (None,),
    ]
    with changes_nothing(world):
        for headers in cases:
            with (
                subtests.test(headers=headers),
                pytest.raises(InvalidRequestError, match="headers must be"),
            ):
                world.engine.append("orders", [Record(value=b"v", headers=headers)])


def test_too_many_headers_are_rejected(world: World) -> None:
    headers = tuple(("h", b"") for _ in range(MAX_HEADERS_PER_RECORD + 1))

    with (
        changes_nothing(world),
        pytest.raises(InvalidRequestError, match=f"the limit is {MAX_HEADERS_PER_RECORD}"),
    ):
        world.engine.append("orders", [Record(value=b"v", headers=headers)])


def test_the_maximum_number_of_headers_is_accepted(world: World) -> None:
    headers = tuple((f"h{i}", bytes([i])) for i in range(MAX_HEADERS_PER_RECORD))

    world.engine.append("orders", [Record(value=b"v", headers=headers, partition=2)])

    assert world.engine.fetch("orders", 2, 0).records[0].headers == headers


def test_bad_timestamps_are_rejected(world: World, subtests: pytest.Subtests) -> None:
    with changes_nothing(world):
        for timestamp in [-1, -(2**40), 2**63, True, 1.5, "0"]:
            record = Record(value=b"v", timestamp_ms=timestamp)  # type: ignore[arg-type]
            with (
                subtests.test(timestamp=timestamp),
                pytest.raises(InvalidRequestError, match="timestamp_ms must be an integer from 0"),
            ):
                world.engine.append("orders", [record])


def test_headers_that_are_none_instead_of_a_sequence_are_rejected(world: World) -> None:
    record = Record(value=b"v", headers=None)  # type: ignore[arg-type]

    with changes_nothing(world), pytest.raises(InvalidRequestError, match="headers"):
        world.engine.append("orders", [record])


def test_a_header_name_that_cannot_be_utf8_encoded_is_rejected(world: World) -> None:
    record = Record(value=b"v", headers=(("\udc80", b"x"),))  # a lone surrogate

    with changes_nothing(world), pytest.raises(InvalidRequestError):
        world.engine.append("orders", [record])


def test_timestamps_beyond_the_year_9999_are_rejected_and_9999_is_accepted(
    world: World, subtests: pytest.Subtests
) -> None:
    with changes_nothing(world):
        for timestamp in [MAX_TIMESTAMP_MS + 1, 2**63 - 1]:
            with (
                subtests.test(timestamp=timestamp),
                pytest.raises(InvalidRequestError, match="timestamp_ms"),
            ):
                world.engine.append("orders", [Record(value=b"v", timestamp_ms=timestamp)])

    [ack] = world.engine.append("orders", [Record(value=b"v", timestamp_ms=MAX_TIMESTAMP_MS)])
    assert ack.timestamp == MAX_TIMESTAMP_MS


# Idempotent producers -------------------------------------------------------------------------


def test_bad_producer_identity_is_rejected(world: World, subtests: pytest.Subtests) -> None:
    producers = {
        "negative-id": ProducerBatch(producer_id=-1, epoch=0, sequence=0),
        "bool-id": ProducerBatch(producer_id=True, epoch=0, sequence=0),
        "negative-epoch": ProducerBatch(producer_id=1, epoch=-1, sequence=0),
        "str-epoch": ProducerBatch(producer_id=1, epoch="0", sequence=0),  # type: ignore[arg-type]
        "no-sequence": ProducerBatch(producer_id=1, epoch=0, sequences={}),
        # One sequence per topic (ADR 0012): a per-partition map of several entries, or
        # the sequence given twice, is refused before the producer id is even looked up
        "several-sequences": ProducerBatch(producer_id=1, epoch=0, sequences={0: 0, 1: 0}),
        "sequence-and-sequences": ProducerBatch(
            producer_id=1, epoch=0, sequences={0: 0}, sequence=0
        ),
        "negative-sequence": ProducerBatch(producer_id=1, epoch=0, sequence=-1),
        "negative-sequence-entry": ProducerBatch(producer_id=1, epoch=0, sequences={0: -1}),
    }
    with changes_nothing(world):
        for case, producer in producers.items():
            with (
                subtests.test(case=case),
                pytest.raises(InvalidRequestError, match=r"producer|sequence") as refused,
            ):
                world.engine.append("orders", [Record(value=b"v", partition=0)], producer)
            assert type(refused.value) is InvalidRequestError


def test_new_producer_not_starting_at_sequence_zero_writes_nothing(
    world: World, make_engine: Callable[..., Engine]
) -> None:
    producer = ProducerBatch(world.engine.init_producer_id(), epoch=0, sequence=5)

    with changes_nothing(world):
        with pytest.raises(OutOfOrderSequenceError, match="expected 0"):
            world.engine.append("orders", [Record(value=b"v", partition=0)], producer)
        # Its segment was uploaded while it waited for a predecessor in flight (ADR 0012,
        # 2.2): no chain item references it, and gc removes it
        collector = make_engine(grace_ms=0)
        assert len(collector.gc.collect_topic("orders")) == 1
    assert (
        world.engine.context.ledger.read_producer(
            world.engine.describe_topic("orders").topic_id, producer.producer_id
        )
        is None
    )


def test_an_append_under_a_producer_id_never_issued_writes_nothing(world: World) -> None:
    producer = ProducerBatch(producer_id=99, epoch=0, sequences={0: 0})

    with changes_nothing(world), pytest.raises(UnknownProducerError, match="99"):
        world.engine.append("orders", [Record(value=b"v", partition=0)], producer)


# Reads ------------------------------------------------------------------------------------------


def test_fetch_with_a_bad_offset_is_rejected(world: World, subtests: pytest.Subtests) -> None:
    with changes_nothing(world):
        for offset in [-1, -(2**63), True, "0", 0.0, None]:
            with (
                subtests.test(offset=offset),
                pytest.raises(InvalidRequestError, match="offset must be"),
            ):
                world.engine.fetch("orders", 0, offset)  # type: ignore[arg-type]


def test_fetch_above_the_high_watermark_is_out_of_range(
    world: World, subtests: pytest.Subtests
) -> None:
    # Given partition 0 holds offsets 0..1 (high watermark 2)
    with changes_nothing(world):
        for offset in [3, 4, 1000, 2**62]:
            with subtests.test(offset=offset):
                with pytest.raises(OffsetOutOfRangeError) as caught:
                    world.engine.fetch("orders", 0, offset)

                # Then the error carries what a consumer needs to reset its position
                error = caught.value
                assert (error.topic, error.partition, error.offset) == ("orders", 0, offset)
                assert (error.log_start_offset, error.high_watermark) == (0, 2)
                assert error.code == "offset_out_of_range"
                assert f"offset {offset} of orders-0 is out of range [0, 2]" in str(error)


def test_fetch_of_an_empty_partition_above_zero_is_out_of_range(world: World) -> None:
    with pytest.raises(OffsetOutOfRangeError) as caught:
        world.engine.fetch("orders", 2, 1)

    assert (caught.value.log_start_offset, caught.value.high_watermark) == (0, 0)


def test_fetch_bounds_out_of_range_are_rejected(world: World, subtests: pytest.Subtests) -> None:
    cases: list[tuple[Any, Any]] = [
        (0, MIB),
        (-1, MIB),
        (MAX_FETCH_RECORDS + 1, MIB),
        (True, MIB),
        ("10", MIB),
        (10, 0),
        (10, -1),
        (10, MAX_FETCH_BYTES + 1),
        (10, False),
        (10, 1.5),
    ]
    with changes_nothing(world):
        for max_records, max_bytes in cases:
            with (
                subtests.test(max_records=max_records, max_bytes=max_bytes),
                pytest.raises(InvalidRequestError, match=r"max_records must be|max_bytes must be"),
            ):
                world.engine.fetch("orders", 0, 0, max_records=max_records, max_bytes=max_bytes)


def test_fetch_bounds_at_their_limits_are_accepted(world: World) -> None:
    engine = world.engine

    assert len(engine.fetch("orders", 0, 0, max_records=1, max_bytes=1).records) == 1
    result = engine.fetch("orders", 0, 0, max_records=MAX_FETCH_RECORDS, max_bytes=MAX_FETCH_BYTES)
    assert [r.value for r in result.records] == [b"a", b"c"]


def test_list_offset_with_a_bad_spec_is_rejected(world: World, subtests: pytest.Subtests) -> None:
    with changes_nothing(world):
        for spec in ["first", "EARLIEST", "", None, 0]:
            with (
                subtests.test(spec=spec),
                pytest.raises(InvalidRequestError, match="'earliest' or 'latest'"),
            ):
                world.engine.list_offset("orders", 0, spec)  # type: ignore[arg-type]


def test_offset_for_time_with_a_bad_timestamp_is_rejected(
    world: World, subtests: pytest.Subtests
) -> None:
    with changes_nothing(world):
        for timestamp in [-1, True, "0", 1.5, None]:
            with (
                subtests.test(timestamp=timestamp),
                pytest.raises(InvalidRequestError, match="timestamp_ms must be"),
            ):
                world.engine.offset_for_time("orders", 0, timestamp)  # type: ignore[arg-type]


# Corrupt segments -------------------------------------------------------------------------------


def _garbage(length: int) -> bytes:
    return bytes((i * 131 + 7) & 0xFF for i in range(length))


def _wrong_schema_parquet() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"offset": list(range(100)), "payload": ["x" * 20] * 100}), sink)
    return bytes(sink.getvalue().to_pybytes())


CORRUPT_BODIES: dict[str, Callable[[int], bytes]] = {
    "garbage": _garbage,
    "longer-garbage": lambda size: _garbage(size * 2),
    "zeros": lambda size: b"\x00" * size,
    "parquet-magic-garbage": lambda size: b"PAR1" + _garbage(size - 8) + b"PAR1",
    "wrong-schema": lambda size: _wrong_schema_parquet(),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPT_BODIES))
def test_fetch_of_a_corrupt_segment_raises_corrupt_segment_error(
    world: World, make_engine: Callable[..., Engine], corruption: str
) -> None:
    # Given a topic whose only segment (both partitions) is overwritten in S3
    engine = world.engine
    engine.create_topic("victim", partitions=2)
    engine.append(
        "victim",
        [Record(key=b"k%d" % i, value=b"value-%d" % i, partition=i % 2) for i in range(20)],
    )
    [key] = world.topic_segments("victim")
    world.overwrite(key, CORRUPT_BODIES[corruption](world.object_size(key)))

    with changes_nothing(world):
        # When a fresh engine (no cached footer) reads either partition
        reader = make_engine()
        for partition in (0, 1):
            with pytest.raises(CorruptSegmentError) as caught:
                reader.fetch("victim", partition, 0)

            # Then the error names the segment
            assert caught.value.segment_key == key
            assert caught.value.code == "corrupt_segment"

        # and other topics still read fine
        assert [r.value for r in reader.fetch("orders", 0, 0).records] == [b"a", b"c"]


def test_fetch_with_a_cached_footer_of_an_overwritten_segment_raises_corrupt_segment(
    world: World,
) -> None:
    # Given the engine has read the segment once (its footer is cached)
    engine = world.engine
    engine.create_topic("victim")
    engine.append("victim", [Record(value=b"value-%d" % i) for i in range(50)])
    assert len(engine.fetch("victim", 0, 0).records) == 50
    [key] = world.topic_segments("victim")

    # When the object's bytes are replaced by garbage of the same length (and the bytes
    # this process read before are no longer cached; its footer still is)
    world.overwrite(key, _garbage(world.object_size(key)))
    engine.context.caches.segment_bytes = SegmentBytesCache()

    # Then decoding the row group fails by name, not with a crash
    with pytest.raises(CorruptSegmentError):
        engine.fetch("victim", 0, 0)


def test_segment_swapped_for_another_valid_segment_is_detected(
    world: World, make_engine: Callable[..., Engine]
) -> None:
    # Given two valid segments of different row counts, the second copied over the first
    engine = world.engine
    engine.create_topic("victim")
    engine.append("victim", [Record(value=b"one")])
    [first] = world.topic_segments("victim")
    engine.append("victim", [Record(value=b"two"), Record(value=b"three")])
    [second] = [key for key in world.topic_segments("victim") if key != first]
    body = world.read(second)
    world.overwrite(first, body)

    # When the first batch is read, then the mismatch is caught
    with pytest.raises(CorruptSegmentError):
        make_engine().fetch("victim", 0, 0)


def test_fetch_of_a_segment_whose_header_key_is_not_utf8_raises_corrupt_segment(
    world: World, make_engine: Callable[..., Engine]
) -> None:
    # Given an uncompressed segment whose header key bytes are made invalid UTF-8 in S3
    world.engine.create_topic("victim", config={"compression": "none"})
    world.engine.append("victim", [Record(value=b"v", headers=(("KEYMARK", b"x"),))])
    [key] = world.topic_segments("victim")
    body = world.read(key)
    index = body.index(b"KEYMARK")
    world.overwrite(key, body[:index] + b"\xff" + body[index + 1 :])

    # When a fresh engine reads it, then the error is named, not a UnicodeDecodeError
    with pytest.raises(CorruptSegmentError):
        make_engine().fetch("victim", 0, 0)


@pytest.mark.parametrize("body", [b"", b"short"], ids=["empty", "five-bytes"])
def test_fetch_of_a_segment_truncated_below_its_footer_raises_corrupt_segment(
    world: World, make_engine: Callable[..., Engine], body: bytes
) -> None:
    world.engine.create_topic("victim", partitions=2)
    world.engine.append(
        "victim", [Record(value=b"a" * 50, partition=0), Record(value=b"b", partition=1)]
    )
    [key] = world.topic_segments("victim")
    world.overwrite(key, body)

    with pytest.raises(CorruptSegmentError):
        make_engine().fetch("victim", 1, 0)


def test_fetch_of_a_deleted_segment_raises_corrupt_segment(
    world: World, make_engine: Callable[..., Engine]
) -> None:
    world.engine.create_topic("victim")
    world.engine.append("victim", [Record(value=b"a")])
    [key] = world.topic_segments("victim")
    world.backend.stores()[0].delete([key])

    with pytest.raises(CorruptSegmentError):
        make_engine().fetch("victim", 0, 0)
