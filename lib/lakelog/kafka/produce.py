"""Produce (key 0): record batches appended through the engine (ADR 0016 §3).

Each partition's ``records`` are read (`lakelog.kafka.records`: CRC-32C checked, any of
Kafka's codecs) into lakelog records with an explicit partition and the batch's
CreateTime timestamps, then appended with `Append`, as the session's principal:

- the partitions of a topic sent without a producer id join the topic's open batch
  (`lakelog.kafka.batching`: every connection's plain records of the topic within
  `GatewayConfig.append_linger_ms`, one segment PUT and one chain item, however many
  partitions and requests), in chunks within lakelog's per-append limits; if that append
  is refused as bad input (a partition the topic lacks, a record too large), each
  partition is appended alone instead, so that only the faulty ones fail, as in Kafka;
- a partition sent by an idempotent producer is appended alone, with the batch's
  producer id, epoch and base sequence, and ``partition`` set: lakelog keeps that
  producer's state in that partition apart (its lane, ADR 0016 §3), so a retried batch is
  answered with the original offsets and never appended twice.

An error is the partition's: a topic the caller may not produce to is
TOPIC_AUTHORIZATION_FAILED for each of its partitions (and nothing is read), corrupt
batches CORRUPT_MESSAGE, message sets older than magic 2 INVALID_RECORD, lakelog's own
errors through `lakelog.kafka.errors`. ``acks=0`` appends the same way and sends no
response at all; if a partition failed, the connection is closed instead, as Kafka does
(the producer's only sign of it: it then refreshes its metadata). ``acks=1`` and
``acks=-1`` are the same: an append is durable (in S3 and the ledger) before it is
acknowledged. Transactions are not served: a request with a transactional id is
TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from kio.schema.errors import ErrorCode
from kio.static.protocol import ResponsePayload

from lakelog.contract.operations import Append
from lakelog.errors import InvalidRequestError, LakelogError
from lakelog.kafka.apis import Api, CloseConnection, Session, response_type
from lakelog.kafka.errors import error_code
from lakelog.kafka.protocol import build, item_type
from lakelog.kafka.records import RecordsError, read_batches
from lakelog.limits import MAX_APPEND_BYTES, MAX_APPEND_RECORDS
from lakelog.log.codec import record_size
from lakelog.types import ProducerBatch, Record

__all__ = ["API", "MAX_VERSION", "MIN_VERSION"]

MIN_VERSION: Final = 3
"""Produce v3 is the first to carry record batches of magic 2 (and the first kio has)."""
MAX_VERSION: Final = 12
"""v13 names topics by id instead of by name."""

_ACKS: Final = (0, 1, -1)


@dataclass
class _Partition:
    """One partition of the request: its records, or why it is answered without them."""

    index: int
    records: list[Record]
    producer: ProducerBatch | None = None
    error: ErrorCode = ErrorCode.none
    message: str | None = None
    base_offset: int = -1

    def fail(self, error: LakelogError) -> None:
        self.error, self.message = error_code(error), error.message


def _read(index: int, data: bytes | None) -> _Partition:
    """A partition's batches as lakelog records (runs on the gateway's threads)."""
    partition = _Partition(index, [])
    if index < 0:
        partition.error = ErrorCode.unknown_topic_or_partition
        return partition
    try:
        batches = read_batches(data or b"")
    except RecordsError as error:
        partition.error, partition.message = error.code, str(error)
        return partition
    producers = {(b.producer_id, b.producer_epoch) for b in batches}
    if any(b.control or b.transactional for b in batches):
        partition.error = ErrorCode.invalid_record
        partition.message = "transactional and control batches are not accepted"
        return partition
    if batches[0].idempotent and (len(batches) > 1 or len(producers) > 1):
        partition.error = ErrorCode.invalid_record
        partition.message = "an idempotent producer sends one batch per partition and request"
        return partition
    for batch in batches:
        for record in batch.records:
            timestamp = record.timestamp_ms
            partition.records.append(
                Record(
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                    partition=index,
                    timestamp_ms=timestamp if timestamp >= 0 else None,
                )
            )
    first = batches[0]
    if first.idempotent:
        partition.producer = ProducerBatch(
            first.producer_id, first.producer_epoch, sequence=first.base_sequence, partition=index
        )
    return partition


def _read_all(partitions: Sequence[Any]) -> list[_Partition]:
    return [_read(int(data.index), data.records) for data in partitions]


async def _append_one(session: Session, topic: str, partition: _Partition) -> None:
    try:
        results = await session.call(Append(topic, partition.records, partition.producer))
    except LakelogError as error:
        partition.fail(error)
        return
    partition.base_offset = results[0].offset


async def _append_together(
    session: Session, topic: str, partitions: list[_Partition], landed: Awaitable[Any]
) -> None:
    """Answer the partitions of one chunk from their batched append (``landed``: where
    their records landed, in order); alone each when that append was bad input."""
    try:
        results = await landed
    except InvalidRequestError:
        await asyncio.gather(*(_append_one(session, topic, p) for p in partitions))
        return
    except LakelogError as error:
        for partition in partitions:
            partition.fail(error)
        return
    position = 0
    for partition in partitions:
        partition.base_offset = results[position].offset
        position += len(partition.records)


def _chunks(partitions: list[_Partition]) -> list[list[_Partition]]:
    """The partitions in runs that fit one append (`MAX_APPEND_RECORDS`, `MAX_APPEND_BYTES`)."""
    chunks: list[list[_Partition]] = []
    count = size = 0
    for partition in partitions:
        records = len(partition.records)
        nbytes = sum(record_size(r.key, r.value, r.headers) for r in partition.records)
        if chunks and (count + records > MAX_APPEND_RECORDS or size + nbytes > MAX_APPEND_BYTES):
            chunks.append([])
            count = size = 0
        if not chunks:
            chunks.append([])
        chunks[-1].append(partition)
        count += records
        size += nbytes
    return chunks


async def _read_topic(
    session: Session, topic: Any, refusal: ErrorCode
) -> tuple[str, list[_Partition]]:
    """A topic's partitions read (off the event loop), or refused."""
    name = str(topic.name)
    if refusal is ErrorCode.none and not await session.allowed("produce", name):
        refusal = ErrorCode.topic_authorization_failed
    if refusal is not ErrorCode.none:
        return name, [
            _Partition(int(data.index), [], error=refusal) for data in topic.partition_data
        ]
    return name, await session.services.run(_read_all, topic.partition_data)


