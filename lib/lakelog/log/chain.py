"""The ledger v2 protocol (ADR 0012) as pure functions: a topic's chain of append items.

A topic's ledger is one chain of items ``seq = 0, 1, 2, …``: genesis, one item per append,
and the deletion seal last. An append is planned against the tail (`plan_append`) and made
visible by one conditional put of ``tail.seq + 1``; an idempotent append updates its
producer's state in the same transaction (`producer_update`). Nothing here touches
storage: the adapters of `lakelog.storage.ports.LedgerStore` persist what these functions
plan, and `lakelog.service.produce` drives them.

Named invariants, checked by `check_append` (and `check_sequence`) before every write:

``DENSE``          each batch starts at the tail's high watermark of its partition and spans
                   its rows (at least one); batches in ascending partition order
``SNAPSHOT``       ``seq = tail.seq + 1``; the snapshot does not shrink and covers the routing
                   partition count; untouched partitions are copied, touched ones grow by
                   their batch's bytes
``MONOTONE_TIME``  the topic's max timestamp never decreases and covers every batch
``SEQUENCE``       an idempotent request continues its producer's state in the topic
``SEALED``         nothing is planned after a seal (the caller raises
                   `lakelog.errors.StaleTopicError` first: see `is_sealed`)

Readers keep only a consecutive, continuing prefix of what a query returned (`chain_run`),
find old offsets and times by binary search (`first_seq`), and continue sequential reads
from a `Cursor`.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from lakelog.errors import (
    CorruptSegmentError,
    DuplicateSequenceError,
    InvalidRequestError,
    OutOfOrderSequenceError,
    ProducerFencedError,
)
from lakelog.log.records import (
    BatchRef,
    ChainItem,
    PartitionMark,
    ProducerRequest,
    ProducerStamp,
    ProducerUpdate,
    TopicProducerState,
)
from lakelog.types import Record

__all__ = [
    "CURSOR_VERSION",
    "PRODUCER_EXPIRATION_MS",
    "PRODUCER_REQUESTS_KEPT",
    "ROW_GROUPS_START",
    "Cursor",
    "InvariantViolation",
    "chain_run",
    "check_append",
    "check_footer",
    "check_producer",
    "check_sequence",
    "decode_cursor",
    "encode_cursor",
    "first_seq",
    "genesis",
    "is_sealed",
    "new_segment_id",
    "plan_append",
    "producer_update",
    "request_digest",
    "row_group_starts",
    "seal_after",
    "snapshot_before",
]

PRODUCER_REQUESTS_KEPT: Final = 5
"""Recent requests a producer's state remembers per topic (``r``), as Kafka does for
in-flight batches: a retry of any of them is answered with its original offsets."""

PRODUCER_EXPIRATION_MS: Final = 24 * 3600 * 1000
"""A producer that has not appended to a topic for this long is forgotten there (Kafka's
``producer.id.expiration.ms``): its state reads as absent, so its next request must start a
new epoch or sequence 0. Chain items stay at least this long (ADR 0012, 1.7), so every
remembered request can be answered from its original item."""

ROW_GROUPS_START: Final = 4
"""Where a segment's first row group starts: right after Parquet's leading ``PAR1``."""

CURSOR_VERSION: Final = 2
"""First byte of every cursor: the ledger format it addresses."""

_DIGEST_BYTES: Final = 8
_MAX_VARINT: Final = 2**63 - 1
_MAX_CURSOR_CHARS: Final = 128
_TOPIC_ID_BYTES: Final = 16


class InvariantViolation(AssertionError):  # noqa: N818 - named after the protocol term
    """A planned ledger write would break a named invariant; it is never sent.

    ``invariant`` is the name (``DENSE``, ``SNAPSHOT``, ``MONOTONE_TIME``, ``SEQUENCE``,
    ``SEALED``).
    """

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant


# --- the chain ------------------------------------------------------------------------------


def genesis(partitions: int, now_ms: int) -> ChainItem:
    """Item 0 of a new topic's chain: every one of ``partitions`` partitions empty."""
    return ChainItem(
        seq=0,
        append_time_ms=now_ms,
        max_timestamp=-1,
        partitions=partitions,
        snapshot=(PartitionMark(),) * partitions,
        kind="genesis",
    )


