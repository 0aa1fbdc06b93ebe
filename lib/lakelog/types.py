"""Value types shared by every layer: topic partitions, records, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "FetchResult",
    "Header",
    "PartitionInfo",
    "ProducerBatch",
    "Record",
    "RecordMetadata",
    "StoredRecord",
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


class RecordMetadata(NamedTuple):
    """Where an appended record landed."""

    topic: str
    partition: int
    offset: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class ProducerBatch:
    """Identity of an idempotent producer's request.

    ``sequences`` maps each partition the request touches to the sequence number of the
    first record it sends there (Kafka's per-partition base sequence). ``sequence`` may be
    given instead when every record of the request goes to one partition.
    """

    producer_id: int
    epoch: int
    sequences: dict[int, int] = field(default_factory=dict)
    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Records of one partition from ``offset``; ``next_offset`` is where to read next."""

    topic: str
    partition: int
    records: list[StoredRecord]
    next_offset: int
    high_watermark: int
    log_start_offset: int


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """The visible state of one partition."""

    partition: int
    log_start_offset: int
    high_watermark: int
    bytes: int


@dataclass(frozen=True, slots=True)
class TopicDescription:
    """A topic, its configuration and the state of each partition."""

    name: str
    topic_id: str
    config: dict[str, object]
    partitions: list[PartitionInfo]