async def _append(session: Session, topics: list[tuple[str, list[_Partition]]]) -> None:
    """Append every valid partition of the request.

    In the connection's order (`Session.in_order`): plain partitions join their topic's
    open batch (`AppendBatcher`), and idempotent ones are appended, one after another, so
    a producer's pipelined requests reach the ledger in the order it sent them. Then the
    batches are awaited, outside the order, so that later requests join them.
    """
    waiting: list[Awaitable[None]] = []
    batcher = session.services.batcher
    async with session.in_order():
        for name, partitions in topics:
            valid = [p for p in partitions if p.error is ErrorCode.none]
            for chunk in _chunks([p for p in valid if p.producer is None]):
                records = [record for partition in chunk for record in partition.records]
                landed = batcher.submit(name, records)
                waiting.append(_append_together(session, name, chunk, landed))
            for partition in valid:
                if partition.producer is not None:
                    await _append_one(session, name, partition)
    await asyncio.gather(*waiting)


async def _handle(body: Any, session: Session) -> ResponsePayload | None:
    refusal = ErrorCode.none
    if body.transactional_id is not None:
        refusal = ErrorCode.transactional_id_authorization_failed
    elif body.acks not in _ACKS:
        refusal = ErrorCode.invalid_required_acks
    answered = await asyncio.gather(*(_read_topic(session, t, refusal) for t in body.topic_data))
    await _append(session, answered)
    if body.acks == 0:
        failed = [
            f"{name}-{p.index}: {p.error.name}"
            for name, partitions in answered
            for p in partitions
            if p.error is not ErrorCode.none
        ]
        if failed:
            raise CloseConnection(f"an acks=0 Produce failed ({', '.join(failed)})")
        return None
    schema = response_type(body)
    topic_type = item_type(schema, "responses")
    partition_type = item_type(topic_type, "partition_responses")
    return build(
        schema,
        responses=tuple(
            build(
                topic_type,
                name=name,
                partition_responses=tuple(
                    build(
                        partition_type,
                        index=p.index,
                        error_code=p.error,
                        base_offset=p.base_offset,
                        log_append_time=None,
                        log_start_offset=-1,
                        error_message=p.message,
                    )
                    for p in partitions
                ),
            )
            for name, partitions in answered
        ),
    )


API = Api(0, MIN_VERSION, MAX_VERSION, _handle, pipelined=True)
