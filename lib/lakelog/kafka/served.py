"""Every API the gateway serves, by key (ApiVersions lists exactly these)."""

from __future__ import annotations

from collections.abc import Mapping

from lakelog.kafka import fetch, groups, metadata, offsets, versions
from lakelog.kafka.apis import Api, registry

__all__ = ["SERVED"]

SERVED: Mapping[int, Api] = registry(
    versions.API,
    metadata.API,
    fetch.API,
    offsets.API,
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
