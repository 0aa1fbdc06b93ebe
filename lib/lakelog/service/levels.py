"""Storage levels of a topic: its L0 flush segments and L1 segments, for ``describe``.

What the compactor has yet to merge and what it merged (ADR 0012 1.7, ADR 0013 4):

- **L0**: the chain items from the chain start to the tail, each naming one flush segment
  (genesis names none). Their bytes are the row groups' (`BatchRef.byte_length`, the
  chain's byte unit, footers not included), read from two snapshots: the tail's
  cumulative bytes minus those before the chain start's item. Items below the chain start
  (waiting for their grace period, then deletion) are not counted.
- **L1**: the distinct segments the partition's L1 entries name, up to the partition's L1
  end (entries above it are a crashed merge's, invisible until a merge completes them),
  with each segment's size (`Entry.segment_size`).

Cost: L0 takes the tail and meta item the describe already read plus one GetItem (the
chain start's item; none when it is the tail). L1 takes, per partition with an L1 end, one
strongly consistent Query per `ENTRY_PAGE` entries: an entry stands for one row group of
about 1 MiB (`lakelog.service.merge.L1_ROW_GROUP_BYTES`), so about one Query per GiB of
merged data, of about 50 read units per full page. Partitions the merge never reached cost
nothing. Only describes that ask for levels pay it.
"""

from __future__ import annotations

from typing import Final

from lakelog.log.records import ChainItem, ChainMeta
from lakelog.storage.ports import LedgerStore
from lakelog.types import LevelUsage, PartitionLevels, StorageLevels

__all__ = ["ENTRY_PAGE", "TopicLevels", "read_levels"]

ENTRY_PAGE: Final = 1_000
"""L1 entries one Query asks for while levels are counted."""

TopicLevels = tuple[StorageLevels, list[PartitionLevels]]
"""A topic's totals per level, and each partition's share (in partition order)."""


def read_levels(
    ledger: LedgerStore, topic_id: str, partitions: int, tail: ChainItem, meta: ChainMeta
) -> TopicLevels:
    """The storage levels of the topic ``topic_id`` whose chain ``tail`` and ``meta`` were
    just read (the module docstring says what each level counts and what it costs).

    Parameters
    ----------
    ledger
        The ledger the chain start's item and the L1 entries are read from.
    topic_id, partitions
        The topic and its partition count.
    tail, meta
        The chain's last item and the meta item, read together.
    """
    start = _chain_start_item(ledger, topic_id, tail, meta)
    l0_bytes = [0 if start is None else _l0_bytes(start, tail, p) for p in range(partitions)]
    ends = meta.l1_end
    l1 = [
        _l1_usage(ledger, topic_id, p, ends[p] if p < len(ends) else 0) for p in range(partitions)
    ]
    l0_segments = 0
    if start is not None and tail.kind == "append":
        l0_segments = tail.seq - max(1, start.seq) + 1
    totals = StorageLevels(
        l0=LevelUsage(segments=l0_segments, bytes=sum(l0_bytes)),
        l1=LevelUsage(
            segments=sum(usage.segments for usage in l1), bytes=sum(usage.bytes for usage in l1)
        ),
    )
    return totals, [PartitionLevels(b, usage) for b, usage in zip(l0_bytes, l1, strict=True)]


def _chain_start_item(
    ledger: LedgerStore, topic_id: str, tail: ChainItem, meta: ChainMeta
) -> ChainItem | None:
    """The item at the chain start (None: not stored, so L0 is counted empty)."""
    if meta.chain_start >= tail.seq:
        return tail if meta.chain_start == tail.seq else None
    return ledger.get_item(topic_id, meta.chain_start)


def _l0_bytes(start: ChainItem, tail: ChainItem, partition: int) -> int:
    """Bytes of ``partition``'s batches from ``start`` to ``tail``, from their snapshots."""
    batch = start.batch(partition)
    before = start.mark(partition).cumulative_bytes - (0 if batch is None else batch.byte_length)
    return max(0, tail.mark(partition).cumulative_bytes - before)


def _l1_usage(ledger: LedgerStore, topic_id: str, partition: int, l1_end: int) -> LevelUsage:
    """Distinct segments (and their sizes) the partition's L1 entries below ``l1_end`` name."""
    sizes: dict[str, int] = {}
    offset = 0
    while offset < l1_end:
        page = ledger.query_entries(topic_id, partition, offset, ENTRY_PAGE)
        for entry in page:
            if entry.base_offset >= l1_end:
                break
            sizes[entry.segment_key] = entry.segment_size
        if len(page) < ENTRY_PAGE:
            break
        offset = page[-1].last_offset + 1
    return LevelUsage(segments=len(sizes), bytes=sum(sizes.values()))
