"""Every served API answers, at every version ApiVersions lists, a minimal request of that
version with a well-formed response of the same version: no version is listed that a
handler cannot decode or encode."""

from __future__ import annotations

from typing import Any

import pytest
from kio.index import load_request_schema

from lakelog.kafka.protocol import build
from lakelog.kafka.served import SERVED
from lakelog.kafka.server import RunningGateway
from lakelog.service.engine import Engine
from tests.gateway.wire import Wire

CASES = [
    (api.key, version)
    for api in sorted(SERVED.values(), key=lambda api: api.key)
    for version in range(api.min_version, api.max_version + 1)
]
PRODUCE, SASL_AUTHENTICATE = 0, 36


def minimal(key: int, version: int) -> Any:
    """The request with every field neutral (empty lists, zeros, nulls), except acks=1 for
    Produce (acks=0 is answered with nothing)."""
    schema: Any = load_request_schema(key, version)
    fields: dict[str, Any] = {"acks": 1} if key == PRODUCE else {}
    return build(schema, **fields)


@pytest.mark.parametrize(("key", "version"), CASES, ids=[f"{k}v{v}" for k, v in CASES])
def test_a_minimal_request_is_answered_in_its_own_version(
    engine: Engine, gateway: RunningGateway, key: int, version: int
) -> None:
    engine.create_topic("orders", 1)
    wire = Wire(gateway.bootstrap)
    try:
        request = minimal(key, version)
        wire.request(request, correlation_id=41)
        correlation_id, answer = wire.receive(key, version)
    finally:
        wire.close()
    assert correlation_id == 41
    assert answer.__version__ == version
    if key == SASL_AUTHENTICATE:  # no handshake before it: refused, then closed
        assert answer.error_code != 0
