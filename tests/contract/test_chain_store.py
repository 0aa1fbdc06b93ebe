"""The `LedgerStore` contract (ADR 0012): a topic's chain, its meta item, producer states.

Every write is conditional and all or nothing: a put at a taken seq, or an idempotent put
whose producer condition fails, changes nothing anywhere and says what it met.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from lakelog.errors import CorruptLedgerError, LakelogError, UnavailableError
from lakelog.limits import DYNAMODB_ITEM_BYTES
from lakelog.log.records import (
    BatchRef,
    ChainItem,
    ChainMeta,
    PartitionMark,
    ProducerRequest,
    ProducerStamp,
    ProducerUpdate,
    TopicProducerState,
)
from lakelog.storage.attributes import Item, chain_item_to_item, item_size
from lakelog.storage.keys import HEAD_SK, chain_pk, producer_state_pk
from lakelog.storage.ports import ChainConflict, LedgerStore
from tests.contract.backends import AwsBackend, Backend, MemoryBackend
from tests.contract.chain_support import (
    APPEND_MS,
    EXPIRES_MS,
    appended,
    digest,
    genesis,
    new_topic_id,
    producer_update,
)
from tests.contract.support import race

THREADS = 8
KB = 1024


def _chain_of(chains: LedgerStore, topic_id: str, appends: int, partitions: int = 3) -> ChainItem:
    """Create a chain and put ``appends`` items on it; the tail."""
    tail = genesis(partitions)
    chains.create_chain(topic_id, ChainMeta(), tail)
    for i in range(appends):
        tail = appended(tail, {i % partitions: i + 1})
        chains.put_item(topic_id, tail)
    return tail


def _stored(backend: Backend, pk: str, sk: int) -> Item:
    """The item at ``(pk, sk)`` as the backend holds it, in DynamoDB's attribute form."""
    if isinstance(backend, MemoryBackend):
        with backend.storage.lock:
            return backend.storage.ledger_items[pk].items[sk]
    assert isinstance(backend, AwsBackend)
    response = backend.client("dynamodb").get_item(
        TableName=backend.names.ledger_table,
        Key={"pk": {"S": pk}, "sk": {"N": str(sk)}},
        ConsistentRead=True,
    )
    item: Item = response["Item"]
    return item


# --- creation, reads ---------------------------------------------------------------------


def test_a_chain_is_created_once_and_read_back_with_its_meta(
    chains: LedgerStore, topic_id: str
) -> None:
    meta = ChainMeta(log_start=(0, 0, 0))
    chains.create_chain(topic_id, meta, genesis())

    chains.create_chain(topic_id, ChainMeta(log_start=(9,), version=4), genesis(7))  # no-op

    assert chains.read_tail(topic_id) == (genesis(), meta)
    assert chains.read_meta(topic_id) == meta
    assert chains.get_item(topic_id, 0) == genesis()
    assert list(chains.chain(topic_id)) == [genesis()]


def test_an_unknown_topic_has_no_tail_meta_item_or_producer(
    chains: LedgerStore, topic_id: str
) -> None:
    assert chains.read_tail(topic_id) is None
    assert chains.read_meta(topic_id) is None
    assert chains.get_item(topic_id, 0) is None
    assert chains.query(topic_id, 0, 10) == ([], None)
    assert list(chains.chain(topic_id)) == []
    assert chains.read_producer(topic_id, 1) is None
    assert chains.update_meta(topic_id, ChainMeta(), 0) is False
    assert chains.read_meta(topic_id) is None


def test_puts_extend_the_tail_seen_by_every_store(backend: Backend, topic_id: str) -> None:
    writer, reader = backend.stores()[1], backend.stores()[1]
    tail = _chain_of(writer, topic_id, 4)

    assert reader.read_tail(topic_id) == (tail, ChainMeta())
    assert [item.seq for item in reader.chain(topic_id)] == [0, 1, 2, 3, 4]
    assert reader.get_item(topic_id, 4) == tail
    assert reader.get_item(topic_id, 5) is None


