"""Every API the gateway serves, by key (ApiVersions lists exactly these)."""

from __future__ import annotations

from collections.abc import Mapping

from lakelog.kafka import metadata, produce, producer_ids, versions
from lakelog.kafka.apis import Api, registry

__all__ = ["SERVED"]

SERVED: Mapping[int, Api] = registry(
    versions.API,
    metadata.API,
    produce.API,
    producer_ids.API,
)
