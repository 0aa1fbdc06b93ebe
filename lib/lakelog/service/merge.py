"""Merge to L1: the compactor's step that moves old chain items into per-partition segments.

Flush (L0) segments hold one append each, for every partition it touched; a replay of old
data would read them one small GET at a time. `Merger.merge_topic` takes the oldest chain
items (those from the chain start below ``s1``, every one older than
`PRODUCER_EXPIRATION_MS`, so a producer's retry is still answered from the chain, ADR 0012
2.4) and rewrites their records per partition into L1 segments (`lakelog.log.codec`, level
L1) named by L1 entries. The order of writes is ADR 0012 1.7's, with ADR 0013 4's single
deletion model:

1. PUT the L1 segments, then put their L1 entries (each only if absent);
2. one conditional update of the meta item: ``l1_end[p] = h_{s1-1}[p].hw`` for every
   partition, ``chain_start = s1`` and ``chain_start_ms = now`` (re-read and retried when
   another writer moved the meta item first).

The merge deletes nothing. The compactor's chain truncation deletes the items below the
chain start once gc's grace period has passed since ``chain_start_ms`` (a fetch that read
them just before still finds their segments), and gc deletes the L0 segments no chain item
references after its own grace period.

A crash anywhere leaves a consistent ledger: before step 2 readers still use the chain
and the entries put are invisible (above ``l1_end``); a rerun finds them and continues
after them instead of writing them again. After step 2 the rerun starts at the new chain
start. Segments PUT but never named by an entry are orphans that gc removes after its
grace period.

Each call does bounded work: at most ``max_items`` chain items.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Final

from lakelog.config import TopicConfig
from lakelog.errors import CorruptSegmentError
from lakelog.log.chain import PRODUCER_EXPIRATION_MS, chain_run, check_footer, is_sealed
from lakelog.log.codec import SegmentBuilder, SegmentReader, SegmentRow, record_size
from lakelog.log.ledger import contiguous_run
from lakelog.log.records import ChainItem, ChainMeta, Entry
from lakelog.service.context import EngineContext
from lakelog.storage.keys import l0_segment_key_from_id, l1_segment_key
from lakelog.storage.ports import TopicRecord

__all__ = ["L1_ROW_GROUP_BYTES", "MergeResult", "Merger"]

L1_ROW_GROUP_BYTES: Final = 1 << 20
"""Record bytes (key, value, headers) at which an L1 row group (hence an L1 entry) ends, at
the end of the L0 batch that reaches it: a group is cut only between batches, so it holds
this much plus at most one batch. A fetch reads one row group's byte range, so this bounds
what it reads beyond its budget."""
ENTRY_PAGE: Final = 100
"""L1 entries one query reads while the merge looks for entries a crashed run left."""
META_ATTEMPTS: Final = 8
"""Conditional meta updates one step tries before it gives up (the next pass resumes)."""
GET_THREADS: Final = 8
"""L0 segments read at once."""


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What one `Merger.merge_topic` call did (or, with ``dry_run``, would do).

    ``done`` False: call again, more chain items are ready to merge.
    """

    topic: str
    done: bool
    chain_start: int = 0
    """The meta item's chain start after the step (every item below it is in L1)."""
    items_merged: int = 0
    """Chain items whose records this step moved to L1."""
    segments_merged: int = 0
    """L0 segments whose records now live in L1 segments (gc deletes them after grace)."""
    segments_written: int = 0
    entries_written: int = 0
    bytes_merged: int = 0
    """Row-group bytes of the L0 batches merged."""
    l1_end: dict[int, int] = field(default_factory=dict)
    """Partitions whose L1 end moved, and where to."""
    actions: tuple[str, ...] = ()
    """One line per action, for ``lakelog compact --dry-run`` and logs."""


@dataclass
class _Group:
    """One L1 row group being filled: whole L0 batches of one partition."""

    base_offset: int
    rows: list[SegmentRow] = field(default_factory=list)
    cumulative_bytes: int = 0
    """The partition's chain bytes up to the end of its last batch (`Entry.cumulative_bytes`)."""


