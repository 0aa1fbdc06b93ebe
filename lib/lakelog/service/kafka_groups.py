"""Kafka's classic consumer group protocol, coordinated through the catalog (ADR 0016 §5).

Kafka's own coordinator keeps a group in one broker's memory; here no gateway owns a
group. Every request reads the group's record, applies what time did since (sessions that
ended, a rebalance deadline that passed), applies the request, and writes the record back
only at the version it read (`KafkaGroupStore.write`): a gateway that loses the race reads
again and recomputes. Waiting (a JoinGroup until the join phase completes, a SyncGroup
until the leader's assignments) is done by the caller polling `poll_join` and `poll_sync`,
so that a waiting member holds no thread.

Committed offsets are the lakelog group's of the same name, written through
`GroupCoordinator.commit_unleased` once the member's generation is checked here.

Outcomes are named after Kafka's error codes (`Outcome`), so the gateway's handlers only
translate them; this module knows no wire format.
"""

from __future__ import annotations

import enum
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, TypeVar

from lakelog.errors import (
    GroupNotEmptyError,
    InvalidRequestError,
    LakelogError,
    TopicNotFoundError,
    UnavailableError,
)
from lakelog.service.groups import GroupCoordinator
from lakelog.service.subscriptions import check_user_group
from lakelog.storage.kafka_groups import KafkaGroup, KafkaGroupStore, KafkaMember

__all__ = [
    "COMPLETING",
    "DEAD",
    "EMPTY",
    "MAX_SESSION_TIMEOUT_MS",
    "MIN_SESSION_TIMEOUT_MS",
    "PREPARING",
    "STABLE",
    "WRITE_ATTEMPTS",
    "JoinRequest",
    "Joined",
    "KafkaGroups",
    "ListedGroup",
    "Outcome",
    "Synced",
    "advanced",
]

EMPTY: Final = "Empty"
PREPARING: Final = "PreparingRebalance"
COMPLETING: Final = "CompletingRebalance"
STABLE: Final = "Stable"
DEAD: Final = "Dead"
"""The state DescribeGroups reports for a group that was never stored."""

MIN_SESSION_TIMEOUT_MS: Final = 6_000
"""Kafka's ``group.min.session.timeout.ms``."""
MAX_SESSION_TIMEOUT_MS: Final = 1_800_000
"""Kafka's ``group.max.session.timeout.ms``."""
WRITE_ATTEMPTS: Final = 10
"""Reads and conditional writes of one request racing other gateways on one group."""
MAX_MEMBER_ID_CHARS: Final = 255

T = TypeVar("T")


class Outcome(enum.StrEnum):
    """What a group request came to, by the name of Kafka's error code."""

    NONE = "none"
    UNKNOWN_MEMBER_ID = "unknown_member_id"
    ILLEGAL_GENERATION = "illegal_generation"
    REBALANCE_IN_PROGRESS = "rebalance_in_progress"
    MEMBER_ID_REQUIRED = "member_id_required"
    INCONSISTENT_GROUP_PROTOCOL = "inconsistent_group_protocol"
    INVALID_SESSION_TIMEOUT = "invalid_session_timeout"
    INVALID_GROUP_ID = "invalid_group_id"
    UNKNOWN_TOPIC_OR_PARTITION = "unknown_topic_or_partition"
    INVALID_REQUEST = "invalid_request"
    NON_EMPTY_GROUP = "non_empty_group"
    FENCED_INSTANCE_ID = "fenced_instance_id"


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """One JoinGroup: ``member_id`` empty for a member that has none yet;
    ``require_known_member`` (JoinGroup v4+) answers such a member MEMBER_ID_REQUIRED with
    its new id instead of joining it."""

    group: str
    member_id: str
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    client_id: str = ""
    client_host: str = ""
    instance_id: str | None = None
    require_known_member: bool = False


