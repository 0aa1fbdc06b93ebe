"""An append refused because its head would pass DynamoDB's 400 KB item size writes nothing.

The ledger never grows a head that far (ADR 0004 bounds the producers it remembers), so
the head is filled through the ledger port directly, to just under the limit. In memory
only: moto measures a number by its digits (and refuses from 405,000 bytes), so it refuses
this filling already; `tests/contract/test_item_size.py` shows that both backends refuse
an oversized head all or nothing. The next
idempotent append through the engine is refused: the log stays as it was, the error is
not one clients retry, and the segment it uploaded is an orphan that gc removes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lakelog import Engine, ProducerBatch, Record
from lakelog.errors import LakelogError, UnavailableError
from lakelog.limits import DYNAMODB_ITEM_BYTES
from lakelog.log.records import Head, PartitionWrite, ProducerState
from lakelog.storage import DynamoLedgerStore
from lakelog.storage.attributes import item_size
from lakelog.storage.dynamodb import head_item
from lakelog.storage.keys import partition_pk
from tests.contract.backends import Backend
from tests.contract.support import entry

TOPIC = "crowded"
_BIG = 12_345_678_901_234_567_890_123_456_789_012_345_678
"""38 significant digits: 20 bytes as a DynamoDB number, a recent append time too."""


def _filling(pk: str, head: Head) -> ProducerState:
    """A state that brings ``head`` to within 40 bytes of the limit (small batches first)."""
    big, small = (_BIG, _BIG, _BIG, _BIG), (1, 1, 1, 1)

    def size(bigs: int, smalls: int) -> int:
        state = ProducerState(0, 0, (small,) * smalls + (big,) * bigs)
        return item_size(head_item(pk, replace(head, producers={1: state})))

    step = size(2, 0) - size(1, 0)
    bigs = 1 + (DYNAMODB_ITEM_BYTES - 200 - size(1, 0)) // step
    smalls = -(-(DYNAMODB_ITEM_BYTES - 40 - size(bigs, 0)) // (size(bigs, 1) - size(bigs, 0)))
    assert DYNAMODB_ITEM_BYTES - 40 <= size(bigs, smalls) < DYNAMODB_ITEM_BYTES
    return ProducerState(0, 0, (small,) * smalls + (big,) * bigs)


def _objects(backend: Backend) -> set[str]:
    objects, *_ = backend.stores()
    return {info.key for info in objects.list("")}


def _values(engine: Engine) -> list[bytes | None]:
    return [r.value for r in engine.fetch(TOPIC, 0, 0, max_records=100).records]


def test_an_append_whose_head_would_be_too_large_writes_nothing_and_gc_removes_its_segment(
    make_engine: Callable[..., Engine], backend: Backend
) -> None:
    # Given a partition whose head is within a few bytes of DynamoDB's item size
    engine = make_engine(grace_ms=0, sleep=lambda _s: None)
    engine.create_topic(TOPIC)
    engine.append(TOPIC, [Record(value=b"kept", partition=0)])
    pk = partition_pk(engine.describe_topic(TOPIC).topic_id, 0)
    ledger = engine.context.ledger
    head = ledger.read_heads([pk])[pk]
    (kept,) = ledger.entries(pk)
    filled = replace(kept, base_offset=1, last_offset=1)  # offset 1 reads b"kept" again
    ledger.append([PartitionWrite(pk, 1, 2, head.max_timestamp, filled, 1, _filling(pk, head))])
    before = _objects(backend)

    # When a new idempotent producer appends (its state does not fit)
    producer = engine.init_producer_id()
    with pytest.raises(LakelogError, match="400 KB") as refused:
        engine.append(
            TOPIC, [Record(value=b"refused", partition=0)], ProducerBatch(producer, 0, {0: 0})
        )

    # Then it is not reported as retryable, and nothing of it is visible
    assert not isinstance(refused.value, UnavailableError)
    assert ledger.read_heads([pk])[pk].high_watermark == 2
    assert _values(engine) == [b"kept", b"kept"]
    # And its segment, uploaded before the ledger refused it, is an orphan gc removes
    (orphan,) = _objects(backend) - before
    assert engine.gc.collect_topic(TOPIC) == [orphan]
    assert _objects(backend) == before


class _RefusingDynamoDB:
    """A DynamoDB client whose transactions DynamoDB cancels as it does for an item over
    400 KB: reason ``ValidationError`` on the item."""

    def transact_write_items(self, **_request: Any) -> None:
        raise ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                "CancellationReasons": [
                    {"Code": "ValidationError", "Message": "Item size to update has exceeded"},
                    {"Code": "None"},
                ],
            },
            "TransactWriteItems",
        )


def test_the_dynamodb_adapter_reports_a_head_too_large_as_not_retryable() -> None:
    ledger = DynamoLedgerStore(_RefusingDynamoDB(), "ledger")  # type: ignore[arg-type]
    with pytest.raises(LakelogError, match="400 KB") as refused:
        ledger.append([PartitionWrite("p#t#0", 0, 1, 100, entry(0))])

    assert not isinstance(refused.value, UnavailableError)