@pytest.mark.parametrize(
    ("from_seq", "limit", "seqs", "meta"),
    [
        (0, 3, [0, 1, 2], False),
        (0, 5, [0, 1, 2, 3, 4], False),
        (0, 6, [0, 1, 2, 3, 4, 5], True),
        (3, 3, [3, 4, 5], True),
        (4, 3, [4, 5], True),
        (6, 3, [], True),
        (0, 0, [], False),
        (6, 0, [], True),
    ],
)
def test_a_query_returns_items_in_seq_order_and_the_meta_only_at_the_end(
    chains: LedgerStore, topic_id: str, from_seq: int, limit: int, seqs: list[int], meta: bool
) -> None:
    _chain_of(chains, topic_id, 5)

    items, found = chains.query(topic_id, from_seq, limit)

    assert [item.seq for item in items] == seqs
    assert items == [chains.get_item(topic_id, seq) for seq in seqs]
    assert found == (ChainMeta() if meta else None)


def test_the_meta_item_is_replaced_only_at_the_version_read(
    chains: LedgerStore, topic_id: str
) -> None:
    chains.create_chain(topic_id, ChainMeta(), genesis())
    moved = ChainMeta(log_start=(5, 0, 7), bytes_below=(500, 0, 700), l1_end=(5,), chain_start=2)

    assert chains.update_meta(topic_id, moved, 0) is True
    assert chains.read_meta(topic_id) == replace(moved, version=1)
    assert chains.update_meta(topic_id, ChainMeta(sealed_ms=1), 0) is False  # stale
    assert chains.update_meta(topic_id, ChainMeta(sealed_ms=APPEND_MS), 1) is True

    assert chains.read_meta(topic_id) == ChainMeta(sealed_ms=APPEND_MS, version=2)
    assert chains.read_tail(topic_id) == (genesis(), ChainMeta(sealed_ms=APPEND_MS, version=2))


def test_deleting_a_chain_removes_its_items_and_meta_and_may_run_again(
    backend: Backend, topic_id: str
) -> None:
    chains = backend.stores()[1]
    other = new_topic_id()
    kept = _chain_of(chains, other, 1)
    stamp, update = producer_update(7, 0, 0, 1, 1, continues=False)
    chains.create_chain(topic_id, ChainMeta(), genesis())
    chains.put_item(topic_id, appended(genesis(), {0: 1}, producer=stamp), update)
    for _ in range(30):  # past one batch of deletes
        tail = chains.read_tail(topic_id)
        assert tail is not None
        chains.put_item(topic_id, appended(tail[0], {1: 1}))

    chains.delete_chain(topic_id)
    chains.delete_chain(topic_id)

    assert chains.read_tail(topic_id) is None
    assert chains.read_meta(topic_id) is None
    assert list(chains.chain(topic_id)) == []
    assert chains.read_tail(other) == (kept, ChainMeta())
    assert chains.read_producer(topic_id, 7) == update.state  # producer items expire by TTL
    chains.delete_chain(new_topic_id())  # never created: nothing to do


def test_deleting_items_removes_exactly_those_below_and_never_the_meta_item(
    chains: LedgerStore, topic_id: str
) -> None:
    tail = _chain_of(chains, topic_id, 30)  # past one batch of deletes
    chains.delete_items(topic_id, [*range(0, 27), HEAD_SK])
    chains.delete_items(topic_id, range(0, 27))  # again: missing ones are not an error

    assert [item.seq for item in chains.chain(topic_id)] == [27, 28, 29, 30]
    assert chains.read_tail(topic_id) == (tail, ChainMeta())
    assert chains.query(topic_id, 0, 2) == ([chains.get_item(topic_id, s) for s in (27, 28)], None)


# --- conditional puts --------------------------------------------------------------------


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_a_put_at_an_occupied_seq_changes_nothing_and_returns_the_item_there(
    backend: Backend, topic_id: str, idempotent: bool
) -> None:
    chains = backend.stores()[1]
    there = _chain_of(chains, topic_id, 1)
    before = backend.contents()
    stamp, update = producer_update(7, 0, 0, 2, 1, continues=False)
    late = appended(genesis(), {2: 2}, producer=stamp if idempotent else None)

    with pytest.raises(ChainConflict) as refused:
        chains.put_item(topic_id, late, update if idempotent else None)

    assert refused.value.current == there
    assert not refused.value.producer_failed and not refused.value.retryable
    assert backend.contents() == before
    assert chains.read_producer(topic_id, 7) is None


def _stored_state(epoch: int, last: int, expires_ms: int = EXPIRES_MS) -> TopicProducerState:
    return TopicProducerState(
        producer_id=7,
        epoch=epoch,
        last_sequence=last,
        requests=(ProducerRequest(0, last + 1, 1, digest("first")),),
        expires_ms=expires_ms,
    )


