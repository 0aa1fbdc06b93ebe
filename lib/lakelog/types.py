"""Value types shared by every layer: topic partitions, records, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple, TypeAlias

if TYPE_CHECKING:
    from lakelog.errors import LakelogError

__all__ = [
    "Assignment",
    "FetchManyResult",
    "FetchPosition",
    "FetchResult",
    "GroupDescription",
    "Header",
    "LevelUsage",
    "MemberInfo",
    "Membership",
    "OffsetAndTimestamp",
    "OffsetCommit",
    "OnFailure",
    "PartitionInfo",
    "PartitionLag",
    "PartitionLevels",
    "ProducerBatch",
    "Record",
    "RecordMetadata",
    "ResetTarget",
    "StartingPosition",
    "StorageLevels",
    "StoredRecord",
    "Subscription",
    "SubscriptionStatus",
    "ToOffset",
    "ToTimestamp",
    "TopicDescription",
    "TopicPartition",
]

Header = tuple[str, bytes | None]


class TopicPartition(NamedTuple):
    """One partition of one topic."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    """A record to append. ``value=None`` is a tombstone; ``timestamp_ms=None`` means now."""

    value: bytes | None = None
    key: bytes | None = None
    headers: tuple[Header, ...] = ()
    partition: int | None = None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record read back from the log, at its absolute offset."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


class OffsetAndTimestamp(NamedTuple):
    """The first offset at or after a time, and that record's timestamp."""

    offset: int
    timestamp: int


class RecordMetadata(NamedTuple):
    """Where an appended record landed."""

    topic: str
    partition: int
    offset: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class ProducerBatch:
    """Identity of an idempotent producer's request.

    ``sequence`` numbers the request's first record in the topic (ADR 0012, 2.2);
    ``sequences``, ledger v1's per-partition map, is accepted with one entry, taken as
    ``sequence``.

    ``partition`` is for Kafka's clients, which number each partition's records apart: with
    it set, every record of the request goes to that partition, ``sequence`` numbers them in
    it, and the producer's state is kept per (producer, topic, partition) under the
    partition's lane id (`lakelog.service.producers.partition_lane`; ADR 0016, 3).
    """

    producer_id: int
    epoch: int
    sequences: dict[int, int] = field(default_factory=dict)
    sequence: int | None = None
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Records of one partition from ``offset``; ``next_offset`` is where to read next."""

    topic: str
    partition: int
    records: list[StoredRecord]
    next_offset: int
    high_watermark: int
    log_start_offset: int
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class FetchPosition:
    """Where one partition of a multi-partition fetch starts: an offset, and the cursor
    the previous fetch returned for it (a hint the service validates; ADR 0012).

    ``max_bytes`` bounds this partition's records within the fetch's budget (Kafka's
    ``partition_max_bytes``); the fetch's first record is returned however large.
    """

    topic: str
    partition: int
    offset: int
    cursor: str | None = None
    max_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class FetchManyResult:
    """The reply to a multi-partition fetch (ADR 0012 §3).

    ``partitions`` has one entry per position asked for, in request order: its records, or
    the error of that partition alone (`OffsetOutOfRangeError`, `TopicNotFoundError`).
    ``member`` is the heartbeat the fetch carried: the member's leases, or the heartbeat's
    own error; None when the fetch carried none.
    """

    partitions: list[FetchResult | LakelogError]
    member: Membership | LakelogError | None = None


@dataclass(frozen=True, slots=True)
class LevelUsage:
    """Segments and bytes of one storage level: L0 (flush segments, one per append) or L1
    (per-partition segments the compactor's merge writes)."""

    segments: int
    bytes: int


@dataclass(frozen=True, slots=True)
class PartitionLevels:
    """One partition's share of the storage levels.

    ``l0_bytes`` counts the partition's batches in the chain items from the chain start to
    the tail (an L0 segment holds batches of several partitions, so segments are counted
    per topic only, in `StorageLevels`); ``l1`` the distinct L1 segments its entries name.
    """

    l0_bytes: int
    l1: LevelUsage


@dataclass(frozen=True, slots=True)
class StorageLevels:
    """A topic's segments and bytes per storage level (what the compactor has yet to merge,
    and what it merged)."""

    l0: LevelUsage
    l1: LevelUsage


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """The visible state of one partition; ``levels`` only when asked for (it costs reads)."""

    partition: int
    log_start_offset: int
    high_watermark: int
    bytes: int
    levels: PartitionLevels | None = None


@dataclass(frozen=True, slots=True)
class TopicDescription:
    """A topic, its configuration and the state of each partition; ``levels`` only when
    asked for."""

    name: str
    topic_id: str
    config: dict[str, object]
    partitions: list[PartitionInfo]
    levels: StorageLevels | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    """A lease a group member holds: where to read from and the epoch to commit with.

    ``committed_offset`` is the next offset to read (Kafka's convention), None when the
    group has committed nothing for this partition.
    """

    topic: str
    partition: int
    lease_epoch: int
    committed_offset: int | None


@dataclass(frozen=True, slots=True)
class Membership:
    """The reply to a join or heartbeat: the member's id, session and leases.

    Heartbeat again within ``heartbeat_interval_ms``; leases lapse with the session after
    ``session_timeout_ms`` without a heartbeat.
    """

    member_id: str
    session_timeout_ms: int
    heartbeat_interval_ms: int
    assignments: tuple[Assignment, ...]


@dataclass(frozen=True, slots=True)
class OffsetCommit:
    """One offset to commit: the next offset to read, fenced by the lease's epoch."""

    topic: str
    partition: int
    offset: int
    lease_epoch: int


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A live member of a group: its subscription, session end and leases."""

    member_id: str
    topics: tuple[str, ...]
    expires_ms: int
    assignments: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition as a group sees it.

    ``owner`` is None when the lease is free or its owner is not live; ``lag`` is
    ``high_watermark - committed_offset``, None when nothing is committed.
    """

    topic: str
    partition: int
    owner: str | None
    lease_epoch: int
    committed_offset: int | None
    high_watermark: int
    lag: int | None


@dataclass(frozen=True, slots=True)
class GroupDescription:
    """A consumer group: its live members and every partition it has a lease on."""

    group: str
    members: tuple[MemberInfo, ...]
    partitions: tuple[PartitionLag, ...]


@dataclass(frozen=True, slots=True)
class ToOffset:
    """Reset a group to ``offset``, clamped to each partition's log start and high watermark."""

    offset: int


@dataclass(frozen=True, slots=True)
class ToTimestamp:
    """Reset a group to the first record at or after ``timestamp_ms`` (the high watermark
    of a partition with none)."""

    timestamp_ms: int


ResetTarget: TypeAlias = Literal["earliest", "latest"] | ToOffset | ToTimestamp
"""Where a group's committed offsets move: each partition's log start (``"earliest"``), its
high watermark (``"latest"``), an offset, or a time."""


StartingPosition: TypeAlias = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]
"""Where a new subscription starts: each partition's log start, its high watermark when
the subscription is created, or the first record at or after ``starting_position_timestamp_ms``."""


