"""Invariants 2 and 3 under racing producers: dense offsets, exactly once, order kept."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import pytest

from lakelog import Engine, Record, RecordMetadata, StoredRecord
from lakelog.service.produce import AppendRetryPolicy
from tests.support import run_in_threads

THREADS = 8
BATCHES = 50
RECORDS_PER_BATCH = 3


def _read_all(engine: Engine, topic: str, partition: int) -> list[StoredRecord]:
    records: list[StoredRecord] = []
    offset = 0
    while True:
        result = engine.fetch(topic, partition, offset, max_records=10_000)
        if not result.records:
            return records
        records.extend(result.records)
        offset = result.next_offset


def _race(
    make_engine: Callable[..., Engine],
    topic: str,
    partition_of: Callable[[int, int], int],
) -> list[list[RecordMetadata]]:
    """Run THREADS producers, each on its own clients, appending BATCHES batches."""
    acks: list[list[RecordMetadata]] = [[] for _ in range(THREADS)]

    def produce(producer: int) -> None:
        # No deadline: a writer may lose many rounds before it wins one, and the test must not
        # fail for how long that takes.
        engine = make_engine(seed=producer, retry=AppendRetryPolicy(deadline_seconds=float("inf")))
        for batch in range(BATCHES):
            records = [
                Record(
                    value=f"{producer}:{batch}:{i}".encode(),
                    partition=partition_of(producer, batch),
                )
                for i in range(RECORDS_PER_BATCH)
            ]
            acks[producer].extend(engine.append(topic, records))

    run_in_threads(THREADS, produce)
    return acks


def _check_partition_log(
    engine: Engine, topic: str, partition: int, acks: list[list[RecordMetadata]]
) -> set[bytes]:
    records = _read_all(engine, topic, partition)
    # Dense from 0, nothing duplicated.
    assert [r.offset for r in records] == list(range(len(records)))
    values = [r.value for r in records]
    assert len(values) == len(set(values))
    # Each acknowledgement points at the record it acknowledged.
    by_offset = {r.offset: r.value for r in records}
    for producer, producer_acks in enumerate(acks):
        for ack in producer_acks:
            if ack.partition == partition:
                assert by_offset[ack.offset] is not None
                assert by_offset[ack.offset].startswith(f"{producer}:".encode())
    # Each producer's records keep their order within the partition.
    positions: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for record in records:
        assert record.value is not None
        producer, batch, index = map(int, record.value.split(b":"))
        positions[producer].append((batch, index))
    for sequence in positions.values():
        assert sequence == sorted(sequence)
    # A batch is contiguous: its records have consecutive offsets.
    for start in range(0, len(records), RECORDS_PER_BATCH):
        chunk = records[start : start + RECORDS_PER_BATCH]
        assert len({r.value.rsplit(b":", 1)[0] for r in chunk if r.value}) == 1
    return set(values)  # type: ignore[arg-type]


@pytest.mark.slow
def test_racing_producers_on_one_partition_get_dense_offsets_exactly_once(
    make_engine: Callable[..., Engine],
) -> None:
    # Given one partition and eight producers, each with its own clients and caches
    reader = make_engine()
    reader.create_topic("race", partitions=1)

    # When they all append 50 batches at once
    acks = _race(make_engine, "race", lambda _producer, _batch: 0)

    # Then every record is in the log exactly once, at dense offsets, in producer order
    values = _check_partition_log(reader, "race", 0, acks)
    expected = {
        f"{p}:{b}:{i}".encode()
        for p in range(THREADS)
        for b in range(BATCHES)
        for i in range(RECORDS_PER_BATCH)
    }
    assert values == expected
    assert reader.list_offset("race", 0, "latest") == len(expected)
    assert sum(len(a) for a in acks) == len(expected)


@pytest.mark.slow
def test_racing_producers_over_three_partitions_get_dense_offsets_exactly_once(
    make_engine: Callable[..., Engine],
) -> None:
    # Given three partitions
    reader = make_engine()
    reader.create_topic("race3", partitions=3)

    # When eight producers append 50 batches each, rotating over the partitions
    acks = _race(make_engine, "race3", lambda producer, batch: (producer + batch) % 3)

    # Then each partition is dense and the union holds every record exactly once
    seen: set[bytes] = set()
    for partition in range(3):
        values = _check_partition_log(reader, "race3", partition, acks)
        assert not values & seen
        seen |= values
    assert len(seen) == THREADS * BATCHES * RECORDS_PER_BATCH
    described = reader.describe_topic("race3")
    assert sum(p.high_watermark for p in described.partitions) == len(seen)