@dataclass(frozen=True, slots=True)
class Joined:
    """The answer to a JoinGroup; ``members`` (id, instance id, metadata of the chosen
    protocol) only for the leader."""

    outcome: Outcome
    member_id: str
    generation: int = -1
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str = ""
    members: tuple[tuple[str, str | None, bytes], ...] = ()
    waiting: bool = False
    """The join phase has not completed: poll with `KafkaGroups.poll_join`."""
    since: int = 0
    """The generation the member joined in (what `poll_join` waits to see pass)."""


@dataclass(frozen=True, slots=True)
class Synced:
    """The answer to a SyncGroup; ``waiting``: poll with `KafkaGroups.poll_sync`."""

    outcome: Outcome
    assignment: bytes = b""
    protocol_type: str | None = None
    protocol: str | None = None
    waiting: bool = False


@dataclass(frozen=True, slots=True)
class ListedGroup:
    """A group as ListGroups names it."""

    group: str
    protocol_type: str
    state: str


def _member(group: KafkaGroup, member_id: str) -> KafkaMember | None:
    return next((m for m in group.members if m.member_id == member_id), None)


def _fenced(group: KafkaGroup, member_id: str, instance_id: str | None) -> bool:
    """Whether ``instance_id`` names a static member the group now holds under another
    member id: the caller is an old incarnation that a restart replaced (Kafka's
    FENCED_INSTANCE_ID, which clients treat as fatal rather than joining again)."""
    if instance_id is None:
        return False
    return any(m.instance_id == instance_id and m.member_id != member_id for m in group.members)


def _leaving_member(
    group: KafkaGroup, member_id: str, instance_id: str | None
) -> KafkaMember | Outcome:
    """The member a LeaveGroup names: by instance id alone when ``member_id`` is ""."""
    if not member_id and instance_id is not None:
        member = next((m for m in group.members if m.instance_id == instance_id), None)
    elif _fenced(group, member_id, instance_id):
        return Outcome.FENCED_INSTANCE_ID
    else:
        member = _member(group, member_id)
    return Outcome.UNKNOWN_MEMBER_ID if member is None else member


def _with_members(group: KafkaGroup, members: Iterable[KafkaMember]) -> KafkaGroup:
    return replace(group, members=tuple(members))


def _replaced(group: KafkaGroup, member: KafkaMember) -> KafkaGroup:
    return _with_members(
        group, (member if m.member_id == member.member_id else m for m in group.members)
    )


def _rebalance(group: KafkaGroup, now: int) -> KafkaGroup:
    """``group`` entering ``PreparingRebalance``: every member has to join again by the
    deadline, the largest rebalance timeout of its members from now."""
    deadline = now + max((m.rebalance_timeout_ms for m in group.members), default=0)
    members = (replace(m, joined=False) for m in group.members)
    return replace(_with_members(group, members), state=PREPARING, deadline_ms=deadline)


def _protocol(members: Sequence[KafkaMember]) -> str | None:
    """The protocol every member supports that most members list first (ties: the first
    member's order); None when they share none."""
    common = set.intersection(*({name for name, _ in m.protocols} for m in members))
    if not common:
        return None
    votes = Counter(next(name for name, _ in m.protocols if name in common) for m in members)
    order = [name for name, _ in members[0].protocols if name in common]
    return max(order, key=lambda name: (votes[name], -order.index(name)))


def _complete(group: KafkaGroup, now: int) -> KafkaGroup:
    """End the join phase: members that joined form the next generation."""
    joined = [m for m in group.members if m.joined]
    if not joined:
        return KafkaGroup(group.group, EMPTY, group.generation + 1, version=group.version)
    leader = group.leader if any(m.member_id == group.leader for m in joined) else None
    members = tuple(replace(m, joined=False, heard_ms=now, assignment=None) for m in joined)
    return replace(
        group,
        state=COMPLETING,
        generation=group.generation + 1,
        protocol=_protocol(members),
        leader=leader or members[0].member_id,
        deadline_ms=0,
        members=members,
    )