def is_sealed(item: ChainItem) -> bool:
    """Whether ``item`` is a deletion seal: no append may follow it.

    A writer checks its tail with this before planning and raises
    `lakelog.errors.StaleTopicError` (`plan_append` refuses a sealed tail only as a last
    line of defence, with `InvariantViolation` ``SEALED``).
    """
    return item.kind == "seal"


def seal_after(tail: ChainItem, now_ms: int) -> ChainItem:
    """The seal that ends the chain after ``tail`` (ADR 0012, 1.8): its snapshot copied."""
    return ChainItem(
        seq=tail.seq + 1,
        append_time_ms=now_ms,
        max_timestamp=tail.max_timestamp,
        partitions=tail.partitions,
        snapshot=tail.snapshot,
        kind="seal",
    )


def plan_append(
    tail: ChainItem,
    batches: Sequence[BatchRef],
    *,
    segment_id: bytes,
    segment_size: int,
    footer_offset: int,
    append_time_ms: int,
    partitions: int,
    sticky: int | None,
    producer: ProducerStamp | None,
) -> ChainItem:
    """The chain item that appends ``batches`` after ``tail`` (ADR 0012, 1.3 step 6).

    Parameters
    ----------
    tail
        The last item of the chain, as read or as this process last wrote it.
    batches
        One per touched partition, in ascending partition order (the segment's row-group
        order), each of at least one record.
    segment_id, segment_size, footer_offset
        The uploaded segment (`new_segment_id`) and where its footer starts.
    append_time_ms
        The append's time (``t``): the timestamp of records sent without one.
    partitions
        The partition count the request routed keys with (``n``).
    sticky
        The partition its keyless records went to; None without keyless records.
    producer
        The idempotent request's stamp, None for a plain append.

    Returns
    -------
    ChainItem
        ``seq = tail.seq + 1``; each touched partition's mark moves by its batch, the
        others are copied; the snapshot covers ``max(len(tail.snapshot), partitions)``.

    Raises
    ------
    InvariantViolation
        The item would break ``DENSE``, ``SNAPSHOT``, ``MONOTONE_TIME`` or ``SEALED``.
    """
    snapshot = list(tail.snapshot)
    snapshot.extend([PartitionMark()] * (max(len(tail.snapshot), partitions) - len(snapshot)))
    for batch in batches:
        if 0 <= batch.partition < len(snapshot):
            before = snapshot[batch.partition]
            snapshot[batch.partition] = PartitionMark(
                before.high_watermark + batch.record_count,
                before.cumulative_bytes + batch.byte_length,
            )
    item = ChainItem(
        seq=tail.seq + 1,
        append_time_ms=append_time_ms,
        max_timestamp=max([tail.max_timestamp, *(b.max_timestamp for b in batches)]),
        partitions=partitions,
        snapshot=tuple(snapshot),
        batches=tuple(batches),
        segment_id=segment_id,
        segment_size=segment_size,
        footer_offset=footer_offset,
        sticky=sticky,
        producer=producer,
    )
    check_append(tail, item)
    return item


def check_append(tail: ChainItem, item: ChainItem) -> None:
    """Raise `InvariantViolation` unless ``item`` may follow ``tail`` (module docstring)."""
    if is_sealed(tail):
        raise InvariantViolation("SEALED", f"item {item.seq} after the seal at {tail.seq}")
    _check_order(item)
    _check_snapshot(tail, item)
    _check_dense(tail, item)
    newest = max((batch.max_timestamp for batch in item.batches), default=-1)
    if item.max_timestamp < max(tail.max_timestamp, newest):
        raise InvariantViolation(
            "MONOTONE_TIME",
            f"max timestamp {item.max_timestamp} after {tail.max_timestamp} "
            f"with batches up to {newest}",
        )


