"""An append whose head would pass DynamoDB's 400 KB item size changes nothing, anywhere.

DynamoDB cancels such a transaction as a whole (reason ``ValidationError``); the memory
backend and the moto emulation (`lakelog.local.emulation`) must refuse it the same way,
before anything of it is applied, and with an error that no client retries.
"""

from __future__ import annotations

import pytest

from lakelog.errors import LakelogError, UnavailableError
from lakelog.limits import DYNAMODB_ITEM_BYTES
from lakelog.log.records import Head, ProducerState
from lakelog.storage.attributes import item_size
from lakelog.storage.dynamodb import head_item
from lakelog.storage.ports import LedgerStore
from tests.contract.backends import Backend
from tests.contract.support import write

_BIG = 12_345_678_901_234_567_890_123_456_789_012_345_678
"""38 significant digits, DynamoDB's most: 20 bytes as a number."""
_BATCHES = 2_500
"""Batches of a bloated producer state: about 220 KB, so two do not fit in one head."""


def _bloated(epoch: int) -> ProducerState:
    """A state far larger than the ledger ever writes (it keeps five batches)."""
    return ProducerState(
        epoch=epoch, last_sequence=0, batches=((_BIG, _BIG, _BIG, _BIG),) * _BATCHES
    )


def _half_full(ledger: LedgerStore, pk: str) -> None:
    ledger.create_heads([pk])
    ledger.append([write(pk, 0, producer_id=1, producer_state=_bloated(1))])


def test_the_bloated_states_are_sized_around_the_limit(ns: str) -> None:
    one = item_size(head_item(ns, Head(producers={1: _bloated(1)})))
    two = item_size(head_item(ns, Head(producers={1: _bloated(1), 2: _bloated(2)})))

    assert one < DYNAMODB_ITEM_BYTES < two


@pytest.mark.parametrize("first", [True, False], ids=["too-large-first", "too-large-last"])
def test_an_append_making_a_head_too_large_changes_nothing(
    backend: Backend, ns: str, first: bool
) -> None:
    _, ledger, _, _ = backend.stores()
    big, small = f"{ns}big", f"{ns}small"
    _half_full(ledger, big)
    ledger.create_heads([small])
    before = backend.contents()

    too_large = write(big, 1, producer_id=2, producer_state=_bloated(2))
    writes = [too_large, write(small, 0)] if first else [write(small, 0), too_large]
    with pytest.raises(LakelogError, match="400 KB") as refused:
        ledger.append(writes)

    assert not isinstance(refused.value, UnavailableError)  # the same append fails again
    assert backend.contents() == before
    heads = ledger.read_heads([big, small])
    assert heads[big].high_watermark == 1
    assert heads[small] == Head()
    assert [e.base_offset for e in ledger.entries(big)] == [0]
    assert list(ledger.entries(small)) == []


def test_a_head_just_under_the_limit_still_takes_appends(backend: Backend, ns: str) -> None:
    _, ledger, _, _ = backend.stores()
    _half_full(ledger, ns)

    ledger.append(
        [write(ns, 1, producer_id=2, producer_state=ProducerState(0, 0, ((0, 0, 1, 5),)))]
    )

    assert ledger.read_heads([ns])[ns].high_watermark == 2
