"""Fetch by offset (one partition or many), list offsets and offsets-for-times on the chain.

A fetch reads each topic's chain with one Query from the first item that may hold the
requested offsets (ADR 0012, 1.5 and 3): the cursor a previous fetch returned names it,
otherwise a binary search over the items' snapshots finds it. The Query starts one item
earlier, at the *anchor*: its snapshot proves where the first item's batches begin, so a
cursor that points too far ahead is caught. Items are taken only in a `chain_run` (seq
consecutive, every partition continuing the previous snapshot), so a batch is never
visible without its predecessors. The segments the taken batches live in are read with
one ranged GET each, in parallel.

Offsets below a partition's L1 end (the meta item's ``l1``, moved by the compactor's merge,
`lakelog.service.merge`) are read from the partition's L1 entries instead
(ADR 0012, 1.5 step 1): one ``Query`` of the entries from the offset, taken as a
`contiguous_run`, then one ranged GET per L1 segment. Each L1 row's offset is read from the
segment's ``offset`` column: key compaction leaves gaps there (ADR 0013, 6), which fetch
skips, so ``next_offset`` may jump. A fetch that reaches the L1 end with budget left
continues on the chain from its start, in the same call. Such a position's
cursor names seq `L1_START`, which sends the next fetch to the search again.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

from lakelog.errors import (
    CorruptLedgerError,
    CorruptSegmentError,
    InvalidRequestError,
    LakelogError,
    OffsetOutOfRangeError,
    SegmentMissingError,
    StaleTopicError,
    TopicNotFoundError,
)
from lakelog.limits import (
    DEFAULT_FETCH_BYTES,
    DEFAULT_FETCH_RECORDS,
    MAX_FETCH_BYTES,
    MAX_FETCH_PARTITIONS,
    MAX_FETCH_RECORDS,
    validate_topic_name,
)
from lakelog.log.chain import (
    Cursor,
    chain_run,
    check_footer,
    decode_cursor,
    encode_cursor,
    first_seq,
    is_sealed,
    row_group_starts,
    snapshot_before,
)
from lakelog.log.codec import SegmentReader, SegmentRow, record_size
from lakelog.log.ledger import contiguous_run
from lakelog.log.records import BatchRef, ChainItem, ChainMeta, Entry
from lakelog.service.context import EngineContext, TopicState, retry_if_stale
from lakelog.storage.keys import l0_segment_key_from_id
from lakelog.storage.ports import TopicRecord
from lakelog.types import FetchPosition, FetchResult, OffsetAndTimestamp, StoredRecord

__all__ = [
    "L1_QUERY_ENTRIES",
    "L1_READ_AHEAD",
    "L1_START",
    "QUERY_ITEMS",
    "SINGLE_GET_SLACK",
    "Fetcher",
]

_Decoded = TypeVar("_Decoded")
"""What one segment's read decodes (rows by row group, with or without offsets)."""

QUERY_ITEMS = 32
"""Chain items one fetch Query asks for (plus the anchor; the meta item comes along at the
end of the chain)."""
SINGLE_GET_SLACK = 256 * 1024
"""Read row groups (and the footer) in one GET when at most this many bytes lie between."""
GET_THREADS = 16
"""Segment GETs one fetch runs at once."""
MAX_QUERY_ROUNDS = 8
"""Queries one fetch makes per topic before it answers with what it has."""
L1_QUERY_ENTRIES = 10
"""L1 entries one Query asks for (ADR 0012, 1.5 step 1)."""
L1_READ_AHEAD = 32 << 20
"""Bytes of an L1 segment one GET reads at least (or to the footer): kept in the process's
segment bytes cache, they serve a replay's next fetches without another GET. A GET whose
rest of the segment would be less than half of this takes the rest too (at most 1.5 times
this), so a replay never ends a segment with a small GET: a 64 MiB (records) L1 segment
compressed to up to 48 MiB is one GET (the compactor benchmark's replay row)."""
L1_START = 0
"""The start seq of a position below its partition's L1 end: read from the L1 entries.
Never a chain item's start (seq 0 is genesis, which holds no records)."""


def _l1_end(meta: ChainMeta, partition: int) -> int:
    """The partition's L1 end: offsets below it are read from L1 entries."""
    return meta.l1_end[partition] if 0 <= partition < len(meta.l1_end) else 0


def _after(partition: object) -> object:
    """The partition count a topic needs for ``partition`` to exist (anything if not an int)."""
    return partition + 1 if isinstance(partition, int) else 0