def _with_state(chains: LedgerStore, topic_id: str, state: TopicProducerState) -> ChainItem:
    """A chain whose one append stored ``state`` for producer 7 (written as a first request)."""
    chains.create_chain(topic_id, ChainMeta(), genesis())
    request = state.requests[-1]
    stamp = ProducerStamp(7, state.epoch, request.first_sequence, request.record_count, b"s" * 8)
    item = appended(genesis(), {0: 1}, producer=stamp)
    chains.put_item(topic_id, item, ProducerUpdate(state, continues=False, now_ms=0))
    assert chains.read_producer(topic_id, 7) == state
    return item


ACCEPTED = [
    # (stored: (epoch, last, expires) or None, request: epoch, first, continues, now)
    pytest.param(None, (0, 0, False, APPEND_MS), id="first-on-absent"),
    pytest.param((0, 4, EXPIRES_MS), (1, 0, False, APPEND_MS), id="first-on-older-epoch"),
    pytest.param((3, 4, EXPIRES_MS), (3, 0, False, EXPIRES_MS + 1), id="first-on-expired"),
    pytest.param((0, 4, EXPIRES_MS), (0, 5, True, APPEND_MS), id="continues"),
    pytest.param((0, 4, EXPIRES_MS), (0, 5, True, EXPIRES_MS), id="continues-at-expiry"),
]
REFUSED = [
    pytest.param(None, (0, 5, True, APPEND_MS), id="continues-on-absent"),
    pytest.param((0, 4, EXPIRES_MS), (0, 4, True, APPEND_MS), id="continues-behind"),
    pytest.param((0, 4, EXPIRES_MS), (0, 6, True, APPEND_MS), id="continues-ahead"),
    pytest.param((0, 4, EXPIRES_MS), (0, 5, True, EXPIRES_MS + 1), id="continues-expired"),
    pytest.param((2, 4, EXPIRES_MS), (1, 5, True, APPEND_MS), id="continues-fenced"),
    pytest.param((2, 4, EXPIRES_MS), (3, 5, True, APPEND_MS), id="continues-newer-epoch"),
    pytest.param((2, 4, EXPIRES_MS), (2, 0, False, APPEND_MS), id="first-on-same-epoch"),
    pytest.param((2, 4, EXPIRES_MS), (1, 0, False, APPEND_MS), id="first-fenced"),
]


def _request(
    chains: LedgerStore,
    topic_id: str,
    stored: tuple[int, int, int] | None,
    request: tuple[int, int, bool, int],
) -> tuple[ChainItem, ProducerUpdate]:
    """Store ``stored`` (if any), then plan ``request`` after the tail."""
    if stored is None:
        chains.create_chain(topic_id, ChainMeta(), genesis())
        tail = genesis()
    else:
        tail = _with_state(chains, topic_id, _stored_state(*stored))
    epoch, first, continues, now = request
    stamp, update = producer_update(
        7, epoch, first, 3, tail.seq + 1, continues=continues, now_ms=now
    )
    return appended(tail, {1: 3}, producer=stamp), update


@pytest.mark.parametrize(("stored", "request_"), ACCEPTED)
def test_an_idempotent_put_lands_when_its_producer_condition_holds(
    chains: LedgerStore,
    topic_id: str,
    stored: tuple[int, int, int] | None,
    request_: tuple[int, int, bool, int],
) -> None:
    item, update = _request(chains, topic_id, stored, request_)

    chains.put_item(topic_id, item, update)

    assert chains.read_tail(topic_id) == (item, ChainMeta())
    assert chains.read_producer(topic_id, 7) == update.state


@pytest.mark.parametrize(("stored", "request_"), REFUSED)
def test_an_idempotent_put_whose_producer_condition_fails_changes_nothing(
    backend: Backend,
    topic_id: str,
    stored: tuple[int, int, int] | None,
    request_: tuple[int, int, bool, int],
) -> None:
    chains = backend.stores()[1]
    item, update = _request(chains, topic_id, stored, request_)
    state = chains.read_producer(topic_id, 7)
    before = backend.contents()

    with pytest.raises(ChainConflict) as refused:
        chains.put_item(topic_id, item, update)

    assert refused.value.producer_failed
    assert refused.value.producer == state == (None if stored is None else _stored_state(*stored))
    assert refused.value.current is None and not refused.value.retryable
    assert backend.contents() == before