@dataclass
class _Run:
    """One partition's records being cut into L1 row groups and segments.

    Cuts fall only between L0 batches: a row group ends once it holds
    `L1_ROW_GROUP_BYTES` at the end of a batch, a segment once it holds the target size
    (ADR 0013, 4). Each L1 entry therefore ends where a chain batch ends, and its
    ``cumulative_bytes`` is that batch's mark, which retention by bytes moves to.
    """

    cumulative_max: int
    """The largest timestamp up to the last record added (``max_timestamp_cum``)."""
    segments: list[tuple[int, list[_Group]]] = field(default_factory=list)
    """Per segment: its base offset and its row groups."""
    segment_bytes: int = 0
    group_bytes: int = 0

    def add_batch(
        self, base_offset: int, rows: list[SegmentRow], cumulative_bytes: int, target_bytes: int
    ) -> None:
        """Add one batch's rows (from ``base_offset``) whole to the current row group, or
        to a new one when the current one is full."""
        if not rows:
            return
        if not self.segments or self.segment_bytes >= target_bytes:
            self.segments.append((base_offset, []))
            self.segment_bytes = self.group_bytes = 0
        groups = self.segments[-1][1]
        if not groups or self.group_bytes >= L1_ROW_GROUP_BYTES:
            groups.append(_Group(base_offset))
            self.group_bytes = 0
        size = sum(record_size(row.key, row.value, row.headers) for row in rows)
        groups[-1].rows.extend(rows)
        groups[-1].cumulative_bytes = cumulative_bytes
        self.segment_bytes += size
        self.group_bytes += size


