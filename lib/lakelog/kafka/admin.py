"""Topic administration: CreateTopics (19), DeleteTopics (20) and CreatePartitions (37) on
lakelog's topic operations (ADR 0016 §6); topic configs are `lakelog.kafka.topic_configs`.

Each topic of a request succeeds or fails alone, with Kafka's error code for it:

- TOPIC_AUTHORIZATION_FAILED: the principal lacks ``admin`` on the topic; checked first,
  so a refused caller learns nothing and changes nothing.
- INVALID_TOPIC_EXCEPTION: a name lakelog refuses; INVALID_REQUEST: a name listed twice.
- INVALID_PARTITIONS: a count below 1 (``-1`` asks for the default, 1) or, in
  CreatePartitions, not above the current one; POLICY_VIOLATION: above lakelog's limit.
- INVALID_REPLICATION_FACTOR: other than ``-1`` or 1 to 3; the factor is accepted and
  ignored (S3 is the replication: every partition has one replica, the gateway).
- INVALID_REPLICA_ASSIGNMENT: manual assignments (lakelog places partitions itself).
- INVALID_CONFIG: a config lakelog does not know, or a value it refuses
  (`lakelog.kafka.configs`).
- TOPIC_ALREADY_EXISTS, UNKNOWN_TOPIC_OR_PARTITION: from the engine.

``validate_only`` checks everything, the topic's existence included, and changes nothing.
Operations are synchronous: ``timeout`` is not needed and ignored.
"""

from __future__ import annotations

import typing
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

from kio.schema.errors import ErrorCode
from kio.static.protocol import ResponsePayload

from lakelog.contract.operations import AlterTopic, CreateTopic, DeleteTopic, DescribeTopic
from lakelog.errors import InvalidRequestError, LakelogError, TopicNotFoundError
from lakelog.kafka.apis import Api, Session, response_type
from lakelog.kafka.configs import (
    DEFAULT_CONFIG,
    DYNAMIC_TOPIC_CONFIG,
    ConfigError,
    kafka_configs,
    lakelog_config,
)
from lakelog.kafka.errors import error_code
from lakelog.kafka.protocol import build, item_type
from lakelog.limits import MAX_PARTITIONS, validate_topic_name
from lakelog.types import TopicDescription

__all__ = [
    "CREATE_PARTITIONS",
    "CREATE_TOPICS",
    "DEFAULT_PARTITIONS",
    "DELETE_TOPICS",
    "RefusedError",
    "authorize",
    "check_name",
    "describe",
    "failure",
    "refused",
]

DEFAULT_PARTITIONS: Final[int] = CreateTopic("").partitions
"""Partitions of a topic created with ``num_partitions`` -1 (lakelog's default)."""
MAX_REPLICATION_FACTOR: Final = 3
"""The largest replication factor accepted (and ignored): what clients written for a
three-broker cluster ask for."""

T = TypeVar("T")
R = TypeVar("R")


class RefusedError(Exception):
    """One topic of a request fails with ``code`` and ``message``; the others go on."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _name(topic: Any) -> str:
    return str(topic.name)


def refused(error: LakelogError) -> RefusedError:
    return RefusedError(error_code(error), error.message)


async def _per_topic(
    items: Sequence[T], name: Callable[[T], str | None], run: Callable[[T], Awaitable[R]]
) -> list[R | RefusedError]:
    """``run`` on each topic of a request, in order: its result, or why it was refused (a
    name listed twice is refused without running)."""
    twice = {topic for topic, count in Counter(map(name, items)).items() if count > 1}
    outcomes: list[R | RefusedError] = []
    for item in items:
        try:
            if name(item) in twice:
                raise RefusedError(
                    ErrorCode.invalid_request, f"topic {name(item)!r} is listed twice"
                )
            outcomes.append(await run(item))
        except RefusedError as refusal:
            outcomes.append(refusal)
    return outcomes


def failure(refusal: RefusedError) -> dict[str, Any]:
    """The fields of a refused topic's answer."""
    return {"error_code": refusal.code, "error_message": refusal.message}


async def authorize(session: Session, operation: str, name: str) -> None:
    if not await session.allowed(operation, name):
        raise RefusedError(
            ErrorCode.topic_authorization_failed,
            f"{session.principal} may not {operation} topic {name!r}",
        )


def check_name(name: str) -> None:
    try:
        validate_topic_name(name)
    except InvalidRequestError as error:
        raise RefusedError(ErrorCode.invalid_topic_exception, error.message) from None


def _check_count(count: int) -> None:
    if count < 1:
        raise RefusedError(
            ErrorCode.invalid_partitions, f"{count} partitions: at least 1 is needed"
        )
    if count > MAX_PARTITIONS:
        raise RefusedError(
            ErrorCode.policy_violation,
            f"{count} partitions: lakelog's limit is {MAX_PARTITIONS} per topic",
        )


async def describe(session: Session, name: str) -> TopicDescription:
    try:
        return await session.call(DescribeTopic(name))
    except LakelogError as error:
        raise refused(error) from None