def test_a_failed_append_leaves_every_backend_unchanged(backend: Backend, topic_id: str) -> None:
    # Given a chain whose seq 1 is taken and producer 7 at epoch 2, sequence 4
    chains = backend.stores()[1]
    there = _with_state(chains, topic_id, _stored_state(2, 4))
    before = backend.contents()

    # When puts fail on the seq, on the producer, and on both at once
    stamp, stale = producer_update(7, 2, 9, 1, 1, continues=True)
    outcomes = []
    for item, update in [
        (appended(genesis(), {2: 1}), None),
        (appended(there, {2: 1}, producer=stamp), stale),
        (appended(genesis(), {2: 1}, producer=stamp), stale),
    ]:
        with pytest.raises(ChainConflict) as refused:
            chains.put_item(topic_id, item, update)
        outcomes.append((refused.value.current, refused.value.producer_failed))

    # Then nothing changed anywhere, and each said what failed (both reasons at once)
    assert backend.contents() == before
    assert outcomes == [(there, False), (None, True), (there, True)]


def test_a_put_with_an_unwritable_producer_state_writes_neither_item(
    backend: Backend, topic_id: str
) -> None:
    chains = backend.stores()[1]
    chains.create_chain(topic_id, ChainMeta(), genesis())
    before = backend.contents()
    stamp, update = producer_update(7, 0, 0, 1, 1, continues=False)
    bad = replace(update.state, requests=(replace(update.state.requests[0], digest=b"short"),))

    with pytest.raises(ValueError, match="8 bytes"):
        chains.put_item(
            topic_id, appended(genesis(), {0: 1}, producer=stamp), replace(update, state=bad)
        )

    assert backend.contents() == before


def test_racing_puts_at_one_seq_let_exactly_one_land(backend: Backend, topic_id: str) -> None:
    stores = [backend.stores()[1] for _ in range(THREADS)]
    stores[0].create_chain(topic_id, ChainMeta(), genesis())
    items = [appended(genesis(), {i % 3: i + 1}) for i in range(THREADS)]

    results = race(THREADS, lambda i: stores[i].put_item(topic_id, items[i]))

    (winner,) = [i for i, result in enumerate(results) if result is None]
    assert stores[0].read_tail(topic_id) == (items[winner], ChainMeta())
    for i, result in enumerate(results):
        if i != winner:
            assert isinstance(result, ChainConflict), result
            assert result.current == items[winner]


def test_racing_first_requests_of_one_producer_let_exactly_one_land(
    backend: Backend, topic_id: str
) -> None:
    # Given idempotent puts at different seqs, each the producer's first request
    stores = [backend.stores()[1] for _ in range(THREADS)]
    stores[0].create_chain(topic_id, ChainMeta(), genesis())
    tail = genesis()
    for _ in range(THREADS):
        tail = appended(tail, {0: 1})
        stores[0].put_item(topic_id, tail)
    updates = [
        producer_update(7, 0, 0, 1, THREADS + 1 + i, continues=False) for i in range(THREADS)
    ]
    items = [
        replace(appended(tail, {1: 1}, producer=stamp), seq=THREADS + 1 + i)
        for i, (stamp, _) in enumerate(updates)
    ]

    results = race(THREADS, lambda i: stores[i].put_item(topic_id, items[i], updates[i][1]))

    # Then one landed, and the others met its producer state (or a retryable conflict)
    (winner,) = [i for i, result in enumerate(results) if result is None]
    assert stores[0].read_producer(topic_id, 7) == updates[winner][1].state
    assert [item.seq for item in stores[0].chain(topic_id)][-1] == THREADS + 1 + winner
    for i, result in enumerate(results):
        if i != winner:
            assert isinstance(result, ChainConflict), result
            assert result.retryable or result.producer == updates[winner][1].state


# --- size and write units (ADR 0012, 1.2) ------------------------------------------------

_HW = 2**35 - 1
_BYTES = 2**42 - 1


def _big_append(partitions: int, touched: int, producer: ProducerStamp | None) -> ChainItem:
    """An append at the size bounds of ADR 0012 1.2: offsets < 2^35, bytes < 2^42."""
    t = APPEND_MS
    return ChainItem(
        seq=10**9,
        append_time_ms=t,
        max_timestamp=t,
        partitions=partitions,
        snapshot=(PartitionMark(_HW, _BYTES),) * partitions,
        batches=tuple(BatchRef(p, 16_000, 2**21 - 1, 2**21 - 1, t - 8_000) for p in range(touched)),
        segment_id=t.to_bytes(8, "big") + bytes(16),
        segment_size=10**9,
        footer_offset=10**9 - 10**6,
        sticky=partitions - 1,
        producer=producer,
    )


