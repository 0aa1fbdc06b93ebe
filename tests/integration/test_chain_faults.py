"""The fault wrapper of the ledger fails where it is told to, around the real write."""

from __future__ import annotations

import pytest

from lakelog.errors import ThrottledError
from lakelog.log.records import ChainItem, ChainMeta
from lakelog.storage.faults import (
    FailPoint,
    FaultInjector,
    FaultyLedgerStore,
    InjectedFaultError,
)
from lakelog.storage.memory import MemoryStorage
from lakelog.storage.ports import ChainConflict
from tests.contract.chain_support import appended, genesis, new_topic_id

TOPIC = new_topic_id()
ITEM = appended(genesis(), {0: 1})


def _chains() -> tuple[FaultyLedgerStore, FaultInjector]:
    injector = FaultInjector()
    ledger = FaultyLedgerStore(MemoryStorage().stores()[1], injector)
    ledger.create_chain(TOPIC, ChainMeta(), genesis())
    return ledger, injector


@pytest.mark.parametrize(
    ("point", "error", "written"),
    [
        (FailPoint.BEFORE_LEDGER, InjectedFaultError, False),
        (FailPoint.CONFLICT, ChainConflict, False),
        (FailPoint.THROTTLE, ThrottledError, False),
        (FailPoint.AFTER_LEDGER, InjectedFaultError, True),
    ],
)
def test_a_put_fails_at_the_append_points(
    point: FailPoint, error: type[Exception], written: bool
) -> None:
    chains, injector = _chains()
    injector.arm(point)

    with pytest.raises(error) as failed:
        chains.put_item(TOPIC, ITEM)

    assert chains.get_item(TOPIC, 1) == (ITEM if written else None)
    if isinstance(failed.value, ChainConflict):
        assert failed.value.retryable and failed.value.current is None
    chains.put_item(TOPIC, appended(ITEM, {0: 1}))  # disarmed after one failure
    assert injector.hits[point] == 1


def test_another_writer_can_be_interleaved_just_before_a_put() -> None:
    chains, _ = _chains()
    rival = appended(genesis(), {2: 5})

    def interleave(item: ChainItem) -> None:
        chains.on_put = None
        chains.inner.put_item(TOPIC, rival)

    chains.on_put = interleave
    with pytest.raises(ChainConflict) as refused:
        chains.put_item(TOPIC, ITEM)

    assert refused.value.current == rival


@pytest.mark.parametrize(
    ("point", "written"),
    [(FailPoint.BEFORE_META_UPDATE, False), (FailPoint.AFTER_META_UPDATE, True)],
)
def test_a_meta_update_fails_before_or_after_it_applies(point: FailPoint, written: bool) -> None:
    chains, injector = _chains()
    injector.arm(point)

    with pytest.raises(InjectedFaultError):
        chains.update_meta(TOPIC, ChainMeta(sealed_ms=5), 0)

    assert chains.read_meta(TOPIC) == (
        ChainMeta(sealed_ms=5, version=1) if written else ChainMeta()
    )


@pytest.mark.parametrize(
    ("point", "created"),
    [(FailPoint.BEFORE_CHAIN_CREATE, False), (FailPoint.AFTER_CHAIN_CREATE, True)],
)
def test_a_creation_fails_before_or_after_it_applies(point: FailPoint, created: bool) -> None:
    chains, injector = _chains()
    other = new_topic_id()
    injector.arm(point)

    with pytest.raises(InjectedFaultError):
        chains.create_chain(other, ChainMeta(), genesis())

    assert chains.read_tail(other) == ((genesis(), ChainMeta()) if created else None)


def test_a_chain_deletion_fails_before_it_starts() -> None:
    chains, injector = _chains()
    injector.arm(FailPoint.BEFORE_CHAIN_DELETE)

    with pytest.raises(InjectedFaultError):
        chains.delete_chain(TOPIC)

    assert chains.read_tail(TOPIC) == (genesis(), ChainMeta())
    chains.delete_chain(TOPIC)
    assert chains.read_tail(TOPIC) is None