# CreateTopics ---------------------------------------------------------------------------
async def _create_one(session: Session, topic: Any, validate_only: bool) -> TopicDescription:
    name = topic.name
    await authorize(session, "admin", name)
    check_name(name)
    count = DEFAULT_PARTITIONS if topic.num_partitions == -1 else topic.num_partitions
    _check_count(count)
    factor = topic.replication_factor
    if factor != -1 and not 1 <= factor <= MAX_REPLICATION_FACTOR:
        raise RefusedError(
            ErrorCode.invalid_replication_factor,
            f"replication factor {factor}: -1 or 1 to {MAX_REPLICATION_FACTOR} "
            "(S3 is the replication)",
        )
    if topic.assignments:
        raise RefusedError(ErrorCode.invalid_replica_assignment, "lakelog places partitions itself")
    try:
        config = lakelog_config((entry.name, entry.value) for entry in topic.configs)
    except ConfigError as error:
        raise RefusedError(ErrorCode.invalid_config, str(error)) from None
    if validate_only:
        try:
            await session.call(DescribeTopic(name))
        except TopicNotFoundError:
            return TopicDescription(name, "", {**config}, [])
        except LakelogError as error:  # not known to be free: not known to be valid
            raise refused(error) from None
        raise RefusedError(ErrorCode.topic_already_exists, f"topic {name!r} exists")
    try:
        return await session.call(CreateTopic(name, count, config or None))
    except LakelogError as error:
        raise refused(error) from None


def _created(result_type: type[Any], topic: Any, description: TopicDescription) -> Any:
    has_configs = "configs" in result_type.__dataclass_fields__  # v5+
    config_type = item_type(result_type, "configs") if has_configs else None
    partitions = len(description.partitions) or (
        DEFAULT_PARTITIONS if topic.num_partitions == -1 else topic.num_partitions
    )
    return build(
        result_type,
        name=topic.name,
        topic_id=uuid.UUID(description.topic_id) if description.topic_id else None,
        num_partitions=partitions,
        replication_factor=1,
        configs=tuple(
            build(
                typing.cast(type[Any], config_type),
                name=known.name,
                value=value,
                read_only=False,
                config_source=DEFAULT_CONFIG if is_default else DYNAMIC_TOPIC_CONFIG,
                is_sensitive=False,
            )
            for known, value, is_default in kafka_configs(description.config)
        )
        if has_configs
        else None,
    )


async def _create_topics(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    result_type = item_type(schema, "topics")
    outcomes = await _per_topic(
        body.topics, _name, lambda topic: _create_one(session, topic, body.validate_only)
    )
    return build(
        schema,
        topics=tuple(
            build(
                result_type,
                name=topic.name,
                num_partitions=-1,
                replication_factor=-1,
                configs=None,
                **failure(outcome),
            )
            if isinstance(outcome, RefusedError)
            else _created(result_type, topic, outcome)
            for topic, outcome in zip(body.topics, outcomes, strict=True)
        ),
    )


# DeleteTopics ---------------------------------------------------------------------------
async def _delete_one(session: Session, name: str | None) -> None:
    if name is None:
        raise RefusedError(ErrorCode.invalid_request, "lakelog deletes topics by name, not by id")
    await authorize(session, "admin", name)
    check_name(name)
    try:
        await session.call(DeleteTopic(name))
    except LakelogError as error:
        raise refused(error) from None


async def _delete_topics(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    result_type = item_type(schema, "responses")
    names: list[str | None] = (
        [topic.name for topic in body.topics] if hasattr(body, "topics") else list(body.topic_names)
    )
    outcomes = await _per_topic(names, lambda name: name, lambda name: _delete_one(session, name))
    return build(
        schema,
        responses=tuple(
            build(result_type, name=name, **failure(outcome))
            if isinstance(outcome, RefusedError)
            else build(result_type, name=name)
            for name, outcome in zip(names, outcomes, strict=True)
        ),
    )


# CreatePartitions -----------------------------------------------------------------------
async def _grow_one(session: Session, topic: Any, validate_only: bool) -> None:
    name = topic.name
    await authorize(session, "admin", name)
    check_name(name)
    if topic.assignments is not None:
        raise RefusedError(ErrorCode.invalid_replica_assignment, "lakelog places partitions itself")
    _check_count(topic.count)
    current = len((await describe(session, name)).partitions)
    if topic.count <= current:
        raise RefusedError(
            ErrorCode.invalid_partitions,
            f"topic {name!r} has {current} partitions; partitions can only be added",
        )
    if not validate_only:
        try:
            await session.call(AlterTopic(name, partitions=topic.count))
        except LakelogError as error:
            raise refused(error) from None


async def _create_partitions(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    result_type = item_type(schema, "results")
    outcomes = await _per_topic(
        body.topics, _name, lambda topic: _grow_one(session, topic, body.validate_only)
    )
    return build(
        schema,
        results=tuple(
            build(result_type, name=topic.name, **failure(outcome))
            if isinstance(outcome, RefusedError)
            else build(result_type, name=topic.name)
            for topic, outcome in zip(body.topics, outcomes, strict=True)
        ),
    )


CREATE_TOPICS = Api(19, 2, 7, _create_topics)
DELETE_TOPICS = Api(20, 1, 6, _delete_topics)
CREATE_PARTITIONS = Api(37, 0, 3, _create_partitions)