class Merger:
    """Merges a topic's oldest chain items into per-partition L1 segments (ADR 0012, 1.7)."""

    def __init__(self, context: EngineContext) -> None:
        self._ctx = context

    def merge_topic(
        self,
        topic: TopicRecord,
        *,
        max_items: int,
        target_bytes: int,
        now_ms: int,
        max_bytes: int | None = None,
        dry_run: bool = False,
        planned_chain_start: int | None = None,
    ) -> MergeResult:
        """Merge at most ``max_items`` of the topic's oldest chain items into L1.

        Items qualify while every one is older than `PRODUCER_EXPIRATION_MS` at
        ``now_ms``; the chain's last item always stays. With ``max_bytes``, the step also
        stops before the item that would take its batches' bytes past it (it takes one
        item at least): the step holds every record it merges in memory. Each
        partition's records become L1 segments of about ``target_bytes`` record bytes
        (the partition's whole share if smaller). Records keep their offsets,
        timestamps, keys, values and headers byte for byte. ``dry_run`` reads the ledger
        only and writes nothing; with ``planned_chain_start`` it plans from there, where
        the step's truncation would have moved the chain start.
        """
        if max_items < 1 or target_bytes < 1:
            raise ValueError("max_items and target_bytes must be positive")
        ledger = self._ctx.ledger
        found = ledger.read_tail(topic.topic_id)
        if found is None or is_sealed(found[0]) or found[1].sealed_ms is not None:
            return MergeResult(topic.name, done=True)
        tail, meta = found
        if dry_run and planned_chain_start is not None:
            meta = replace(meta, chain_start=max(meta.chain_start, planned_chain_start))
        page, _ = ledger.query(topic.topic_id, meta.chain_start, max_items)
        due = _ready(page, meta, tail, now_ms)
        ready = _within(due, max_bytes)
        plan = _plan(topic, meta, tail, ready, full=len(due) == max_items or ready != due)
        if dry_run or not ready:
            return replace(plan, chain_start=meta.chain_start)
        written, entries = self._write_l1(topic, meta, ready, target_bytes)
        if not self._move_meta(topic, plan.l1_end, plan.chain_start, now_ms):
            return replace(plan, done=True, chain_start=meta.chain_start)
        return replace(plan, segments_written=written, entries_written=entries)

    # Step 1: L1 segments and entries -------------------------------------------------------
    def _write_l1(
        self, topic: TopicRecord, meta: ChainMeta, ready: list[ChainItem], target_bytes: int
    ) -> tuple[int, int]:
        """PUT each partition's L1 segments and put their entries; (segments, entries)."""
        rows = self._read_items(topic.topic_id, ready)
        compression = TopicConfig.parse(topic.config).compression
        touched = sorted({batch.partition for item in ready for batch in item.batches})
        segments = entries = 0
        for partition in touched:
            start = max(_at(meta.l1_end, partition), meta.log_start_offset(partition))
            existing = self._existing(topic.topic_id, partition, start)
            run = _Run(self._cumulative_max(topic.topic_id, partition, existing, start))
            after = existing[-1].last_offset + 1 if existing else start
            for item in ready:
                batch = item.batch(partition)
                if batch is None:
                    continue
                mark = item.mark(partition)
                base = mark.high_watermark - batch.record_count
                skip = max(0, after - base)
                run.add_batch(
                    base + skip,
                    rows[item.seq][partition][skip:],
                    mark.cumulative_bytes,
                    target_bytes,
                )
            for segment_base, groups in run.segments:
                made = self._put_segment(topic, partition, segment_base, groups, run, compression)
                self._ctx.ledger.put_entries(topic.topic_id, partition, made)
                segments += 1
                entries += len(made)
        return segments, entries

    def _read_items(
        self, topic_id: str, items: Sequence[ChainItem]
    ) -> dict[int, dict[int, list[SegmentRow]]]:
        """Each item's rows per partition, from one GET of its whole L0 segment."""
        with_segment = [item for item in items if item.segment_id is not None]

        def read(item: ChainItem) -> dict[int, list[SegmentRow]]:
            assert item.segment_id is not None
            key = l0_segment_key_from_id(topic_id, item.segment_id)
            check_footer(item, key)
            body = self._ctx.objects.get_range(key, 0, item.segment_size)
            groups = SegmentReader.from_bytes(key, body).read_all(body)
            if len(groups) != len(item.batches):
                raise CorruptSegmentError(
                    key, f"{len(groups)} row groups; the ledger has {len(item.batches)}"
                )
            decoded: dict[int, list[SegmentRow]] = {}
            for batch, rows in zip(item.batches, groups, strict=True):
                if len(rows) != batch.record_count:
                    raise CorruptSegmentError(
                        key,
                        f"{len(rows)} rows of partition {batch.partition}, "
                        f"the ledger {batch.record_count}",
                    )
                decoded[batch.partition] = rows
            return decoded

        with ThreadPoolExecutor(GET_THREADS, thread_name_prefix="lakelog-merge") as pool:
            decoded = list(pool.map(read, with_segment))
        return {item.seq: rows for item, rows in zip(with_segment, decoded, strict=True)}

    def _existing(self, topic_id: str, partition: int, start: int) -> list[Entry]:
        """The dense run of L1 entries from ``start`` that a crashed merge left (above the
        L1 end, so no reader uses them yet): this merge continues after them."""
        found: list[Entry] = []
        offset = start
        while True:
            page = self._ctx.ledger.query_entries(topic_id, partition, offset, ENTRY_PAGE)
            part = contiguous_run(page, offset)
            found.extend(part)
            if not part or len(part) < len(page) or len(page) < ENTRY_PAGE:
                return found
            offset = part[-1].last_offset + 1

    def _cumulative_max(
        self, topic_id: str, partition: int, existing: list[Entry], start: int
    ) -> int:
        """The largest timestamp below the first offset this merge writes (-1: none known)."""
        if existing:
            return existing[-1].max_timestamp_cum
        if start == 0:
            return -1
        before = self._ctx.ledger.query_entries(topic_id, partition, start - 1, 1)
        if before and before[0].base_offset < start:
            return before[0].max_timestamp_cum
        return -1

    def _put_segment(
        self,
        topic: TopicRecord,
        partition: int,
        base_offset: int,
        groups: list[_Group],
        run: _Run,
        compression: str,
    ) -> list[Entry]:
        """PUT one L1 segment of ``groups``; its entries, in order."""
        builder = SegmentBuilder(topic.topic_id, compression, level="L1")
        for group in groups:
            rows = group.rows
            builder.add_batch(
                partition,
                [row.timestamp_ms for row in rows],
                [row.key for row in rows],
                [row.value for row in rows],
                [row.headers for row in rows],
                base_offset=group.base_offset,
            )
        encoded = builder.build()
        key = l1_segment_key(topic.topic_id, partition, base_offset)
        self._ctx.objects.put(key, encoded.body)
        made: list[Entry] = []
        for location, group in zip(encoded.row_groups, groups, strict=True):
            run.cumulative_max = max(run.cumulative_max, location.max_timestamp)
            rows = group.rows
            made.append(
                Entry(
                    base_offset=group.base_offset,
                    last_offset=group.base_offset + len(rows) - 1,
                    segment_key=key,
                    row_group=location.row_group,
                    byte_offset=location.byte_offset,
                    byte_length=location.byte_length,
                    segment_size=encoded.size,
                    footer_offset=encoded.footer_offset,
                    min_timestamp=location.min_timestamp,
                    max_timestamp=location.max_timestamp,
                    max_timestamp_cum=run.cumulative_max,
                    size_bytes=sum(record_size(r.key, r.value, r.headers) for r in rows),
                    cumulative_bytes=group.cumulative_bytes,
                )
            )
        return made

    # Step 2: the meta item -----------------------------------------------------------------
    def _move_meta(self, topic: TopicRecord, l1_end: dict[int, int], s1: int, now_ms: int) -> bool:
        """Set the L1 ends, the chain start and ``chain_start_ms = now_ms`` (the items
        below are deleted a grace period later), conditional on the version read; re-read
        and retried when another writer (retention, another merge) moved it first.

        False when the topic is being deleted or the update kept losing (nothing moved:
        the next pass resumes from the entries put).
        """
        ledger = self._ctx.ledger
        for _ in range(META_ATTEMPTS):
            meta = ledger.read_meta(topic.topic_id)
            if meta is None or meta.sealed_ms is not None:
                return False
            if meta.chain_start >= s1 and all(
                _at(meta.l1_end, p) >= end for p, end in l1_end.items()
            ):
                return True  # a rerun (or a concurrent merge) already moved it
            width = max(len(meta.l1_end), max(l1_end, default=-1) + 1)
            ends = tuple(max(_at(meta.l1_end, p), l1_end.get(p, 0)) for p in range(width))
            moved = replace(meta, l1_end=ends, chain_start=max(meta.chain_start, s1))
            if moved.chain_start != meta.chain_start:
                moved = replace(moved, chain_start_ms=now_ms)
            if ledger.update_meta(topic.topic_id, moved, meta.version):
                return True
        return False