def _write_units(size: int, transactional: bool) -> int:
    """DynamoDB's write units for an item of ``size`` bytes: per started KB, doubled in a
    transaction."""
    return math.ceil(size / KB) * (2 if transactional else 1)


def test_an_append_over_100_partitions_is_one_chain_item_of_at_most_3_kb(
    backend: Backend, topic_id: str
) -> None:
    chains = backend.stores()[1]
    chains.create_chain(topic_id, ChainMeta(), genesis(100))
    stamp = ProducerStamp(2**63 - 1, 300, 2**31, 16_000, digest("big"))
    state = TopicProducerState(
        producer_id=2**63 - 1,
        epoch=300,
        last_sequence=2**31 + 15_999,
        requests=tuple(ProducerRequest(2**31, 16_000, 10**9, digest(str(i))) for i in range(5)),
        expires_ms=EXPIRES_MS,
    )
    plain = _big_append(100, 100, None)
    idempotent = replace(_big_append(100, 100, stamp), seq=10**9 + 1)

    chains.put_item(topic_id, plain)
    chains.put_item(topic_id, idempotent, ProducerUpdate(state, continues=False, now_ms=APPEND_MS))

    # moto reports one capacity unit for any write, so the units are DynamoDB's billing rule
    # applied to the sizes of the items as stored
    pk = chain_pk(topic_id)
    plain_size = item_size(_stored(backend, pk, plain.seq))
    chain_size = item_size(_stored(backend, pk, idempotent.seq))
    producer_size = item_size(_stored(backend, producer_state_pk(topic_id, 2**63 - 1), 0))
    assert chain_size <= 3 * KB
    assert producer_size <= KB
    assert _write_units(plain_size, transactional=False) <= 3
    assert _write_units(chain_size, True) + _write_units(producer_size, True) <= 8
    assert chains.get_item(topic_id, idempotent.seq) == idempotent


