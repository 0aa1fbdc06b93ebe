"""Fetch by offset, list offsets (earliest, latest) and offsets-for-times."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from lakelog.errors import (
    CorruptSegmentError,
    InvalidRequestError,
    LakelogError,
    OffsetOutOfRangeError,
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
from lakelog.log.codec import SegmentReader, SegmentRow, record_size
from lakelog.log.ledger import contiguous_run
from lakelog.log.records import Entry, Head
from lakelog.service.context import EngineContext, retry_if_stale
from lakelog.storage.ports import TopicRecord
from lakelog.types import FetchPosition, FetchResult, OffsetAndTimestamp, StoredRecord

__all__ = ["Fetcher"]

QUERY_ENTRIES = 10
"""Entries one fetch query asks for (about one read unit of ledger items)."""
SINGLE_GET_SLACK = 256 * 1024
"""Read row group and footer in one GET when at most this many bytes lie between them."""


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


class Fetcher:
    """The read use cases."""

    def __init__(self, context: EngineContext) -> None:
        self._ctx = context

    @retry_if_stale
    def fetch(
        self,
        topic_name: str,
        partition: int,
        offset: int,
        max_records: int = DEFAULT_FETCH_RECORDS,
        max_bytes: int = DEFAULT_FETCH_BYTES,
    ) -> FetchResult:
        """Records of one partition from ``offset``, within ``max_records``/``max_bytes``.

        At least one record is returned when one exists at ``offset``, however large.
        ``offset == high_watermark`` returns no records.

        Raises
        ------
        OffsetOutOfRangeError
            ``offset`` is below ``log_start_offset`` or above ``high_watermark``.
        """
        offset = _positive_int("offset", offset)
        max_records = _positive_int("max_records", max_records, MAX_FETCH_RECORDS)
        max_bytes = _positive_int("max_bytes", max_bytes, MAX_FETCH_BYTES)
        topic = self._ctx.caches.topics.get(topic_name, _after(partition))
        pk = self._ctx.partition_pk(topic, partition)
        entries, head = self._ctx.ledger.query(pk, offset, QUERY_ENTRIES)
        run = contiguous_run(entries, offset)
        at_end = head is not None
        if head is not None:
            self._ctx.caches.heads.update({pk: head})
        else:
            # Catching up: the query did not reach the head. A batch holding ``offset``
            # proves it is below the high watermark, so a cached head will do for the
            # bounds; only an empty run needs the exact head.
            head = self._ctx.caches.heads.peek(pk) if run else None
            if head is None:
                head = self._ctx.head(topic, partition)
        below_end = bool(run) or offset <= head.high_watermark
        if offset < head.log_start_offset or not below_end:
            raise OffsetOutOfRangeError(
                topic.name, partition, offset, head.log_start_offset, head.high_watermark
            )
        records: list[StoredRecord] = []
        budget = max_bytes
        next_offset = offset
        while run:
            for entry in run:
                start = next_offset - entry.base_offset
                rows = self._read(entry, start, max_records - len(records))
                for index, row in enumerate(rows, start=next_offset):
                    size = record_size(row.key, row.value, row.headers)
                    if records and size > budget:
                        return self._result(topic, partition, records, index, head)
                    budget -= size
                    records.append(
                        StoredRecord(
                            partition, index, row.timestamp_ms, row.key, row.value, row.headers
                        )
                    )
                next_offset += len(rows)
                if len(records) >= max_records or budget <= 0:
                    return self._result(topic, partition, records, next_offset, head)
            if at_end or len(run) < QUERY_ENTRIES:
                break
            # Many small batches: the budget is not spent, ask the ledger for more of them.
            entries, tail = self._ctx.ledger.query(pk, next_offset, QUERY_ENTRIES)
            if tail is not None:
                head, at_end = tail, True
                self._ctx.caches.heads.update({pk: tail})
            run = contiguous_run(entries, next_offset)
        return self._result(topic, partition, records, next_offset, head)

    @staticmethod
    def _result(
        topic: TopicRecord,
        partition: int,
        records: list[StoredRecord],
        next_offset: int,
        head: Head,
    ) -> FetchResult:
        return FetchResult(
            topic=topic.name,
            partition=partition,
            records=records,
            next_offset=next_offset,
            high_watermark=max(head.high_watermark, next_offset),
            log_start_offset=head.log_start_offset,
        )

    def _read(self, entry: Entry, start: int, limit: int) -> list[SegmentRow]:
        """Rows ``start .. start + limit`` of an entry's batch: one or two ranged GETs."""
        key = entry.segment_key
        objects = self._ctx.objects
        reader = self._ctx.caches.segments.get(key)
        end = entry.byte_offset + entry.byte_length
        if reader is None:
            if entry.footer_offset - end <= SINGLE_GET_SLACK:
                data = objects.get_range(key, entry.byte_offset, entry.segment_size)
                footer = data[entry.footer_offset - entry.byte_offset :]
            else:
                footer = objects.get_range(key, entry.footer_offset, entry.segment_size)
                data = objects.get_range(key, entry.byte_offset, end)
            reader = SegmentReader(key, entry.segment_size, entry.footer_offset, footer)
            self._ctx.caches.segments.put(reader)
        else:
            data = objects.get_range(key, entry.byte_offset, end)
        if not 0 <= entry.row_group < reader.num_row_groups:
            raise CorruptSegmentError(key, f"no row group {entry.row_group}")
        rows_in_group = reader.metadata.row_group(entry.row_group).num_rows
        if rows_in_group != entry.record_count:
            raise CorruptSegmentError(
                key,
                f"row group {entry.row_group} has {rows_in_group} rows, the ledger "
                f"entry {entry.record_count}",
            )
        return reader.read_rows(entry.row_group, data, entry.byte_offset, start, limit)

    @retry_if_stale
    def list_offset(
        self, topic_name: str, partition: int, spec: Literal["earliest", "latest"]
    ) -> int:
        """``log_start_offset`` (earliest) or ``high_watermark`` (latest) of a partition."""
        if spec not in ("earliest", "latest"):
            raise InvalidRequestError(f"offset spec must be 'earliest' or 'latest', not {spec!r}")
        head = self._ctx.head(self._ctx.caches.topics.get(topic_name, _after(partition)), partition)
        return head.log_start_offset if spec == "earliest" else head.high_watermark

    @retry_if_stale
    def offset_for_time(self, topic_name: str, partition: int, timestamp_ms: int) -> int | None:
        """The first offset whose record timestamp is >= ``timestamp_ms``, or None.

        Binary search over the entries' monotone ``max_timestamp_cum`` (one small query per
        step), then a read of the one batch that holds the answer unless its minimum
        timestamp already qualifies its first record.
        """
        found = self._time_search(topic_name, partition, timestamp_ms)
        if found is None:
            return None
        entry, first = found
        if entry.min_timestamp >= timestamp_ms:
            return first
        located = self._first_at_or_after(entry, first, timestamp_ms)
        return None if located is None else located.offset

    def time_offset(
        self, topic_name: str, partition: int, timestamp_ms: int
    ) -> OffsetAndTimestamp | None:
        """`offset_for_time` with that record's timestamp (its batch is always read)."""
        found = self._time_search(topic_name, partition, timestamp_ms)
        return None if found is None else self._first_at_or_after(*found, timestamp_ms)

    def _time_search(
        self, topic_name: str, partition: int, timestamp_ms: int
    ) -> tuple[Entry, int] | None:
        """The entry holding the first record at or after the time, and the first readable
        offset of that entry; None when no record is that recent."""
        timestamp_ms = _positive_int("timestamp_ms", timestamp_ms)
        topic = self._ctx.caches.topics.get(topic_name, _after(partition))
        pk = self._ctx.partition_pk(topic, partition)
        head = self._ctx.head(topic, partition)
        low, high = head.log_start_offset, head.high_watermark
        found: Entry | None = None
        while low < high:
            middle = (low + high) // 2
            entries, _ = self._ctx.ledger.query(pk, middle, 1)
            if not entries or entries[0].base_offset >= high:
                break
            entry = entries[0]
            if entry.max_timestamp_cum >= timestamp_ms:
                found, high = entry, max(entry.base_offset, low)
            else:
                low = entry.last_offset + 1
        if found is None:
            return None
        return found, max(found.base_offset, head.log_start_offset)

    def _first_at_or_after(
        self, entry: Entry, first: int, timestamp_ms: int
    ) -> OffsetAndTimestamp | None:
        rows = self._read(entry, first - entry.base_offset, -1)
        for offset, row in enumerate(rows, start=first):
            if row.timestamp_ms >= timestamp_ms:
                return OffsetAndTimestamp(offset, row.timestamp_ms)
        return None  # pragma: no cover - max_timestamp_cum promised a match

    def fetch_many(
        self, positions: Sequence[FetchPosition], max_bytes: int, max_records: int
    ) -> list[FetchResult | LakelogError]:
        """Records of several partitions, sharing one budget (ADR 0012 §3).

        One result per position, in request order; a partition's own error
        (`OffsetOutOfRangeError`, `TopicNotFoundError`, a partition the topic does not
        have) takes its place instead of being raised. ``max_bytes`` and ``max_records``
        bound the whole request; its first record is returned however large, and a later
        partition whose first record no longer fits returns none (``next_offset`` is its
        start). A position's ``cursor`` is a hint; the result's is None for now.

        Raises
        ------
        InvalidRequestError
            Bad input (bounds, types, a partition named twice, more than
            `MAX_FETCH_PARTITIONS`), before anything is read.
        """
        max_records = _positive_int("max_records", max_records, MAX_FETCH_RECORDS)
        max_bytes = _positive_int("max_bytes", max_bytes, MAX_FETCH_BYTES)
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
            if (position.topic, position.partition) in named:
                raise InvalidRequestError(
                    f"{position.topic}-{position.partition} is named twice in one fetch"
                )
            named.add((position.topic, position.partition))
        results: list[FetchResult | LakelogError] = []
        records_left, bytes_left = max_records, max_bytes
        for position in positions:
            try:
                result = self.fetch(
                    position.topic,
                    position.partition,
                    position.offset,
                    max(records_left, 1),
                    max(bytes_left, 1),
                )
            except (OffsetOutOfRangeError, TopicNotFoundError, InvalidRequestError) as error:
                results.append(error)
                continue
            first = result.records[0] if result.records else None
            spent = records_left < max_records
            if first is not None and spent:
                size = record_size(first.key, first.value, first.headers)
                if records_left <= 0 or size > bytes_left:  # only the request's first is free
                    result = dataclasses.replace(
                        result, records=[], next_offset=position.offset, cursor=None
                    )
            records_left -= len(result.records)
            bytes_left -= sum(record_size(r.key, r.value, r.headers) for r in result.records)
            results.append(result)
        return results
