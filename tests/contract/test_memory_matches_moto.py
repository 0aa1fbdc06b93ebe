"""The memory backend gives the same answers as the AWS adapters on moto, step by step.

Seeded random sequences of ledger and group store calls, many of them stale or conflicting
on purpose, go to both backends; every reply (value or error) and the state read back after
each step must be equal. This reaches combinations the hand-written contract tests do not.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from lakelog.errors import LakelogError
from lakelog.log.records import (
    ChainMeta,
    ProducerRequest,
    ProducerStamp,
    ProducerUpdate,
    TopicProducerState,
)
from lakelog.storage.ports import (
    ChainConflict,
    GroupStore,
    LeaseRecord,
    LedgerStore,
    MemberRecord,
)
from lakelog.types import OffsetCommit
from tests.contract.backends import AwsBackend, MemoryBackend, Stores
from tests.contract.chain_support import appended, genesis

STEPS = 150
PARTITIONS = 4
MEMBERS = ("a", "b", "c")


@pytest.fixture
def both(resources: Any) -> tuple[Stores, Stores]:
    return MemoryBackend().stores(), AwsBackend(resources).stores()


def _outcome(call: Callable[[], Any]) -> Any:
    """What a call gives: its value, or its error's type and telling attributes."""
    try:
        return ("ok", call())
    except ChainConflict as conflict:
        return (
            "conflict",
            conflict.current,
            conflict.producer_failed,
            conflict.producer,
            conflict.retryable,
        )
    except (LakelogError, ValueError) as exc:
        return (type(exc).__name__, getattr(exc, "partitions", None))


def _same_reply(
    make: Callable[[random.Random, Any, int], Callable[[], Any]],
    rngs: tuple[random.Random, random.Random],
    stores: tuple[Any, Any],
    step: int,
) -> Any:
    """The outcome of step ``step`` on both backends, which must be the same."""
    replies = [_outcome(make(rng, store, step)) for rng, store in zip(rngs, stores, strict=True)]
    assert replies[0] == replies[1], (step, replies)
    return replies[0]


def _kind(outcome: Any) -> str:
    """ "ok", "refused" (a conditional write that returned None or False), or the error."""
    if outcome[0] == "ok":
        return "refused" if outcome[1] is None or outcome[1] is False else "ok"
    return str(outcome[0])


def _lease(store: GroupStore, partition: int) -> LeaseRecord:
    found = [x for x in store.read_group("g").leases if x.partition == partition]
    return found[0] if found else LeaseRecord.missing("t", partition)


def _group_step(rng: random.Random, store: GroupStore, step: int) -> Callable[[], Any]:
    choice = rng.random()
    member = rng.choice(MEMBERS)
    partition = rng.randrange(PARTITIONS)
    seen = _lease(store, partition)
    if rng.random() < 0.2:  # a stale view
        seen = LeaseRecord("t", partition, seen.topic_id, max(seen.lease_epoch - 1, 0), member)
    if choice < 0.1:
        record = MemberRecord(member, ("t",), 1000, step)
        return lambda: store.put_member("g", record)
    if choice < 0.15:
        return lambda: store.delete_member("g", member)
    if choice < 0.45:
        topic_id = rng.choice(["id-1", "id-1", "id-2"])
        return lambda: store.take_lease("g", seen, member, topic_id)
    if choice < 0.6:
        return lambda: store.give_up_lease("g", seen)
    if choice < 0.9:
        partitions = rng.sample(range(PARTITIONS), rng.randint(1, 3))
        epochs = {p: _lease(store, p).lease_epoch + rng.choice([0, 0, 1]) for p in partitions}
        offsets = [OffsetCommit("t", p, step, epochs[p]) for p in partitions]
        return lambda: store.commit("g", member, offsets, step)
    resets = [
        (_lease(store, p), LeaseRecord("t", p, "id-1", _lease(store, p).lease_epoch + 1, None, 0))
        for p in range(PARTITIONS)
    ]
    if rng.random() < 0.5:
        resets[0] = (seen, resets[0][1])  # possibly stale
    return lambda: store.reset_leases("g", resets)


@pytest.mark.parametrize("seed", range(2))
def test_random_group_calls_get_the_same_replies(both: tuple[Stores, Stores], seed: int) -> None:
    memory, moto = both[0][3], both[1][3]
    rngs = (random.Random(seed), random.Random(seed))
    kinds: Counter[str] = Counter()
    for step in range(STEPS):
        reply = _same_reply(_group_step, rngs, (memory, moto), step)
        assert memory.read_group("g") == moto.read_group("g"), step
        kinds[_kind(reply)] += 1
    assert {"ok", "refused", "LeaseFencedError"} <= set(kinds), kinds


