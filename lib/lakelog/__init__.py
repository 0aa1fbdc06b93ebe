"""lakelog: Kafka-style topics on S3 and DynamoDB."""

from __future__ import annotations

from lakelog.config import TopicConfig
from lakelog.errors import (
    CorruptSegmentError,
    InvalidRequestError,
    LakelogError,
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
    FetchResult,
    PartitionInfo,
    ProducerBatch,
    Record,
    RecordMetadata,
    StoredRecord,
    TopicDescription,
    TopicPartition,
)

__all__ = [
    "CorruptSegmentError",
    "Engine",
    "FetchResult",
    "InvalidRequestError",
    "LakelogError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "PartitionInfo",
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
