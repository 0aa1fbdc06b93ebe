"""Fetch (key 1): records of many partitions through the engine's multi-partition fetch
(ADR 0016 §4, ADR 0012 §3).

A read is one `FetchMany` (one chain Query per topic) within the request's ``max_bytes``
(at most `MAX_FETCH_BYTES`) of record bytes, each position within its own
``partition_max_bytes``; the request's first record is returned however large (KIP-74).
A reply with fewer than ``min_bytes`` waits at most ``max_wait_ms``, capped by
`GatewayConfig.fetch_max_wait_ms`: it reads again when this process commits an append
(`AppendSignal`) and every `GatewayConfig.fetch_poll_ms` for appends of other processes.
A partition's error (out of range, unknown, not authorized) answers at once, as Kafka's
brokers do.

Fetch sessions (KIP-227) are not kept: every reply has session id 0, which tells a client
that its next request must name every partition again (a full fetch), as it does with a
broker out of fetch session slots. Versions 13 and later name topics by id and are not
served; every client here negotiates 12 or lower.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Final

from kio.schema.errors import ErrorCode
from kio.static.protocol import ResponsePayload

from lakelog.contract.operations import FetchMany
from lakelog.errors import (
    InvalidRequestError,
    LakelogError,
    OffsetOutOfRangeError,
    TopicNotFoundError,
)
from lakelog.kafka.apis import Api, Session, response_type
from lakelog.kafka.batches import encode_records
from lakelog.kafka.errors import error_code
from lakelog.kafka.protocol import build, item_type
from lakelog.limits import (
    MAX_FETCH_BYTES,
    MAX_FETCH_PARTITIONS,
    MAX_FETCH_RECORDS,
    record_size,
    validate_topic_name,
)
from lakelog.types import FetchPosition, FetchResult, StoredRecord

__all__ = ["API"]

_CURSORS: Final = "fetch.cursors"
"""Session state: the cursor of each partition's last fetch, by (topic, partition)."""


@dataclass
class _Partition:
    """One partition of a request, and what the last read found for it."""

    topic: str
    partition: int
    offset: int
    max_bytes: int
    error: ErrorCode = ErrorCode.none
    high_watermark: int = -1
    log_start_offset: int = -1
    records: list[StoredRecord] = field(default_factory=list)


def _cursors(session: Session) -> dict[tuple[str, int], tuple[int, str]]:
    cursors: dict[tuple[str, int], tuple[int, str]] = session.state.setdefault(_CURSORS, {})
    return cursors


def _checked(topic: str, partition: int, offset: int) -> ErrorCode:
    """The error of a position the engine would refuse for the whole request."""
    try:
        validate_topic_name(topic)
    except InvalidRequestError:
        return ErrorCode.unknown_topic_or_partition
    if partition < 0:
        return ErrorCode.unknown_topic_or_partition
    if offset < 0:
        return ErrorCode.offset_out_of_range
    return ErrorCode.none


async def _requested(body: Any, session: Session) -> list[_Partition]:
    """The request's partitions, those the caller may not consume or the engine would
    refuse already answered."""
    wanted: list[_Partition] = []
    seen: set[tuple[str, int]] = set()
    for topic in body.topics:
        allowed = await session.allowed("consume", topic.topic)
        for asked in topic.partitions:
            part = _Partition(
                topic.topic,
                int(asked.partition),
                int(asked.fetch_offset),
                asked.partition_max_bytes,
            )
            if (part.topic, part.partition) in seen:
                continue  # named twice: answered once
            seen.add((part.topic, part.partition))
            if not allowed:
                part.error = ErrorCode.topic_authorization_failed
            else:
                part.error = _checked(part.topic, part.partition, part.offset)
            wanted.append(part)
    return wanted


