"""Invariant 4 without crashes: retries, gaps, fencing and expiry of idempotent producers."""

from __future__ import annotations

import itertools
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
from lakelog.log.chain import PRODUCER_EXPIRATION_MS, PRODUCER_REQUESTS_KEPT
from lakelog.log.records import TopicProducerState
from lakelog.storage.attributes import chain_item_to_item, item_size, num, producer_attributes
from lakelog.storage.keys import chain_pk, producer_state_pk

TOPIC = "idem"


def _records(*values: bytes, partition: int = 0) -> list[Record]:
    return [Record(value=v, partition=partition) for v in values]


def _values(engine: Engine, partition: int = 0) -> list[bytes | None]:
    return [r.value for r in engine.fetch(TOPIC, partition, 0, max_records=10_000).records]


def _topic_id(engine: Engine) -> str:
    return engine.describe_topic(TOPIC).topic_id


def _state(engine: Engine, producer_id: int) -> TopicProducerState | None:
    return engine.context.ledger.read_producer(_topic_id(engine), producer_id)


def _producer_item_size(topic_id: str, state: TopicProducerState) -> int:
    """Bytes DynamoDB counts for the producer's item in the topic (ADR 0012, 1.2)."""
    key = {"pk": {"S": producer_state_pk(topic_id, state.producer_id)}, "sk": num(0)}
    return item_size(key | producer_attributes(state))


@pytest.fixture
def producer(engine: Engine) -> int:
    engine.create_topic(TOPIC, partitions=2)
    return engine.init_producer_id()


def test_producer_ids_are_unique_and_unguessable(engine: Engine) -> None:
    ids = [engine.init_producer_id() for _ in range(20)]
    assert len(set(ids)) == 20
    assert all(1 <= pid < 2**63 for pid in ids)
    # Random, not sequential: knowing one id tells nothing of the next (ADR 0012, 2.1)
    assert all(abs(later - earlier) > 1 for earlier, later in itertools.pairwise(ids))
    assert max(ids) > 2**40


def test_retried_batch_returns_its_original_offsets_and_writes_nothing(
    engine: Engine, make_engine: Callable[..., Engine], producer: int
) -> None:
    first = engine.append(TOPIC, _records(b"a", b"b"), ProducerBatch(producer, 0, sequence=0))
    engine.append(TOPIC, _records(b"c"), ProducerBatch(producer, 0, sequence=2))

    # The first batch is retried, from this process and from another
    for retrier in (engine, make_engine()):
        again = retrier.append(TOPIC, _records(b"a", b"b"), ProducerBatch(producer, 0, sequence=0))
        assert again == first

    assert _values(engine) == [b"a", b"b", b"c"]


def test_sequence_gap_is_rejected_and_changes_nothing(engine: Engine, producer: int) -> None:
    engine.append(TOPIC, _records(b"a"), ProducerBatch(producer, 0, sequence=0))

    with pytest.raises(OutOfOrderSequenceError) as info:
        engine.append(TOPIC, _records(b"skipped"), ProducerBatch(producer, 0, sequence=5))

    assert info.value.expected == 1
    assert _values(engine) == [b"a"]


def test_new_producer_must_start_at_sequence_zero(engine: Engine, producer: int) -> None:
    with pytest.raises(OutOfOrderSequenceError):
        engine.append(TOPIC, _records(b"a"), ProducerBatch(producer, 0, sequence=3))
    assert _values(engine) == []


def test_stale_epoch_is_fenced_and_changes_nothing(engine: Engine, producer: int) -> None:
    # Given the producer restarted with epoch 1 and wrote
    engine.append(TOPIC, _records(b"old"), ProducerBatch(producer, 0, sequence=0))
    engine.append(TOPIC, _records(b"new"), ProducerBatch(producer, 1, sequence=0))

    # When the zombie with epoch 0 writes again
    with pytest.raises(ProducerFencedError) as info:
        engine.append(TOPIC, _records(b"zombie"), ProducerBatch(producer, 0, sequence=1))

    # Then it is fenced and nothing was written
    assert info.value.current_epoch == 1
    assert _values(engine) == [b"old", b"new"]


