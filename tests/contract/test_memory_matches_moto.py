"""The memory backend gives the same answers as the AWS adapters on moto, step by step.

Seeded random sequences of ledger and group store calls, many of them stale or conflicting
on purpose, go to both backends; every reply (value or error) and the state read back after
each step must be equal. This reaches combinations the hand-written contract tests do not.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from lakelog.errors import LakelogError
from lakelog.log.records import PartitionWrite, ProducerState
from lakelog.storage.ports import AppendConflict, GroupStore, LeaseRecord, LedgerStore, MemberRecord
from lakelog.types import OffsetCommit
from tests.contract.backends import AwsBackend, MemoryBackend, Stores
from tests.contract.support import entry

STEPS = 150
PKS = ("p0", "p1", "p2")
PARTITIONS = 4
MEMBERS = ("a", "b", "c")


@pytest.fixture
def both(resources: Any) -> tuple[Stores, Stores]:
    return MemoryBackend().stores(), AwsBackend(resources).stores()


def _outcome(call: Callable[[], Any]) -> Any:
    """What a call gives: its value, or its error's type and telling attributes."""
    try:
        return ("ok", call())
    except AppendConflict as conflict:
        return ("conflict", conflict.heads, conflict.retryable)
    except (LakelogError, ValueError) as exc:
        return (type(exc).__name__, getattr(exc, "partitions", None))


def _kind(outcome: Any) -> str:
    """ "ok", "refused" (a conditional write that returned None or False), or the error."""
    if outcome[0] == "ok":
        return "refused" if outcome[1] is None or outcome[1] is False else "ok"
    return str(outcome[0])


def _ledger_step(rng: random.Random, ledger: LedgerStore, step: int) -> Callable[[], Any]:
    choice = rng.random()
    pks = rng.sample(PKS, rng.randint(1, 2))
    if choice < 0.1:
        return lambda: ledger.create_heads(pks)
    if choice < 0.6:
        heads = ledger.read_heads(list(PKS))  # every step reads first, as the engine does

        def write(pk: str) -> PartitionWrite:
            hw = heads[pk].high_watermark if pk in heads else 0
            hw += rng.choice([0, 0, 0, 1, -1])  # sometimes stale
            count = rng.randint(1, 3)
            producer = rng.choice([None, 1, 2])
            return PartitionWrite(
                pk,
                hw,
                hw + count,
                step,
                entry(max(hw, 0), count, ts=step),
                producer_id=producer,
                producer_state=None if producer is None else ProducerState(0, step),
                expired_producers=tuple(p for p in (1, 2) if p != producer and rng.random() < 0.2),
            )

        writes = [write(pk) for pk in pks]
        return lambda: ("appended", ledger.append(writes))
    if choice < 0.9:
        pk, offset, limit = rng.choice(PKS), rng.randint(0, 12), rng.randint(0, 4)
        return lambda: ledger.query(pk, offset, limit)
    pk = rng.choice(PKS)
    return lambda: ledger.delete_partition(pk)


@pytest.mark.parametrize("seed", range(2))
def test_random_ledger_calls_get_the_same_replies(both: tuple[Stores, Stores], seed: int) -> None:
    (memory, *_), (moto, *_) = (stores[1:] for stores in both)
    rngs = (random.Random(seed), random.Random(seed))
    kinds: Counter[str] = Counter()
    appended = 0
    for step in range(STEPS):
        replies = [
            _outcome(_ledger_step(rng, ledger, step))
            for rng, ledger in zip(rngs, (memory, moto), strict=True)
        ]
        assert replies[0] == replies[1], (step, replies)
        assert memory.read_heads(list(PKS)) == moto.read_heads(list(PKS)), step
        for pk in PKS:
            assert list(memory.entries(pk)) == list(moto.entries(pk)), (step, pk)
        kinds[replies[0][0]] += 1
        appended += replies[0] == ("ok", ("appended", None))
    assert kinds["conflict"] > 5 and appended > 5, (kinds, appended)


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
        replies = [
            _outcome(_group_step(rng, store, step))
            for rng, store in zip(rngs, (memory, moto), strict=True)
        ]
        assert replies[0] == replies[1], (step, replies)
        assert memory.read_group("g") == moto.read_group("g"), step
        kinds[_kind(replies[0])] += 1
    assert {"ok", "refused", "LeaseFencedError"} <= set(kinds), kinds
