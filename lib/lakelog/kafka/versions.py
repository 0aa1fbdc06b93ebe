"""ApiVersions (key 18): the APIs and versions the gateway serves (KIP-511)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kio.index import load_response_schema
from kio.schema.errors import ErrorCode
from kio.static.protocol import ResponsePayload

from lakelog.kafka.apis import Api, Session
from lakelog.kafka.protocol import build, item_type

__all__ = ["API", "api_versions_response"]


def api_versions_response(
    apis: Mapping[int, Api], version: int, code: ErrorCode = ErrorCode.none
) -> ResponsePayload:
    """The ApiVersions response of ``version`` listing ``apis``."""
    schema = load_response_schema(18, version)
    entry = item_type(schema, "api_keys")
    keys = tuple(
        build(entry, api_key=api.key, min_version=api.min_version, max_version=api.max_version)
        for api in sorted(apis.values(), key=lambda api: api.key)
    )
    return build(schema, error_code=code, api_keys=keys)


async def _handle(body: Any, session: Session) -> ResponsePayload:
    return api_versions_response(session.services.apis, body.__version__)


API = Api(18, 0, 4, _handle, before_auth=True)