def _check_order(item: ChainItem) -> None:
    previous = -1
    for batch in item.batches:
        if batch.partition <= previous:
            raise InvariantViolation(
                "DENSE", f"batch of partition {batch.partition} after partition {previous}"
            )
        previous = batch.partition


def _check_dense(tail: ChainItem, item: ChainItem) -> None:
    for batch in item.batches:
        base = item.mark(batch.partition).high_watermark - batch.record_count
        expected = tail.mark(batch.partition).high_watermark
        if batch.record_count < 1 or base != expected:
            raise InvariantViolation(
                "DENSE",
                f"batch of {batch.record_count} records at {base} in partition "
                f"{batch.partition}, whose high watermark is {expected}",
            )


def _check_snapshot(tail: ChainItem, item: ChainItem) -> None:
    if item.seq != tail.seq + 1:
        raise InvariantViolation("SNAPSHOT", f"item {item.seq} after item {tail.seq}")
    length = max(len(tail.snapshot), item.partitions)
    if len(item.snapshot) != length:
        raise InvariantViolation(
            "SNAPSHOT",
            f"snapshot of {len(item.snapshot)} partitions after {len(tail.snapshot)}, "
            f"routing over {item.partitions}",
        )
    touched = {batch.partition: batch for batch in item.batches}
    if any(partition >= length for partition in touched):
        raise InvariantViolation("SNAPSHOT", f"a batch beyond the {length} partitions")
    for partition in range(length):
        before, after = tail.mark(partition), item.mark(partition)
        batch = touched.get(partition)
        grown = before.cumulative_bytes + (batch.byte_length if batch else 0)
        if (batch is None and after != before) or after.cumulative_bytes != grown:
            raise InvariantViolation(
                "SNAPSHOT", f"partition {partition} moved from {before} to {after}"
            )


def snapshot_before(item: ChainItem) -> tuple[PartitionMark, ...]:
    """The snapshot of the item before ``item``, derived from ``item``'s: each touched
    partition's mark less its batch (the item before may be removed by compaction)."""
    marks = list(item.snapshot)
    for batch in item.batches:
        if 0 <= batch.partition < len(marks):
            after = marks[batch.partition]
            marks[batch.partition] = PartitionMark(
                after.high_watermark - batch.record_count,
                after.cumulative_bytes - batch.byte_length,
            )
    return tuple(marks)


def chain_run(
    items: Sequence[ChainItem], start_seq: int, partitions: Collection[int]
) -> list[ChainItem]:
    """The items a reader may use: a consecutive run from ``start_seq`` (ADR 0012, 1.5).

    Items are kept while their seq is consecutive from ``start_seq`` and, for each of
    ``partitions``, each continues the previous one's snapshot: its batch of the partition
    starts at the previous high watermark, or without a batch the high watermark is
    unchanged. The run stops at the first violation, so a query that saw ``seq + 1``
    without ``seq`` (queries are not isolated) never shows a later item alone.

    A seal is kept, as the last item of the run: the caller stops there (the topic was
    deleted, `lakelog.errors.StaleTopicError`).
    """
    run: list[ChainItem] = []
    for item in items:
        if item.seq != start_seq + len(run):
            break
        if run and not all(_continues(run[-1], item, p) for p in partitions):
            break
        run.append(item)
        if is_sealed(item):
            break
    return run


def _continues(previous: ChainItem, item: ChainItem, partition: int) -> bool:
    batch = item.batch(partition)
    count = 0 if batch is None else batch.record_count
    if batch is not None and count < 1:
        return False
    return item.mark(partition).high_watermark - count == previous.mark(partition).high_watermark


