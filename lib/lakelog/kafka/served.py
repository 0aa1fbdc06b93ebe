"""Every API the gateway serves, by key (ApiVersions lists exactly these)."""

from __future__ import annotations

from collections.abc import Mapping

from lakelog.kafka import admin, metadata, sasl, versions
from lakelog.kafka.apis import Api, registry

__all__ = ["SERVED"]

SERVED: Mapping[int, Api] = registry(
    versions.API,
    metadata.API,
    admin.CREATE_TOPICS,
    admin.DELETE_TOPICS,
    admin.DESCRIBE_CONFIGS,
    admin.CREATE_PARTITIONS,
    sasl.HANDSHAKE,
    sasl.AUTHENTICATE,
)
