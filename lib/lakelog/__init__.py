"""lakelog: Kafka-style topics on S3 and DynamoDB."""

from __future__ import annotations

from lakelog.config import TopicConfig
from lakelog.errors import (
    CorruptSegmentError,
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidRequestError,
    LakelogError,
    LeaseFencedError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    PayloadTooLargeError,
    ProducerFencedError,
    TopicExistsError,
    TopicNotFoundError,
)
from lakelog.service.engine import Engine
from lakelog.storage.keys import ResourceNames
from lakelog.types import (
    Assignment,
    FetchResult,
    GroupDescription,
    MemberInfo,
    Membership,
    OffsetCommit,
    PartitionInfo,
    PartitionLag,
    ProducerBatch,
    Record,
    RecordMetadata,
    StoredRecord,
    TopicDescription,
    TopicPartition,
)

__all__ = [
    "Assignment",
    "CorruptSegmentError",
    "Engine",
    "FetchResult",
    "GroupDescription",
    "GroupNotEmptyError",
    "GroupNotFoundError",
    "InvalidRequestError",
    "LakelogError",
    "LeaseFencedError",
    "MemberInfo",
    "Membership",
    "OffsetCommit",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "PartitionInfo",
    "PartitionLag",
    "PayloadTooLargeError",
    "ProducerBatch",
    "ProducerFencedError",
    "Record",
    "RecordMetadata",
    "ResourceNames",
    "StoredRecord",
    "TopicConfig",
    "TopicDescription",
    "TopicExistsError",
    "TopicNotFoundError",
    "TopicPartition",
]