def test_a_per_partition_sequence_is_not_taken_for_the_topics_sequence(
    engine: Engine, producer: int
) -> None:
    # One sequence per topic (ADR 0012): a request over both partitions covers 0..2
    records = [*_records(b"a0", b"b0"), *_records(b"a1", partition=1)]
    acks = engine.append(TOPIC, records, ProducerBatch(producer, 0, sequence=0))
    assert [(a.partition, a.offset) for a in acks] == [(0, 0), (0, 1), (1, 0)]

    # A client still counting per partition (1 for partition 1) is refused, writing nothing
    with pytest.raises(InvalidRequestError, match="sequence 1"):
        engine.append(TOPIC, _records(b"b1", partition=1), ProducerBatch(producer, 0, sequence=1))
    assert _values(engine, 1) == [b"a1"]

    # The next request starts at 3, whatever partitions it lands on
    more = engine.append(
        TOPIC,
        [*_records(b"c0"), *_records(b"b1", partition=1)],
        ProducerBatch(producer, 0, sequence=3),
    )
    assert [(a.partition, a.offset) for a in more] == [(0, 2), (1, 1)]
    state = _state(engine, producer)
    assert state is not None and state.last_sequence == 4


def test_a_retry_with_more_records_than_the_original_is_rejected_naming_both_counts(
    engine: Engine, producer: int
) -> None:
    # Given the producer's request for partition 0 landed
    engine.append(TOPIC, _records(b"a0"), ProducerBatch(producer, 0, sequence=0))

    # When a "retry" under the same sequence carries a new record for partition 1 too
    # (a request is atomic under v2: it cannot be half retried)
    with pytest.raises(
        InvalidRequestError, match="sequence 0 with 2 records; the original request had 1"
    ):
        engine.append(
            TOPIC,
            [*_records(b"a0"), *_records(b"a1", partition=1)],
            ProducerBatch(producer, 0, sequence=0),
        )

    # Then nothing of it is written: partition 0 keeps one copy, partition 1 none
    assert _values(engine, 0) == [b"a0"]
    assert _values(engine, 1) == []
    # And the new record goes under the next sequence
    acks = engine.append(
        TOPIC, _records(b"a1", partition=1), ProducerBatch(producer, 0, sequence=1)
    )
    assert [(a.partition, a.offset) for a in acks] == [(1, 0)]


def test_idle_producers_are_forgotten_after_the_expiration(
    make_engine: Callable[..., Engine],
) -> None:
    # Given a producer that wrote once, and a clock we control
    now = [1_000_000]
    engine = make_engine(clock_ms=lambda: now[0], sleep=lambda _s: None)
    engine.create_topic(TOPIC)
    idle = engine.init_producer_id()
    engine.append(TOPIC, _records(b"a"), ProducerBatch(idle, 0, sequence=0))
    state = _state(engine, idle)
    assert state is not None and state.expires_ms == now[0] + PRODUCER_EXPIRATION_MS

    # When the expiration period passes without an append of it
    now[0] += PRODUCER_EXPIRATION_MS + 1

    # Then the topic no longer remembers it: its next sequence is out of order (from this
    # process and another), while a fresh start at sequence 0 is a new request
    for process in (engine, make_engine(clock_ms=lambda: now[0], sleep=lambda _s: None)):
        with pytest.raises(OutOfOrderSequenceError, match="expected 0"):
            process.append(TOPIC, _records(b"b"), ProducerBatch(idle, 0, sequence=1))
    acks = engine.append(TOPIC, _records(b"a"), ProducerBatch(idle, 0, sequence=0))
    assert [a.offset for a in acks] == [1]
    assert _values(engine) == [b"a", b"a"]


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
    # In one chain item: the request is atomic (ADR 0012, 1.3)
    topic_id = engine.describe_topic("wide").topic_id
    (item,) = [i for i in engine.context.ledger.chain(topic_id) if i.kind == "append"]
    assert [b.partition for b in item.batches] == list(range(60))


