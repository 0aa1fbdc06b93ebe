"""ListOffsets (key 2): a partition's earliest or latest offset, or the first at a time
(ADR 0016 §4).

Timestamp -2 (earliest) and -4 (earliest local, KIP-405: lakelog's log is all "local")
are the partition's log start, -1 (latest) its high watermark, and
any time ``t`` >= 0 the first offset whose record's timestamp is >= ``t`` with that
timestamp (`OffsetForTime`), or offset -1 and timestamp -1 when no record is that recent,
as Kafka answers. -3 (the record with the largest timestamp, KIP-734) is answered
UNSUPPORTED_VERSION for its partition: the ledger keeps the largest timestamp per topic,
not per partition, so it would cost a scan. The isolation level is ignored: lakelog has no
transactions, so every offset below the high watermark is stable. A partition named twice
in one request is INVALID_REQUEST both times, as Kafka answers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Final

from kio.schema.errors import ErrorCode
from kio.static.protocol import ResponsePayload

from lakelog.contract.operations import ListOffset, OffsetForTime
from lakelog.errors import InvalidRequestError, LakelogError, TopicNotFoundError
from lakelog.kafka.apis import Api, Session, response_type
from lakelog.kafka.errors import error_code
from lakelog.kafka.protocol import build, item_type

__all__ = ["API", "EARLIEST", "EARLIEST_LOCAL", "LATEST", "MAX_TIMESTAMP"]

LATEST: Final = -1
EARLIEST: Final = -2
MAX_TIMESTAMP: Final = -3
EARLIEST_LOCAL: Final = -4


async def _offset(session: Session, topic: str, partition: int, at: int) -> dict[str, Any]:
    """The fields of one partition's answer."""
    try:
        if at in (EARLIEST, EARLIEST_LOCAL):
            return {"offset": await session.call(ListOffset(topic, partition, "earliest"))}
        if at == LATEST:
            return {"offset": await session.call(ListOffset(topic, partition, "latest"))}
        if at < 0:
            return {"error_code": ErrorCode.unsupported_version}
        found = await session.call(OffsetForTime(topic, partition, at))
    except (TopicNotFoundError, InvalidRequestError):
        # InvalidRequestError: a partition the topic does not have
        return {"error_code": ErrorCode.unknown_topic_or_partition}
    except LakelogError as error:
        return {"error_code": error_code(error)}
    if found is None:
        return {}
    return {"offset": found.offset, "timestamp": found.timestamp}


async def _topic(
    session: Session, topic_type: type[Any], topic: Any, twice: set[tuple[str, int]]
) -> Any:
    partition_type = item_type(topic_type, "partitions")
    if not await session.allowed("consume", topic.name):
        answers: list[dict[str, Any]] = [
            {"error_code": ErrorCode.topic_authorization_failed} for _ in topic.partitions
        ]
    else:

        async def answer(p: Any) -> dict[str, Any]:
            if (topic.name, p.partition_index) in twice:
                return {"error_code": ErrorCode.invalid_request}
            return await _offset(session, topic.name, int(p.partition_index), int(p.timestamp))

        answers = list(await asyncio.gather(*(answer(p) for p in topic.partitions)))
    partitions = tuple(
        build(
            partition_type,
            **{
                "partition_index": asked.partition_index,
                "timestamp": -1,
                "offset": -1,
                "leader_epoch": 0,
                **answer,
            },
        )
        for asked, answer in zip(topic.partitions, answers, strict=True)
    )
    return build(topic_type, name=topic.name, partitions=partitions)


async def _handle(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    topic_type = item_type(schema, "topics")
    named = Counter((t.name, p.partition_index) for t in body.topics for p in t.partitions)
    twice = {key for key, count in named.items() if count > 1}
    topics = [await _topic(session, topic_type, topic, twice) for topic in body.topics]
    return build(schema, topics=tuple(topics))


API = Api(2, 1, 8, _handle)
