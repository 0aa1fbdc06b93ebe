"""Consumer groups (ADR 0016 §5): FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, OffsetCommit, OffsetFetch, ListGroups and DescribeGroups.

Thin handlers over `lakelog.service.kafka_groups.KafkaGroups` (the engine's
``kafka_groups``): they read the request of any served version, call the service on the
gateway's threads, and build the answer of that version. A JoinGroup or SyncGroup that has
to wait for the other members polls the service every `POLL_SECONDS` on the event loop,
holding no thread while it waits. Every gateway is the coordinator of every group.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from kio.schema.errors import ErrorCode
from kio.static.protocol import ResponsePayload

from lakelog.errors import LakelogError, ThrottledError, UnavailableError
from lakelog.kafka.apis import Api, Session, response_type
from lakelog.kafka.errors import error_code
from lakelog.kafka.protocol import build, item_type
from lakelog.service.kafka_groups import (
    Joined,
    JoinRequest,
    KafkaGroups,
    Outcome,
    Synced,
)

__all__ = [
    "DESCRIBE_GROUPS",
    "FIND_COORDINATOR",
    "HEARTBEAT",
    "JOIN_GROUP",
    "LEAVE_GROUP",
    "LIST_GROUPS",
    "MAX_OFFSET_METADATA_CHARS",
    "OFFSET_COMMIT",
    "OFFSET_FETCH",
    "POLL_SECONDS",
    "SYNC_GROUP",
]

POLL_SECONDS: Final = 0.1
"""How often a waiting JoinGroup or SyncGroup reads its group again."""
JOIN_GRACE_SECONDS: Final = 5.0
"""How long past its rebalance timeout a JoinGroup waits before answering
REBALANCE_IN_PROGRESS (the phase completes at the deadline; this bounds a stuck store)."""
SYNC_WAIT_SECONDS: Final = 300.0
"""The longest a SyncGroup waits for the leader's assignments (the leader's session
ending starts a rebalance well before, which answers the wait)."""
NOT_REQUESTED: Final = -(2**31)
"""DescribeGroups' authorized operations when they were not asked for (Kafka's value)."""
GROUP_KEY: Final = 0
MAX_OFFSET_METADATA_CHARS: Final = 4096
"""The longest metadata string an OffsetCommit may carry (Kafka's
``offset.metadata.max.bytes``); the string itself is not kept."""

T = TypeVar("T")


def _ms(value: datetime.timedelta | int) -> int:
    if isinstance(value, datetime.timedelta):
        return int(value.total_seconds() * 1000)
    return int(value)


def _code(outcome: Outcome) -> ErrorCode:
    return ErrorCode[outcome.value]


def _failure(error: LakelogError) -> ErrorCode:
    """A storage failure as an error the client retries at the coordinator."""
    if isinstance(error, UnavailableError | ThrottledError):
        return ErrorCode.coordinator_not_available
    return error_code(error)


def _groups(session: Session) -> KafkaGroups:
    return session.services.engine.kafka_groups


async def _call(session: Session, function: Callable[..., T], *args: Any) -> T:
    return await session.services.run(function, *args)


async def _wait(
    first: T, waiting: Callable[[T], bool], again: Callable[[], Awaitable[T]], seconds: float
) -> T | None:
    """``first``, or the first answer of ``again`` (polled every `POLL_SECONDS`) that is
    not ``waiting``; None when ``seconds`` passed first."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    answer = first
    while waiting(answer):
        if loop.time() >= until:
            return None
        await asyncio.sleep(POLL_SECONDS)
        answer = await again()
    return answer


# FindCoordinator ---------------------------------------------------------------------------


