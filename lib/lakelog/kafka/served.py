"""Every API the gateway serves, by key (ApiVersions lists exactly these)."""

from __future__ import annotations

from collections.abc import Mapping

from lakelog.kafka import (
    admin,
    fetch,
    metadata,
    offsets,
    produce,
    producer_ids,
    sasl,
    topic_configs,
    versions,
)
from lakelog.kafka.apis import Api, registry

__all__ = ["SERVED"]

SERVED: Mapping[int, Api] = registry(
    versions.API,
    metadata.API,
    produce.API,
    producer_ids.API,
    fetch.API,
    offsets.API,
    admin.CREATE_TOPICS,
    admin.DELETE_TOPICS,
    topic_configs.DESCRIBE_CONFIGS,
    topic_configs.ALTER_CONFIGS,
    topic_configs.INCREMENTAL_ALTER_CONFIGS,
    admin.CREATE_PARTITIONS,
    sasl.HANDSHAKE,
    sasl.AUTHENTICATE,
)
