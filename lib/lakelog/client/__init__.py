"""The lakelog SDK: `Client`, `Producer` and `Consumer`, over HTTPS or in-process."""

from __future__ import annotations

from lakelog.client.client import Client
from lakelog.client.consumer import (
    CommitFailedError,
    Consumer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    OffsetAndMetadata,
    OffsetAndTimestamp,
)
from lakelog.client.http import HttpTransport
from lakelog.client.producer import FutureRecordMetadata, Producer, ProducerMetrics
from lakelog.client.transport import Transport

__all__ = [
    "Client",
    "CommitFailedError",
    "Consumer",
    "ConsumerRebalanceListener",
    "ConsumerRecord",
    "FutureRecordMetadata",
    "HttpTransport",
    "OffsetAndMetadata",
    "OffsetAndTimestamp",
    "Producer",
    "ProducerMetrics",
    "Transport",
]