def _expired(group: KafkaGroup, member: KafkaMember, now: int) -> bool:
    if group.state == PREPARING and member.joined:
        return False  # its JoinGroup is waiting: Kafka keeps such members alive
    return now >= member.heard_ms + member.session_timeout_ms


def advanced(group: KafkaGroup, now: int) -> KafkaGroup:
    """``group`` as time left it at ``now``: members whose session ended removed (a
    rebalance begun if that changed a generation), and a join phase completed when every
    member joined or its deadline passed."""
    alive = [m for m in group.members if not _expired(group, m, now)]
    if len(alive) != len(group.members):
        group = _with_members(group, alive)
        if group.state in (STABLE, COMPLETING):
            group = _rebalance(group, now)
    if group.state == PREPARING and (
        all(m.joined for m in group.members) or now >= group.deadline_ms
    ):
        group = _complete(group, now)
    return group


def _touched(group: KafkaGroup, member: KafkaMember, now: int) -> KafkaGroup:
    """``group`` with ``member`` heard at ``now`` if its stored heartbeat is older than a
    third of its session (else unchanged: no write; it cannot expire before the next)."""
    if now - member.heard_ms < member.session_timeout_ms // 3:
        return group
    return _replaced(group, replace(member, heard_ms=now))


class KafkaGroups:
    """Kafka groups' coordinator over a `KafkaGroupStore`, on lakelog's group offsets.

    Parameters
    ----------
    store
        The groups' coordinator state.
    offsets
        lakelog's groups: committed offsets and its live members.
    clock_ms
        The time sessions and deadlines are measured on.
    """

    def __init__(
        self, store: KafkaGroupStore, offsets: GroupCoordinator, clock_ms: Callable[[], int]
    ) -> None:
        self._store = store
        self._offsets = offsets
        self._clock_ms = clock_ms

    @property
    def store(self) -> KafkaGroupStore:
        """The store of the groups' coordinator state."""
        return self._store

    def _update(self, group_id: str, step: Callable[[KafkaGroup, int], tuple[KafkaGroup, T]]) -> T:
        """Read the group, advance it to now, apply ``step``, and write the result if it
        changed, at the version read; again from the read when another write came first."""
        for _ in range(WRITE_ATTEMPTS):
            now = self._clock_ms()
            stored = self._store.read(group_id) or KafkaGroup(group_id)
            group, answer = step(advanced(stored, now), now)
            if group == stored or self._store.write(group):
                return answer
        raise UnavailableError(f"group {group_id!r} kept changing under this request; retry")

    # Join ----------------------------------------------------------------------------
    def join(self, request: JoinRequest) -> Joined:
        """A JoinGroup: the answer, or ``waiting`` until the join phase completes."""
        try:
            group_id = check_user_group(request.group)
        except InvalidRequestError:
            return Joined(Outcome.INVALID_GROUP_ID, request.member_id)
        if not MIN_SESSION_TIMEOUT_MS <= request.session_timeout_ms <= MAX_SESSION_TIMEOUT_MS:
            return Joined(Outcome.INVALID_SESSION_TIMEOUT, request.member_id)
        if not request.protocol_type or not request.protocols:
            return Joined(Outcome.INCONSISTENT_GROUP_PROTOCOL, request.member_id)
        if len(request.member_id) > MAX_MEMBER_ID_CHARS:
            return Joined(Outcome.UNKNOWN_MEMBER_ID, request.member_id)
        member_id = request.member_id
        if not member_id:
            member_id = f"{request.client_id[:100] or 'member'}-{uuid.uuid4()}"
            if request.require_known_member and request.instance_id is None:
                # a static member joins at once, as in Kafka: it may replace its old self
                return Joined(Outcome.MEMBER_ID_REQUIRED, member_id)
        if self._offsets.live_members(group_id):
            return Joined(Outcome.INCONSISTENT_GROUP_PROTOCOL, member_id)
        return self._update(group_id, lambda group, now: self._join(group, now, request, member_id))

    def _join(
        self, group: KafkaGroup, now: int, request: JoinRequest, member_id: str
    ) -> tuple[KafkaGroup, Joined]:
        if group.members and (
            request.protocol_type != group.protocol_type
            or not {name for name, _ in request.protocols}.intersection(
                *({name for name, _ in m.protocols} for m in group.members)
            )
        ):
            return group, Joined(Outcome.INCONSISTENT_GROUP_PROTOCOL, member_id)
        if _fenced(group, member_id, request.instance_id):
            if request.member_id:
                return group, Joined(Outcome.FENCED_INSTANCE_ID, member_id)
            # a static member started again (it did not leave): it takes its old place
            group = _with_members(
                group, (m for m in group.members if m.instance_id != request.instance_id)
            )
        known = _member(group, member_id)
        member = KafkaMember(
            member_id=member_id,
            client_id=request.client_id,
            client_host=request.client_host,
            session_timeout_ms=request.session_timeout_ms,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            heard_ms=now,
            protocols=request.protocols,
            instance_id=request.instance_id,
            joined=True,
        )
        if known is None:
            if group.state != PREPARING:
                group = _rebalance(group, now)
            group = _with_members(group, (*group.members, member))
        else:
            unchanged = known.protocols == request.protocols and group.leader != member_id
            if group.state in (STABLE, COMPLETING) and unchanged:
                # Nothing to rebalance: the current generation is the answer (Kafka's too).
                return group, self._answer(group, member_id)
            if group.state != PREPARING:
                group = _rebalance(group, now)
            group = _replaced(group, replace(member, assignment=known.assignment))
        group = replace(group, protocol_type=request.protocol_type)
        since = group.generation
        group = advanced(group, now)
        if group.generation > since:
            return group, self._answer(group, member_id)
        return group, Joined(Outcome.NONE, member_id, waiting=True, since=since)

    def poll_join(
        self, group_id: str, member_id: str, since: int, instance_id: str | None = None
    ) -> Joined:
        """A waiting JoinGroup's answer once the generation moved past ``since`` (the
        poller completes a phase whose deadline passed); ``waiting`` until then."""

        def step(group: KafkaGroup, _now: int) -> tuple[KafkaGroup, Joined]:
            if _fenced(group, member_id, instance_id):
                return group, Joined(Outcome.FENCED_INSTANCE_ID, member_id)
            if _member(group, member_id) is None:
                return group, Joined(Outcome.UNKNOWN_MEMBER_ID, member_id)
            if group.generation > since:
                return group, self._answer(group, member_id)
            return group, Joined(Outcome.NONE, member_id, waiting=True, since=since)

        return self._update(group_id, step)

    @staticmethod
    def _answer(group: KafkaGroup, member_id: str) -> Joined:
        members: tuple[tuple[str, str | None, bytes], ...] = ()
        if group.leader == member_id:
            members = tuple(
                (m.member_id, m.instance_id, dict(m.protocols).get(group.protocol or "", b""))
                for m in group.members
            )
        return Joined(
            Outcome.NONE,
            member_id,
            generation=group.generation,
            protocol_type=group.protocol_type,
            protocol=group.protocol,
            leader=group.leader or "",
            members=members,
        )

    # Sync ----------------------------------------------------------------------------
    def sync(
        self,
        group_id: str,
        member_id: str,
        generation: int,
        assignments: Mapping[str, bytes] | None = None,
        protocol_type: str | None = None,
        protocol: str | None = None,
        instance_id: str | None = None,
    ) -> Synced:
        """A SyncGroup: the leader's ``assignments`` make the group ``Stable``; every member
        gets its own, ``waiting`` (poll again, with no assignments) until the leader's
        came."""
        try:
            group_id = check_user_group(group_id)
        except InvalidRequestError:
            return Synced(Outcome.INVALID_GROUP_ID)

        def step(group: KafkaGroup, now: int) -> tuple[KafkaGroup, Synced]:
            if _fenced(group, member_id, instance_id):
                return group, Synced(Outcome.FENCED_INSTANCE_ID)
            member = _member(group, member_id)
            if member is None:
                return group, Synced(Outcome.UNKNOWN_MEMBER_ID)
            if generation != group.generation:
                return group, Synced(Outcome.ILLEGAL_GENERATION)
            if (protocol_type is not None and protocol_type != group.protocol_type) or (
                protocol is not None and protocol != group.protocol
            ):
                return group, Synced(Outcome.INCONSISTENT_GROUP_PROTOCOL)
            if group.state == PREPARING:
                return group, Synced(Outcome.REBALANCE_IN_PROGRESS)
            group = _touched(group, member, now)
            if group.state == COMPLETING and member_id == group.leader and assignments is not None:
                given = (
                    replace(m, assignment=assignments.get(m.member_id, b"")) for m in group.members
                )
                group = replace(_with_members(group, given), state=STABLE)
            if group.state != STABLE:
                return group, Synced(Outcome.NONE, waiting=True)
            mine = _member(group, member_id)
            assert mine is not None
            return group, Synced(
                Outcome.NONE, mine.assignment or b"", group.protocol_type, group.protocol
            )

        return self._update(group_id, step)

    def poll_sync(
        self, group_id: str, member_id: str, generation: int, instance_id: str | None = None
    ) -> Synced:
        """A waiting SyncGroup's answer (its wait counts as the member's heartbeat)."""
        return self.sync(group_id, member_id, generation, instance_id=instance_id)

    # Heartbeat and leave -------------------------------------------------------------
    def heartbeat(
        self, group_id: str, member_id: str, generation: int, instance_id: str | None = None
    ) -> Outcome:
        """A Heartbeat: REBALANCE_IN_PROGRESS tells the member to join again."""
        try:
            group_id = check_user_group(group_id)
        except InvalidRequestError:
            return Outcome.INVALID_GROUP_ID

        def step(group: KafkaGroup, now: int) -> tuple[KafkaGroup, Outcome]:
            if _fenced(group, member_id, instance_id):
                return group, Outcome.FENCED_INSTANCE_ID
            member = _member(group, member_id)
            if member is None:
                return group, Outcome.UNKNOWN_MEMBER_ID
            if generation != group.generation:
                return group, Outcome.ILLEGAL_GENERATION
            group = _touched(group, member, now)
            if group.state == PREPARING:
                return group, Outcome.REBALANCE_IN_PROGRESS
            return group, Outcome.NONE

        return self._update(group_id, step)

    def leave(self, group_id: str, leaving: Sequence[tuple[str, str | None]]) -> list[Outcome]:
        """A LeaveGroup of ``leaving`` (member id, instance id) pairs, taken in order as
        Kafka does: each one's outcome; the members that remain rebalance.

        A pair with member id "" names the static member of that instance id (Kafka's
        AdminClient ``removeMembersFromConsumerGroup``); one naming an instance the group
        holds under another member id is FENCED_INSTANCE_ID, and a member the group does
        not hold (any more) UNKNOWN_MEMBER_ID.
        """
        try:
            group_id = check_user_group(group_id)
        except InvalidRequestError:
            return [Outcome.INVALID_GROUP_ID] * len(leaving)

        def step(group: KafkaGroup, now: int) -> tuple[KafkaGroup, list[Outcome]]:
            outcomes = []
            before = group
            for member_id, instance_id in leaving:
                member = _leaving_member(group, member_id, instance_id)
                if isinstance(member, Outcome):
                    outcomes.append(member)
                    continue
                group = _with_members(group, (m for m in group.members if m is not member))
                outcomes.append(Outcome.NONE)
            if group is not before:
                if group.state != PREPARING:
                    group = _rebalance(group, now)
                group = advanced(group, now)
            return group, outcomes

        return self._update(group_id, step)

    # Offsets -------------------------------------------------------------------------
    def commit(
        self,
        group_id: str,
        member_id: str,
        generation: int,
        offsets: Mapping[tuple[str, int], int],
        instance_id: str | None = None,
    ) -> dict[tuple[str, int], Outcome]:
        """An OffsetCommit: each partition's outcome. The member must be of the group's
        generation (generation -1 with no member id while the group is empty: a standalone
        commit); the offsets are then lakelog's (`GroupCoordinator.commit_unleased`)."""
        try:
            group_id = check_user_group(group_id)
        except InvalidRequestError:
            return dict.fromkeys(offsets, Outcome.INVALID_GROUP_ID)
        negative = {key for key, offset in offsets.items() if offset < 0}
        offsets = {key: offset for key, offset in offsets.items() if key not in negative}
        outcome = self._update(
            group_id,
            lambda group, now: self._may_commit(group, now, member_id, generation, instance_id),
        )
        outcomes = dict.fromkeys(negative, Outcome.INVALID_REQUEST)
        if outcome is not Outcome.NONE:
            return {**outcomes, **dict.fromkeys(offsets, outcome)}
        refused = self._offsets.commit_unleased(group_id, offsets) if offsets else {}
        return {**outcomes, **{key: _offset_outcome(refused.get(key)) for key in offsets}}

    @staticmethod
    def _may_commit(
        group: KafkaGroup, now: int, member_id: str, generation: int, instance_id: str | None
    ) -> tuple[KafkaGroup, Outcome]:
        if generation < 0 and not member_id and group.state == EMPTY:
            return group, Outcome.NONE
        if _fenced(group, member_id, instance_id):
            return group, Outcome.FENCED_INSTANCE_ID
        member = _member(group, member_id)
        if member is None:
            return group, Outcome.UNKNOWN_MEMBER_ID
        if generation != group.generation:
            return group, Outcome.ILLEGAL_GENERATION
        if group.state == COMPLETING:
            return group, Outcome.REBALANCE_IN_PROGRESS
        return _touched(group, member, now), Outcome.NONE

    def committed(self, group_id: str) -> dict[tuple[str, int], int] | Outcome:
        """An OffsetFetch: the group's committed offsets by (topic, partition), or
        INVALID_GROUP_ID."""
        try:
            group_id = check_user_group(group_id)
        except InvalidRequestError:
            return Outcome.INVALID_GROUP_ID
        return self._offsets.committed(group_id)

    # List and describe ---------------------------------------------------------------
    def list_groups(self) -> list[ListedGroup]:
        """Every Kafka group with its protocol type and state now."""
        listed = []
        now = self._clock_ms()
        for name in self._store.list_groups():
            stored = self._store.read(name)
            if stored is not None:
                group = advanced(stored, now)
                listed.append(ListedGroup(name, group.protocol_type or "", group.state))
        return listed

    def members(self, group_id: str) -> tuple[str, ...]:
        """The ids of the group's members now (none for a group never stored, and none,
        without a read, for a group Kafka clients may not use)."""
        try:
            group_id = check_user_group(group_id)
        except InvalidRequestError:
            return ()
        stored = self._store.read(group_id)
        if stored is None:
            return ()
        return tuple(m.member_id for m in advanced(stored, self._clock_ms()).members)

    def describe(self, group_id: str) -> KafkaGroup | Outcome:
        """The group as it stands now (``Dead``, with no members, when never stored), or
        INVALID_GROUP_ID."""
        try:
            group_id = check_user_group(group_id)
        except InvalidRequestError:
            return Outcome.INVALID_GROUP_ID
        stored = self._store.read(group_id)
        if stored is None:
            return KafkaGroup(group_id, state=DEAD)
        return advanced(stored, self._clock_ms())


def _offset_outcome(error: LakelogError | None) -> Outcome:
    """The outcome of one partition of a commit (`GroupCoordinator.commit_unleased`): with
    negative offsets refused before, its bad input is a partition the topic lacks."""
    if error is None:
        return Outcome.NONE
    if isinstance(error, TopicNotFoundError | InvalidRequestError):
        return Outcome.UNKNOWN_TOPIC_OR_PARTITION
    if isinstance(error, GroupNotEmptyError):
        return Outcome.NON_EMPTY_GROUP
    raise error
