"""Producers that number each partition's records apart (Kafka's clients, through the
gateway; ADR 0016 §3): one state per (producer, topic, partition), under the partition's
lane id, with lakelog's rules in each."""

from __future__ import annotations

import pytest

from lakelog import (
    Engine,
    InvalidRequestError,
    OutOfOrderSequenceError,
    ProducerBatch,
    ProducerFencedError,
    Record,
)
from lakelog.errors import DuplicateSequenceError, PartitionNotFoundError, UnknownProducerError
from lakelog.kafka.errors import error_code
from lakelog.log.chain import PRODUCER_REQUESTS_KEPT
from lakelog.service.producers import partition_lane

TOPIC = "lanes"


def _records(partition: int, *values: bytes) -> list[Record]:
    return [Record(value=v, partition=partition) for v in values]


def _in(partition: int, producer: int, sequence: int, epoch: int = 0) -> ProducerBatch:
    return ProducerBatch(producer, epoch, sequence=sequence, partition=partition)


@pytest.fixture
def producer(engine: Engine) -> int:
    engine.create_topic(TOPIC, partitions=3)
    return engine.init_producer_id()


def test_each_partition_numbers_its_records_from_zero(engine: Engine, producer: int) -> None:
    # Given one producer sending sequence 0 to two partitions, then sequence 2 to the first
    first = engine.append(TOPIC, _records(0, b"a", b"b"), _in(0, producer, 0))
    other = engine.append(TOPIC, _records(1, b"x"), _in(1, producer, 0))
    third = engine.append(TOPIC, _records(0, b"c"), _in(0, producer, 2))
    # Then every request is new, at dense offsets of its partition
    assert [m.offset for m in first + third] == [0, 1, 2]
    assert [(m.partition, m.offset) for m in other] == [(1, 0)]


def test_a_retry_in_a_partition_gets_the_original_offsets(engine: Engine, producer: int) -> None:
    engine.append(TOPIC, _records(1, b"x"), _in(1, producer, 0))
    original = engine.append(TOPIC, _records(2, b"a", b"b"), _in(2, producer, 0))
    engine.append(TOPIC, _records(2, b"c"), _in(2, producer, 2))
    retried = engine.append(TOPIC, _records(2, b"a", b"b"), _in(2, producer, 0))
    assert retried == original
    assert [r.value for r in engine.fetch(TOPIC, 2, 0).records] == [b"a", b"b", b"c"]


def test_a_gap_in_a_partition_is_out_of_order(engine: Engine, producer: int) -> None:
    engine.append(TOPIC, _records(0, b"a"), _in(0, producer, 0))
    with pytest.raises(OutOfOrderSequenceError):
        engine.append(TOPIC, _records(0, b"c"), _in(0, producer, 5))


def test_a_retry_older_than_the_remembered_requests_is_duplicate_sequence(
    engine: Engine, producer: int
) -> None:
    for sequence in range(PRODUCER_REQUESTS_KEPT + 1):
        engine.append(TOPIC, _records(0, b"%d" % sequence), _in(0, producer, sequence))
    with pytest.raises(DuplicateSequenceError) as raised:
        engine.append(TOPIC, _records(0, b"0"), _in(0, producer, 0))
    # Still invalid_request over HTTP; Kafka's clients take it as an acknowledgement
    assert raised.value.code == "invalid_request"
    assert error_code(raised.value).name == "duplicate_sequence_number"
    assert len(engine.fetch(TOPIC, 0, 0).records) == PRODUCER_REQUESTS_KEPT + 1


def test_a_lower_epoch_in_a_partition_is_fenced(engine: Engine, producer: int) -> None:
    engine.append(TOPIC, _records(0, b"a"), _in(0, producer, 0, epoch=1))
    with pytest.raises(ProducerFencedError):
        engine.append(TOPIC, _records(0, b"b"), _in(0, producer, 1, epoch=0))


def test_records_for_another_partition_are_refused(engine: Engine, producer: int) -> None:
    with pytest.raises(InvalidRequestError, match="partition 0"):
        engine.append(TOPIC, _records(1, b"a"), _in(0, producer, 0))
    with pytest.raises(InvalidRequestError, match="partition 0"):
        engine.append(TOPIC, [Record(value=b"a", key=b"k")], _in(0, producer, 0))
    assert engine.fetch(TOPIC, 1, 0).records == []


def test_the_binding_is_checked_on_the_issued_id(engine: Engine, producer: int) -> None:
    with pytest.raises(UnknownProducerError):
        engine.append(TOPIC, _records(0, b"a"), _in(0, partition_lane(producer, 0), 0))


def test_lanes_are_positive_int64s_distinct_per_partition() -> None:
    lanes = {partition_lane(42, p) for p in range(1000)}
    assert len(lanes) == 1000
    assert all(1 <= lane < 2**63 for lane in lanes)
    assert partition_lane(42, 7) == partition_lane(42, 7) != partition_lane(43, 7)


def test_a_partition_the_topic_lacks_is_partition_not_found(engine: Engine) -> None:
    engine.create_topic(TOPIC, partitions=1)
    with pytest.raises(PartitionNotFoundError) as raised:
        engine.append(TOPIC, _records(3, b"a"))
    assert isinstance(raised.value, InvalidRequestError)
    assert raised.value.code == "invalid_request"
