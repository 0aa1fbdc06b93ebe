"""lakelog: Kafka-style topics on S3 and DynamoDB.

``import lakelog`` loads the value types and errors only. The SDK (`Client`, `Producer`,
`Consumer`, ...), `Engine` (with pyarrow and boto3), `ResourceNames` and `TopicConfig`
(pydantic) load on first use, so ``lakelog --help`` loads no SDK and a program that talks
to the HTTP API never imports the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    TopicExistsError,
    TopicNotFoundError,
    UnknownProducerError,
)
from lakelog.types import (
    Assignment,
    FetchResult,
    GroupDescription,
    LevelUsage,
    MemberInfo,
    Membership,
    OffsetCommit,
    OnFailure,
    PartitionInfo,
    PartitionLag,
    PartitionLevels,
    ProducerBatch,
    Record,
    RecordMetadata,
    ResetTarget,
    StorageLevels,
    StoredRecord,
    Subscription,
    SubscriptionStatus,
    ToOffset,
    TopicDescription,
    TopicPartition,
    ToTimestamp,
)

if TYPE_CHECKING:
    from lakelog.client import (
        Client,
        CommitFailedError,
        Consumer,
        ConsumerRebalanceListener,
        ConsumerRecord,
        FutureRecordMetadata,
        OffsetAndMetadata,
        OffsetAndTimestamp,
        Producer,
    )
    from lakelog.config import TopicConfig
    from lakelog.service.engine import Engine
    from lakelog.storage.keys import ResourceNames

_LAZY: dict[str, str] = {
    "Client": "lakelog.client",
    "CommitFailedError": "lakelog.client",
    "Consumer": "lakelog.client",
    "ConsumerRebalanceListener": "lakelog.client",
    "ConsumerRecord": "lakelog.client",
    "FutureRecordMetadata": "lakelog.client",
    "OffsetAndMetadata": "lakelog.client",
    "OffsetAndTimestamp": "lakelog.client",
    "Producer": "lakelog.client",
    "Engine": "lakelog.service.engine",
    "ResourceNames": "lakelog.storage.keys",
    "TopicConfig": "lakelog.config",
}
"""Names whose modules load only when the name is first used."""

__all__ = [
    "Assignment",
    "Client",
    "CommitFailedError",
    "Consumer",
    "ConsumerRebalanceListener",
    "ConsumerRecord",
    "CorruptSegmentError",
    "Engine",
    "FetchResult",
    "FutureRecordMetadata",
    "GroupDescription",
    "GroupNotEmptyError",
    "GroupNotFoundError",
    "InvalidRequestError",
    "LakelogError",
    "LeaseFencedError",
    "LevelUsage",
    "MemberInfo",
    "Membership",
    "OffsetAndMetadata",
    "OffsetAndTimestamp",
    "OffsetCommit",
    "OffsetOutOfRangeError",
    "OnFailure",
    "OutOfOrderSequenceError",
    "PartitionInfo",
    "PartitionLag",
    "PartitionLevels",
    "PayloadTooLargeError",
    "Producer",
    "ProducerBatch",
    "ProducerFencedError",
    "Record",
    "RecordMetadata",
    "ResetTarget",
    "ResourceNames",
    "StorageLevels",
    "StoredRecord",
    "Subscription",
    "SubscriptionExistsError",
    "SubscriptionNotFoundError",
    "SubscriptionStatus",
    "ToOffset",
    "ToTimestamp",
    "TopicConfig",
    "TopicDescription",
    "TopicExistsError",
    "TopicNotFoundError",
    "TopicPartition",
    "UnknownProducerError",
]


def __getattr__(name: str) -> Any:
    """Load the SDK, `Engine`, `ResourceNames` and `TopicConfig` on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lakelog' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
