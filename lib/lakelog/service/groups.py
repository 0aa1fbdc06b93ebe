"""Consumer groups: join and heartbeat, balanced leases, fenced commits, describe, reset.

The protocol is ADR 0009. There is no coordinator process: each heartbeat reads the whole
group in one query and moves only the caller's own leases, by conditional writes on their
epochs. Every member computes the same targets from the same view, so the group converges
on ``floor(P / M)`` or ``ceil(P / M)`` partitions per member within about two rounds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from lakelog.errors import (
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidRequestError,
    LakelogError,
    TopicNotFoundError,
    UnavailableError,
)
from lakelog.limits import (
    DEFAULT_SESSION_TIMEOUT_MS,
    MAX_OFFSETS_PER_COMMIT,
    MAX_SESSION_TIMEOUT_MS,
    MAX_TOPICS_PER_MEMBER,
    MIN_SESSION_TIMEOUT_MS,
    validate_group_id,
    validate_member_id,
    validate_topic_name,
)
from lakelog.service.context import EngineContext, retry_if_stale
from lakelog.service.fetch import Fetcher
from lakelog.storage.ports import GroupState, GroupStore, LeaseRecord, MemberRecord, TopicRecord
from lakelog.types import (
    Assignment,
    GroupDescription,
    MemberInfo,
    Membership,
    OffsetCommit,
    PartitionLag,
    ResetTarget,
    ToOffset,
    TopicPartition,
    ToTimestamp,
)

__all__ = ["UNLEASED_COMMIT_ATTEMPTS", "GroupCoordinator", "GroupView", "balanced_target"]

UNLEASED_COMMIT_ATTEMPTS = 5
"""Reads and writes of a commit without a lease racing other writes of its partitions."""


def balanced_target(member_id: str, partitions: int, held: Mapping[str, int]) -> int:
    """How many of a topic's ``partitions`` ``member_id`` should hold.

    ``held`` maps every live member subscribed to the topic (``member_id`` included) to
    the number of its partitions it holds now. With ``q, r = divmod(partitions,
    len(held))``, the first ``r`` members ordered by (holds more than ``q`` first, then
    member id) get ``q + 1`` and the others ``q``: members that already hold a ceiling
    keep it, so no partition moves only to come back.
    """
    floor, extra = divmod(partitions, len(held))
    order = sorted(held, key=lambda member: (held[member] <= floor, member))
    return floor + 1 if order.index(member_id) < extra else floor


@dataclass(frozen=True)
class GroupView:
    """A group as one read saw it at ``now_ms``: who is live and who holds what."""

    live: Mapping[str, MemberRecord]
    leases: Mapping[tuple[str, int], LeaseRecord]

    @classmethod
    def of(cls, state: GroupState, now_ms: int) -> GroupView:
        """The view of ``state`` at ``now_ms``: members whose session has not ended."""
        return cls(
            live={m.member_id: m for m in state.members if m.expires_ms > now_ms},
            leases={(lease.topic, lease.partition): lease for lease in state.leases},
        )

    def lease(self, topic: str, partition: int) -> LeaseRecord:
        """The stored lease of a partition, or the lease of a partition nobody took yet."""
        return self.leases.get((topic, partition)) or LeaseRecord.missing(topic, partition)

    def owner(self, lease: LeaseRecord, topic: TopicRecord) -> str | None:
        """Who holds ``lease`` of the current ``topic``: its owner while that is live.

        A lease of another topic id (a deleted topic of the same name) is free.
        """
        if lease.topic_id != topic.topic_id or lease.owner not in self.live:
            return None
        return lease.owner

    def committed(self, lease: LeaseRecord, topic: TopicRecord) -> int | None:
        """The committed offset of ``lease`` for the current ``topic`` (None if other id)."""
        return lease.committed_offset if lease.topic_id == topic.topic_id else None

    def subscribers(self, topic: str) -> list[str]:
        """Live members subscribed to ``topic``, by member id."""
        return sorted(m.member_id for m in self.live.values() if topic in m.topics)


def _non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{name} must be an integer, not {value!r}")
    if value < 0:
        raise InvalidRequestError(f"{name} must be non-negative, not {value}")
    return value


def _subscription(topics: object) -> tuple[str, ...]:
    if isinstance(topics, str | bytes) or not isinstance(topics, Collection):
        raise InvalidRequestError("topics must be a list of topic names")
    names = tuple(sorted({validate_topic_name(topic) for topic in topics}))
    if not names:
        raise InvalidRequestError("topics must name at least one topic")
    if len(names) > MAX_TOPICS_PER_MEMBER:
        raise InvalidRequestError(
            f"a member subscribes to at most {MAX_TOPICS_PER_MEMBER} topics, not {len(names)}"
        )
    return names


def _session_timeout(value: object) -> int:
    if value is None:
        return DEFAULT_SESSION_TIMEOUT_MS
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"session_timeout_ms must be an integer, not {value!r}")
    if not MIN_SESSION_TIMEOUT_MS <= value <= MAX_SESSION_TIMEOUT_MS:
        raise InvalidRequestError(
            f"session_timeout_ms must be between {MIN_SESSION_TIMEOUT_MS} and "
            f"{MAX_SESSION_TIMEOUT_MS}, not {value}"
        )
    return value


def _assignment(lease: LeaseRecord) -> Assignment:
    return Assignment(lease.topic, lease.partition, lease.lease_epoch, lease.committed_offset)


def _check_target(to: object) -> None:
    """Refuse a `ResetTarget` that is none (`InvalidRequestError`)."""
    if isinstance(to, ToOffset):
        _non_negative_int("offset", to.offset)
    elif isinstance(to, ToTimestamp):
        _non_negative_int("timestamp_ms", to.timestamp_ms)
    elif to not in ("earliest", "latest"):
        raise InvalidRequestError(
            f"to must be 'earliest' or 'latest', a ToOffset or a ToTimestamp, not {to!r}"
        )


class GroupCoordinator:
    """The group use cases over a `GroupStore`, on the engine's topics and ledger."""

    def __init__(
        self,
        context: EngineContext,
        groups: GroupStore,
        fetcher: Fetcher,
        other_members: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        self._ctx = context
        self._groups = groups
        self._fetcher = fetcher
        self._other_members = other_members
        """The live members a group has under another protocol (the Kafka gateway's,
        ADR 0016 §5): a new member may not join beside them."""

    @property
    def store(self) -> GroupStore:
        """The group store the coordinator writes to."""
        return self._groups

    # Join, heartbeat and leave --------------------------------------------------------
    def join(
        self,
        group: str,
        topics: Sequence[str],
        member_id: str | None = None,
        session_timeout_ms: int | None = None,
    ) -> Membership:
        """Join ``group`` (or heartbeat in it) subscribed to ``topics``; ADR 0009 steps 1-7.

        Without ``member_id`` the member gets a fresh id; an id the group does not know is
        accepted as a rejoin under that id. Raises `TopicNotFoundError` for an unknown
        topic and `InvalidRequestError` for bad input, before anything is written, and
        `GroupNotEmptyError` for a new member of a group whose Kafka consumers are live. A
        heartbeat (``member_id`` given) leaves out topics deleted since, as Kafka keeps
        consuming the others; it raises only when none of its topics is left.
        """
        group = validate_group_id(group)
        subscription = _subscription(topics)
        heartbeat = member_id is not None
        member_id = uuid.uuid4().hex if member_id is None else validate_member_id(member_id)
        timeout = _session_timeout(session_timeout_ms)
        cached = self._existing_topics(subscription, drop_missing=heartbeat)
        subscription = tuple(cached)
        if not heartbeat and self._other_members is not None:
            others = tuple(self._other_members(group))
            if others:
                raise GroupNotEmptyError(group, others)
        now = self._ctx.clock_ms()
        self._groups.put_member(
            group, MemberRecord(member_id, subscription, timeout, now + timeout)
        )
        state = self._groups.read_group(group)
        view = GroupView.of(state, now)
        current = self._confirmed(cached, view, drop_missing=heartbeat)
        stray = [
            lease
            for lease in state.leases
            if lease.owner == member_id
            and (lease.topic not in current or lease.partition >= current[lease.topic].partitions)
        ]
        for lease in stray:
            self._groups.give_up_lease(group, lease)
        held: list[LeaseRecord] = []
        for topic in current.values():
            held.extend(self._balance(group, member_id, topic, view))
        return Membership(
            member_id=member_id,
            session_timeout_ms=timeout,
            heartbeat_interval_ms=timeout // 3,
            assignments=tuple(_assignment(lease) for lease in held),
        )

    def _balance(
        self, group: str, member_id: str, topic: TopicRecord, view: GroupView
    ) -> list[LeaseRecord]:
        """Give up leases beyond the target or take free ones up to it; the leases held."""
        leases = [view.lease(topic.name, p) for p in range(topic.partitions)]
        owners = [view.owner(lease, topic) for lease in leases]
        held = dict.fromkeys(view.subscribers(topic.name), 0)
        for owner in owners:
            if owner in held:
                held[owner] += 1
        target = balanced_target(member_id, topic.partitions, held)
        mine = [lease for lease, owner in zip(leases, owners, strict=True) if owner == member_id]
        for lease in reversed(mine[target:]):  # highest partition first
            self._groups.give_up_lease(group, lease)
        mine = mine[:target]
        free = (lease for lease, owner in zip(leases, owners, strict=True) if owner is None)
        for lease in free:
            if len(mine) >= target:
                break
            taken = self._groups.take_lease(group, lease, member_id, topic.topic_id)
            if taken is not None:  # None: another member moved first; skip it this round
                mine.append(taken)
        return sorted(mine, key=lambda lease: lease.partition)

    def _existing_topics(
        self, names: Sequence[str], *, drop_missing: bool
    ) -> dict[str, TopicRecord]:
        """The topics named (cached); missing ones raise, or are left out if
        ``drop_missing`` and at least one exists."""
        found: dict[str, TopicRecord] = {}
        missing: TopicNotFoundError | None = None
        for name in names:
            try:
                found[name] = self._ctx.caches.topics.get(name)
            except TopicNotFoundError as error:
                if not drop_missing:
                    raise
                missing = missing or error
        if missing is not None and not found:
            raise missing
        return found

    def _confirmed(
        self, cached: Mapping[str, TopicRecord], view: GroupView, *, drop_missing: bool = False
    ) -> dict[str, TopicRecord]:
        """The ``cached`` topics, re-read from the catalog where a lease names another id.

        Either the lease belongs to a deleted topic of that name (the catalog confirms the
        cached id) or this process cached a topic since deleted and re-created (the
        catalog corrects it); treating a current lease as stale would drop its offset.
        Raises `StaleTopicError` for a topic deleted meanwhile.
        """
        topics = dict(cached)
        for name, cached_topic in cached.items():
            topic = cached_topic
            leased = [
                lease.partition
                for (lease_topic, _), lease in view.leases.items()
                if lease_topic == name and lease.topic_id == topic.topic_id
            ]
            if leased and max(leased) >= topic.partitions:
                # Partitions were added since this process cached the topic: never give
                # up their leases for a stale count.
                topics[name] = topic = self._ctx.caches.topics.get(name, max(leased) + 1)
            if any(
                view.lease(name, p).topic_id not in ("", topic.topic_id)
                for p in range(topic.partitions)
            ):
                try:
                    topics[name] = self._ctx.current_topic(name)
                except TopicNotFoundError:
                    if not drop_missing:
                        raise self._ctx.stale(topic) from None
                    del topics[name]
        return topics

    def leave(self, group: str, member_id: str) -> None:
        """Give up every lease of ``member_id`` and remove it; the others take over at
        their next heartbeat. Leaving twice, or as an unknown member, changes nothing."""
        group = validate_group_id(group)
        member_id = validate_member_id(member_id)
        for lease in self._groups.read_group(group).leases:
            if lease.owner == member_id:
                self._groups.give_up_lease(group, lease)
        self._groups.delete_member(group, member_id)

    def member_topics(self, group: str, member_id: str) -> tuple[str, ...]:
        """Topics ``member_id`` subscribes to or holds leases on (what leaving touches)."""
        group = validate_group_id(group)
        member_id = validate_member_id(member_id)
        state = self._groups.read_group(group)
        topics = {lease.topic for lease in state.leases if lease.owner == member_id}
        for member in state.members:
            if member.member_id == member_id:
                topics.update(member.topics)
        return tuple(sorted(topics))

    # Commit -----------------------------------------------------------------------------
    def commit(self, group: str, member_id: str, offsets: Sequence[OffsetCommit]) -> None:
        """Commit ``offsets`` (next offsets to read), all or none.

        Raises
        ------
        LeaseFencedError
            A lease is no longer ``member_id``'s at the given epoch; nothing changed.
        """
        group = validate_group_id(group)
        member_id = validate_member_id(member_id)
        if isinstance(offsets, str | bytes) or not isinstance(offsets, Sequence):
            raise InvalidRequestError("offsets must be a list of offset commits")
        if len(offsets) > MAX_OFFSETS_PER_COMMIT:
            raise InvalidRequestError(
                f"a commit carries at most {MAX_OFFSETS_PER_COMMIT} offsets, not {len(offsets)}"
            )
        seen: set[tuple[str, int]] = set()
        for commit in offsets:
            if not isinstance(commit, OffsetCommit):
                raise InvalidRequestError(f"not an offset commit: {commit!r}")
            partition = _non_negative_int("partition", commit.partition)
            _non_negative_int("offset", commit.offset)
            _non_negative_int("lease_epoch", commit.lease_epoch)
            topic = self._ctx.caches.topics.get(commit.topic, partition + 1)
            self._ctx.check_partition(topic, partition)
            if (commit.topic, partition) in seen:
                raise InvalidRequestError(f"{commit.topic}-{partition} is committed twice")
            seen.add((commit.topic, partition))
        self._groups.commit(group, member_id, offsets, self._ctx.clock_ms())

    # Commits and offsets of members that hold no lease (the Kafka gateway) -------------
    def live_members(self, group: str) -> tuple[str, ...]:
        """The ids of ``group``'s live members, by id (none for a group never joined)."""
        state = self._groups.read_group(validate_group_id(group))
        return tuple(sorted(GroupView.of(state, self._ctx.clock_ms()).live))

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        """The committed offset of every partition of ``group`` that has one, by (topic,
        partition): of existing topics only, and only offsets committed on the topic's
        current id (one query of the group, the topics from the cache)."""
        state = self._groups.read_group(validate_group_id(group))
        view = GroupView.of(state, self._ctx.clock_ms())
        topics = self._confirmed(
            self._existing(sorted({lease.topic for lease in state.leases})),
            view,
            drop_missing=True,
        )
        found: dict[tuple[str, int], int] = {}
        for lease in state.leases:
            topic = topics.get(lease.topic)
            if topic is None or lease.partition >= topic.partitions:
                continue
            committed = view.committed(lease, topic)
            if committed is not None:
                found[(lease.topic, lease.partition)] = committed
        return found

    def commit_unleased(
        self, group: str, offsets: Mapping[tuple[str, int], int]
    ) -> dict[tuple[str, int], LakelogError]:
        """Set committed offsets of ``group`` without holding their leases: the commits of
        the Kafka gateway's members, whose coordinator checked their generation (ADR 0016
        §5). Returns the partitions refused, each with its error; the others are written.

        Each lease entry is replaced, on the epoch read, by a free one at the next epoch
        holding the offset (`GroupStore.reset_leases`), re-read and written again when
        another write moved it first. Refused: a topic that does not exist
        (`TopicNotFoundError`), a partition it lacks or a negative offset
        (`InvalidRequestError`), and every partition while a member of the lakelog group
        is live (`GroupNotEmptyError`), whose leases this would break.
        """
        group = validate_group_id(group)
        refused: dict[tuple[str, int], LakelogError] = {}
        topics: dict[str, TopicRecord] = {}
        for (name, partition), offset in offsets.items():
            try:
                topic = topics.get(name) or self._ctx.caches.topics.get(name, partition + 1)
                topics[name] = topic
                self._ctx.check_partition(topic, partition)
                _non_negative_int("offset", offset)
            except LakelogError as error:
                refused[(name, partition)] = error
        wanted = {key: offset for key, offset in offsets.items() if key not in refused}
        for _ in range(UNLEASED_COMMIT_ATTEMPTS):
            if not wanted:
                return refused
            now = self._ctx.clock_ms()
            view = GroupView.of(self._groups.read_group(group), now)
            if view.live:
                busy = GroupNotEmptyError(group, tuple(sorted(view.live)))
                return {**refused, **dict.fromkeys(wanted, busy)}
            resets = []
            for (name, partition), offset in sorted(wanted.items()):
                seen = view.lease(name, partition)
                new = LeaseRecord(
                    topic=name,
                    partition=partition,
                    topic_id=topics[name].topic_id,
                    lease_epoch=seen.lease_epoch + 1,
                    committed_offset=offset,
                    committed_ms=now,
                )
                resets.append((seen, new))
            if self._groups.reset_leases(group, resets):
                return refused
        raise UnavailableError(f"the commit of group {group!r} kept racing other writes; retry")

    # Describe and reset -----------------------------------------------------------------
    @retry_if_stale
    def describe(self, group: str) -> GroupDescription:
        """Live members and, for every topic with a lease or a live subscriber, each
        partition's owner, epoch, committed offset, high watermark and lag.

        Leases of topics that no longer exist are left out. Raises `GroupNotFoundError`
        for a group with no item at all.
        """
        group = validate_group_id(group)
        state = self._groups.read_group(group)
        if not state.members and not state.leases:
            raise GroupNotFoundError(group)
        view = GroupView.of(state, self._ctx.clock_ms())
        names = {lease.topic for lease in state.leases}
        for member in view.live.values():
            names.update(member.topics)
        topics = self._confirmed(self._existing(sorted(names)), view)
        states = {name: self._ctx.topic_state(topic) for name, topic in topics.items()}
        partitions: list[PartitionLag] = []
        owned: dict[str, list[TopicPartition]] = {member: [] for member in view.live}
        for topic in topics.values():
            for partition in range(topic.partitions):
                lease = view.lease(topic.name, partition)
                owner = view.owner(lease, topic)
                committed = view.committed(lease, topic)
                high_watermark = states[topic.name].high_watermark(partition)
                if owner is not None:
                    owned[owner].append(TopicPartition(topic.name, partition))
                partitions.append(
                    PartitionLag(
                        topic=topic.name,
                        partition=partition,
                        owner=owner,
                        lease_epoch=lease.lease_epoch,
                        committed_offset=committed,
                        high_watermark=high_watermark,
                        lag=None if committed is None else high_watermark - committed,
                    )
                )
        members = tuple(
            MemberInfo(m.member_id, m.topics, m.expires_ms, tuple(owned[m.member_id]))
            for m in sorted(view.live.values(), key=lambda m: m.member_id)
        )
        return GroupDescription(group=group, members=members, partitions=tuple(partitions))

    def _existing(self, names: Sequence[str]) -> dict[str, TopicRecord]:
        """The topics of ``names`` that exist, by name."""
        found: dict[str, TopicRecord] = {}
        for name in names:
            try:
                found[name] = self._ctx.caches.topics.get(name)
            except TopicNotFoundError:
                continue
        return found

    @retry_if_stale
    def reset(self, group: str, topic_name: str, to: ResetTarget) -> dict[int, int]:
        """Set the group's committed offset of every partition of a topic to ``to``: the
        log start (``"earliest"``), the high watermark (``"latest"``), a `ToOffset`
        (clamped to each partition's ``[log_start_offset, high_watermark]``) or a
        `ToTimestamp` (the first offset at or after it, the high watermark when none is).

        Each lease is written free at its next epoch. Returns partition -> new committed
        offset. A group that does not exist yet is created with these offsets.

        Raises
        ------
        GroupNotEmptyError
            A member of the group is live (a Kafka consumer of the gateway too), or one
            joined during the reset.
        """
        group = validate_group_id(group)
        _check_target(to)
        topic = self._ctx.current_topic(topic_name)
        state = self._groups.read_group(group)
        view = GroupView.of(state, self._ctx.clock_ms())
        if view.live:
            raise GroupNotEmptyError(group, tuple(sorted(view.live)))
        others = tuple(self._other_members(group)) if self._other_members else ()
        if others:  # Kafka consumers would commit over the reset
            raise GroupNotEmptyError(group, others)
        targets = self._targets(topic, to)
        if not self._groups.reset_leases(group, self._resets(view, topic, targets)):
            raise GroupNotEmptyError(group)
        return targets

    @retry_if_stale
    def offsets_at(self, topic_name: str, to: ResetTarget) -> tuple[TopicRecord, dict[int, int]]:
        """The current topic ``topic_name`` and, per partition, the offset `reset` would
        set for ``to``; reads only."""
        _check_target(to)
        topic = self._ctx.current_topic(topic_name)
        return topic, self._targets(topic, to)

    def _targets(self, topic: TopicRecord, to: ResetTarget) -> dict[int, int]:
        """Partition -> the offset ``to`` names in it now."""
        bounds = self._ctx.topic_state(topic)
        targets: dict[int, int] = {}
        for partition in range(topic.partitions):
            start = bounds.log_start_offset(partition)
            end = bounds.high_watermark(partition)
            if isinstance(to, ToOffset):
                target = max(start, min(to.offset, end))
            elif isinstance(to, ToTimestamp):
                found = self._fetcher.offset_for_time(topic.name, partition, to.timestamp_ms)
                target = end if found is None else found
            else:
                target = start if to == "earliest" else end
            targets[partition] = target
        return targets

    def _resets(
        self, view: GroupView, topic: TopicRecord, targets: Mapping[int, int]
    ) -> list[tuple[LeaseRecord, LeaseRecord]]:
        """Each seen lease of ``targets``' partitions and its replacement: free, at the
        next epoch, committed at the target."""
        now = self._ctx.clock_ms()
        resets = []
        for partition, target in targets.items():
            seen = view.lease(topic.name, partition)
            new = LeaseRecord(
                topic=topic.name,
                partition=partition,
                topic_id=topic.topic_id,
                lease_epoch=seen.lease_epoch + 1,
                committed_offset=target,
                committed_ms=now,
            )
            resets.append((seen, new))
        return resets

    def start(
        self, group: str, topic: TopicRecord, offsets: Mapping[int, int], before: GroupState
    ) -> None:
        """Set the committed offsets of a group that starts now (a subscription's, just
        created) to ``offsets``, except in partitions whose lease moved since ``before``.

        ``before`` is the group as read before whatever lets its deliveries start: a lease
        whose epoch moved since was taken by such a delivery, which started from the same
        offsets, and keeps its progress. Every other lease, a stale one included, is
        written free at its next epoch. No member check: a member of an earlier use of the
        group is fenced by the epochs.
        """
        seen = view = GroupView.of(before, 0)
        pending = dict(offsets)
        for _ in range(len(offsets) + 1):  # each failed write finds at least one lease moved
            if self._groups.reset_leases(group, self._resets(view, topic, pending)):
                return
            view = GroupView.of(self._groups.read_group(group), 0)
            pending = {
                p: offset
                for p, offset in pending.items()
                if view.lease(topic.name, p).lease_epoch == seen.lease(topic.name, p).lease_epoch
            }
