"""The `LedgerStore` contract for the compactor (ADR 0012, 1.7): per-partition L1 entries
put only if absent, queried from an offset, listed and deleted; chain items deleted below
the chain start.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from lakelog.errors import CorruptLedgerError
from lakelog.log.records import ChainMeta, Entry
from lakelog.storage.attributes import entry_from_item, entry_to_item
from lakelog.storage.keys import l1_entries_pk
from lakelog.storage.ports import LedgerStore
from tests.contract.chain_support import appended, genesis, new_topic_id


def entry(base: int, count: int, key: str = "segments/t/L1/0/a.parquet", group: int = 0) -> Entry:
    """An L1 entry of ``count`` offsets from ``base``."""
    return Entry(
        base_offset=base,
        last_offset=base + count - 1,
        segment_key=key,
        row_group=group,
        byte_offset=4 + 100 * group,
        byte_length=100,
        segment_size=1_000,
        footer_offset=900,
        min_timestamp=1_000 + base,
        max_timestamp=1_000 + base + count,
        max_timestamp_cum=1_000 + base + count,
        size_bytes=10 * count,
    )


RUN = [entry(0, 10), entry(10, 5, group=1), entry(15, 1, group=2), entry(16, 40, group=3)]


def test_entries_read_back_in_offset_order_per_partition(
    chains: LedgerStore, topic_id: str
) -> None:
    chains.put_entries(topic_id, 2, list(reversed(RUN)))
    chains.put_entries(topic_id, 3, [entry(0, 1, key="other")])

    assert list(chains.entries(topic_id, 2)) == RUN
    assert list(chains.entries(topic_id, 3)) == [entry(0, 1, key="other")]
    assert list(chains.entries(topic_id, 0)) == []
    assert list(chains.entries(new_topic_id(), 2)) == []


@pytest.mark.parametrize(
    ("offset", "limit", "expected"),
    [
        (0, 10, RUN),
        (0, 2, RUN[:2]),
        (9, 10, RUN),  # the entry holding 9 ends at 9: sk >= offset finds it
        (10, 10, RUN[1:]),
        (12, 1, RUN[1:2]),  # an offset inside an entry finds that entry first
        (15, 10, RUN[2:]),
        (55, 10, RUN[3:]),
        (56, 10, []),
    ],
)
def test_a_query_from_an_offset_starts_at_the_entry_holding_it(
    chains: LedgerStore, topic_id: str, offset: int, limit: int, expected: list[Entry]
) -> None:
    chains.put_entries(topic_id, 0, RUN)

    assert chains.query_entries(topic_id, 0, offset, limit) == expected


def test_an_entry_is_put_only_if_absent_so_a_rerun_keeps_the_first(
    chains: LedgerStore, topic_id: str
) -> None:
    chains.put_entries(topic_id, 0, RUN[:2])
    rerun = [replace(e, segment_key="segments/t/L1/0/b.parquet") for e in RUN]

    chains.put_entries(topic_id, 0, rerun)

    assert list(chains.entries(topic_id, 0)) == RUN[:2] + rerun[2:]


def test_deleting_entries_removes_only_those_named(chains: LedgerStore, topic_id: str) -> None:
    chains.put_entries(topic_id, 0, RUN)
    chains.put_entries(topic_id, 1, RUN)
    many = [entry(100 + i, 1, group=i) for i in range(30)]  # past one batch of deletes
    chains.put_entries(topic_id, 0, many)

    chains.delete_entries(topic_id, 0, [e.last_offset for e in RUN[:2] + many] + [999])
    chains.delete_entries(topic_id, 0, [RUN[0].last_offset])  # again: nothing to do

    assert list(chains.entries(topic_id, 0)) == RUN[2:]
    assert list(chains.entries(topic_id, 1)) == RUN


def test_deleting_chain_items_keeps_the_rest_and_the_meta(
    chains: LedgerStore, topic_id: str
) -> None:
    tail = genesis()
    chains.create_chain(topic_id, ChainMeta(), tail)
    for i in range(30):
        tail = appended(tail, {i % 3: 1})
        chains.put_item(topic_id, tail)

    chains.delete_items(topic_id, list(range(27)))
    chains.delete_items(topic_id, [0, 1])  # again: nothing to do

    assert [item.seq for item in chains.chain(topic_id)] == [27, 28, 29, 30]
    assert chains.read_tail(topic_id) == (tail, ChainMeta())
    items, meta = chains.query(topic_id, 0, 10)
    assert [item.seq for item in items] == [27, 28, 29, 30]
    assert meta == ChainMeta()


@pytest.mark.parametrize(("name", "value"), [("v", "1"), ("lvl", "0")])
def test_an_entry_of_another_format_or_level_is_refused(name: str, value: str) -> None:
    item = entry_to_item(l1_entries_pk("t", 0), entry(0, 1))
    assert entry_from_item(item) == entry(0, 1)
    item[name] = {"N": value}

    with pytest.raises(CorruptLedgerError):
        entry_from_item(item)


def test_an_entry_item_carries_format_2_and_level_1() -> None:
    item = entry_to_item("p#t#0", entry(5, 3))

    assert item["v"] == {"N": "2"}
    assert item["lvl"] == {"N": "1"}
    assert item["sk"] == {"N": "7"}
    assert item["base_offset"] == {"N": "5"}


# Key compaction's replacement (ADR 0013, 6) ---------------------------------------------

NEW = "segments/t/L1/0/compacted.parquet"


def compacted(base: int, last: int, rows: int, group: int = 0) -> Entry:
    """A replacement entry over ``[base, last]`` holding ``rows`` rows (0: none, no segment)."""
    if rows == 0:
        return replace(
            entry(base, last - base + 1, key="", group=0),
            row_group=-1,
            byte_length=0,
            size_bytes=0,
            row_count=0,
        )
    return replace(entry(base, last - base + 1, key=NEW, group=group), row_count=rows)


def test_a_replacement_puts_its_entry_and_deletes_the_entries_it_covers(
    chains: LedgerStore, topic_id: str
) -> None:
    chains.put_entries(topic_id, 0, RUN)
    new = compacted(0, 14, rows=3)

    assert chains.replace_entry(topic_id, 0, new, RUN[:2])

    assert list(chains.entries(topic_id, 0)) == [new, *RUN[2:]]
    assert chains.query_entries(topic_id, 0, 3, 10) == [new, *RUN[2:]]


def test_a_replacement_whose_entry_was_replaced_meanwhile_writes_nothing(
    chains: LedgerStore, topic_id: str
) -> None:
    chains.put_entries(topic_id, 0, RUN)
    other = replace(RUN[1], segment_key="segments/t/L1/0/other.parquet")
    assert chains.replace_entry(topic_id, 0, other, [RUN[1]])

    assert not chains.replace_entry(topic_id, 0, compacted(0, 14, rows=3), RUN[:2])
    assert not chains.replace_entry(topic_id, 0, compacted(0, 99, rows=1), [entry(99, 1)])

    assert list(chains.entries(topic_id, 0)) == [RUN[0], other, *RUN[2:]]


def test_a_replacement_keeps_a_covered_entry_that_names_another_segment_now(
    chains: LedgerStore, topic_id: str
) -> None:
    chains.put_entries(topic_id, 0, RUN)
    other = replace(RUN[1], segment_key="segments/t/L1/0/other.parquet")
    chains.replace_entry(topic_id, 0, other, [RUN[1]])
    new = compacted(0, 15, rows=2)

    assert chains.replace_entry(topic_id, 0, new, RUN[:3])

    assert list(chains.entries(topic_id, 0)) == [other, new, RUN[3]]


def test_a_replacement_run_again_finishes_its_deletions(chains: LedgerStore, topic_id: str) -> None:
    chains.put_entries(topic_id, 0, RUN)
    new = compacted(0, 55, rows=0)
    assert chains.replace_entry(topic_id, 0, new, RUN[3:])  # the put alone, as a crash leaves

    assert chains.replace_entry(topic_id, 0, new, RUN)

    assert list(chains.entries(topic_id, 0)) == [new]
    assert new.rows == 0


def test_an_empty_and_a_gapped_entry_read_back_as_put(chains: LedgerStore, topic_id: str) -> None:
    empty, gapped = compacted(0, 9, rows=0), compacted(10, 14, rows=2, group=4)
    chains.put_entries(topic_id, 0, [empty, gapped])

    assert list(chains.entries(topic_id, 0)) == [empty, gapped]
    assert [e.rows for e in (empty, gapped, RUN[0])] == [0, 2, 10]