def test_a_chain_item_past_400_kb_is_refused_and_changes_nothing(
    backend: Backend, topic_id: str
) -> None:
    chains = backend.stores()[1]
    chains.create_chain(topic_id, ChainMeta(), genesis())
    before = backend.contents()
    huge = _big_append(DYNAMODB_ITEM_BYTES // 11 + 1, 1, None)

    with pytest.raises(LakelogError, match="400 KB") as refused:
        chains.put_item(topic_id, replace(huge, seq=1))

    assert not isinstance(refused.value, UnavailableError)
    assert backend.contents() == before


_JUST_UNDER = 400_000
"""400 KB in decimal: under `DYNAMODB_ITEM_BYTES` and under moto's own limit (405,000)."""


def _largest_append_under(topic_id: str, limit: int) -> ChainItem:
    """The append of the most partitions (all touched) whose item is at most ``limit``."""
    pk = chain_pk(topic_id)
    low, high = 1, DYNAMODB_ITEM_BYTES // 11 + 1  # high: past the limit (test above)
    while high - low > 1:
        middle = (low + high) // 2
        size = item_size(chain_item_to_item(pk, _big_append(middle, middle, None)))
        low, high = (middle, high) if size <= limit else (low, middle)
    return replace(_big_append(low, low, None), seq=1)


def test_a_chain_item_just_under_400_kb_is_written_and_reads_back(
    backend: Backend, topic_id: str
) -> None:
    chains = backend.stores()[1]
    chains.create_chain(topic_id, ChainMeta(), genesis())
    item = _largest_append_under(topic_id, _JUST_UNDER)
    size = item_size(chain_item_to_item(chain_pk(topic_id), item))
    assert _JUST_UNDER - 64 < size <= _JUST_UNDER

    chains.put_item(topic_id, item)

    assert item_size(_stored(backend, chain_pk(topic_id), 1)) == size
    assert chains.get_item(topic_id, 1) == item


# --- format and encoding -----------------------------------------------------------------


def test_items_of_another_format_version_are_refused_on_read(
    chains: LedgerStore, topic_id: str
) -> None:
    chains.create_chain(topic_id, ChainMeta(format_version=1), genesis())
    old = replace(appended(genesis(), {0: 1}), version=1)
    chains.put_item(topic_id, old)

    for read in (
        lambda: chains.get_item(topic_id, 1),
        lambda: chains.read_tail(topic_id),
        lambda: chains.read_meta(topic_id),
        lambda: chains.query(topic_id, 1, 5),
        lambda: list(chains.chain(topic_id)),
        lambda: chains.put_item(topic_id, appended(genesis(), {0: 1})),
    ):
        with pytest.raises(CorruptLedgerError, match="format version 1"):
            read()


_ROUND_TRIPS: list[Any] = [
    pytest.param(genesis(1000), id="genesis"),
    pytest.param(
        ChainItem(
            seq=2**40,
            append_time_ms=APPEND_MS,
            max_timestamp=APPEND_MS + 10**6,
            partitions=5,
            snapshot=(
                PartitionMark(2**40, 2**50),
                PartitionMark(),
                PartitionMark(1, 1),
                PartitionMark(2**40 - 1, 0),
                PartitionMark(127, 128),
                PartitionMark(3, 300),
            ),
            batches=(
                BatchRef(0, 2**20, 2**30, 2**29, APPEND_MS + 10**6),  # later than t
                BatchRef(2, 1, 1, 0, -1),  # no timestamp: far before t
                BatchRef(3, 7, 900, 800, APPEND_MS - 10**9),
                BatchRef(5, 3, 300, 200, APPEND_MS),
            ),
            segment_id=bytes(range(24)),
            segment_size=2**40,
            footer_offset=2**40 - 9,
            sticky=None,
            producer=None,
        ),
        id="append-large-values",
    ),
    pytest.param(
        ChainItem(
            seq=3,
            append_time_ms=0,
            max_timestamp=-1,
            partitions=1,
            snapshot=(PartitionMark(1, 10),),
            batches=(BatchRef(0, 1, 10, 5, -(2**40)),),
            segment_id=b"\xff" * 24,
            segment_size=18,
            footer_offset=14,
            sticky=0,
            producer=ProducerStamp(2**63 - 1, 2**31, 2**40, 1, b"\x00" * 8),
        ),
        id="append-negative-timestamps-idempotent",
    ),
    pytest.param(
        ChainItem(
            seq=9,
            append_time_ms=APPEND_MS,
            max_timestamp=APPEND_MS,
            partitions=2,
            snapshot=(PartitionMark(4, 40), PartitionMark(5, 50)),
            kind="seal",
        ),
        id="seal",
    ),
]


@pytest.mark.parametrize("item", _ROUND_TRIPS)
def test_every_attribute_of_a_chain_item_reads_back(
    chains: LedgerStore, topic_id: str, item: ChainItem
) -> None:
    chains.create_chain(topic_id, ChainMeta(), item if item.seq == 0 else genesis())
    if item.seq != 0:
        chains.put_item(topic_id, item)

    assert chains.get_item(topic_id, item.seq) == item
    assert chains.read_tail(topic_id) == (item, ChainMeta())
    assert chains.query(topic_id, item.seq, 1)[0] == [item]


def test_every_attribute_of_the_meta_item_and_a_producer_state_reads_back(
    chains: LedgerStore, topic_id: str
) -> None:
    meta = ChainMeta(
        log_start=(2**40, 0, 1),
        bytes_below=(2**50, 0),
        l1_end=(2**40 - 1,),
        chain_start=2**33,
        sealed_ms=APPEND_MS,
        version=6,
        chain_start_ms=APPEND_MS + 1,
    )
    chains.create_chain(topic_id, meta, genesis())
    requests = tuple(ProducerRequest(2**40 + i, 2**20, 2**40, digest(str(i))) for i in range(5))
    state = TopicProducerState(2**63 - 1, 2**31, 2**45, requests, expires_ms=EXPIRES_MS + 1)
    stamp = ProducerStamp(2**63 - 1, 2**31, 2**40 + 4, 2**20, requests[-1].digest)

    chains.put_item(
        topic_id,
        appended(genesis(), {0: 1}, producer=stamp),
        ProducerUpdate(state, continues=False, now_ms=APPEND_MS),
    )

    assert chains.read_meta(topic_id) == meta
    # expiry is kept in whole seconds (the TTL attribute), rounded up
    assert chains.read_producer(topic_id, 2**63 - 1) == replace(state, expires_ms=EXPIRES_MS + 1000)


def test_the_meta_item_sorts_after_every_chain_item(backend: Backend, topic_id: str) -> None:
    chains = backend.stores()[1]
    chains.create_chain(topic_id, ChainMeta(), genesis())

    assert int(_stored(backend, chain_pk(topic_id), HEAD_SK)["sk"]["N"]) == HEAD_SK
    assert _stored(backend, chain_pk(topic_id), 0)["v"] == {"N": "2"}
