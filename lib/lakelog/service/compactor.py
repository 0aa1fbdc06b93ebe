"""The compactor's use cases: enforce retention, merge flush segments, compact keys,
collect garbage.

A compactor *pass* visits every topic that has work (`Compactor.topics_needing_work`),
then runs `Compactor.compact_topic` on each until it reports ``done`` (every call does a
bounded amount of work, so a Lambda task never runs long), then `Compactor.collect`
(gc of unreferenced segments and of deleted topics' storage). The Step Functions state
machine of each deployment (``functions/compactor``), ``lakelog compact`` and
``lakelog dev`` all run passes through these three calls. The protocol, its order of
writes and its failure cases are in ADR 0013.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field, replace

from lakelog.config import TopicConfig
from lakelog.errors import TopicNotFoundError
from lakelog.log.chain import PRODUCER_EXPIRATION_MS, chain_run, first_seq
from lakelog.log.records import ChainItem, ChainMeta, Entry
from lakelog.service.admin import TopicAdmin
from lakelog.service.context import EngineContext
from lakelog.service.gc import GarbageCollector
from lakelog.service.keycompact import KeyCompactor, dirty
from lakelog.service.merge import Merger
from lakelog.service.produce import MAX_UPLOAD_AGE_MS
from lakelog.storage.keys import l0_segment_key_from_id, segment_created_ms
from lakelog.storage.ports import TopicRecord

__all__ = ["CompactionSettings", "CompactionStep", "Compactor", "GcReport"]

RACE_ATTEMPTS = 3
"""Times a step re-reads and replans after another writer moved the meta item first."""
WALK_PAGE = 100
"""Chain items (or L1 entries) one Query of the retention walk asks for at most."""
FIRST_ENTRY_PAGE = 2
"""L1 entries the walk's first Query of a partition asks for (its pages double from there):
when nothing is due the partition costs one Query of two small items."""
CLOCK_SKEW_MS = 5 * 60 * 1000
"""How far two processes' clocks may differ at most (ADR 0013, 3.1: minutes)."""
SHARED_SEGMENT_MS = MAX_UPLOAD_AGE_MS + 2 * CLOCK_SKEW_MS
"""After its PUT, how long an L0 segment may still be named by a new chain item: an append
commits at most `MAX_UPLOAD_AGE_MS` after its upload (a retry after a lost reply may name
it again in a later item), give or take two clocks' skew (ADR 0013, 3.2)."""


@dataclass(frozen=True, slots=True)
class CompactionSettings:
    """How much one step may do, and the merge's target size."""

    max_items_per_step: int = 1_000
    """Chain items one `compact_topic` call's retention walk and truncation read, and L1
    entries it expires or deletes, at most (besides one Query of L1 entries per partition
    with an L1 end; its merge: `max_merge_items`)."""
    target_l1_bytes: int = 64 << 20
    """Size an L1 segment is merged up to (or a partition's whole tail if smaller)."""
    max_merge_items: int = 4_000
    """Chain items one merge step takes at most (one Query: fewer when they fill 1 MB)."""
    max_merge_bytes: int = 512 << 20
    """Record bytes one merge step takes at most: the step holds them in memory, and a
    partition's L1 segments are cut from its share of them, so this over the partitions
    written is the L1 segment size (W1: 12 partitions, about 43 MiB; ADR 0013, 5.5)."""
    key_compaction_bytes: int = 64 << 20
    """Dirty record bytes one key compaction step takes into its window (ADR 0013, 6)."""


