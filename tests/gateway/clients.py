"""What the gateway's client tests share: the APIs that producing tests serve."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kio.schema.errors import ErrorCode
from kio.static.protocol import ResponsePayload

from lakelog.kafka.apis import Api, Session
from lakelog.kafka.protocol import error_response
from lakelog.kafka.served import SERVED

LISTED: Final = {1: (4, 12), 10: (0, 4)}
"""Fetch and FindCoordinator: the versions librdkafka must see listed to use magic 2,
lz4 and zstd."""


async def _unsupported(body: Any, _session: Session) -> ResponsePayload:
    return error_response(body.__api_key__, body.__version__, ErrorCode.unsupported_version)


def producing_apis() -> Mapping[int, Api]:
    """The served APIs, listing Fetch and FindCoordinator even where they are not served.

    librdkafka picks its features from the versions a broker lists (its feature map): it
    writes record batches of magic 2 only where ApiVersions list Produce v3 and Fetch v4
    (to any other broker it sends message sets of magic 0, which Produce v3 and later
    refuse), lz4 only where FindCoordinator is listed, zstd only with Produce v7 and Fetch
    v10. Tests that only produce answer those APIs with UNSUPPORTED_VERSION; where the
    gateway serves them these are exactly the served APIs.
    """
    listed = {
        key: Api(key, low, high, _unsupported)
        for key, (low, high) in LISTED.items()
        if key not in SERVED
    }
    return {**SERVED, **listed}
