"""No ledger item grows with the number of producers, and a failed write is all or nothing.

Ledger v1 kept every producer's state in the partition head: ~100 long producer ids pushed
it past DynamoDB's 400 KB item size and made the partition unwritable, and in `lakelog dev`
the failed write was half applied. Under ledger v2 (ADR 0012, 2.5) a chain item stamps only
its own producer and each (producer, topic) has its own item of bounded size; the memory
and moto ledgers apply a chain put and its producer update together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lakelog import Engine, ProducerBatch, Record
from lakelog.log.chain import PRODUCER_REQUESTS_KEPT
from lakelog.log.records import ProducerRequest, TopicProducerState
from lakelog.storage import attributes, dynamodb
from lakelog.storage.attributes import item_size, num, producer_attributes
from lakelog.storage.keys import producer_state_pk, topic_segments_prefix
from lakelog.types import StoredRecord

TOPIC = "bounded"
INT64_MAX = 2**63 - 1


def test_a_producer_item_at_its_largest_stays_within_1_kb() -> None:
    # Every number at its largest: int64 ids, epochs and sequences, five remembered requests
    state = TopicProducerState(
        producer_id=INT64_MAX,
        epoch=INT64_MAX,
        last_sequence=INT64_MAX,
        requests=tuple(
            ProducerRequest(INT64_MAX - n, INT64_MAX, INT64_MAX, b"\xff" * 8)
            for n in range(PRODUCER_REQUESTS_KEPT)
        ),
        expires_ms=INT64_MAX,
    )
    key = {"pk": {"S": producer_state_pk("f" * 32, INT64_MAX)}, "sk": num(0)}
    assert item_size(key | producer_attributes(state)) <= 1024


class _InjectedError(Exception):
    pass


def _failing_producer_attributes(_state: TopicProducerState) -> dict[str, object]:
    raise _InjectedError("the producer item's write failed")


def _view(engine: Engine) -> tuple[list[StoredRecord], int, object, object]:
    """What a reader sees of the topic: records, high watermark, tail, producer states."""
    topic_id = engine.describe_topic(TOPIC).topic_id
    found = engine.context.ledger.read_tail(topic_id)
    assert found is not None
    return (
        engine.fetch(TOPIC, 0, 0).records,
        engine.list_offset(TOPIC, 0, "latest"),
        found[0],
        sorted(str(i) for i in engine.context.ledger.chain(topic_id)),
    )


@pytest.mark.parametrize("backend_name", ["memory", pytest.param("moto", marks=pytest.mark.moto)])
def test_a_chain_put_that_fails_midway_changes_no_readers_view_and_gc_removes_its_segment(
    make_engine: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch, backend_name: str
) -> None:
    # Given a topic holding one idempotent append
    engine = make_engine(grace_ms=0, sleep=lambda _s: None)
    engine.create_topic(TOPIC)
    pid = engine.init_producer_id()
    engine.append(TOPIC, [Record(b"kept", partition=0)], ProducerBatch(pid, 0, sequence=0))
    topic_id = engine.describe_topic(TOPIC).topic_id
    before = {reader: _view(reader) for reader in (engine, make_engine())}
    state_before = engine.context.ledger.read_producer(topic_id, pid)
    segments_before = {i.key for i in engine.context.objects.list(topic_segments_prefix(topic_id))}

    # When the producer's next append fails while the ledger applies its write
    for module in (attributes, dynamodb):
        monkeypatch.setattr(module, "producer_attributes", _failing_producer_attributes)
    with pytest.raises(_InjectedError):
        engine.append(TOPIC, [Record(b"lost", partition=0)], ProducerBatch(pid, 0, sequence=1))
    monkeypatch.undo()

    # Then no reader, in this process or a fresh one, sees any of it
    for reader in (engine, make_engine()):
        assert _view(reader) == next(iter(before.values()))
    assert engine.context.ledger.read_producer(topic_id, pid) == state_before
    # And its segment is an orphan that gc removes
    segments = {i.key for i in engine.context.objects.list(topic_segments_prefix(topic_id))}
    (orphan,) = segments - segments_before
    assert engine.gc.collect_topic(TOPIC) == [orphan]

    # And the producer goes on at the same sequence, once
    acks = engine.append(TOPIC, [Record(b"next", partition=0)], ProducerBatch(pid, 0, sequence=1))
    assert [a.offset for a in acks] == [1]
    assert [r.value for r in make_engine().fetch(TOPIC, 0, 0).records] == [b"kept", b"next"]