def _positive_int(name: str, value: object, upper: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{name} must be an integer, not {value!r}")
    if value < 0 or (upper is not None and not 1 <= value <= upper):
        bounds = f"between 1 and {upper}" if upper is not None else "non-negative"
        raise InvalidRequestError(f"{name} must be {bounds}, not {value}")
    return value


class _EntriesMoved(Exception):  # noqa: N818 - a signal within this module, not an error
    """The L1 entries a lookup expected at an offset are gone (retention moved the log
    start past them after the lookup read the meta item)."""


@dataclass
class _Wanted:
    """One requested partition while a fetch plans it."""

    index: int
    partition: int
    offset: int
    start_seq: int
    next_offset: int = -1
    resume_seq: int = -1
    planned_left: int | None = None
    """Bytes of the position's own ``max_bytes`` the plan has not yet estimated taken."""
    read_left: int | None = None
    """Bytes of the position's own ``max_bytes`` not yet returned (None: no own limit)."""
    full: bool = False
    """The plan spent the position's own ``max_bytes``: later items are not taken."""
    taken: list[tuple[ChainItem, BatchRef, int]] = field(default_factory=list)
    records: list[StoredRecord] = field(default_factory=list)


@dataclass
class _TopicRead:
    """What one topic's part of a fetch read from the ledger."""

    topic: TopicRecord
    wanted: list[_Wanted]
    meta: ChainMeta | None = None
    last: ChainItem | None = None
    at_end: bool = False


@dataclass
class _Budget:
    """What a fetch may still return; the first record of a request is always returned."""

    records: int
    bytes: int
    started: bool = False

    def room(self, size: int) -> bool:
        """Whether one more record of ``size`` bytes fits."""
        return not self.started or (self.records > 0 and size <= self.bytes)

    def take(self, size: int) -> None:
        self.started = True
        self.records -= 1
        self.bytes -= size

    def copy(self) -> _Budget:
        return _Budget(self.records, self.bytes, self.started)


@dataclass
class _Share:
    """One position's view of a fetch's budget: the fetch's, and also the position's own
    ``max_bytes`` when it has one (``left``), which only the request's first record may
    pass."""

    shared: _Budget
    left: int | None

    def room(self, size: int) -> bool:
        """Whether one more record of ``size`` bytes fits."""
        own = self.left is None or not self.shared.started or size <= self.left
        return own and self.shared.room(size)

    def take(self, size: int) -> None:
        self.shared.take(size)
        if self.left is not None:
            self.left -= size

    def copy(self) -> _Share:
        return _Share(self.shared.copy(), self.left)


def _proven(
    run: Sequence[ChainItem], seq: int, wanted: Sequence[_Wanted], meta: ChainMeta | None
) -> bool:
    """Whether the run's first item, the anchor at ``seq``, proves every wanted start: no
    record at or after a start lies at or before it (or, given ``meta``, the start is below
    its partition's log start and is answered 416)."""
    if not run or run[0].seq != seq:
        return False
    return all(
        run[0].mark(want.partition).high_watermark <= want.offset
        or (meta is not None and want.offset < meta.log_start_offset(want.partition))
        for want in wanted
    )


def _check_positions(positions: object) -> None:
    """Raise `InvalidRequestError` unless ``positions`` is a valid multi-partition fetch."""
    if isinstance(positions, str | bytes) or not isinstance(positions, Sequence):
        raise InvalidRequestError("positions must be a list of fetch positions")
    if len(positions) > MAX_FETCH_PARTITIONS:
        raise InvalidRequestError(
            f"a fetch names at most {MAX_FETCH_PARTITIONS} partitions, not {len(positions)}"
        )
    named: set[tuple[str, int]] = set()
    for position in positions:
        if not isinstance(position, FetchPosition):
            raise InvalidRequestError(f"not a fetch position: {position!r}")
        validate_topic_name(position.topic)
        _positive_int("partition", position.partition)
        _positive_int("offset", position.offset)
        if position.max_bytes is not None:
            _positive_int("max_bytes", position.max_bytes, MAX_FETCH_BYTES)
        if (position.topic, position.partition) in named:
            raise InvalidRequestError(
                f"{position.topic}-{position.partition} is named twice in one fetch"
            )
        named.add((position.topic, position.partition))


class Fetcher:
    """The read use cases."""

    def __init__(self, context: EngineContext) -> None:
        self._ctx = context
        self._pool_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # Fetch -------------------------------------------------------------------------------
    @retry_if_stale
    def fetch(
        self,
        topic_name: str,
        partition: int,
        offset: int,
        max_records: int = DEFAULT_FETCH_RECORDS,
        max_bytes: int = DEFAULT_FETCH_BYTES,
        cursor: str | None = None,
    ) -> FetchResult:
        """Records of one partition from ``offset``, within ``max_records``/``max_bytes``.

        At least one record is returned when one exists at ``offset``, however large.
        ``offset == high_watermark`` returns no records. ``cursor`` is the one the previous
        fetch of this partition returned (a hint, validated).

        Raises
        ------
        OffsetOutOfRangeError
            ``offset`` is below ``log_start_offset`` or above ``high_watermark``.
        """
        max_records = _positive_int("max_records", max_records, MAX_FETCH_RECORDS)
        max_bytes = _positive_int("max_bytes", max_bytes, MAX_FETCH_BYTES)
        position = FetchPosition(topic_name, partition, offset, cursor)
        _positive_int("offset", offset)
        topic = self._ctx.caches.topics.get(topic_name, _after(partition))
        self._ctx.check_partition(topic, partition)
        (result,) = self._fetch_topic(topic, [(0, position)], _Budget(max_records, max_bytes))
        if isinstance(result, LakelogError):
            raise result
        return result

    def fetch_many(
        self, positions: Sequence[FetchPosition], max_bytes: int, max_records: int
    ) -> list[FetchResult | LakelogError]:
        """Records of several partitions, one chain Query per topic, one budget for all.

        Results come in request order; a partition's own error (out of range, unknown
        topic, a partition the topic does not have, a cursor of another topic) is
        returned in its place. The request's first record is returned however large; a
        later partition whose first record no longer fits returns none (``next_offset``
        is its start).

        Raises
        ------
        InvalidRequestError
            Bad input (bounds, types, a partition named twice, more than
            `MAX_FETCH_PARTITIONS`), before anything is read.
        """
        max_records = _positive_int("max_records", max_records, MAX_FETCH_RECORDS)
        max_bytes = _positive_int("max_bytes", max_bytes, MAX_FETCH_BYTES)
        _check_positions(positions)
        results: list[FetchResult | LakelogError | None] = [None] * len(positions)
        by_topic: dict[str, list[tuple[int, FetchPosition]]] = {}
        for index, position in enumerate(positions):
            by_topic.setdefault(position.topic, []).append((index, position))
        budget = _Budget(max_records, max_bytes)
        for name, members in by_topic.items():
            for (index, _), result in zip(
                members, self._fetch_named(name, members, budget), strict=True
            ):
                results[index] = result
        return [result for result in results if result is not None]

    def _fetch_named(
        self, name: str, members: list[tuple[int, FetchPosition]], budget: _Budget
    ) -> list[FetchResult | LakelogError]:
        """One topic's part of `fetch_many`, re-reading the catalog once if it went stale."""
        for attempt in range(2):
            try:
                highest = max(
                    (p.partition for _, p in members if isinstance(p.partition, int)), default=0
                )
                topic = self._ctx.caches.topics.get(name, highest + 1)
                return self._fetch_topic(topic, members, budget)
            except StaleTopicError as error:
                if attempt:
                    return [error] * len(members)
            except (TopicNotFoundError, InvalidRequestError) as error:
                return [error] * len(members)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch_topic(
        self,
        topic: TopicRecord,
        members: list[tuple[int, FetchPosition]],
        budget: _Budget,
        *,
        searched: bool = False,
    ) -> list[FetchResult | LakelogError]:
        """Plan, read and decode one topic's partitions; per-partition errors in place.

        When a start (from a cursor) turns out not to be anchored, the topic's part is
        planned again with every start searched; if even those are not, the topic is
        going away (`StaleTopicError`).
        """
        outcome: dict[int, FetchResult | LakelogError] = {}
        before = budget.copy()  # what the topic's part may use, should it be planned again
        wanted: list[_Wanted] = []
        for index, position in members:
            try:
                partition = self._ctx.check_partition(topic, position.partition)
                offset = _positive_int("offset", position.offset)
                cursor = None if searched else position.cursor
                start = self._start_seq(topic, partition, offset, cursor)
            except (InvalidRequestError, OffsetOutOfRangeError) as error:
                outcome[index] = error
                continue
            limit = position.max_bytes
            wanted.append(
                _Wanted(index, partition, offset, start, planned_left=limit, read_left=limit)
            )
        if wanted:
            outcome.update(self._read_l1(topic, wanted, budget))
            wanted = [want for want in wanted if want.index not in outcome]
        if wanted:
            read = self._plan(topic, wanted, budget.copy())
            if read is None:
                if searched:
                    raise self._ctx.stale(topic)
                # Records read from L1 so far are dropped: the budget they took is given back
                self._reset(budget, before)
                return self._fetch_topic(topic, members, budget, searched=True)
            try:
                self._read_segments(topic, read.wanted, budget)
            except SegmentMissingError:
                # The compactor merged the items read and gc deleted their segment since:
                # the ledger, read again, names where the records live now (L1).
                if searched:
                    raise
                self._reset(budget, before)
                return self._fetch_topic(topic, members, budget, searched=True)
            for want in read.wanted:
                outcome[want.index] = self._result(read, want)
        return [outcome[index] for index, _ in members]

    @staticmethod
    def _reset(budget: _Budget, before: _Budget) -> None:
        """Give the topic's part of a fetch back the budget it had before it was read."""
        budget.records, budget.bytes, budget.started = (
            before.records,
            before.bytes,
            before.started,
        )

    # Where to start ----------------------------------------------------------------------
    def _start_seq(self, topic: TopicRecord, partition: int, offset: int, cursor: object) -> int:
        """The first chain item that may hold ``offset`` of ``partition``.

        A cursor for this very position names it; one of another topic or partition is
        refused. Otherwise it is searched (`_search_seq`).
        """
        if cursor is not None:
            found: Cursor = decode_cursor(cursor)
            if found.topic_id != topic.topic_id or found.partition != partition:
                raise InvalidRequestError("cursor is not from this topic; fetch by offset")
            if found.offset == offset and found.seq >= 1:
                return found.seq
        return self._search_seq(topic, partition, offset)

    def _search_seq(self, topic: TopicRecord, partition: int, offset: int) -> int:
        """The first seq whose item's high watermark of ``partition`` passes ``offset``
        (the tail's next seq when none does), by binary search over the snapshots;
        `L1_START` when ``offset`` lies below the partition's L1 end."""
        state = self._ctx.topic_state(topic)
        if offset > state.high_watermark(partition):
            raise OffsetOutOfRangeError(
                topic.name,
                partition,
                offset,
                state.log_start_offset(partition),
                state.high_watermark(partition),
            )
        if offset == state.high_watermark(partition):
            return state.tail.seq + 1
        if offset < _l1_end(state.meta, partition):
            return L1_START
        low = max(1, state.meta.chain_start)
        probe = self._probe(topic.topic_id)

        def holds(item: ChainItem) -> bool:
            return item.mark(partition).high_watermark > offset

        # Readers from the start of the log (the most common seek) need one probe only.
        first = probe(low)
        if first is not None and holds(first):
            return low
        found = first_seq(low, state.tail.seq, probe, holds)
        return state.tail.seq + 1 if found is None else found

    def _probe(self, topic_id: str) -> Callable[[int], ChainItem | None]:
        def probe(seq: int) -> ChainItem | None:
            item = self._ctx.caches.chain.get(topic_id, seq)
            if item is None:
                item = self._ctx.ledger.get_item(topic_id, seq)
                if item is not None:
                    self._ctx.caches.chain.put(topic_id, [item])
            return item

        return probe

    # Planning ----------------------------------------------------------------------------
    def _plan(
        self, topic: TopicRecord, wanted: list[_Wanted], budget: _Budget
    ) -> _TopicRead | None:
        """Walk the chain from the earliest start's anchor and take each partition's
        batches while the (estimated) budget lasts; None when the anchor does not prove
        the starts (a stale or forged cursor)."""
        read = _TopicRead(topic, wanted)
        partitions = {want.partition for want in wanted}
        seq = min(want.start_seq for want in wanted) - 1
        previous: ChainItem | None = None
        for _round in range(MAX_QUERY_ROUNDS):
            items, meta = self._ctx.ledger.query(topic.topic_id, seq, QUERY_ITEMS + 1)
            run = chain_run(items, seq, partitions)
            if previous is None and not _proven(run, seq, wanted, None):
                # Not proven by the anchor. An anchor below the chain start (removed by
                # compaction, or about to be) is stood in for by the next item's snapshot
                # before its batches: what the anchor held, since each item continues its
                # predecessor's (DENSE, SNAPSHOT). Starts are then checked against it as
                # against the anchor, except those below the log start, answered 416.
                known = meta or self._ctx.ledger.read_meta(topic.topic_id)
                following = [item for item in items if item.seq > seq]
                if (
                    known is None
                    or known.chain_start <= seq
                    or not following
                    or following[0].seq != seq + 1
                ):
                    return None
                anchor = replace(
                    following[0], seq=seq, snapshot=snapshot_before(following[0]), batches=()
                )
                items = [anchor, *following]
                run = chain_run(items, seq, partitions)
                if not _proven(run, seq, wanted, known):
                    return None
            if not run or run[0].seq != seq:
                if previous is None:
                    return None
                break  # the item walked last is gone: answer with what was taken
            if any(is_sealed(item) for item in run):
                # Even if the budget ends before it: the topic is being deleted, and
                # its meta item may not say so yet (a delete that stopped after the seal).
                raise self._ctx.stale(topic)
            previous, complete = run[0], bool(items) and run[-1].seq == items[-1].seq
            stopped = False
            for item in run[1:]:
                if not self._take(item, wanted, budget):
                    stopped = True
                    break
                previous = item
            read.last = previous
            if stopped or not complete or len(items) <= QUERY_ITEMS:
                read.at_end = not stopped and complete and meta is not None
                read.meta = meta if read.at_end else None
                break
            seq = previous.seq
        if read.last is not None:
            self._ctx.caches.chain.put(topic.topic_id, [read.last])
        if read.meta is None:
            # Catching up: the meta item (log start, liveness) was not in the reply.
            read.meta = self._ctx.ledger.read_meta(topic.topic_id)
        if read.meta is None or read.meta.sealed_ms is not None:
            raise self._ctx.stale(topic)
        after = read.last.seq + 1 if read.last is not None else 0
        for want in wanted:
            # A batch below the log start of an item below the chain start: the reply is
            # 416, and the item's segment may be going (ADR 0013, 3.2): not read. Batches
            # a merge moved below the chain start are read (their items are deleted only a
            # grace period later, their segments later still: ADR 0013, 4).
            start = read.meta.log_start_offset(want.partition)
            want.taken = [
                t
                for t in want.taken
                if t[0].seq >= read.meta.chain_start
                or t[0].mark(want.partition).high_watermark > start
            ]
            if want.next_offset < 0:
                want.next_offset = want.offset
            if want.resume_seq < 0:
                want.resume_seq = max(want.start_seq, after)
        return read

    def _take(self, item: ChainItem, wanted: list[_Wanted], budget: _Budget) -> bool:
        """Plan to read ``item``'s batches of the wanted partitions; False (and nothing of
        the item taken) once the estimated budget is spent."""
        for want in wanted:
            batch = item.batch(want.partition)
            if batch is None or item.seq < want.start_seq or want.full:
                continue
            end = item.mark(want.partition).high_watermark
            base = end - batch.record_count
            first = max(base, want.offset if want.next_offset < 0 else want.next_offset)
            if first >= end:
                continue
            average = max(1, batch.record_bytes // batch.record_count)
            share = _Share(budget, want.planned_left)
            if not share.room(average):
                want.resume_seq = item.seq
                if not budget.room(average):
                    return False
                want.full = True  # only its own max_bytes is spent: the others go on
                continue
            for _ in range(first, end):
                if not share.room(average):
                    break
                share.take(average)
            want.planned_left = share.left
            want.taken.append((item, batch, first - base))
            want.next_offset = end
        return True

    # Reading -----------------------------------------------------------------------------
    def _read_segments(self, topic: TopicRecord, wanted: list[_Wanted], budget: _Budget) -> None:
        """GET every segment the planned batches live in (one ranged GET each, in
        parallel), then hand out the rows in chain order while the budget lasts.

        The first record that does not fit the fetch's budget ends the fetch for every
        partition, one that does not fit its position's own ``max_bytes`` ends that
        partition's: each one's ``next_offset`` and ``resume_seq`` point at its first
        record not returned.
        """
        parts: dict[int, list[tuple[BatchRef, int]]] = {}
        items: dict[int, ChainItem] = {}
        for want in wanted:
            for item, batch, skip in want.taken:
                parts.setdefault(item.seq, []).append((batch, skip))
                items[item.seq] = item
        if not parts:
            return
        order = sorted(parts)
        decoded = dict(
            zip(
                order,
                self._map(
                    lambda seq: self._read_item(topic.topic_id, items[seq], parts[seq]), order
                ),
                strict=True,
            )
        )
        by_partition = {want.partition: want for want in wanted}
        cut: set[int] = set()
        spent = False  # the fetch's budget: every partition stops
        for seq in order:
            item = items[seq]
            for batch, skip in parts[seq]:
                want = by_partition[batch.partition]
                base = item.mark(batch.partition).high_watermark - batch.record_count
                if batch.partition in cut:
                    continue
                share = _Share(budget, want.read_left)
                for index, row in enumerate(decoded[seq][batch.partition], start=base + skip):
                    size = record_size(row.key, row.value, row.headers)
                    if spent or not share.room(size):
                        want.next_offset, want.resume_seq = index, seq
                        cut.add(batch.partition)
                        spent = spent or not budget.room(size)
                        break
                    share.take(size)
                    want.read_left = share.left
                    want.records.append(
                        StoredRecord(
                            want.partition, index, row.timestamp_ms, row.key, row.value, row.headers
                        )
                    )

    def _map(self, read: Callable[[int], _Decoded], jobs: list[int]) -> list[_Decoded]:
        if len(jobs) == 1:
            return [read(jobs[0])]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(GET_THREADS, thread_name_prefix="lakelog-get")
            pool = self._pool
        return list(pool.map(read, jobs))

    def _read_item(
        self, topic_id: str, item: ChainItem, parts: list[tuple[BatchRef, int]]
    ) -> dict[int, list[SegmentRow]]:
        """Rows of ``parts`` (batch, rows to skip) of one chain item's segment: one GET."""
        if item.segment_id is None:
            raise CorruptSegmentError(f"chain item {item.seq}", "no segment")
        check_footer(item)
        key = l0_segment_key_from_id(topic_id, item.segment_id)
        starts = row_group_starts(item)
        groups = {batch.partition: index for index, batch in enumerate(item.batches)}
        spans = [
            (starts[groups[batch.partition]], starts[groups[batch.partition]] + batch.byte_length)
            for batch, _ in parts
        ]
        first, last = min(s for s, _ in spans), max(e for _, e in spans)
        reader = self._ctx.caches.segments.get(key)
        whole = reader is None or item.footer_offset - last <= SINGLE_GET_SLACK
        end = item.segment_size if whole else last
        data = self._segment_range(key, first, end)
        if reader is None:
            footer = data[item.footer_offset - first :]
            reader = SegmentReader(key, item.segment_size, item.footer_offset, footer)
            self._ctx.caches.segments.put(reader)
        if reader.num_row_groups != len(item.batches):
            raise CorruptSegmentError(
                key, f"{reader.num_row_groups} row groups; the ledger has {len(item.batches)}"
            )
        rows: dict[int, list[SegmentRow]] = {}
        for batch, skip in parts:
            group = groups[batch.partition]
            stored = reader.metadata.row_group(group).num_rows
            if stored != batch.record_count:
                raise CorruptSegmentError(
                    key, f"row group {group} has {stored} rows, the ledger {batch.record_count}"
                )
            rows[batch.partition] = reader.read_rows(group, data, first, skip, -1)
        return rows

    def _segment_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of a segment: from the process's cache, else one GET."""
        cache = self._ctx.caches.segment_bytes
        data = cache.get(key, start, end)
        if data is None:
            with cache.filling(key):  # another thread may be reading it: wait, look again
                data = cache.get(key, start, end)
                if data is None:
                    data = self._ctx.objects.get_range(key, start, end)
                    cache.put(key, start, data)
        return data

    def _result(self, read: _TopicRead, want: _Wanted) -> FetchResult | LakelogError:
        """The reply for one partition, or its out-of-range error."""
        topic, meta = read.topic, read.meta
        assert meta is not None
        start = meta.log_start_offset(want.partition)
        high = self._high_watermark(read, want, want.next_offset)
        if want.offset < start or want.offset > high:
            return OffsetOutOfRangeError(topic.name, want.partition, want.offset, start, high)
        cursor = Cursor(topic.topic_id, want.partition, want.resume_seq, want.next_offset)
        return FetchResult(
            topic=topic.name,
            partition=want.partition,
            records=want.records,
            next_offset=want.next_offset,
            high_watermark=high,
            log_start_offset=start,
            cursor=encode_cursor(cursor),
        )

    def _high_watermark(self, read: _TopicRead, want: _Wanted, next_offset: int) -> int:
        """Exact when the fetch reached the end of the chain; else a lower bound."""
        if read.at_end and read.last is not None:
            return read.last.mark(want.partition).high_watermark
        known = [next_offset]
        if read.last is not None:
            known.append(read.last.mark(want.partition).high_watermark)
        newest = self._ctx.caches.chain.newest(read.topic.topic_id)
        if newest is not None:
            known.append(newest.mark(want.partition).high_watermark)
        return max(known)

    # Below the L1 end (ADR 0012, 1.5 step 1) -------------------------------------------------
    def _read_l1(
        self, topic: TopicRecord, wanted: list[_Wanted], budget: _Budget
    ) -> dict[int, FetchResult | LakelogError]:
        """Read the positions below their L1 end from the L1 entries, within ``budget``.

        A position that reaches its L1 end with budget left is moved there, to continue on
        the chain from its start (``wanted`` keeps it); the others are answered here, by
        their index in the request.
        """
        below = [want for want in wanted if want.start_seq == L1_START]
        if not below:
            return {}
        state = self._ctx.topic_state(topic)
        answered: dict[int, FetchResult | LakelogError] = {}
        for want in below:
            partition = want.partition
            start, end = state.log_start_offset(partition), _l1_end(state.meta, partition)
            if want.offset < start:
                answered[want.index] = OffsetOutOfRangeError(
                    topic.name, partition, want.offset, start, state.high_watermark(partition)
                )
                continue
            try:
                share = _Share(budget, want.read_left)
                next_offset = self._read_l1_records(topic, state, want, end, share)
            except OffsetOutOfRangeError as expired:
                answered[want.index] = expired
                continue
            except SegmentMissingError:
                # Retention expired the entries read and gc deleted their segment since the
                # fetch read the meta item: 416 with the new bounds.
                gone = self._expired_meanwhile(topic, want)
                if gone is None:
                    raise
                answered[want.index] = gone
                continue
            want.read_left = want.planned_left = share.left
            if next_offset < end:
                answered[want.index] = self._l1_result(topic, state, want, next_offset)
            else:
                # Continue on the chain: its first item starts at or below the L1 end.
                want.offset, want.start_seq = end, max(1, state.meta.chain_start)
        return answered

    def _read_l1_records(
        self, topic: TopicRecord, state: TopicState, want: _Wanted, end: int, budget: _Share
    ) -> int:
        """Add the partition's records from ``want.offset`` below ``end`` to ``want`` while
        the budget lasts (one Query of entries, one ranged GET per L1 segment); returns
        the next offset to read.

        Each row's offset comes from the segment's ``offset`` column: key compaction
        leaves gaps (ADR 0013, 6), which the next offset skips once an entry's rows are
        taken. A segment that is gone (replaced by key compaction, then collected) sends
        the read back to the entries once: they name the segment that replaced it.
        """
        for attempt in range(2):
            taken = self._l1_entries(topic, state, want, end, budget.copy())
            try:
                rows_of = self.read_l1_rows([entry for entry, _ in taken])
                break
            except SegmentMissingError:
                if attempt:
                    raise
        next_offset = want.offset
        for entry, first in taken:
            for offset, row in rows_of.get((entry.segment_key, entry.row_group), ()):
                if offset < first:
                    continue
                size = record_size(row.key, row.value, row.headers)
                if offset >= end or not budget.room(size):
                    return next_offset
                budget.take(size)
                want.records.append(
                    StoredRecord(
                        want.partition, offset, row.timestamp_ms, row.key, row.value, row.headers
                    )
                )
                next_offset = offset + 1
            next_offset = max(next_offset, min(entry.last_offset + 1, end))
        return next_offset

    def _l1_entries(
        self, topic: TopicRecord, state: TopicState, want: _Wanted, end: int, estimate: _Share
    ) -> list[tuple[Entry, int]]:
        """The entries (and the first offset wanted from each) that hold ``want.offset``
        onwards, below ``end``, while the estimated budget lasts: a `contiguous_run` of
        each Query. An entry key compaction emptied costs nothing.

        Raises `OffsetOutOfRangeError` when no entry holds the offset because retention
        expired it meanwhile, `CorruptLedgerError` when none holds it otherwise.
        """
        taken: list[tuple[Entry, int]] = []
        offset = want.offset
        for _round in range(MAX_QUERY_ROUNDS):
            page = self._ctx.ledger.query_entries(
                topic.topic_id, want.partition, offset, L1_QUERY_ENTRIES
            )
            run = [entry for entry in contiguous_run(page, offset) if entry.base_offset < end]
            if not run and not taken:
                self._l1_miss(topic, want, end)
            for entry in run:
                span = min(entry.last_offset + 1, end) - offset
                rows = -(-entry.rows * span // entry.record_count)  # expected, rounded up
                average = max(1, entry.size_bytes // max(1, entry.rows))
                if rows and not estimate.room(average):
                    return taken
                for _ in range(rows):
                    if not estimate.room(average):
                        break
                    estimate.take(average)
                taken.append((entry, offset))
                offset = min(entry.last_offset + 1, end)
            if offset >= end or not run or len(run) < len(page) or len(page) < L1_QUERY_ENTRIES:
                return taken
        return taken

    def _l1_miss(self, topic: TopicRecord, want: _Wanted, end: int) -> None:
        """No L1 entry holds ``want.offset``: expired meanwhile (416), or a broken ledger."""
        gone = self._expired_meanwhile(topic, want)
        if gone is not None:
            raise gone
        raise CorruptLedgerError(
            f"p#{topic.topic_id}#{want.partition}",
            f"no L1 entry holds offset {want.offset} below the L1 end {end}",
        )

    def _expired_meanwhile(self, topic: TopicRecord, want: _Wanted) -> OffsetOutOfRangeError | None:
        """The 416 of ``want`` if retention moved its log start past it since the fetch read
        the meta item (read afresh here), else None."""
        state = self._ctx.topic_state(topic)
        start = state.log_start_offset(want.partition)
        if want.offset >= start:
            return None
        return OffsetOutOfRangeError(
            topic.name, want.partition, want.offset, start, state.high_watermark(want.partition)
        )

    def read_l1_rows(
        self, entries: Sequence[Entry]
    ) -> dict[tuple[str, int], list[tuple[int, SegmentRow]]]:
        """The rows, with their offsets, of each L1 entry's row group, by segment key and
        row group: one ranged GET per segment (unless cached), in parallel; none for an
        entry key compaction emptied. Key compaction reads its region with it too.

        Raises
        ------
        SegmentMissingError
            A segment is gone (replaced and collected since the entries were read).
        CorruptSegmentError
            A row group does not hold the entry's rows at offsets inside its range.
        """
        by_key: dict[str, list[Entry]] = {}
        for entry in entries:
            if entry.rows:
                by_key.setdefault(entry.segment_key, []).append(entry)
        keys = list(by_key)
        decoded = self._map(
            lambda job: self._read_l1_segment(by_key[keys[job]]), list(range(len(keys)))
        )
        return {
            (key, group): rows
            for key, groups in zip(keys, decoded, strict=True)
            for group, rows in groups.items()
        }

    def _read_l1_segment(self, parts: list[Entry]) -> dict[int, list[tuple[int, SegmentRow]]]:
        """Rows (with their offsets) of the given entries of one L1 segment, by row group:
        one ranged GET over them and `L1_READ_AHEAD` beyond (kept in the segment bytes
        cache), unless cached; the footer comes along when it is near, else with a second
        GET the first time a process reads the segment. Each row group must hold the
        entry's rows, at ascending offsets inside the entry's range."""
        first_entry = parts[0]
        key, size, footer_offset = (
            first_entry.segment_key,
            first_entry.segment_size,
            first_entry.footer_offset,
        )
        first = min(entry.byte_offset for entry in parts)
        last = max(entry.byte_offset + entry.byte_length for entry in parts)
        reader = self._ctx.caches.segments.get(key)
        data = self._ctx.caches.segment_bytes.get(key, first, last)
        if data is None or reader is None:
            data = self._read_ahead(key, reader, size, footer_offset, first, last)
        if reader is None:
            footer = (
                data[footer_offset - first :]
                if first + len(data) == size
                else self._ctx.objects.get_range(key, footer_offset, size)
            )
            reader = SegmentReader(key, size, footer_offset, footer)
            self._ctx.caches.segments.put(reader)
        rows: dict[int, list[tuple[int, SegmentRow]]] = {}
        for entry in parts:
            if reader.metadata.row_group(entry.row_group).num_rows != entry.rows:
                raise CorruptSegmentError(
                    key, f"row group {entry.row_group} does not hold {entry.rows} rows"
                )
            found = reader.read_offset_rows(entry.row_group, data, first)
            offsets = [offset for offset, _ in found]
            if offsets and (
                offsets[0] < entry.base_offset
                or offsets[-1] > entry.last_offset
                or any(b <= a for a, b in itertools.pairwise(offsets))
            ):
                raise CorruptSegmentError(
                    key,
                    f"row group {entry.row_group} holds offsets outside "
                    f"{entry.base_offset}..{entry.last_offset} or out of order",
                )
            rows[entry.row_group] = found
        return rows

    def _read_ahead(
        self,
        key: str,
        reader: SegmentReader | None,
        size: int,
        footer_offset: int,
        first: int,
        last: int,
    ) -> bytes:
        """Bytes of an L1 segment from ``first``, through ``last`` and `L1_READ_AHEAD` on:
        whole row groups once the footer is known (so the next read starts where this one
        ends); to the footer when less than half of `L1_READ_AHEAD` would be left; the
        footer too when it is near."""
        ahead = max(last, first + L1_READ_AHEAD)
        end = min(
            footer_offset, ahead if reader is None else reader.read_ahead_end(first, last, ahead)
        )
        if footer_offset - end < L1_READ_AHEAD // 2:
            end = footer_offset  # the rest, rather than a small GET of its own later
        if reader is None and size - end <= SINGLE_GET_SLACK:
            end = size  # the footer comes along
        return self._segment_range(key, first, end)

    def _l1_result(
        self, topic: TopicRecord, state: TopicState, want: _Wanted, next_offset: int
    ) -> FetchResult:
        """The reply of a position answered from L1 alone; its cursor sends the next
        fetch to the search (`L1_START`)."""
        cursor = Cursor(topic.topic_id, want.partition, L1_START, next_offset)
        return FetchResult(
            topic=topic.name,
            partition=want.partition,
            records=want.records,
            next_offset=next_offset,
            high_watermark=state.high_watermark(want.partition),
            log_start_offset=state.log_start_offset(want.partition),
            cursor=encode_cursor(cursor),
        )

    def _l1_time_offset(
        self,
        topic: TopicRecord,
        state: TopicState,
        partition: int,
        timestamp_ms: int,
        *,
        strict: bool = False,
    ) -> OffsetAndTimestamp | None:
        """The first record at or after ``timestamp_ms`` below the L1 end, or None.

        Entries whose ``max_timestamp_cum`` (the largest timestamp up to them) is below
        the time hold no such record and are passed over without a GET. With ``strict``,
        entries missing where ``state`` says they are (retention deleted them after the
        meta item was read) raise `_EntriesMoved` instead of ending the search.
        """
        start, end = state.log_start_offset(partition), _l1_end(state.meta, partition)
        offset = start
        while offset < end:
            page = self._ctx.ledger.query_entries(
                topic.topic_id, partition, offset, L1_QUERY_ENTRIES
            )
            run = [entry for entry in contiguous_run(page, offset) if entry.base_offset < end]
            if not run:
                if strict:
                    raise _EntriesMoved
                return None
            for entry in run:
                if (
                    entry.rows
                    and entry.max_timestamp_cum >= timestamp_ms
                    and entry.max_timestamp >= timestamp_ms
                ):
                    rows = self._read_l1_segment([entry])[entry.row_group]
                    for at, row in rows:
                        if offset <= at < end and row.timestamp_ms >= timestamp_ms:
                            return OffsetAndTimestamp(at, row.timestamp_ms)
                offset = entry.last_offset + 1
        return None

    # Offsets -----------------------------------------------------------------------------
    @retry_if_stale
    def list_offset(
        self, topic_name: str, partition: int, spec: Literal["earliest", "latest"]
    ) -> int:
        """``log_start_offset`` (earliest) or ``high_watermark`` (latest) of a partition."""
        if spec not in ("earliest", "latest"):
            raise InvalidRequestError(f"offset spec must be 'earliest' or 'latest', not {spec!r}")
        topic = self._ctx.caches.topics.get(topic_name, _after(partition))
        partition = self._ctx.check_partition(topic, partition)
        state = self._ctx.topic_state(topic)
        if spec == "earliest":
            return state.log_start_offset(partition)
        return state.high_watermark(partition)

    @retry_if_stale
    def offset_for_time(self, topic_name: str, partition: int, timestamp_ms: int) -> int | None:
        """The first offset whose record timestamp is >= ``timestamp_ms``, or None."""
        found = self.time_offset(topic_name, partition, timestamp_ms)
        return None if found is None else found.offset

    def time_offset(
        self, topic_name: str, partition: int, timestamp_ms: int
    ) -> OffsetAndTimestamp | None:
        """The first record of ``partition`` at or after ``timestamp_ms`` and its timestamp.

        Below the partition's L1 end the L1 entries are searched first. On the chain, a
        binary search finds the first chain item whose topic-wide maximum timestamp
        reaches the time (every record before it is older); from there the first batch of
        the partition that reaches it holds the answer, read with one GET.
        """
        timestamp_ms = _positive_int("timestamp_ms", timestamp_ms)
        topic = self._ctx.caches.topics.get(topic_name, _after(partition))
        partition = self._ctx.check_partition(topic, partition)
        state = self._ctx.topic_state(topic)
        try:
            below = self._l1_time_offset(topic, state, partition, timestamp_ms, strict=True)
        except (SegmentMissingError, _EntriesMoved):
            # Replaced by key compaction, or expired by retention, since the meta item was
            # read: read it again and search from the log start it shows now.
            state = self._ctx.topic_state(topic)
            below = self._l1_time_offset(topic, state, partition, timestamp_ms)
        if below is not None:
            return below
        start_offset = state.log_start_offset(partition)
        begin = first_seq(
            max(1, state.meta.chain_start),
            state.tail.seq,
            self._probe(topic.topic_id),
            lambda item: item.max_timestamp >= timestamp_ms,
        )
        if begin is None:
            return None
        holder = self._first_batch_reaching(topic, state, partition, begin, timestamp_ms)
        if holder is None:
            return None
        item, batch = holder
        base = item.mark(partition).high_watermark - batch.record_count
        skip = max(0, start_offset - base)
        rows = self._read_item(topic.topic_id, item, [(batch, skip)])[partition]
        for offset, row in enumerate(rows, start=base + skip):
            if row.timestamp_ms >= timestamp_ms:
                return OffsetAndTimestamp(offset, row.timestamp_ms)
        return None

    def _first_batch_reaching(
        self, topic: TopicRecord, state: TopicState, partition: int, seq: int, timestamp_ms: int
    ) -> tuple[ChainItem, BatchRef] | None:
        """The first batch of ``partition`` from item ``seq`` on whose maximum timestamp
        reaches ``timestamp_ms`` (and that holds offsets at or above the log start)."""
        start_offset = state.log_start_offset(partition)
        while seq <= state.tail.seq:
            items, _ = self._ctx.ledger.query(topic.topic_id, seq, QUERY_ITEMS)
            run = chain_run(items, seq, {partition})
            if not run:
                raise self._ctx.stale(topic)
            for item in run:
                batch = item.batch(partition)
                if (
                    batch is not None
                    and batch.max_timestamp >= timestamp_ms
                    and item.mark(partition).high_watermark > start_offset
                ):
                    return item, batch
            seq = run[-1].seq + 1
        return None

    def close(self) -> None:
        """Stop the GET threads (a fetcher is usable again afterwards)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
