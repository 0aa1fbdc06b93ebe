"""Invariant 4 without crashes: retries, gaps, fencing and expiry of idempotent producers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lakelog import (
    Engine,
    InvalidRequestError,
    OutOfOrderSequenceError,
    ProducerBatch,
    ProducerFencedError,
    Record,
)
from lakelog.limits import MAX_PRODUCERS_PER_PARTITION
from lakelog.log.ledger import PRODUCER_EXPIRATION_MS
from lakelog.storage.attributes import item_size
from lakelog.storage.dynamodb import head_item
from lakelog.storage.keys import partition_pk

TOPIC = "idem"


def _records(*values: bytes, partition: int = 0) -> list[Record]:
    return [Record(value=v, partition=partition) for v in values]


def _values(engine: Engine, partition: int = 0) -> list[bytes | None]:
    return [r.value for r in engine.fetch(TOPIC, partition, 0, max_records=10_000).records]


@pytest.fixture
def producer(engine: Engine) -> int:
    engine.create_topic(TOPIC, partitions=2)
    return engine.init_producer_id()


def test_producer_ids_are_unique(engine: Engine) -> None:
    assert len({engine.init_producer_id() for _ in range(5)}) == 5


def test_retried_batch_returns_its_original_offsets_and_writes_nothing(
    engine: Engine, make_engine: Callable[..., Engine], producer: int
) -> None:
    first = engine.append(TOPIC, _records(b"a", b"b"), ProducerBatch(producer, 0, {0: 0}))
    engine.append(TOPIC, _records(b"c"), ProducerBatch(producer, 0, {0: 2}))

    # The first batch is retried, from this process and from another
    for retrier in (engine, make_engine()):
        again = retrier.append(TOPIC, _records(b"a", b"b"), ProducerBatch(producer, 0, {0: 0}))
        assert again == first

    assert _values(engine) == [b"a", b"b", b"c"]


def test_sequence_gap_is_rejected_and_changes_nothing(engine: Engine, producer: int) -> None:
    engine.append(TOPIC, _records(b"a"), ProducerBatch(producer, 0, {0: 0}))

    with pytest.raises(OutOfOrderSequenceError) as info:
        engine.append(TOPIC, _records(b"skipped"), ProducerBatch(producer, 0, {0: 5}))

    assert info.value.expected == 1
    assert _values(engine) == [b"a"]


def test_new_producer_must_start_at_sequence_zero(engine: Engine, producer: int) -> None:
    with pytest.raises(OutOfOrderSequenceError):
        engine.append(TOPIC, _records(b"a"), ProducerBatch(producer, 0, {0: 3}))
    assert _values(engine) == []


def test_stale_epoch_is_fenced_and_changes_nothing(engine: Engine, producer: int) -> None:
    # Given the producer restarted with epoch 1 and wrote
    engine.append(TOPIC, _records(b"old"), ProducerBatch(producer, 0, {0: 0}))
    engine.append(TOPIC, _records(b"new"), ProducerBatch(producer, 1, {0: 0}))

    # When the zombie with epoch 0 writes again
    with pytest.raises(ProducerFencedError) as info:
        engine.append(TOPIC, _records(b"zombie"), ProducerBatch(producer, 0, {0: 1}))

    # Then it is fenced and nothing was written
    assert info.value.current_epoch == 1
    assert _values(engine) == [b"old", b"new"]


def test_sequences_are_per_partition(engine: Engine, producer: int) -> None:
    records = [*_records(b"a0", b"b0"), *_records(b"a1", partition=1)]
    acks = engine.append(TOPIC, records, ProducerBatch(producer, 0, {0: 0, 1: 0}))
    assert [(a.partition, a.offset) for a in acks] == [(0, 0), (0, 1), (1, 0)]

    more = engine.append(
        TOPIC,
        [*_records(b"c0"), *_records(b"b1", partition=1)],
        ProducerBatch(producer, 0, {0: 2, 1: 1}),
    )
    assert [(a.partition, a.offset) for a in more] == [(0, 2), (1, 1)]


def test_missing_sequence_for_a_partition_is_rejected(engine: Engine, producer: int) -> None:
    with pytest.raises(InvalidRequestError, match="sequences missing"):
        engine.append(
            TOPIC,
            [*_records(b"a"), *_records(b"b", partition=1)],
            ProducerBatch(producer, 0, {0: 0}),
        )
    assert _values(engine, 0) == [] and _values(engine, 1) == []


def test_partly_retried_request_appends_only_the_new_partition(
    engine: Engine, producer: int
) -> None:
    # Given partition 0's batch landed but partition 1's did not (separate requests)
    engine.append(TOPIC, _records(b"a0"), ProducerBatch(producer, 0, {0: 0}))

    # When a request carries the retried batch for 0 and a new one for 1
    acks = engine.append(
        TOPIC,
        [*_records(b"a0"), *_records(b"a1", partition=1)],
        ProducerBatch(producer, 0, {0: 0, 1: 0}),
    )

    # Then partition 0 keeps one copy and partition 1 gets its batch
    assert [(a.partition, a.offset) for a in acks] == [(0, 0), (1, 0)]
    assert _values(engine, 0) == [b"a0"]
    assert _values(engine, 1) == [b"a1"]


def test_idle_producers_are_forgotten_after_the_expiration(
    make_engine: Callable[..., Engine],
) -> None:
    # Given a producer that wrote once, and a clock we control
    now = [1_000_000]
    engine = make_engine(clock_ms=lambda: now[0], sleep=lambda _s: None)
    engine.create_topic(TOPIC)
    idle = engine.init_producer_id()
    active = engine.init_producer_id()
    engine.append(TOPIC, _records(b"a"), ProducerBatch(idle, 0, {0: 0}))
    pk = partition_pk(engine.describe_topic(TOPIC).topic_id, 0)

    # When another producer appends after the expiration period
    now[0] += PRODUCER_EXPIRATION_MS + 1
    engine.append(TOPIC, _records(b"b"), ProducerBatch(active, 0, {0: 0}))

    # Then the head no longer remembers the idle producer, only the active one
    head = engine.context.ledger.read_heads([pk])[pk]
    assert set(head.producers) == {active}


def test_append_over_more_partitions_than_one_transaction_holds(
    engine: Engine,
) -> None:
    # Given a topic with 60 partitions (a transaction moves at most 50)
    engine.create_topic("wide", partitions=60)
    records = [Record(value=str(p).encode(), partition=p) for p in range(60)]

    # When one append touches all of them
    acks = engine.append("wide", records)

    # Then every partition got its record at offset 0, reported in request order
    assert [(a.partition, a.offset) for a in acks] == [(p, 0) for p in range(60)]
    described = engine.describe_topic("wide")
    assert all(p.high_watermark == 1 for p in described.partitions)
    assert engine.fetch("wide", 59, 0).records[0].value == b"59"


def test_a_retry_with_a_different_record_count_is_rejected_naming_the_original(
    engine: Engine,
) -> None:
    engine.create_topic("t")
    pid = engine.init_producer_id()
    engine.append("t", [Record(value=b"a"), Record(value=b"b")], ProducerBatch(pid, 0, {0: 0}))

    with pytest.raises(InvalidRequestError, match="original batch had 2"):
        engine.append("t", [Record(value=b"a")], ProducerBatch(pid, 0, {0: 0}))


def test_a_producer_moving_between_processes_is_checked_against_the_ledger_not_a_stale_head(
    make_engine: Callable[..., Engine],
) -> None:
    # Given process A cached the head after the producer's first batch
    a, b = make_engine(), make_engine()
    a.create_topic("t")
    pid = a.init_producer_id()
    a.append("t", [Record(value=b"0")], ProducerBatch(pid, 0, {0: 0}))
    # And the producer's next batch went through process B
    b.append("t", [Record(value=b"1")], ProducerBatch(pid, 0, {0: 1}))

    # When its third batch reaches A again, and then B retries its batch through A
    third = a.append("t", [Record(value=b"2")], ProducerBatch(pid, 0, {0: 2}))
    retried = a.append("t", [Record(value=b"1")], ProducerBatch(pid, 0, {0: 1}))

    # Then A confirms against the ledger instead of trusting its stale head
    assert [m.offset for m in third] == [2]
    assert [m.offset for m in retried] == [1]
    assert [r.value for r in a.fetch("t", 0, 0).records] == [b"0", b"1", b"2"]


def test_a_thousand_new_producers_keep_the_head_bounded_and_recent_retries_recognized(
    make_engine: Callable[..., Engine],
) -> None:
    # Given a thousand producers, each appending its first batch to one partition
    now = [1_000_000]
    engine = make_engine(clock_ms=lambda: now[0], sleep=lambda _s: None)
    engine.create_topic(TOPIC)
    pk = partition_pk(engine.describe_topic(TOPIC).topic_id, 0)
    producers = [engine.init_producer_id() for _ in range(1_000)]
    acks = {}
    for index, pid in enumerate(producers):
        now[0] += 1
        value = str(index).encode()
        acks[pid] = engine.append(TOPIC, _records(value), ProducerBatch(pid, 0, {0: 0}))

    # Then every append succeeded and the head remembers only the most recent producers,
    # far below DynamoDB's item size
    head = engine.context.ledger.read_heads([pk])[pk]
    assert head.high_watermark == 1_000
    recent = producers[-MAX_PRODUCERS_PER_PARTITION:]
    assert set(head.producers) == set(recent)
    assert item_size(head_item(pk, head)) < 16 * 1024

    # And a retry of a recent producer is recognized: no duplicate
    for pid in recent:
        assert engine.append(TOPIC, _records(b"again"), ProducerBatch(pid, 0, {0: 0})) == acks[pid]
    assert engine.context.ledger.read_heads([pk])[pk].high_watermark == 1_000

    # While a forgotten producer's next batch is out of order, and nothing is written
    with pytest.raises(OutOfOrderSequenceError):
        engine.append(TOPIC, _records(b"late"), ProducerBatch(producers[0], 0, {0: 1}))
    assert engine.context.ledger.read_heads([pk])[pk].high_watermark == 1_000