@dataclass(frozen=True, slots=True)
class OnFailure:
    """Where a batch goes once its retries are spent: a lakelog topic or an SQS queue
    (exactly one of the two)."""

    topic: str | None = None
    sqs_arn: str | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    """An event-source trigger: records of ``topic`` delivered to ``function_arn`` with the
    event shape of Lambda's self-managed Kafka event source (ADR 0015).

    The options and their ranges are those of a Lambda event source mapping; delivery
    progress is the consumer group `Subscription.group`.
    """

    name: str
    topic: str
    function_arn: str
    batch_size: int = 100
    max_batching_window_ms: int = 500
    starting_position: StartingPosition = "LATEST"
    starting_position_timestamp_ms: int | None = None
    maximum_retry_attempts: int = -1
    maximum_record_age_ms: int = -1
    bisect_batch_on_function_error: bool = False
    report_batch_item_failures: bool = False
    on_failure: OnFailure | None = None
    topic_id: str = ""
    """The id of the topic the subscription was created on (a re-created topic of the same
    name has none)."""
    created_ms: int = 0
    start_offsets: tuple[int, ...] = ()
    """Where delivery of each partition the topic had at creation starts (by partition),
    read from the starting position when the subscription was created; set by the engine
    (ADR 0015 §1)."""

    @property
    def group(self) -> str:
        """The consumer group holding the subscription's progress (committed offsets)."""
        return f"subscription.{self.topic}.{self.name}"

    def start_offset(self, partition: int, committed: int | None = None) -> int:
        """Where delivery of ``partition`` goes on: its ``committed`` offset when it has
        one, else its offset in `start_offsets` (0 for a partition added to the topic
        after the subscription was created)."""
        if committed is not None:
            return committed
        if 0 <= partition < len(self.start_offsets):
            return self.start_offsets[partition]
        return 0


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    """A subscription with its progress: per partition the committed offset, the high
    watermark and the lag, and the delivery state (idle, delivering, retrying)."""

    subscription: Subscription
    partitions: tuple[PartitionLag, ...]
    state: dict[int, str] = field(default_factory=dict)
    """Per partition with a delivery under way or waiting: ``delivering`` or
    ``retrying (attempt N, next at T)``."""
