"""Key compaction: the compactor's step that keeps the latest record per key (ADR 0013, 6).

It works on the L1 region of each partition of a ``cleanup_policy = "compact"`` topic,
``[log_start, l1_end)``: records the merge (`lakelog.service.merge`) moved to L1 segments.
The chain is never compacted. The meta item's ``compacted_end`` (``ce``) says how far the
last compaction reached: ``[log_start, ce)`` is clean, ``[ce, l1_end)`` dirty. A partition
is compacted when its dirty bytes are at least `MIN_CLEANABLE_RATIO` of its region's.

One `KeyCompactor.compact_topic` call compacts at most one window ``[log_start, w)`` of one
partition: its clean part and its dirty entries within a byte budget. A record at offset
``o`` is kept unless a later record of its key lies in the window, or it is its key's last
and a tombstone older than ``delete_retention_ms``; keyless records are kept. Kept records
keep their offsets, timestamps, keys, values and headers. The order of writes:

1. PUT one L1 segment of the kept records of the entries being replaced (their offsets in
   the ``offset`` column, with gaps);
2. per group of consecutive entries, in offset order, `LedgerStore.replace_entry`: the
   group's new entry is put at its last old entry's key only if that item still names the
   old segment, then the group's other old entries are deleted, highest offset first, each
   only if it still names its old segment;
3. one conditional update of the meta item: ``compacted_end[p] = w``.

Readers see a correct log at every point (old entries with their old segment, then the new
entry), a crash anywhere leaves what a rerun completes, and segments no entry names any
more are gc's after its grace period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from lakelog.config import TopicConfig
from lakelog.log.codec import SegmentBuilder, SegmentRow, record_size
from lakelog.log.ledger import contiguous_run
from lakelog.log.records import ChainMeta, Entry
from lakelog.service.context import EngineContext
from lakelog.service.fetch import Fetcher
from lakelog.service.merge import L1_ROW_GROUP_BYTES
from lakelog.storage.keys import l1_segment_key
from lakelog.storage.ports import TopicRecord

__all__ = ["MAX_COVERED", "MIN_CLEANABLE_RATIO", "KeyCompactionResult", "KeyCompactor", "dirty"]

MIN_CLEANABLE_RATIO: Final = 0.5
"""Dirty share of a partition's L1 region (in record bytes) at which it is compacted
(Kafka's ``min.cleanable.dirty.ratio``)."""
MAX_COVERED: Final = 24
"""Old entries one replacement entry covers at most (its conditional deletions)."""
ENTRY_PAGE: Final = 100
"""L1 entries one Query reads while the step lists a region."""
META_ATTEMPTS: Final = 8
"""Conditional meta updates one step tries before it gives up (the next pass resumes)."""


@dataclass(frozen=True, slots=True)
class KeyCompactionResult:
    """What one `KeyCompactor.compact_topic` call did (or, with ``dry_run``, would do).

    ``done`` False: call again, the step compacted a window and more may be due.
    """

    topic: str
    done: bool
    records_dropped: int = 0
    """Records superseded by a later record of their key, or expired tombstones."""
    tombstones_dropped: int = 0
    entries_replaced: int = 0
    """Old L1 entries the step's new entries replaced."""
    compacted_end: dict[int, int] = field(default_factory=dict)
    """The partition whose compacted end moved, and where to."""
    actions: tuple[str, ...] = ()


@dataclass
class _Group:
    """Consecutive old entries replaced by one new entry, and the rows it keeps."""

    base: int = 0
    """The first offset it covers: its first old entry's first offset in the window."""
    old: list[Entry] = field(default_factory=list)
    kept: list[tuple[int, SegmentRow]] = field(default_factory=list)
    kept_bytes: int = 0


@dataclass
class _Plan:
    """One partition's window and what compacting it writes."""

    partition: int
    end: int
    groups: list[_Group]
    dropped: int = 0
    tombstones: int = 0


def dirty(meta: ChainMeta, partitions: int) -> bool:
    """Whether some partition's L1 region holds records no compaction has seen yet (the
    cheap filter of `lakelog.service.compactor.Compactor.topics_needing_work`)."""
    return any(
        _at(meta.l1_end, p) > max(_at(meta.compacted_end, p), meta.log_start_offset(p))
        for p in range(partitions)
    )


class KeyCompactor:
    """Compacts the L1 regions of a compact topic's partitions (ADR 0013, 6)."""

    def __init__(self, context: EngineContext) -> None:
        self._ctx = context

    def compact_topic(
        self,
        topic: TopicRecord,
        *,
        max_bytes: int,
        max_entries: int,
        now_ms: int,
        dry_run: bool = False,
    ) -> KeyCompactionResult:
        """Compact one window of the first partition that is due; ``done`` when none is.

        The window is the partition's clean part and its dirty entries while their record
        bytes stay within ``max_bytes`` and their count within ``max_entries`` (at least
        one dirty entry). ``dry_run`` reads and plans, and writes nothing.
        """
        if max_bytes < 1 or max_entries < 1:
            raise ValueError("max_bytes and max_entries must be positive")
        config = TopicConfig.parse(topic.config)
        if config.cleanup_policy != "compact":
            return KeyCompactionResult(topic.name, done=True)
        meta = self._ctx.ledger.read_meta(topic.topic_id)
        if meta is None or meta.sealed_ms is not None:
            return KeyCompactionResult(topic.name, done=True)
        for partition in range(topic.partitions):
            window = self._window(topic, meta, partition, max_bytes, max_entries)
            if window is None:
                continue
            plan = self._plan(topic, partition, window, now_ms - config.delete_retention_ms)
            result = _result(topic, plan)
            if dry_run:
                return replace(result, done=True)
            if not self._write(topic, plan, config.compression):
                return replace(result, done=True, actions=(*result.actions, "lost a race"))
            self._move_meta(topic, partition, plan.end)
            return result
        return KeyCompactionResult(topic.name, done=True)

    # Which window ---------------------------------------------------------------------------
    def _window(
        self, topic: TopicRecord, meta: ChainMeta, partition: int, max_bytes: int, limit: int
    ) -> list[tuple[Entry, int]] | None:
        """The entries of the partition's window (and the first offset each contributes),
        or None when the partition is not due."""
        start, l1_end = meta.log_start_offset(partition), _at(meta.l1_end, partition)
        clean_end = max(_at(meta.compacted_end, partition), start)
        if l1_end <= clean_end:
            return None
        region = self._region(topic.topic_id, partition, start, l1_end)
        clean = [(entry, first) for entry, first in region if entry.last_offset < clean_end]
        dirty_part = region[len(clean) :]
        dirty_bytes = sum(entry.size_bytes for entry, _ in dirty_part)
        total = dirty_bytes + sum(entry.size_bytes for entry, _ in clean)
        if not dirty_part or dirty_bytes < MIN_CLEANABLE_RATIO * total:
            return None
        window = list(clean)
        size = sum(entry.size_bytes for entry, _ in clean)
        for entry, first in dirty_part:
            if len(window) > len(clean) and (
                size + entry.size_bytes > max_bytes or len(window) >= max(limit, len(clean) + 1)
            ):
                break
            window.append((entry, first))
            size += entry.size_bytes
        return window

    def _region(
        self, topic_id: str, partition: int, start: int, end: int
    ) -> list[tuple[Entry, int]]:
        """The entries holding ``[start, end)`` in order, each with the first offset it
        contributes (a replacement entry may start below it: ADR 0013, 6)."""
        found: list[tuple[Entry, int]] = []
        offset = start
        while offset < end:
            page = self._ctx.ledger.query_entries(topic_id, partition, offset, ENTRY_PAGE)
            run = [entry for entry in contiguous_run(page, offset) if entry.base_offset < end]
            if not run:
                break
            for entry in run:
                found.append((entry, offset))
                offset = entry.last_offset + 1
        return found

    # What to keep ---------------------------------------------------------------------------
    def _plan(
        self,
        topic: TopicRecord,
        partition: int,
        window: list[tuple[Entry, int]],
        tombstone_cutoff: int,
    ) -> _Plan:
        """Read the window's rows and group the entries that lose rows (ADR 0013, 6)."""
        fetcher = Fetcher(self._ctx)
        try:
            rows_of = fetcher.read_l1_rows([entry for entry, _ in window])
        finally:
            fetcher.close()
        rows = [
            [(o, row) for o, row in rows_of.get((e.segment_key, e.row_group), ()) if o >= first]
            for e, first in window
        ]
        latest: dict[bytes, int] = {}
        for part in rows:
            for offset, row in part:
                if row.key is not None:
                    latest[row.key] = offset
        plan = _Plan(partition, window[-1][0].last_offset + 1, [])
        changed: list[bool] = []
        kept_rows: list[list[tuple[int, SegmentRow]]] = []
        for part in rows:
            kept = []
            for offset, row in part:
                if row.key is None or (
                    latest[row.key] == offset
                    and (row.value is not None or row.timestamp_ms >= tombstone_cutoff)
                ):
                    kept.append((offset, row))
                else:
                    plan.dropped += 1
                    plan.tombstones += row.value is None and latest[row.key] == offset
            kept_rows.append(kept)
            changed.append(len(kept) < len(part))
        _mark_overlapped(window, changed)
        plan.groups = _groups(window, kept_rows, changed)
        return plan

    # Writes ---------------------------------------------------------------------------------
    def _write(self, topic: TopicRecord, plan: _Plan, compression: str) -> bool:
        """PUT the kept rows' segment, then replace each group's entries in offset order;
        False when a replacement found its entry changed by another writer."""
        made = self._put_segment(topic, plan, compression)
        for group, entry in zip(plan.groups, made, strict=True):
            if not self._ctx.ledger.replace_entry(topic.topic_id, plan.partition, entry, group.old):
                return False
        return True

    def _put_segment(self, topic: TopicRecord, plan: _Plan, compression: str) -> list[Entry]:
        """PUT one L1 segment of the groups that keep rows; every group's new entry."""
        filled = [group for group in plan.groups if group.kept]
        location_of = {}
        key, size, footer = "", 0, 0
        if filled:
            builder = SegmentBuilder(topic.topic_id, compression, level="L1")
            for group in filled:
                builder.add_batch(
                    plan.partition,
                    [row.timestamp_ms for _, row in group.kept],
                    [row.key for _, row in group.kept],
                    [row.value for _, row in group.kept],
                    [row.headers for _, row in group.kept],
                    offsets=[offset for offset, _ in group.kept],
                )
            encoded = builder.build()
            key = l1_segment_key(topic.topic_id, plan.partition, filled[0].kept[0][0])
            self._ctx.objects.put(key, encoded.body)
            size, footer = encoded.size, encoded.footer_offset
            location_of = {id(g): loc for g, loc in zip(filled, encoded.row_groups, strict=True)}
        made = []
        for group in plan.groups:
            last = group.old[-1]
            entry = Entry(
                base_offset=group.base,
                last_offset=last.last_offset,
                segment_key="",
                row_group=-1,
                byte_offset=0,
                byte_length=0,
                segment_size=0,
                footer_offset=0,
                min_timestamp=-1,
                max_timestamp=-1,
                max_timestamp_cum=last.max_timestamp_cum,
                size_bytes=group.kept_bytes,
                cumulative_bytes=last.cumulative_bytes,
                row_count=len(group.kept),
            )
            location = location_of.get(id(group))
            if location is not None:
                entry = replace(
                    entry,
                    segment_key=key,
                    row_group=location.row_group,
                    byte_offset=location.byte_offset,
                    byte_length=location.byte_length,
                    segment_size=size,
                    footer_offset=footer,
                    min_timestamp=location.min_timestamp,
                    max_timestamp=location.max_timestamp,
                )
            made.append(entry)
        return made

    def _move_meta(self, topic: TopicRecord, partition: int, end: int) -> None:
        """``compacted_end[partition] = end``, conditional on the version read (re-read and
        retried when another writer moved the meta item first). Losing every attempt
        leaves it behind: the next step compacts the window again and writes nothing."""
        ledger = self._ctx.ledger
        for _ in range(META_ATTEMPTS):
            meta = ledger.read_meta(topic.topic_id)
            if meta is None or meta.sealed_ms is not None:
                return
            if _at(meta.compacted_end, partition) >= end:
                return
            ends = list(meta.compacted_end) + [0] * (partition + 1 - len(meta.compacted_end))
            ends[partition] = end
            if ledger.update_meta(
                topic.topic_id, replace(meta, compacted_end=tuple(ends)), meta.version
            ):
                return


def _mark_overlapped(window: Sequence[tuple[Entry, int]], changed: list[bool]) -> None:
    """Mark as changed each entry that starts below the offset it contributes from (a
    replacement put just before a crash) and the entries before it that it overlaps, so
    they are replaced together and the entries end dense again."""
    for index, (entry, first) in enumerate(window):
        if entry.base_offset < first:
            changed[index] = True
            for before in range(index):
                if window[before][0].base_offset >= entry.base_offset:
                    changed[before] = True


def _groups(
    window: Sequence[tuple[Entry, int]],
    kept_rows: Sequence[list[tuple[int, SegmentRow]]],
    changed: Sequence[bool],
) -> list[_Group]:
    """The replacements: a group opens at a changed entry and takes the following ones
    until its kept rows reach `L1_ROW_GROUP_BYTES` or it covers `MAX_COVERED` entries."""
    groups: list[_Group] = []
    group: _Group | None = None
    for (entry, first), kept, change in zip(window, kept_rows, changed, strict=True):
        if group is None and not change:
            continue
        if group is None:
            group = _Group(first)
            groups.append(group)
        group.old.append(entry)
        group.kept.extend(kept)
        group.kept_bytes += sum(record_size(r.key, r.value, r.headers) for _, r in kept)
        if group.kept_bytes >= L1_ROW_GROUP_BYTES or len(group.old) >= MAX_COVERED:
            group = None
    return groups


def _result(topic: TopicRecord, plan: _Plan) -> KeyCompactionResult:
    """The step's report once its writes succeed."""
    replaced = sum(len(group.old) for group in plan.groups)
    action = (
        f"compact keys of {topic.name}-{plan.partition} below {plan.end}: drop "
        f"{plan.dropped} records ({plan.tombstones} tombstones), replace {replaced} L1 "
        f"entries with {len(plan.groups)}"
    )
    return KeyCompactionResult(
        topic.name,
        done=False,
        records_dropped=plan.dropped,
        tombstones_dropped=plan.tombstones,
        entries_replaced=replaced,
        compacted_end={plan.partition: plan.end},
        actions=(action,),
    )


def _at(values: Sequence[int], partition: int) -> int:
    """A packed per-partition value (0 beyond the tuple)."""
    return values[partition] if 0 <= partition < len(values) else 0