def first_seq(
    low: int,
    high: int,
    probe: Callable[[int], ChainItem | None],
    predicate: Callable[[ChainItem], bool],
) -> int | None:
    """The first seq in ``[low, high]`` whose item satisfies ``predicate``, or None.

    ``predicate`` must be monotone along the chain (False, then True from some seq on):
    "``mark(p).high_watermark > offset``", "``max_timestamp >= ts``". ``probe`` reads one
    item (one strongly consistent GetItem); about ``log2(high - low + 1)`` probes.

    A missing item (``probe`` returns None) counts as not satisfying the predicate. The
    chain is truncated only from its start (ADR 0012, 1.7) and has no holes, so the missing
    items form a prefix and the search stays monotone: an item removed by a chain start
    that moved after the caller read it sends the search to later items, and a chain gone
    entirely gives None (the caller re-reads the meta item).
    """
    found: int | None = None
    while low <= high:
        middle = (low + high) // 2
        item = probe(middle)
        if item is not None and predicate(item):
            found, high = middle, middle - 1
        else:
            low = middle + 1
    return found


# --- segments -------------------------------------------------------------------------------


def new_segment_id(now_ms: int) -> bytes:
    """A fresh 24-byte segment id: ``now_ms`` (8 bytes big-endian) ‖ a uuid4's 16 bytes.

    `lakelog.storage.keys.l0_segment_key_from_id` turns it into the segment's key.
    """
    return now_ms.to_bytes(8, "big") + uuid.uuid4().bytes


def row_group_starts(item: ChainItem) -> list[int]:
    """Where each batch's row group starts in the item's segment, in batch order.

    Row groups lie contiguous from byte `ROW_GROUPS_START` in row-group (ascending
    partition) order: row group ``i`` starts after the byte lengths of the earlier ones.
    """
    starts: list[int] = []
    position = ROW_GROUPS_START
    for batch in item.batches:
        starts.append(position)
        position += batch.byte_length
    return starts


def check_footer(item: ChainItem, segment_key: str | None = None) -> None:
    """Raise `CorruptSegmentError` unless the footer follows the last row group.

    ``segment_key`` names the segment in the error (its id in hex by default).
    """
    end = ROW_GROUPS_START + sum(batch.byte_length for batch in item.batches)
    if item.footer_offset != end:
        name = segment_key or (item.segment_id or b"").hex()
        raise CorruptSegmentError(
            name,
            f"chain item {item.seq} puts the footer at {item.footer_offset}, "
            f"its row groups end at {end}",
        )


# --- idempotent producers ---------------------------------------------------------------------


def _live(state: TopicProducerState | None, now_ms: int | None) -> TopicProducerState | None:
    """``state`` unless it expired before ``now_ms`` (None: never expired)."""
    if state is None or (now_ms is not None and state.expires_ms < now_ms):
        return None
    return state


def check_producer(
    state: TopicProducerState | None,
    *,
    producer_id: int,
    epoch: int,
    first_sequence: int,
    record_count: int,
    digest: bytes,
    now_ms: int,
) -> ProducerRequest | None:
    """Decide an idempotent request against its producer's state (ADR 0012, 2.2).

    An expired state (``expires_ms < now_ms``) counts as absent.

    Returns
    -------
    ProducerRequest | None
        None for a new request; for a duplicate, the remembered request, whose ``seq``
        names the chain item that holds its records.

    Raises
    ------
    OutOfOrderSequenceError
        A first request (no state, or a newer epoch) that does not start at 0, or a
        sequence past the next one.
    ProducerFencedError
        A newer epoch of the producer wrote to the topic.
    InvalidRequestError
        A remembered sequence retried with other records or another count.
    DuplicateSequenceError
        A sequence older than the remembered requests (an `InvalidRequestError`).
    """
    live = _live(state, now_ms)
    if live is None or epoch > live.epoch:
        if first_sequence != 0:
            raise OutOfOrderSequenceError(producer_id, -1, first_sequence, 0)
        return None
    if epoch < live.epoch:
        raise ProducerFencedError(producer_id, epoch, live.epoch)
    for request in live.requests:
        if request.first_sequence != first_sequence:
            continue
        if request.record_count != record_count:
            raise InvalidRequestError(
                f"producer {producer_id} retried sequence {first_sequence} with "
                f"{record_count} records; the original request had {request.record_count}"
            )
        if request.digest != digest:
            raise InvalidRequestError(
                f"producer {producer_id}: sequence {first_sequence} was used for different records"
            )
        return request
    if first_sequence == live.last_sequence + 1:
        return None
    if first_sequence <= live.last_sequence:
        raise DuplicateSequenceError(
            f"producer {producer_id} sequence {first_sequence} is a duplicate older than "
            f"the last {PRODUCER_REQUESTS_KEPT} requests"
        )
    raise OutOfOrderSequenceError(producer_id, -1, first_sequence, live.last_sequence + 1)