async def _find_coordinator(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    services = session.services
    served = getattr(body, "key_type", GROUP_KEY) == GROUP_KEY  # v0 has no key type
    found: dict[str, Any] = {
        "node_id": services.node_id if served else -1,
        "host": services.advertised_host if served else "",
        "port": services.advertised_port if served else -1,
        "error_code": ErrorCode.none if served else ErrorCode.coordinator_not_available,
        "error_message": None if served else "transactions are not served",
    }
    if body.__version__ < 4:
        return build(schema, **found)
    coordinator = item_type(schema, "coordinators")
    return build(
        schema,
        coordinators=tuple(build(coordinator, key=key, **found) for key in body.coordinator_keys),
    )


# JoinGroup ---------------------------------------------------------------------------------


async def _join_group(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    session_timeout = _ms(body.session_timeout)
    rebalance = getattr(body, "rebalance_timeout", None)
    rebalance_timeout = session_timeout if rebalance is None else _ms(rebalance)
    request = JoinRequest(
        group=body.group_id,
        member_id=body.member_id,
        protocol_type=body.protocol_type,
        protocols=tuple((p.name, bytes(p.metadata)) for p in body.protocols),
        session_timeout_ms=session_timeout,
        rebalance_timeout_ms=rebalance_timeout,
        client_id=session.client_id or "",
        client_host=session.client_host,
        instance_id=getattr(body, "group_instance_id", None),
        require_known_member=body.__version__ >= 4,
    )
    groups = _groups(session)
    instance = request.instance_id
    try:
        joined = await _call(session, groups.join, request)
        since = joined.since

        async def again() -> Joined:
            return await _call(
                session, groups.poll_join, request.group, joined.member_id, since, instance
            )

        seconds = rebalance_timeout / 1000 + JOIN_GRACE_SECONDS
        answer = await _wait(joined, lambda j: j.waiting, again, seconds)
    except LakelogError as error:
        return build(schema, error_code=_failure(error), generation_id=-1, member_id=body.member_id)
    if answer is None:
        answer = Joined(Outcome.REBALANCE_IN_PROGRESS, joined.member_id)
    member = item_type(schema, "members")
    return build(
        schema,
        error_code=_code(answer.outcome),
        generation_id=answer.generation,
        protocol_type=answer.protocol_type,
        protocol_name=answer.protocol or "",
        leader=answer.leader,
        member_id=answer.member_id,
        members=tuple(
            build(member, member_id=m, group_instance_id=instance, metadata=metadata)
            for m, instance, metadata in answer.members
        ),
    )


# SyncGroup ---------------------------------------------------------------------------------


async def _sync_group(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    groups = _groups(session)
    group, member, generation = body.group_id, body.member_id, body.generation_id
    instance = getattr(body, "group_instance_id", None)  # v3+
    assignments = {a.member_id: bytes(a.assignment) for a in body.assignments}
    try:
        synced = await _call(
            session,
            groups.sync,
            group,
            member,
            generation,
            assignments,
            getattr(body, "protocol_type", None),
            getattr(body, "protocol_name", None),
            instance,
        )

        async def again() -> Synced:
            return await _call(session, groups.poll_sync, group, member, generation, instance)

        answer = await _wait(synced, lambda s: s.waiting, again, SYNC_WAIT_SECONDS)
    except LakelogError as error:
        return build(schema, error_code=_failure(error), assignment=b"")
    if answer is None:
        answer = Synced(Outcome.REBALANCE_IN_PROGRESS)
    return build(
        schema,
        error_code=_code(answer.outcome),
        protocol_type=answer.protocol_type,
        protocol_name=answer.protocol,
        assignment=answer.assignment,
    )


# Heartbeat and LeaveGroup --------------------------------------------------------------------


async def _heartbeat(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    groups = _groups(session)
    try:
        outcome = await _call(
            session,
            groups.heartbeat,
            body.group_id,
            body.member_id,
            body.generation_id,
            getattr(body, "group_instance_id", None),  # v3+
        )
    except LakelogError as error:
        return build(schema, error_code=_failure(error))
    return build(schema, error_code=_code(outcome))


async def _leave_group(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    groups = _groups(session)
    if body.__version__ < 3:
        leaving = [(body.member_id, None)]
    else:
        leaving = [(m.member_id, m.group_instance_id) for m in body.members]
    try:
        outcomes = await _call(session, groups.leave, body.group_id, leaving)
    except LakelogError as error:
        return build(schema, error_code=_failure(error))
    if body.__version__ < 3:
        return build(schema, error_code=_code(outcomes[0]))
    member = item_type(schema, "members")
    return build(
        schema,
        members=tuple(
            build(member, member_id=m, group_instance_id=instance, error_code=_code(outcome))
            for (m, instance), outcome in zip(leaving, outcomes, strict=True)
        ),
    )


# OffsetCommit and OffsetFetch ----------------------------------------------------------------


async def _offset_commit(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    topic_type = item_type(schema, "topics")
    partition_type = item_type(topic_type, "partitions")
    denied: set[str] = set()
    offsets: dict[tuple[str, int], int] = {}
    codes: dict[tuple[str, int], ErrorCode] = {}
    for topic in body.topics:
        if not await session.allowed("consume", topic.name):
            denied.add(topic.name)
            continue
        for p in topic.partitions:
            key = (topic.name, p.partition_index)
            if len(p.committed_metadata or "") > MAX_OFFSET_METADATA_CHARS:
                codes[key] = ErrorCode.offset_metadata_too_large  # and nothing committed
            else:
                offsets[key] = p.committed_offset
    if offsets:
        try:
            outcomes = await _call(
                session,
                _groups(session).commit,
                body.group_id,
                body.member_id,
                body.generation_id_or_member_epoch,
                offsets,
                getattr(body, "group_instance_id", None),  # v7+
            )
            codes |= {key: _code(outcome) for key, outcome in outcomes.items()}
        except LakelogError as error:
            codes |= dict.fromkeys(offsets, _failure(error))
    return build(
        schema,
        topics=tuple(
            build(
                topic_type,
                name=topic.name,
                partitions=tuple(
                    build(
                        partition_type,
                        partition_index=p.partition_index,
                        error_code=ErrorCode.topic_authorization_failed
                        if topic.name in denied
                        else codes[(topic.name, p.partition_index)],
                    )
                    for p in topic.partitions
                ),
            )
            for topic in body.topics
        ),
    )


async def _fetched_group(
    session: Session, schema: type[Any], group: str, topics: Any
) -> tuple[ErrorCode, tuple[Any, ...]]:
    """One group's answer to OffsetFetch: its error code and topics (of ``schema``'s
    topic type), each partition with its committed offset or -1."""
    topic_type = item_type(schema, "topics")
    partition_type = item_type(topic_type, "partitions")
    try:
        committed = await _call(session, _groups(session).committed, group)
    except LakelogError as error:
        return _failure(error), ()
    if isinstance(committed, Outcome):
        return _code(committed), ()
    if topics is None:
        names = sorted({name for name, _ in committed})
        wanted = [(n, sorted(p for t, p in committed if t == n)) for n in names]
        wanted = [(n, ps) for n, ps in wanted if await session.allowed("consume", n)]
    else:
        wanted = [(t.name, list(t.partition_indexes)) for t in topics]
    answered = []
    for name, partitions in wanted:
        allowed = topics is None or await session.allowed("consume", name)
        answered.append(
            build(
                topic_type,
                name=name,
                partitions=tuple(
                    build(
                        partition_type,
                        partition_index=p,
                        committed_offset=committed.get((name, p), -1) if allowed else -1,
                        committed_leader_epoch=-1,
                        metadata="",
                        error_code=ErrorCode.none
                        if allowed
                        else ErrorCode.topic_authorization_failed,
                    )
                    for p in partitions
                ),
            )
        )
    return ErrorCode.none, tuple(answered)


async def _offset_fetch(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    if body.__version__ < 8:
        code, topics = await _fetched_group(session, schema, body.group_id, body.topics)
        return build(schema, error_code=code, topics=topics)
    group_type = item_type(schema, "groups")
    answered = []
    for group in body.groups:
        code, topics = await _fetched_group(session, group_type, group.group_id, group.topics)
        answered.append(build(group_type, group_id=group.group_id, error_code=code, topics=topics))
    return build(schema, groups=tuple(answered))


# ListGroups and DescribeGroups ---------------------------------------------------------------


async def _list_groups(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    try:
        listed = await _call(session, _groups(session).list_groups)
    except LakelogError as error:
        return build(schema, error_code=_failure(error), groups=())
    states = {s.lower() for s in getattr(body, "states_filter", ())}
    types = {t.lower() for t in getattr(body, "types_filter", ())}
    group_type = item_type(schema, "groups")
    return build(
        schema,
        groups=tuple(
            build(
                group_type,
                group_id=g.group,
                protocol_type=g.protocol_type,
                group_state=g.state,
                group_type="classic",
            )
            for g in listed
            if (not states or g.state.lower() in states) and (not types or "classic" in types)
        ),
    )


async def _describe_groups(body: Any, session: Session) -> ResponsePayload:
    schema = response_type(body)
    group_type = item_type(schema, "groups")
    member_type = item_type(group_type, "members")
    groups = _groups(session)
    described = []
    for group_id in body.groups:
        try:
            group = await _call(session, groups.describe, group_id)
        except LakelogError as error:
            described.append(build(group_type, group_id=group_id, error_code=_failure(error)))
            continue
        if isinstance(group, Outcome):
            described.append(build(group_type, group_id=group_id, error_code=_code(group)))
            continue
        protocol = group.protocol or ""
        described.append(
            build(
                group_type,
                group_id=group_id,
                group_state=group.state,
                protocol_type=group.protocol_type or "",
                protocol_data=protocol,
                authorized_operations=NOT_REQUESTED,
                members=tuple(
                    build(
                        member_type,
                        member_id=m.member_id,
                        group_instance_id=m.instance_id,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        member_metadata=dict(m.protocols).get(protocol, b""),
                        member_assignment=m.assignment or b"",
                    )
                    for m in group.members
                ),
            )
        )
    return build(schema, groups=tuple(described))


FIND_COORDINATOR = Api(10, 0, 6, _find_coordinator)
JOIN_GROUP = Api(11, 0, 9, _join_group)
SYNC_GROUP = Api(14, 0, 5, _sync_group)
HEARTBEAT = Api(12, 0, 4, _heartbeat)
LEAVE_GROUP = Api(13, 0, 5, _leave_group)
OFFSET_COMMIT = Api(8, 2, 9, _offset_commit)
OFFSET_FETCH = Api(9, 1, 9, _offset_fetch)
LIST_GROUPS = Api(16, 0, 5, _list_groups)
DESCRIBE_GROUPS = Api(15, 0, 6, _describe_groups)