def test_a_retry_with_a_different_record_count_is_rejected_naming_the_original(
    engine: Engine,
) -> None:
    engine.create_topic("t")
    pid = engine.init_producer_id()
    engine.append("t", [Record(value=b"a"), Record(value=b"b")], ProducerBatch(pid, 0, sequence=0))

    with pytest.raises(InvalidRequestError, match="the original request had 2"):
        engine.append("t", [Record(value=b"a")], ProducerBatch(pid, 0, sequence=0))
    assert engine.list_offset("t", 0, "latest") == 2


def test_a_producer_moving_between_processes_is_checked_against_the_ledger_not_a_stale_head(
    make_engine: Callable[..., Engine],
) -> None:
    # Given process A cached the head after the producer's first batch
    a, b = make_engine(), make_engine()
    a.create_topic("t")
    pid = a.init_producer_id()
    a.append("t", [Record(value=b"0")], ProducerBatch(pid, 0, sequence=0))
    # And the producer's next batch went through process B
    b.append("t", [Record(value=b"1")], ProducerBatch(pid, 0, sequence=1))

    # When its third batch reaches A again, and then B retries its batch through A
    third = a.append("t", [Record(value=b"2")], ProducerBatch(pid, 0, sequence=2))
    retried = a.append("t", [Record(value=b"1")], ProducerBatch(pid, 0, sequence=1))

    # Then A confirms against the ledger instead of trusting its stale head
    assert [m.offset for m in third] == [2]
    assert [m.offset for m in retried] == [1]
    assert [r.value for r in a.fetch("t", 0, 0).records] == [b"0", b"1", b"2"]


def test_a_thousand_new_producers_keep_their_state_bounded_and_recent_retries_recognized(
    make_engine: Callable[..., Engine],
) -> None:
    # Given a thousand producers, each appending its first batch to one partition
    now = [1_000_000]
    engine = make_engine(clock_ms=lambda: now[0], sleep=lambda _s: None)
    engine.create_topic(TOPIC)
    topic_id = _topic_id(engine)
    producers = [engine.init_producer_id() for _ in range(1_000)]
    acks = {}
    for index, pid in enumerate(producers):
        now[0] += 1
        value = str(index).encode()
        acks[pid] = engine.append(TOPIC, _records(value), ProducerBatch(pid, 0, sequence=0))

    # Then every append succeeded, and no item grows with the number of producers: each
    # chain item stamps only its own producer, each producer has its own small item
    assert engine.list_offset(TOPIC, 0, "latest") == 1_000
    chain = [i for i in engine.context.ledger.chain(topic_id) if i.kind == "append"]
    sizes = [item_size(chain_item_to_item(chain_pk(topic_id), item)) for item in chain]
    assert len(sizes) == 1_000 and max(sizes) <= 158  # ADR 0012, 1.2: 1 partition, idempotent
    for pid in (*producers[:5], *producers[-5:]):
        state = _state(engine, pid)
        assert state is not None and _producer_item_size(topic_id, state) <= 1024

    # And a retry of a recent producer is recognized, from any process: no duplicate
    other = make_engine(clock_ms=lambda: now[0], sleep=lambda _s: None)
    for index in range(len(producers) - PRODUCER_REQUESTS_KEPT, len(producers)):
        pid, value = producers[index], str(index).encode()
        again = other.append(TOPIC, _records(value), ProducerBatch(pid, 0, sequence=0))
        assert again == acks[pid]
    assert engine.list_offset(TOPIC, 0, "latest") == 1_000

    # While the first producer, forgotten once its state expired, is out of order
    now[0] = 1_000_001 + PRODUCER_EXPIRATION_MS + 1_000  # stored expiries are whole seconds
    with pytest.raises(OutOfOrderSequenceError):
        engine.append(TOPIC, _records(b"late"), ProducerBatch(producers[0], 0, sequence=1))
    assert engine.list_offset(TOPIC, 0, "latest") == 1_000