def check_sequence(
    state: TopicProducerState | None, stamp: ProducerStamp, now_ms: int | None = None
) -> None:
    """Raise `InvariantViolation` ``SEQUENCE`` unless ``stamp`` continues ``state``.

    The in-memory form of the producer item's condition (ADR 0012, 1.3 step 7): a request
    at sequence 0 needs no live state or an older epoch; a later one needs the same
    epoch, live, with last sequence ``first_sequence - 1``. With ``now_ms`` a state that
    expired before it counts as absent.
    """
    live = _live(state, now_ms)
    if stamp.first_sequence == 0:
        holds = live is None or live.epoch < stamp.epoch
    else:
        holds = (
            live is not None
            and live.epoch == stamp.epoch
            and live.last_sequence == stamp.first_sequence - 1
        )
    if not holds:
        seen = "no state" if live is None else f"epoch {live.epoch} at {live.last_sequence}"
        raise InvariantViolation(
            "SEQUENCE",
            f"producer {stamp.producer_id} epoch {stamp.epoch} sequence "
            f"{stamp.first_sequence} does not continue {seen}",
        )


def producer_update(
    state: TopicProducerState | None, stamp: ProducerStamp, seq: int, now_ms: int
) -> ProducerUpdate:
    """The producer item's write for the request ``stamp`` committed at chain ``seq``.

    The new state has the stamp's epoch, last sequence ``first + count - 1``, the last
    `PRODUCER_REQUESTS_KEPT` requests (newest last, earlier ones of the same epoch kept)
    and expires `PRODUCER_EXPIRATION_MS` after ``now_ms``. ``continues`` is True when the
    request does not start at 0: it is then written only over the state it continues.

    Raises
    ------
    InvariantViolation
        ``SEQUENCE``: the stamp does not continue ``state`` (`check_sequence`).
    """
    check_sequence(state, stamp, now_ms)
    continues = stamp.first_sequence > 0
    kept = state.requests[-(PRODUCER_REQUESTS_KEPT - 1) :] if continues and state else ()
    request = ProducerRequest(stamp.first_sequence, stamp.record_count, seq, stamp.digest)
    return ProducerUpdate(
        state=TopicProducerState(
            producer_id=stamp.producer_id,
            epoch=stamp.epoch,
            last_sequence=stamp.first_sequence + stamp.record_count - 1,
            requests=(*kept, request),
            expires_ms=now_ms + PRODUCER_EXPIRATION_MS,
        ),
        continues=continues,
        now_ms=now_ms,
    )


_SIGNED: Final = struct.Struct(">q")


def _length_prefixed(data: bytes | bytearray | None) -> Iterable[bytes]:
    if data is None:
        yield _SIGNED.pack(-1)
    else:
        yield _SIGNED.pack(len(data))
        yield bytes(data)


