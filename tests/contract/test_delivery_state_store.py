"""The `DeliveryStateStore` contract (ADR 0015 §2): states by (group, partition), the
woken flag that keeps a finishing delivery reading, and the query of what is due. Run on
memory and moto (and real AWS on request); each test looks only at its own namespace."""

from __future__ import annotations

import pytest

from lakelog.storage.delivery import (
    DeliveryState,
    DeliveryStateStore,
    DynamoDeliveryStateStore,
    MemoryDeliveryStateStore,
    RunGuard,
)
from tests.contract.backends import AwsBackend, Backend


@pytest.fixture
def store(backend: Backend) -> DeliveryStateStore:
    if isinstance(backend, AwsBackend):
        return DynamoDeliveryStateStore(backend.client("dynamodb"), backend.names.catalog_table)
    return MemoryDeliveryStateStore()


def _state(ns: str, partition: int = 0, due_ms: int = 1_000, **fields: object) -> DeliveryState:
    return DeliveryState(
        f"subscription.{ns}.s",
        ns,
        "s",
        partition,
        due_ms,
        **fields,  # type: ignore[arg-type]
    )


def _mine(states: list[DeliveryState], ns: str) -> list[DeliveryState]:
    return [state for state in states if state.topic == ns]


def test_a_state_round_trips_with_every_field(store: DeliveryStateStore, ns: str) -> None:
    full = _state(
        ns, 3, attempts=2, throttles=1, error="Unhandled: x", bisect_end=40, bisect_size=5
    )
    store.put(full)
    assert store.get(full.group, 3) == full
    assert store.get(full.group, 4) is None
    bare = _state(ns, 4)
    store.put(bare)
    assert store.get(bare.group, 4) == bare
    store.put(_state(ns, 3))  # a put replaces every field
    assert store.get(full.group, 3) == _state(ns, 3)


def test_due_finds_the_states_whose_time_came_in_due_order(
    store: DeliveryStateStore, ns: str
) -> None:
    for partition, due in ((0, 3_000), (1, 1_000), (2, 2_000)):
        store.put(_state(ns, partition, due))
    assert _mine(store.due(999), ns) == []
    assert [s.partition for s in _mine(store.due(2_000), ns)] == [1, 2]
    assert [s.partition for s in _mine(store.due(10_000), ns)] == [1, 2, 0]


def test_finish_deletes_a_state_unless_it_was_woken(store: DeliveryStateStore, ns: str) -> None:
    state = _state(ns)
    store.put(state)
    assert store.finish(state.group, 0)
    assert store.get(state.group, 0) is None
    assert store.finish(state.group, 0)  # nothing there: finished
    store.put(state)
    store.wake(_state(ns, due_ms=500))
    assert not store.finish(state.group, 0)
    assert store.get(state.group, 0) == _state(ns, due_ms=500, woken=True)
    store.put(state)  # the holder clears the flag and reads again
    assert store.finish(state.group, 0)


def test_wake_makes_a_state_due_but_never_shortens_a_backoff(
    store: DeliveryStateStore, ns: str
) -> None:
    store.wake(_state(ns, 0, due_ms=700))  # none there: created, woken
    assert store.get(f"subscription.{ns}.s", 0) == _state(ns, 0, due_ms=700, woken=True)
    store.put(_state(ns, 1, due_ms=5_000))
    store.wake(_state(ns, 1, due_ms=700))
    assert store.get(f"subscription.{ns}.s", 1) == _state(ns, 1, due_ms=700, woken=True)
    store.wake(_state(ns, 1, due_ms=900))  # due earlier already: only woken
    assert store.get(f"subscription.{ns}.s", 1) == _state(ns, 1, due_ms=700, woken=True)
    retrying = _state(ns, 2, due_ms=5_000, attempts=1, error="e")
    store.put(retrying)
    store.wake(_state(ns, 2, due_ms=700))
    assert store.get(retrying.group, 2) == _state(
        ns, 2, due_ms=5_000, attempts=1, error="e", woken=True
    )


def test_delete_removes_a_state_and_ignores_a_missing_one(
    store: DeliveryStateStore, ns: str
) -> None:
    store.put(_state(ns))
    store.delete(f"subscription.{ns}.s", 0)
    store.delete(f"subscription.{ns}.s", 0)
    assert store.get(f"subscription.{ns}.s", 0) is None
    assert _mine(store.due(10**15), ns) == []


def test_run_guards_are_found_by_the_same_query_as_the_states_and_deleted(
    store: DeliveryStateStore, ns: str
) -> None:
    def guards(now_ms: int) -> list[RunGuard]:
        return [g for g in store.due_work(now_ms)[1] if g.run_id.startswith(ns)]

    late, early = RunGuard(f"{ns}-a", ("t1", "t2"), 3_000), RunGuard(f"{ns}-b", ("t3",), 1_000)
    store.put_guard(late)
    store.put_guard(early)
    store.put(_state(ns, 0, 2_000))
    assert guards(999) == []
    assert guards(3_000) == [early, late]  # by due time, every topic id kept in order
    assert _mine(store.due_work(3_000)[0], ns) == [_state(ns, 0, 2_000)]
    assert _mine(store.due(3_000), ns) == [_state(ns, 0, 2_000)]  # states only
    store.delete_guard(late.run_id)
    store.delete_guard(late.run_id)  # a missing one is not an error
    assert guards(10**15) == [early]
    store.put_guard(RunGuard(early.run_id, ("t3",), 5_000))  # a put replaces it
    assert guards(4_999) == []
