"""A connection's requests: pipelined APIs are answered concurrently, their answers leave in
request order, and `Session.in_order` sections run in arrival order (ADR 0016 §1)."""

from __future__ import annotations

import asyncio
import io
import socket
import struct
import threading
from typing import Any

from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.api_versions.v3.response import ApiVersionsResponse
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i16, i32

from lakelog.kafka import GatewayConfig, KafkaGateway
from lakelog.kafka.apis import Api, Session, registry
from lakelog.kafka.protocol import build
from lakelog.kafka.server import RunningGateway
from lakelog.service.engine import Engine


def frame(correlation_id: int, name: str) -> bytes:
    header = ApiVersionsRequest.__header_schema__
    buffer = io.BytesIO()
    entity_writer(header)(
        buffer,
        header(
            request_api_key=i16(18),
            request_api_version=i16(3),
            correlation_id=i32(correlation_id),
            client_id="test",
        ),
    )
    entity_writer(ApiVersionsRequest)(
        buffer, ApiVersionsRequest(client_software_name=name, client_software_version="1")
    )
    body = buffer.getvalue()
    return struct.pack(">i", len(body)) + body


def read_reply(sock: socket.socket) -> tuple[int, Any]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the gateway closed the connection"
            data += chunk
        return data

    (size,) = struct.unpack(">i", exactly(4))
    body = exactly(size)
    (correlation_id,) = struct.unpack(">i", body[:4])
    response, _ = entity_reader(ApiVersionsResponse)(memoryview(body), 4)
    return correlation_id, response


class Scripted:
    """A pipelined API whose answers finish when the test says, recording the order in
    which requests entered their ordered section."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.release: dict[str, asyncio.Event] = {}
        self.entered: list[str] = []
        self.arrived = threading.Semaphore(0)

    async def handle(self, body: Any, session: Session) -> Any:
        name = body.client_software_name
        self.loop = asyncio.get_running_loop()
        event = self.release.setdefault(name, asyncio.Event())
        self.arrived.release()
        if name == "first":  # the first request is slow to reach its ordered section
            await event.wait()
        async with session.in_order():
            self.entered.append(name)
        if name != "first":
            await event.wait()
        return build(ApiVersionsResponse, error_code=ErrorCode.none, api_keys=())

    def finish(self, name: str) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.release.setdefault(name, asyncio.Event()).set)


def test_pipelined_answers_leave_in_request_order_and_ordered_sections_keep_arrival_order(
    engine: Engine,
) -> None:
    scripted = Scripted()
    apis = registry(Api(18, 0, 4, scripted.handle, before_auth=True, pipelined=True))
    gateway = KafkaGateway(engine, engine.access_control("allow"), GatewayConfig(port=0), apis)
    with (
        RunningGateway(gateway) as running,
        socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock,
    ):
        sock.sendall(frame(1, "first") + frame(2, "second") + frame(3, "third"))
        for _ in range(3):  # all three are being answered at once
            assert scripted.arrived.acquire(timeout=10)
        # Given the later requests finish first
        scripted.finish("third")
        scripted.finish("second")
        # When the first one finishes
        scripted.finish("first")
        # Then the answers come in request order, and the ordered sections ran in it
        assert [read_reply(sock)[0] for _ in range(3)] == [1, 2, 3]
        assert scripted.entered == ["first", "second", "third"]


def test_requests_of_other_apis_are_answered_one_at_a_time(engine: Engine) -> None:
    scripted = Scripted()
    apis = registry(Api(18, 0, 4, scripted.handle, before_auth=True))
    gateway = KafkaGateway(engine, engine.access_control("allow"), GatewayConfig(port=0), apis)
    with (
        RunningGateway(gateway) as running,
        socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock,
    ):
        sock.sendall(frame(1, "first") + frame(2, "second"))
        assert scripted.arrived.acquire(timeout=10)
        assert not scripted.arrived.acquire(timeout=0.2)  # the second is not read yet
        scripted.finish("first")
        assert read_reply(sock)[0] == 1
        assert scripted.arrived.acquire(timeout=10)
        scripted.finish("second")
        assert read_reply(sock)[0] == 2


def test_a_connection_reads_no_more_while_its_unanswered_requests_hold_the_byte_limit(
    engine: Engine,
) -> None:
    scripted = Scripted()
    apis = registry(Api(18, 0, 4, scripted.handle, before_auth=True, pipelined=True))
    config = GatewayConfig(port=0, max_in_flight_bytes=1)  # one request fills it
    gateway = KafkaGateway(engine, engine.access_control("allow"), config, apis)
    with (
        RunningGateway(gateway) as running,
        socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock,
    ):
        sock.sendall(frame(1, "second") + frame(2, "third"))
        assert scripted.arrived.acquire(timeout=10)
        assert not scripted.arrived.acquire(timeout=0.2)  # the next one is not read yet
        scripted.finish("second")
        assert read_reply(sock)[0] == 1
        assert scripted.arrived.acquire(timeout=10)  # room again: read and answered
        scripted.finish("third")
        assert read_reply(sock)[0] == 2
