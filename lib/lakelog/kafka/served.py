"""Every API the gateway serves, by key (ApiVersions lists exactly these)."""

from __future__ import annotations

from collections.abc import Mapping

from lakelog.kafka import (
    admin,
    fetch,
    groups,
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
    groups.FIND_COORDINATOR,
    groups.JOIN_GROUP,
    groups.SYNC_GROUP,
    groups.HEARTBEAT,
    groups.LEAVE_GROUP,
    groups.OFFSET_COMMIT,
    groups.OFFSET_FETCH,
    groups.LIST_GROUPS,
    groups.DESCRIBE_GROUPS,
)