def _apply(part: _Partition, result: FetchResult | LakelogError) -> None:
    """Take one partition's reply from the engine."""
    if isinstance(result, FetchResult):
        part.error = ErrorCode.none
        part.records = result.records
        part.high_watermark = result.high_watermark
        part.log_start_offset = result.log_start_offset
        return
    part.records = []
    if isinstance(result, OffsetOutOfRangeError):
        part.error = ErrorCode.offset_out_of_range
        part.high_watermark = result.high_watermark
        part.log_start_offset = result.log_start_offset
    elif isinstance(result, TopicNotFoundError | InvalidRequestError):
        # InvalidRequestError here is a partition the topic does not have
        part.error = ErrorCode.unknown_topic_or_partition
    else:
        part.error = error_code(result)


async def _read(session: Session, wanted: list[_Partition], max_bytes: int) -> int:
    """Read every partition without an error of its own, each within its
    ``partition_max_bytes`` and all within ``max_bytes`` (at most `MAX_FETCH_BYTES`) of
    record bytes; the record bytes read.

    One `FetchMany` per `MAX_FETCH_PARTITIONS` partitions: the engine keeps each position
    within its own ``max_bytes`` and the request's first record whatever its size.
    """
    cursors = _cursors(session)
    left = min(max(1, max_bytes), MAX_FETCH_BYTES)
    readable = [part for part in wanted if part.error is ErrorCode.none]
    size = 0
    for part in readable:
        part.records = []
    for start in range(0, len(readable), MAX_FETCH_PARTITIONS):
        if size >= left:
            break
        chunk = readable[start : start + MAX_FETCH_PARTITIONS]
        positions = []
        for part in chunk:
            known = cursors.get((part.topic, part.partition))
            cursor = known[1] if known is not None and known[0] == part.offset else None
            limit = min(max(1, part.max_bytes), MAX_FETCH_BYTES)
            positions.append(FetchPosition(part.topic, part.partition, part.offset, cursor, limit))
        reply = await session.call(FetchMany(positions, left - size, MAX_FETCH_RECORDS))
        for part, result in zip(chunk, reply.partitions, strict=True):
            _apply(part, result)
            if isinstance(result, FetchResult) and result.cursor is not None:
                cursors[(part.topic, part.partition)] = (result.next_offset, result.cursor)
            size += sum(record_size(r.key, r.value, r.headers) for r in part.records)
    return size


def _answered(wanted: list[_Partition], min_bytes: int, size: int) -> bool:
    """Whether the reply is complete without waiting: enough bytes, or an error to tell."""
    return size >= min_bytes or any(part.error is not ErrorCode.none for part in wanted)


async def _handle(body: Any, session: Session) -> ResponsePayload:
    services = session.services
    wanted = await _requested(body, session)
    wait_s = min(body.max_wait.total_seconds(), services.config.fetch_max_wait_ms / 1000)
    deadline = time.monotonic() + max(0.0, wait_s)
    poll_s = services.config.fetch_poll_ms / 1000
    min_bytes = max(1, body.min_bytes)
    while True:
        woken = services.appends.next()  # before the read: no append is missed
        size = await _read(session, wanted, body.max_bytes)
        left = deadline - time.monotonic()
        if _answered(wanted, min_bytes, size) or left <= 0 or services.appends.stopped:
            break
        await asyncio.wait([woken], timeout=min(poll_s, left))
    # encoding megabytes of records takes tens of ms: off the loop other connections share
    return await services.run(_response, body, wanted)


def _response(body: Any, wanted: list[_Partition]) -> ResponsePayload:
    schema = response_type(body)
    topic_type = item_type(schema, "responses")
    partition_type = item_type(topic_type, "partitions")
    by_topic: dict[str, list[Any]] = {}
    for part in wanted:
        by_topic.setdefault(part.topic, []).append(
            build(
                partition_type,
                partition_index=part.partition,
                error_code=part.error,
                high_watermark=part.high_watermark,
                last_stable_offset=part.high_watermark,
                log_start_offset=part.log_start_offset,
                aborted_transactions=(),
                preferred_read_replica=-1,
                records=encode_records(part.records),
            )
        )
    topics = tuple(
        build(topic_type, topic=name, partitions=tuple(partitions))
        for name, partitions in by_topic.items()
    )
    return build(schema, session_id=0, responses=topics)


API = Api(1, 4, 12, _handle)
