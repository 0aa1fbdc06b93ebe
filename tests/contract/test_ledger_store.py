"""The `LedgerStore` contract: heads, conditional all-or-nothing appends, entry queries."""

from __future__ import annotations

import pytest

from lakelog.errors import UnavailableError
from lakelog.limits import MAX_PARTITIONS_PER_TRANSACTION
from lakelog.log.records import Head, PartitionWrite, ProducerState
from lakelog.storage.ports import AppendConflict, LedgerStore
from tests.contract.backends import Backend, Stores
from tests.contract.support import entry, write

BATCH_GET_KEYS = 100
"""Heads one ``BatchGetItem`` reads: a larger read takes several."""


@pytest.fixture
def ledger(stores: Stores) -> LedgerStore:
    return stores[1]


def fill(ledger: LedgerStore, pk: str, batches: int) -> None:
    """Append ``batches`` one-offset batches to ``pk``."""
    for offset in range(batches):
        ledger.append([write(pk, offset)])


def test_heads_are_created_empty_once_and_missing_ones_are_left_out(
    ledger: LedgerStore, ns: str
) -> None:
    ledger.create_heads([f"{ns}a", f"{ns}b"])
    ledger.append([write(f"{ns}a", 0, 3)])

    ledger.create_heads([f"{ns}a", f"{ns}c"])  # does not reset a

    heads = ledger.read_heads([f"{ns}a", f"{ns}b", f"{ns}c", f"{ns}never"])
    assert heads == {
        f"{ns}a": Head(high_watermark=3, size_bytes=10, max_timestamp=100),
        f"{ns}b": Head(),
        f"{ns}c": Head(),
    }
    assert ledger.read_heads([]) == {}


def test_heads_are_read_past_one_batch(ledger: LedgerStore, ns: str) -> None:
    pks = [f"{ns}{i}" for i in range(BATCH_GET_KEYS + 5)]
    ledger.create_heads(pks)

    assert set(ledger.read_heads(pks)) == set(pks)


def test_an_append_moves_the_head_and_adds_the_entry_seen_by_every_store(
    backend: Backend, ns: str
) -> None:
    writer, reader = backend.stores()[1], backend.stores()[1]
    writer.create_heads([ns])
    writer.append([write(ns, 0, 2)])
    writer.append([write(ns, 2, 3)])

    head = Head(high_watermark=5, size_bytes=20, max_timestamp=100)
    assert reader.read_heads([ns]) == {ns: head}
    assert list(reader.entries(ns)) == [entry(0, 2), entry(2, 3)]


def test_an_append_sets_and_expires_producer_states(ledger: LedgerStore, ns: str) -> None:
    ledger.create_heads([ns])
    first = ProducerState(epoch=0, last_sequence=0, batches=((0, 0, 0, 1000),))
    second = ProducerState(epoch=1, last_sequence=4, batches=((0, 4, 1, 2000),))
    ledger.append([write(ns, 0, producer_id=7, producer_state=first)])
    ledger.append([write(ns, 1, producer_id=8, producer_state=second)])
    assert ledger.read_heads([ns])[ns].producers == {7: first, 8: second}

    newer = ProducerState(epoch=1, last_sequence=9, batches=((5, 9, 2, 3000),))
    ledger.append([write(ns, 2, producer_id=8, producer_state=newer, expired_producers=(7,))])

    head = ledger.read_heads([ns])[ns]
    assert head.producers == {8: newer}
    assert head == write(ns, 2).applied_to(Head(2, 0, 20, 100, {8: newer}))


def test_an_append_to_a_moved_head_changes_nothing_and_returns_the_current_heads(
    ledger: LedgerStore, ns: str
) -> None:
    ledger.create_heads([f"{ns}a", f"{ns}b"])
    ledger.append([write(f"{ns}a", 0, 2)])
    current = ledger.read_heads([f"{ns}a"])[f"{ns}a"]

    # b is still at 0 but a moved on: neither is written
    with pytest.raises(AppendConflict) as conflict:
        ledger.append([write(f"{ns}b", 0), write(f"{ns}a", 0)])

    assert conflict.value.heads == {f"{ns}a": current}
    assert not conflict.value.retryable
    assert ledger.read_heads([f"{ns}a", f"{ns}b"]) == {f"{ns}a": current, f"{ns}b": Head()}
    assert list(ledger.entries(f"{ns}b")) == []


def test_an_append_to_a_missing_head_conflicts_with_none(ledger: LedgerStore, ns: str) -> None:
    ledger.create_heads([f"{ns}a"])

    with pytest.raises(AppendConflict) as conflict:
        ledger.append([write(f"{ns}a", 0), write(f"{ns}gone", 0)])

    assert conflict.value.heads == {f"{ns}gone": None}
    assert ledger.read_heads([f"{ns}a"]) == {f"{ns}a": Head()}
    assert ledger.read_heads([f"{ns}gone"]) == {}


