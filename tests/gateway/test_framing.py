"""Malformed and unusual frames on raw sockets: each closes only its own connection, or is
answered as ADR 0016 §1 documents, while clients on other connections (librdkafka, and a raw
connection opened before) carry on; pipelined requests are answered in order."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka.admin import AdminClient
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.describe_configs.v4.request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from kio.schema.describe_log_dirs.v1.request import DescribeLogDirsRequest
from kio.schema.errors import ErrorCode
from kio.schema.request_header.v2.header import RequestHeader
from kio.schema.sasl_handshake.v0.request import SaslHandshakeRequest
from kio.serial import entity_writer

from lakelog.kafka.server import RunningGateway
from lakelog.service.engine import Engine
from tests.gateway.conftest import StartGateway
from tests.gateway.wire import METADATA, Wire, request_frame

TIMEOUT = 10.0
LIMIT = 64 * 1024


@dataclass
class Bystanders:
    """Clients on other connections, connected before the malformed frame is sent."""

    admin: AdminClient
    wire: Wire

    def carry_on(self) -> None:
        assert set(self.admin.list_topics(timeout=TIMEOUT).topics) == {"orders"}
        assert [t.name for t in self.wire.call(METADATA, correlation_id=7).topics] == ["orders"]


@pytest.fixture
def gateway(engine: Engine, start_gateway: StartGateway) -> RunningGateway:
    engine.create_topic("orders", 1)
    return start_gateway(max_frame_bytes=LIMIT)


@pytest.fixture
def bystanders(gateway: RunningGateway) -> Iterator[Bystanders]:
    admin = AdminClient({"bootstrap.servers": gateway.bootstrap})
    others = Bystanders(admin, Wire(gateway.bootstrap))
    others.carry_on()
    yield others
    others.wire.close()


@pytest.fixture
def wire(gateway: RunningGateway) -> Iterator[Wire]:
    connection = Wire(gateway.bootstrap)
    yield connection
    connection.close()


def _size(size: int) -> bytes:
    return struct.pack(">i", size)


def _header(api_key: int, version: int, correlation_id: int = 1) -> bytes:
    buffer = io.BytesIO()
    buffer.write(struct.pack(">hhi", api_key, version, correlation_id))
    buffer.write(struct.pack(">h", 4) + b"wire")  # client id (header v1)
    return buffer.getvalue()


CLOSING = {
    "a-frame-cut-short": _size(100) + b"\0" * 10,
    "a-size-prefix-cut-short": b"\0\0",
    "a-size-over-the-limit": _size(LIMIT + 1) + b"\0" * 64,
    "a-negative-size": _size(-1) + b"\0" * 64,
    "an-empty-frame": _size(0),
    "a-frame-shorter-than-a-header": _size(3) + b"\0\0\0",
    "an-unknown-api-key": _size(len(_header(9999, 0))) + _header(9999, 0),
    "a-version-kafka-does-not-define": _size(len(_header(3, 99))) + _header(3, 99),
    "a-client-id-longer-than-the-frame": _size(10) + struct.pack(">hhih", 3, 4, 1, 1000),
}


@pytest.mark.parametrize("data", CLOSING.values(), ids=CLOSING.keys())
def test_a_malformed_frame_closes_only_its_connection(
    bystanders: Bystanders, wire: Wire, data: bytes
) -> None:
    wire.send(data)
    wire.socket.shutdown(1)  # the gateway reads the end of a cut frame, not a hang
    assert wire.closed()
    bystanders.carry_on()


def test_garbage_in_a_body_closes_only_its_connection(bystanders: Bystanders, wire: Wire) -> None:
    header = io.BytesIO()
    entity_writer(RequestHeader)(
        header,
        RequestHeader(request_api_key=19, request_api_version=7, correlation_id=1, client_id="w"),
    )
    # The topics array claims 200 entries (compact length 201), then garbage.
    body = header.getvalue() + bytes([201]) + b"\xff" * 40
    wire.send(_size(len(body)) + body)
    assert wire.closed()
    bystanders.carry_on()


def test_an_api_the_gateway_does_not_serve_is_answered_unsupported_version(
    bystanders: Bystanders, wire: Wire
) -> None:
    answer = wire.call(DescribeLogDirsRequest(topics=None))
    assert answer.results == ()
    # The connection stays usable.
    assert wire.call(METADATA, correlation_id=2).topics[0].name == "orders"
    bystanders.carry_on()


def test_a_version_the_gateway_does_not_serve_is_answered_in_that_version(
    bystanders: Bystanders, wire: Wire
) -> None:
    answer = wire.call(SaslHandshakeRequest(mechanism="PLAIN"))
    assert answer.error_code == ErrorCode.unsupported_version
    assert wire.call(METADATA, correlation_id=2).topics[0].name == "orders"
    bystanders.carry_on()


def test_api_versions_of_an_unknown_version_is_answered_in_version_0_with_the_list(
    bystanders: Bystanders, wire: Wire
) -> None:
    frame = _header(18, 99, correlation_id=42)
    wire.send(_size(len(frame)) + frame)
    correlation_id, answer = wire.receive(18, 0)
    assert correlation_id == 42
    assert answer.error_code == ErrorCode.unsupported_version
    assert {key.api_key for key in answer.api_keys} >= {3, 18, 19, 20, 32, 37}
    bystanders.carry_on()


def test_pipelined_requests_are_answered_in_order(wire: Wire) -> None:
    versions = ApiVersionsRequest(client_software_name="wire", client_software_version="1")
    describe = DescribeConfigsRequest(
        resources=(
            DescribeConfigsResource(
                resource_type=2, resource_name="orders", configuration_keys=None
            ),
        )
    )
    wire.send(
        request_frame(versions, 1)
        + request_frame(METADATA, 2)
        + request_frame(describe, 3)
        + request_frame(METADATA, 4)
    )
    answers = [
        wire.receive(18, 3),
        wire.receive(3, 12),
        wire.receive(32, 4),
        wire.receive(3, 12),
    ]
    assert [correlation_id for correlation_id, _ in answers] == [1, 2, 3, 4]
    assert answers[2][1].results[0].resource_name == "orders"


@pytest.mark.parametrize(
    "data", [b"", _size(100) + b"\0" * 10], ids=["idle", "stalled-inside-a-frame"]
)
def test_a_connection_silent_past_the_idle_timeout_is_closed(
    engine: Engine, start_gateway: StartGateway, data: bytes
) -> None:
    engine.create_topic("orders", 1)
    gateway = start_gateway(idle_seconds=0.2)
    silent = Wire(gateway.bootstrap)
    try:
        silent.send(data)
        assert silent.closed()  # within the Wire's 10 s timeout
    finally:
        silent.close()
    admin = AdminClient({"bootstrap.servers": gateway.bootstrap})
    assert set(admin.list_topics(timeout=TIMEOUT).topics) == {"orders"}