def _ready(page: list[ChainItem], meta: ChainMeta, tail: ChainItem, now_ms: int) -> list[ChainItem]:
    """The items of ``page`` due to merge: a run from the chain start, each older than
    `PRODUCER_EXPIRATION_MS` at ``now_ms``, the chain's last item excluded."""
    candidates = [item for item in page if item.seq >= meta.chain_start]
    run = chain_run(candidates, meta.chain_start, range(len(tail.snapshot)))
    cutoff = now_ms - PRODUCER_EXPIRATION_MS
    ready: list[ChainItem] = []
    for item in run:
        if item.seq >= tail.seq or is_sealed(item) or item.append_time_ms > cutoff:
            break
        ready.append(item)
    return ready


def _within(items: list[ChainItem], max_bytes: int | None) -> list[ChainItem]:
    """The first of ``items`` whose batches hold at most ``max_bytes`` (one at least)."""
    if max_bytes is None:
        return items
    taken = 0
    for count, item in enumerate(items):
        taken += _byte_length([item])
        if count and taken > max_bytes:
            return items[:count]
    return items


def _byte_length(items: Sequence[ChainItem]) -> int:
    """Bytes of the items' batches."""
    return sum(batch.byte_length for item in items for batch in item.batches)


def _plan(
    topic: TopicRecord,
    meta: ChainMeta,
    tail: ChainItem,
    ready: list[ChainItem],
    *,
    full: bool,
) -> MergeResult:
    """What the step does: the result it reports once every write succeeded.

    ``full``: the step took as many items as it may, so more may wait behind them (it is
    not ``done``).
    """
    if not ready:
        return MergeResult(topic.name, done=True, chain_start=meta.chain_start)
    last = ready[-1]
    l1_end = {
        p: last.mark(p).high_watermark
        for p in range(len(tail.snapshot))
        if last.mark(p).high_watermark > _at(meta.l1_end, p)
    }
    segments = {item.segment_id for item in ready if item.segment_id is not None}
    merged_bytes = _byte_length(ready)
    action = (
        f"merge chain items {meta.chain_start}..{last.seq} ({len(segments)} L0 segments, "
        f"{merged_bytes} bytes) into L1; L1 end "
        + ", ".join(f"p{p}={end}" for p, end in sorted(l1_end.items()))
        + f"; chain start {last.seq + 1} (items below deleted after the grace period)"
    )
    return MergeResult(
        topic.name,
        done=not full,
        chain_start=last.seq + 1,
        items_merged=len(ready),
        segments_merged=len(segments),
        bytes_merged=merged_bytes,
        l1_end=l1_end,
        actions=(action,),
    )


def _at(values: tuple[int, ...], partition: int) -> int:
    """A packed per-partition value (0 beyond the tuple)."""
    return values[partition] if 0 <= partition < len(values) else 0