def test_an_append_over_an_existing_entry_conflicts_without_heads(
    ledger: LedgerStore, ns: str
) -> None:
    # Given a batch of offsets 0-1 (its entry's sort key is 1)
    ledger.create_heads([ns])
    ledger.append([write(ns, 0, 2)])

    # When a write matches the head but its entry's last offset is taken (never in a sound
    # ledger), it is cancelled although no head moved
    with pytest.raises(AppendConflict) as conflict:
        ledger.append([_entry_clash(ns)])

    assert conflict.value.heads == {}
    assert not conflict.value.retryable
    assert ledger.read_heads([ns])[ns].high_watermark == 2


def _entry_clash(pk: str) -> PartitionWrite:
    """A write that matches the head at 2 but puts an entry whose last offset (1) exists."""
    return PartitionWrite(pk, 2, 3, 100, entry(1))


def test_a_transaction_that_names_one_partition_twice_is_refused(
    ledger: LedgerStore, ns: str
) -> None:
    ledger.create_heads([ns])

    with pytest.raises(UnavailableError, match="multiple operations on one item"):
        ledger.append([write(ns, 0), PartitionWrite(ns, 0, 1, 100, entry(5))])

    assert ledger.read_heads([ns]) == {ns: Head()}


def test_a_query_returns_entries_from_the_offset_and_the_head_when_it_reached_the_end(
    ledger: LedgerStore, ns: str
) -> None:
    ledger.create_heads([ns])
    for base, count in [(0, 2), (2, 3), (5, 1)]:
        ledger.append([write(ns, base, count)])
    head = ledger.read_heads([ns])[ns]

    assert ledger.query(ns, 0, 10) == ([entry(0, 2), entry(2, 3), entry(5)], head)
    assert ledger.query(ns, 3, 10) == ([entry(2, 3), entry(5)], head)  # the batch holding 3
    assert ledger.query(ns, 0, 3) == ([entry(0, 2), entry(2, 3), entry(5)], head)
    assert ledger.query(ns, 0, 2) == ([entry(0, 2), entry(2, 3)], None)
    assert ledger.query(ns, 6, 10) == ([], head)
    assert ledger.query(ns, 0, 0) == ([], None)
    assert ledger.query(f"{ns}never", 0, 10) == ([], None)


def test_a_closed_partition_takes_no_append_reads_as_missing_and_loses_its_entries(
    backend: Backend, ns: str
) -> None:
    # Given a partition with 30 entries (more than one batch of deletes) and an open one
    ledger, other = backend.stores()[1], backend.stores()[1]
    ledger.create_heads([f"{ns}a", f"{ns}b"])
    fill(ledger, f"{ns}a", 30)
    ledger.append([write(f"{ns}b", 0)])

    # When the first is closed (twice: closing is idempotent; a missing pk is no error)
    ledger.close_partition(f"{ns}a")
    ledger.close_partition(f"{ns}a")
    ledger.close_partition(f"{ns}never")

    # Then every store reads it as missing, with no entries, and no append commits to it
    assert list(other.read_heads([f"{ns}a", f"{ns}b"])) == [f"{ns}b"]
    assert list(other.entries(f"{ns}a")) == []
    assert other.query(f"{ns}a", 0, 10) == ([], None)
    with pytest.raises(AppendConflict) as conflict:
        other.append([write(f"{ns}a", 30), write(f"{ns}b", 1)])
    assert conflict.value.heads == {f"{ns}a": None}
    assert list(other.entries(f"{ns}b")) == [entry(0)]
    # And creating heads does not reopen it; deleting it removes the closed head
    ledger.create_heads([f"{ns}a"])
    assert other.read_heads([f"{ns}a"]) == {}
    with pytest.raises(AppendConflict):
        other.append([write(f"{ns}a", 0)])
    ledger.delete_partition(f"{ns}a")
    ledger.create_heads([f"{ns}a"])
    assert other.read_heads([f"{ns}a"]) == {f"{ns}a": Head()}


def test_delete_partition_removes_the_head_and_every_entry(ledger: LedgerStore, ns: str) -> None:
    ledger.create_heads([f"{ns}a", f"{ns}b"])
    fill(ledger, f"{ns}a", 30)  # more than one batch of deletes (25)
    ledger.append([write(f"{ns}b", 0)])

    ledger.delete_partition(f"{ns}a")
    ledger.delete_partition(f"{ns}never")

    assert ledger.read_heads([f"{ns}a"]) == {}
    assert list(ledger.entries(f"{ns}a")) == []
    assert ledger.query(f"{ns}a", 0, 10) == ([], None)
    assert list(ledger.entries(f"{ns}b")) == [entry(0)]


def test_an_append_of_more_partitions_than_one_transaction_holds_is_refused(
    ledger: LedgerStore, ns: str
) -> None:
    """DynamoDB refuses a transaction of over 100 items (two per partition); every
    backend refuses it alike, before writing anything, rather than as a retryable error."""
    pks = [f"{ns}{i}" for i in range(MAX_PARTITIONS_PER_TRANSACTION + 1)]
    ledger.create_heads(pks)

    with pytest.raises(ValueError, match="at most"):
        ledger.append([write(pk, 0) for pk in pks])

    assert all(head == Head() for head in ledger.read_heads(pks).values())