TOPIC = "a" * 32
PRODUCERS = (1, 2)


def _idempotent(
    rng: random.Random, chains: LedgerStore, step: int, seq: int
) -> tuple[Any, ProducerUpdate]:
    """A producer's next request (or a stale, fenced or premature one) and its update."""
    producer = rng.choice(PRODUCERS)
    stored = chains.read_producer(TOPIC, producer)
    epoch = rng.choice([0, 1, 1]) if stored is None else stored.epoch + rng.choice([0, 0, 0, 1, -1])
    epoch = max(epoch, 0)
    first = 0 if stored is None else stored.last_sequence + 1 + rng.choice([0, 0, 0, 1, -1])
    if rng.random() < 0.2:
        first = 0
    count = rng.randint(1, 3)
    request = ProducerRequest(first, count, seq, rng.randbytes(8))
    now_ms = step * 1000 + rng.randrange(1000)
    state = TopicProducerState(
        producer, epoch, first + count - 1, (request,), now_ms + rng.choice([500, 4000, 60_000])
    )
    stamp = ProducerStamp(producer, epoch, first, count, request.digest)
    return stamp, ProducerUpdate(state, continues=first > 0, now_ms=now_ms)


def _chain_kind(outcome: Any) -> str:
    """`_kind`, with a chain conflict told by what failed: the seq, the producer, or both."""
    if outcome[0] != "conflict":
        return _kind(outcome)
    failed = ["seq"] * (outcome[1] is not None) + ["producer"] * outcome[2]
    return "conflict: " + " and ".join(failed)


def _chain_step(rng: random.Random, chains: LedgerStore, step: int) -> Callable[[], Any]:
    choice = rng.random()
    if choice < 0.08:
        partitions = rng.randint(1, 4)
        return lambda: chains.create_chain(TOPIC, ChainMeta(), genesis(partitions))
    if choice < 0.6:
        read = chains.read_tail(TOPIC)  # every append reads (or knows) its tail first
        tail = genesis() if read is None else read[0]
        seq = max(tail.seq + 1 + rng.choice([0, 0, 0, -1, 1]), 0)
        counts = {p: rng.randint(1, 5) for p in rng.sample(range(4), rng.randint(1, 3))}
        stamp, update = (None, None)
        if rng.random() < 0.6:
            stamp, update = _idempotent(rng, chains, step, seq)
        item = replace(
            appended(tail, counts, producer=stamp, sticky=rng.choice([None, 0, 3])),
            seq=seq,
            segment_id=rng.randbytes(24),
        )
        return lambda: ("put", chains.put_item(TOPIC, item, update))
    if choice < 0.8:
        from_seq, limit = rng.randint(0, 12), rng.randint(0, 4)
        return lambda: chains.query(TOPIC, from_seq, limit)
    if choice < 0.95:
        meta = chains.read_meta(TOPIC)
        version = (0 if meta is None else meta.version) + rng.choice([0, 0, -1])
        moved = ChainMeta(log_start=(step,), sealed_ms=rng.choice([None, step]))
        return lambda: chains.update_meta(TOPIC, moved, version)
    return lambda: chains.delete_chain(TOPIC)


@pytest.mark.parametrize("seed", range(2))
def test_random_chain_calls_get_the_same_replies(both: tuple[Stores, Stores], seed: int) -> None:
    memory, moto = both[0][1], both[1][1]
    rngs = (random.Random(seed), random.Random(seed))
    kinds: Counter[str] = Counter()
    for step in range(STEPS):
        reply = _same_reply(_chain_step, rngs, (memory, moto), step)
        assert memory.read_tail(TOPIC) == moto.read_tail(TOPIC), step
        assert list(memory.chain(TOPIC)) == list(moto.chain(TOPIC)), step
        for producer in PRODUCERS:
            assert memory.read_producer(TOPIC, producer) == moto.read_producer(TOPIC, producer)
        kinds[_chain_kind(reply)] += 1
    assert kinds["ok"] > 20 and kinds["refused"] > 5, kinds
    assert kinds["conflict: seq"] > 3 and kinds["conflict: producer"] > 3, kinds