def request_digest(records: Sequence[Record]) -> bytes:
    """The 8-byte digest of a request's records (ADR 0012, 2.3).

    blake2b over an unambiguous encoding of the records in order: their count, then per
    record the explicit partition (-1 when none), key and value (length-prefixed, -1 for
    None), the header count and each header's UTF-8 name and value (length-prefixed), and
    the timestamp (-1 when none). Every number is a signed 8-byte big-endian integer, so
    no two different requests share an encoding.
    """
    digest = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    digest.update(_SIGNED.pack(len(records)))
    for record in records:
        digest.update(_SIGNED.pack(-1 if record.partition is None else record.partition))
        for part in (record.key, record.value):
            for chunk in _length_prefixed(part):
                digest.update(chunk)
        digest.update(_SIGNED.pack(len(record.headers)))
        for name, value in record.headers:
            for chunk in (*_length_prefixed(name.encode()), *_length_prefixed(value)):
                digest.update(chunk)
        digest.update(_SIGNED.pack(-1 if record.timestamp_ms is None else record.timestamp_ms))
    return digest.digest()


# --- cursors --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a sequential reader of one partition continues (ADR 0012, 1.5).

    ``seq`` is the first chain item that may hold ``offset``, the next offset to read. A
    hint the service validates before use, never an authority.
    """

    topic_id: str
    partition: int
    seq: int
    offset: int


def _varint(value: int) -> bytes:
    if not 0 <= value <= _MAX_VARINT:
        raise ValueError(f"{value} is not a varint from 0 to 2**63 - 1")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    """The varint at ``position`` and the position after it; ValueError unless it is a
    minimal encoding of at most 2**63 - 1."""
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte == 0 and shift > 7:
                raise ValueError("varint not in its shortest form")
            break
    if value > _MAX_VARINT:
        raise ValueError("varint above 2**63 - 1")
    return value, position


def encode_cursor(cursor: Cursor) -> str:
    """The cursor as a reply carries it: base64url (no padding) of version 2, the topic
    id's 16 bytes, then varint partition, seq and offset.

    Raises
    ------
    ValueError
        ``topic_id`` is not 32 hex digits, or a number is negative or above 2**63 - 1.
    """
    topic = bytes.fromhex(cursor.topic_id)
    if len(topic) != _TOPIC_ID_BYTES:
        raise ValueError(f"topic id {cursor.topic_id!r} is not {_TOPIC_ID_BYTES} bytes of hex")
    body = (
        bytes([CURSOR_VERSION])
        + topic
        + _varint(cursor.partition)
        + _varint(cursor.seq)
        + _varint(cursor.offset)
    )
    return base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")


def decode_cursor(text: object) -> Cursor:
    """The cursor ``text`` encodes (`encode_cursor`); only its canonical form is accepted.

    Raises
    ------
    InvalidRequestError
        "malformed cursor": not a string, not base64url without padding, another version,
        a number out of range or not in its shortest form, or bytes left over.
    """
    try:
        if not isinstance(text, str) or not 0 < len(text) <= _MAX_CURSOR_CHARS:
            raise ValueError("not a cursor string")
        raw = text.encode("ascii")
        body = base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True)
        if base64.urlsafe_b64encode(body).rstrip(b"=") != raw:
            raise ValueError("not canonical base64url")
        if len(body) < 1 + _TOPIC_ID_BYTES or body[0] != CURSOR_VERSION:
            raise ValueError("not a version 2 cursor")
        position = 1 + _TOPIC_ID_BYTES
        numbers = []
        for _ in range(3):
            value, position = _read_varint(body, position)
            numbers.append(value)
        if position != len(body):
            raise ValueError("bytes after the cursor")
    except ValueError:  # binascii.Error and UnicodeEncodeError among them
        raise InvalidRequestError("malformed cursor") from None
    partition, seq, offset = numbers
    return Cursor(body[1 : 1 + _TOPIC_ID_BYTES].hex(), partition, seq, offset)