@dataclass(frozen=True, slots=True)
class CompactionStep:
    """What one `compact_topic` call did (or, with ``dry_run``, would do).

    ``done`` False: call again, there is more work for this topic in this pass.
    """

    topic: str
    done: bool
    log_start_offsets: dict[int, int] = field(default_factory=dict)
    """Partitions whose ``log_start_offset`` moved, and where to."""
    bytes_expired: int = 0
    items_removed: int = 0
    """Chain items deleted (a grace period after the chain start moved past them)."""
    entries_removed: int = 0
    """L1 entries deleted (wholly below their partition's log start)."""
    segments_deleted: int = 0
    """L0 segments of the chain items it deleted and L1 segments of the entries it deleted
    that nothing names any more (ADR 0013, 3.2 and 2)."""
    segments_merged: int = 0
    """L0 segments whose records now live in L1 segments."""
    bytes_merged: int = 0
    """Row-group bytes of the L0 batches the merge moved to L1."""
    records_compacted: int = 0
    """Records key compaction dropped (superseded by a later record of their key, or
    tombstones older than ``delete_retention_ms``)."""
    actions: tuple[str, ...] = ()
    """One line per action, for ``lakelog compact --dry-run`` and logs."""
    l0_backlog_ms: int = 0
    """How long the oldest chain item ready to merge after this step has waited beyond its
    merge eligibility (``now - PRODUCER_EXPIRATION_MS - append_time``; 0: none waits)."""
    merge_ready: bool = field(default=True, repr=False, compare=False)
    """No item is left below the chain start (so the merge may move it again)."""
    chain_start: int | None = field(default=None, repr=False, compare=False)
    """The chain start after the step (in a dry run: where it would be); the merge plans
    from the one retention and truncation leave."""


@dataclass(frozen=True, slots=True)
class GcReport:
    """What `Compactor.collect` deleted."""

    segments_deleted: int = 0
    topics_purged: int = 0


def _padded(values: tuple[int, ...], length: int) -> list[int]:
    return list(values) + [0] * (length - len(values))


def _oldest_kept(config: TopicConfig, now: int) -> int | None:
    """The oldest max timestamp a batch may have and be kept by time (None: kept forever)."""
    return now - config.retention_ms if config.retention_ms >= 0 else None


def _sealed(tail: ChainItem, meta: ChainMeta) -> bool:
    return tail.kind == "seal" or meta.sealed_ms is not None


def _dead_segments(dead: list[Entry], kept: Entry | None, l1_end: int) -> list[str]:
    """The L1 segments of one partition that only its ``dead`` entries name (ADR 0013, 2).

    A merged segment holds consecutive entries of one partition, so one named by a dead
    entry is named by no entry left unless it is the segment of the first entry left
    (``kept``, None when none is: it may straddle the log start). Only entries below the
    L1 end count: a merge under way may still be putting entries of its segments. Key
    compaction's entries (``row_count`` set) break the rule: a segment of theirs, or a
    merged one whose entries they replaced in part, may be named again further on. What
    is not deleted here, the full gc deletes once nothing names it.
    """
    if any(entry.row_count >= 0 for entry in (*dead, *([] if kept is None else [kept]))):
        return []
    keep = set() if kept is None else {kept.segment_key}
    keep.update(entry.segment_key for entry in dead if entry.last_offset >= l1_end)
    found = dict.fromkeys(entry.segment_key for entry in dead)
    return [key for key in found if key not in keep]


@dataclass
class _Plan:
    """What one step will write: the new log starts and chain start, and what it counted."""

    log_start: list[int]
    bytes_below: list[int]
    chain_start: int
    live_seq: int
    """The first item holding a record at or above some partition's (new) log start."""
    bytes_expired: int = 0
    complete: bool = True
    actions: list[str] = field(default_factory=list)
    dead_entries: dict[int, list[int]] = field(default_factory=dict)
    """Per partition, the last offsets of the L1 entries wholly below its (new) log start:
    deleted once the meta item holds that log start."""
    dead_segments: list[str] = field(default_factory=list)
    """L1 segments only dead entries name: deleted after them."""


class Compactor:
    """One compactor pass's three calls over a deployment's stores (ADR 0013).

    Parameters
    ----------
    context
        The stores, caches and clock (``context.clock_ms`` is the compactor's clock).
    gc
        The garbage collector `collect` runs; its grace period also spaces the chain
        truncation's two writes.
    settings
        How much one step may do.
    """

    def __init__(
        self,
        context: EngineContext,
        gc: GarbageCollector,
        settings: CompactionSettings | None = None,
    ) -> None:
        self._ctx = context
        self._gc = gc
        self._settings = settings or CompactionSettings()
        self._merger = Merger(context)
        self._keys = KeyCompactor(context)

    # Which topics ----------------------------------------------------------------------
    def topics_needing_work(self) -> list[str]:
        """Names of the live topics a pass should step through, sorted.

        A cheap filter (ADR 0013, 1): per topic one reverse Query (tail and meta item)
        and one Query of the first two stored chain items, about 2 RRU, plus one Query
        of one L1 entry per partition with an L1 end (about 1 RRU each) until one is due.
        It may list a topic whose step then finds nothing to do; work it misses (e.g.
        retention by time of a batch past the first stored item) is found by a later pass.
        """
        names = []
        for topic in self._ctx.catalog.list_topics():
            found = self._ctx.ledger.read_tail(topic.topic_id)
            if found is None or _sealed(*found):
                continue  # collect() deals with sealed topics
            tail, meta = found
            first, _ = self._ctx.ledger.query(topic.topic_id, 0, 2)
            if self._needs_work(topic, tail, meta, first):
                names.append(topic.name)
        return sorted(names)

    def _needs_work(
        self, topic: TopicRecord, tail: ChainItem, meta: ChainMeta, first: list[ChainItem]
    ) -> bool:
        now = self._ctx.clock_ms()
        below = any(item.seq < meta.chain_start for item in first)
        if below and self._released(meta, now):
            return True
        config = TopicConfig.parse(topic.config)
        start = [item for item in first if item.seq >= max(1, meta.chain_start)]
        if (
            not below
            and start
            and start[0].seq < tail.seq
            and start[0].append_time_ms <= now - PRODUCER_EXPIRATION_MS
        ):
            return True  # chain truncation or the merge
        if config.cleanup_policy == "compact":
            return dirty(meta, topic.partitions)  # key compaction (ADR 0013, 6)
        oldest = _oldest_kept(config, now)
        if config.retention_bytes >= 0 and any(
            tail.mark(p).cumulative_bytes - _padded(meta.bytes_below, p + 1)[p]
            > config.retention_bytes
            for p in range(len(tail.snapshot))
        ):
            return True
        if (
            oldest is not None
            and start
            and any(
                batch.max_timestamp < oldest
                and start[0].mark(batch.partition).high_watermark
                > meta.log_start_offset(batch.partition)
                for batch in start[0].batches
            )
        ):
            return True
        return self._l1_due(topic, meta, oldest)

    def _l1_due(self, topic: TopicRecord, meta: ChainMeta, oldest: int | None) -> bool:
        """Whether a partition's first stored L1 entry is below its log start (left by a
        step that stopped before deleting it) or expired by time: one Query of one entry per
        partition with an L1 end, until one is found (ADR 0013, 2)."""
        for partition, end in enumerate(meta.l1_end):
            if end == 0:
                continue
            first = self._ctx.ledger.query_entries(topic.topic_id, partition, 0, 1)
            if not first:
                continue
            if first[0].last_offset < meta.log_start_offset(partition):
                return True
            expired = oldest is not None and first[0].max_timestamp < oldest
            if expired and first[0].last_offset < end:
                return True
        return False

    @staticmethod
    def _below_all(item: ChainItem, meta: ChainMeta, log_start: list[int] | None = None) -> bool:
        """Whether every record of ``item`` and before lies below its partition's log start."""
        starts = log_start if log_start is not None else list(meta.log_start)
        return all(
            mark.high_watermark <= (starts[p] if p < len(starts) else 0)
            for p, mark in enumerate(item.snapshot)
        )

    def _released(self, meta: ChainMeta, now: int) -> bool:
        """Whether the items below the chain start may be deleted (a grace period after
        the chain start moved past them)."""
        return now >= (meta.chain_start_ms or 0) + self._gc.grace_ms

    # One step ---------------------------------------------------------------------------
    def compact_topic(self, topic: str, *, dry_run: bool = False) -> CompactionStep:
        """One bounded step of ``topic``: retention, chain truncation, the merge to L1, then
        key compaction of a compact topic (ADR 0013, 2-4 and 6).

        The merge runs once retention and truncation are done and no item is left below
        the chain start (the chain start moves again only once they are gone). Each part
        reads at most ``max_items_per_step`` chain items (plus the binary searches'
        probes); retention's walk over L1 entries counts those it expires or deletes
        against the same budget. ``done`` False: call again in this pass. With
        ``dry_run`` nothing is written and ``actions`` says what would be.

        Raises
        ------
        TopicNotFoundError
            No topic of that name.
        """
        record = self._ctx.current_topic(topic)
        for _attempt in range(RACE_ATTEMPTS):
            found = self._ctx.ledger.read_tail(record.topic_id)
            if found is None or _sealed(*found):
                return CompactionStep(topic, done=True)
            tail, meta = found
            step = self._step(record, tail, meta, dry_run)
            if step is not None:
                merged = self._merge(record, step, dry_run) if step.done else step
                compacted = self._compact_keys(record, merged, dry_run) if merged.done else merged
                return self._backlog(record, compacted)
        return CompactionStep(topic, done=False, actions=("lost the meta item to other writers",))

    def _step(
        self, topic: TopicRecord, tail: ChainItem, meta: ChainMeta, dry_run: bool
    ) -> CompactionStep | None:
        """The step against ``tail`` and ``meta``; None when the meta item moved meanwhile."""
        now = self._ctx.clock_ms()
        budget = self._settings.max_items_per_step
        below = self._below_chain_start(topic, meta, budget)
        removed = 0
        released = self._released(meta, now)
        l0_segments: list[str] = []
        if below and released:
            l0_segments = self._l0_segments_of(topic, below, meta.chain_start, budget)
            if not dry_run:
                # Items first, their segments after (invariant 5): a crash in between
                # leaves orphans the next full gc deletes.
                self._ctx.ledger.delete_items(topic.topic_id, below)
                self._ctx.objects.delete(l0_segments)
            removed = len(below)
        plan = self._retention(topic, tail, meta, max(1, budget - removed), now)
        if removed:
            plan.actions.insert(
                0,
                f"delete chain items {below[0]}..{below[-1]}, "
                f"then {len(l0_segments)} L0 segments only they name",
            )
        if removed == budget:
            plan.complete = False  # there may be more below the chain start
        elif not below or removed:
            # The chain start moves again only once the items below it are gone.
            self._truncate(topic, tail, meta, plan, now)
        moved = {
            p: start for p, start in enumerate(plan.log_start) if start != meta.log_start_offset(p)
        }
        if (moved or plan.chain_start != meta.chain_start) and not dry_run:
            updated = replace(
                meta,
                log_start=tuple(plan.log_start),
                bytes_below=tuple(plan.bytes_below),
                chain_start=plan.chain_start,
                chain_start_ms=now if plan.chain_start != meta.chain_start else meta.chain_start_ms,
            )
            if not self._ctx.ledger.update_meta(topic.topic_id, updated, meta.version):
                return None
        if not dry_run:
            # After the meta item holds the new log starts (ADR 0012 1.7): a reader that
            # misses these entries reads the meta item again and answers 416.
            for partition, last_offsets in plan.dead_entries.items():
                self._ctx.ledger.delete_entries(topic.topic_id, partition, last_offsets)
            self._ctx.objects.delete(plan.dead_segments)
        return CompactionStep(
            topic=topic.name,
            done=plan.complete,
            merge_ready=not below or released,
            chain_start=plan.chain_start,
            log_start_offsets=moved,
            bytes_expired=plan.bytes_expired,
            items_removed=removed,
            entries_removed=sum(len(offsets) for offsets in plan.dead_entries.values()),
            segments_deleted=len(l0_segments) + len(plan.dead_segments),
            actions=tuple(plan.actions),
        )

    def _merge(self, topic: TopicRecord, step: CompactionStep, dry_run: bool) -> CompactionStep:
        """``step`` (retention and truncation done) followed by one merge step (ADR 0013,
        4), when no item is left below the chain start; ``done`` once the merge is."""
        if not step.merge_ready:
            return step
        merged = self._merger.merge_topic(
            topic,
            max_items=self._settings.max_merge_items,
            target_bytes=self._settings.target_l1_bytes,
            now_ms=self._ctx.clock_ms(),
            max_bytes=self._settings.max_merge_bytes,
            dry_run=dry_run,
            planned_chain_start=step.chain_start,
        )
        return replace(
            step,
            done=merged.done,
            segments_merged=merged.segments_merged,
            bytes_merged=merged.bytes_merged,
            chain_start=merged.chain_start,
            actions=step.actions + merged.actions,
        )

    def _backlog(self, topic: TopicRecord, step: CompactionStep) -> CompactionStep:
        """``step`` with its ``l0_backlog_ms``: 0 without a read when its merge ran to done
        (every item left is too young); else from the first two items at the chain start
        (one Query; the chain's last item is never merged)."""
        if (step.done and step.merge_ready) or step.chain_start is None:
            return step
        items, _ = self._ctx.ledger.query(topic.topic_id, max(1, step.chain_start), 2)
        if len(items) < 2 or items[0].kind != "append":
            return step
        waited = self._ctx.clock_ms() - PRODUCER_EXPIRATION_MS - items[0].append_time_ms
        return replace(step, l0_backlog_ms=max(0, waited))

    def _compact_keys(
        self, topic: TopicRecord, step: CompactionStep, dry_run: bool
    ) -> CompactionStep:
        """``step`` (everything before done) followed by one key compaction step of a
        compact topic (ADR 0013, 6); ``done`` once that is."""
        compacted = self._keys.compact_topic(
            topic,
            max_bytes=self._settings.key_compaction_bytes,
            max_entries=self._settings.max_items_per_step,
            now_ms=self._ctx.clock_ms(),
            dry_run=dry_run,
        )
        return replace(
            step,
            done=compacted.done,
            records_compacted=compacted.records_dropped,
            actions=step.actions + compacted.actions,
        )

    def _below_chain_start(self, topic: TopicRecord, meta: ChainMeta, budget: int) -> list[int]:
        """Seqs of the items still stored below the chain start, at most ``budget``: one
        Query of the first stored item (the items below form a run up to the chain start)."""
        first, _ = self._ctx.ledger.query(topic.topic_id, 0, 1)
        if not first or first[0].seq >= meta.chain_start:
            return []
        return list(range(first[0].seq, min(meta.chain_start, first[0].seq + budget)))

    def _l0_segments_of(
        self, topic: TopicRecord, seqs: list[int], chain_start: int, page: int
    ) -> list[str]:
        """Keys of the L0 segments the items at ``seqs`` (a run below the chain start) name
        that no item from the chain start on can name (ADR 0013, 3.2).

        Reads the run (Queries of up to ``len(seqs)`` items, about 1 RRU per 15 W1 items)
        and, when it reaches the chain start, one Query of ``page`` items from there: an
        append that retried after a lost reply may name its segment again in a later item,
        but only within `SHARED_SEGMENT_MS` of its upload. A segment named by an item of
        that page, or uploaded less than `SHARED_SEGMENT_MS` before the page's last item
        (when the page does not reach the chain's end), is left to the full gc.
        """
        first, last = seqs[0], seqs[-1]
        ledger = self._ctx.ledger
        named: dict[str, int] = {}
        seq = first
        while seq <= last:
            items, _ = ledger.query(topic.topic_id, seq, last - seq + 1)
            run = [item for item in items if item.seq <= last]
            for item in run:
                if item.segment_id is not None:
                    key = l0_segment_key_from_id(topic.topic_id, item.segment_id)
                    named[key] = segment_created_ms(key) or 0
            if len(run) < len(items) or not run:
                break
            seq = run[-1].seq + 1
        if last + 1 < chain_start:
            return list(named)  # no item from the chain start is this close to them
        after, end_meta = ledger.query(topic.topic_id, chain_start, page)
        kept = {
            l0_segment_key_from_id(topic.topic_id, item.segment_id)
            for item in after
            if item.segment_id is not None
        }
        # The page's last item bounds when any item after it was written (its end: none).
        horizon = None if end_meta is not None else (after[-1].append_time_ms if after else 0)
        return [
            key
            for key, created in named.items()
            if key not in kept and (horizon is None or created + SHARED_SEGMENT_MS < horizon)
        ]

    def _retention(
        self, topic: TopicRecord, tail: ChainItem, meta: ChainMeta, budget: int, now: int
    ) -> _Plan:
        """Expire each partition's prefix of L1 entries, then walk the chain from where live
        data starts, expiring each partition's prefix of batches older than
        ``retention_ms`` or beyond ``retention_bytes`` (ADR 0013, 2)."""
        length = max(len(tail.snapshot), len(meta.log_start), len(meta.l1_end))
        plan = _Plan(
            _padded(meta.log_start, length),
            _padded(meta.bytes_below, length),
            meta.chain_start,
            tail.seq + 1,
        )
        config = TopicConfig.parse(topic.config)
        due = config.cleanup_policy == "delete"
        oldest = _oldest_kept(config, now) if due else None
        limit = config.retention_bytes if due else -1
        walked, closed = self._expire_l1(topic, tail, meta, plan, budget, oldest, limit)
        live = self._first(
            topic,
            max(1, meta.chain_start),
            tail.seq,
            lambda item: not self._below_all(item, meta, plan.log_start),
        )
        plan.live_seq = tail.seq + 1 if live is None else live
        if live is None or not due:
            return plan
        size = [tail.mark(p).cumulative_bytes - plan.bytes_below[p] for p in range(length)]
        open_ = {
            p
            for p in range(length)
            if p not in closed and plan.log_start[p] < tail.mark(p).high_watermark
        }
        if oldest is None and limit < 0:
            open_.clear()
        if walked >= budget:
            plan.complete = False  # the L1 walk took the step's budget
            return plan
        seq = live
        first_live: int | None = None
        while open_ and seq <= tail.seq and walked < budget:
            items, _ = self._ctx.ledger.query(topic.topic_id, seq, min(WALK_PAGE, budget - walked))
            run = chain_run(items, seq, ())
            if not run:
                break
            for item in run:
                walked += 1
                for batch in item.batches:
                    p = batch.partition
                    end = item.mark(p).high_watermark
                    if p not in open_ or end <= plan.log_start[p]:
                        continue
                    by_time = oldest is not None and batch.max_timestamp < oldest
                    if not (by_time or (limit >= 0 and size[p] > limit)):
                        open_.discard(p)
                        continue
                    plan.log_start[p] = end
                    plan.bytes_below[p] = item.mark(p).cumulative_bytes
                    size[p] -= batch.byte_length
                    plan.bytes_expired += batch.byte_length
                    plan.actions.append(
                        f"expire {topic.name}-{p} below {end} "
                        f"({'time' if by_time else 'bytes'}, item {item.seq})"
                    )
                if first_live is None and not self._below_all(item, meta, plan.log_start):
                    first_live = item.seq
            seq = run[-1].seq + 1
        plan.complete = plan.complete and (not open_ or seq > tail.seq)
        plan.live_seq = first_live if first_live is not None else seq
        return plan

    def _expire_l1(
        self,
        topic: TopicRecord,
        tail: ChainItem,
        meta: ChainMeta,
        plan: _Plan,
        budget: int,
        oldest: int | None,
        limit: int,
    ) -> tuple[int, set[int]]:
        """Expire each partition's prefix of L1 entries (below its L1 end) that are older
        than ``oldest`` or beyond ``limit`` bytes, moving ``plan``'s log start to the end
        of the last one; note in ``plan.dead_entries`` every entry wholly below the new
        log start, those a step that stopped before deleting them included.

        Each partition with an L1 end is queried from offset 0: its first stored entry is
        the one at its log start unless a step left some below it. Returns how many
        entries it expired or found below the log start (at most ``budget``:
        ``plan.complete`` is False when it stopped there), and the partitions whose L1
        records are not all expired, which the chain walk skips.
        """
        walked = 0
        closed: set[int] = set()
        for partition, end in enumerate(meta.l1_end):
            if end == 0:
                continue
            if walked >= budget:
                plan.complete = False
                closed.update(range(partition, len(meta.l1_end)))
                break
            expiring = plan.log_start[partition] < end and (oldest is not None or limit >= 0)
            dead: list[Entry] = []
            kept: Entry | None = None
            stored = self._entries_from_zero(topic.topic_id, partition)
            for entry in stored:
                if entry.last_offset >= plan.log_start[partition]:
                    if entry.last_offset >= end:
                        kept = entry  # the L1 end (entries above it: a merge under way)
                        break
                    size = tail.mark(partition).cumulative_bytes - plan.bytes_below[partition]
                    by_time = oldest is not None and entry.max_timestamp < oldest
                    if not (expiring and (by_time or 0 <= limit < size)):
                        kept = entry
                        break
                    self._expire_entry(topic, plan, partition, entry, by_time)
                plan.dead_entries.setdefault(partition, []).append(entry.last_offset)
                dead.append(entry)
                walked += 1
                if walked >= budget:
                    kept = next(stored, None)  # the first entry left, whose segment stays
                    break
            plan.dead_segments.extend(_dead_segments(dead, kept, end))
            if plan.log_start[partition] < end:
                closed.add(partition)
        for partition, last_offsets in plan.dead_entries.items():
            plan.actions.append(
                f"delete {len(last_offsets)} L1 entries of {topic.name}-{partition} "
                f"below {plan.log_start[partition]}"
            )
        return walked, closed

    def _entries_from_zero(self, topic_id: str, partition: int) -> Iterator[Entry]:
        """The partition's L1 entries in offset order from offset 0, read as needed: pages
        of `FIRST_ENTRY_PAGE` entries, doubling up to `WALK_PAGE`."""
        offset, page_size = 0, FIRST_ENTRY_PAGE
        while True:
            limit = min(page_size, WALK_PAGE)
            page = self._ctx.ledger.query_entries(topic_id, partition, offset, limit)
            yield from page
            if len(page) < limit:
                return
            offset, page_size = page[-1].last_offset + 1, page_size * 2

    @staticmethod
    def _expire_entry(
        topic: TopicRecord, plan: _Plan, partition: int, entry: Entry, by_time: bool
    ) -> None:
        """Move ``plan``'s log start of ``partition`` past ``entry`` (ADR 0013, 2)."""
        plan.bytes_expired += max(0, entry.cumulative_bytes - plan.bytes_below[partition])
        plan.log_start[partition] = entry.last_offset + 1
        plan.bytes_below[partition] = max(plan.bytes_below[partition], entry.cumulative_bytes)
        plan.actions.append(
            f"expire {topic.name}-{partition} below {entry.last_offset + 1} "
            f"({'time' if by_time else 'bytes'}, L1 entry {entry.base_offset}..{entry.last_offset})"
        )

    def _truncate(
        self, topic: TopicRecord, tail: ChainItem, meta: ChainMeta, plan: _Plan, now: int
    ) -> None:
        """Move the chain start past the items wholly below every (new) log start that
        were appended more than `PRODUCER_EXPIRATION_MS` ago; never past the tail."""
        young = self._first(
            topic,
            meta.chain_start,
            tail.seq,
            lambda item: item.append_time_ms > now - PRODUCER_EXPIRATION_MS,
        )
        end = min(plan.live_seq, tail.seq, tail.seq + 1 if young is None else young)
        if end > meta.chain_start:
            plan.chain_start = end
            plan.actions.append(
                f"move the chain start of {topic.name} to {end} "
                f"(items {meta.chain_start}..{end - 1} deleted after the grace period)"
            )

    def _first(
        self, topic: TopicRecord, low: int, high: int, predicate: Callable[[ChainItem], bool]
    ) -> int | None:
        """The first seq in ``[low, high]`` whose item satisfies the monotone ``predicate``:
        one probe when it is ``low`` (the steady state), else a binary search."""

        def probe(seq: int) -> ChainItem | None:
            return self._ctx.ledger.get_item(topic.topic_id, seq)

        first = probe(low) if low <= high else None
        if first is not None and predicate(first):
            return low
        return first_seq(low + 1, high, probe, predicate)

    # Garbage ---------------------------------------------------------------------------
    def collect(self, *, full: bool = True) -> GcReport:
        """Delete what nothing references any more (ADR 0013, 1 and 3.4).

        Every pass: the storage of topics deleted before the grace period (and of creates
        that stopped before their catalog write), and a listed topic whose chain was
        sealed before the grace period (a deletion that stopped, not one still running)
        has its deletion completed: a catalog Query and one reverse Query per topic.

        With ``full`` (the default), also every live topic's unreferenced segments past the
        grace period: a LIST of all its segments and a read of every chain item and L1
        entry. Compactor steps delete the segments of the items and entries they delete
        (ADR 0013, 3.2), so this scan only finds what crashed (appends, merges, a step
        between its deletions): the state machine runs it once a day.
        """
        deleted = 0
        cutoff = self._ctx.clock_ms() - self._gc.grace_ms
        for topic in self._ctx.catalog.list_topics():
            found = self._ctx.ledger.read_tail(topic.topic_id)
            if found is not None and _sealed(*found):
                tail, meta = found
                sealed_ms = tail.append_time_ms if meta.sealed_ms is None else meta.sealed_ms
                if sealed_ms <= cutoff:  # not a deletion still running
                    with suppress(TopicNotFoundError):
                        TopicAdmin(self._ctx).complete_delete(topic.name, topic.topic_id)
                continue
            if full:
                with suppress(TopicNotFoundError):
                    deleted += len(self._gc.collect_topic(topic.name))
        purged = self._gc.purge_deleted_topics()
        return GcReport(segments_deleted=deleted, topics_purged=len(purged))
