"""Stopping the gateway: idle connections close at once, a request being answered gets its
answer first (within the drain time), and nothing is accepted after."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from lakelog.kafka import GatewayConfig, KafkaGateway
from lakelog.kafka import versions as api_versions
from lakelog.kafka.apis import Api, Session
from lakelog.kafka.server import RunningGateway
from lakelog.service.engine import Engine

WAIT = 10.0
"""Backstop of every wait; only a gateway that hangs reaches it."""


class Held:
    """ApiVersions answered only once the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    async def handle(self, body: Any, session: Session) -> Any:
        self.entered.set()
        await session.services.run(self.release.wait, WAIT)
        return await api_versions.API.handle(body, session)


@pytest.fixture
def held() -> Iterator[Held]:
    holder = Held()
    yield holder
    holder.release.set()


def start(engine: Engine, held: Held, **config: Any) -> RunningGateway:
    api = Api(api_versions.API.key, 0, api_versions.API.max_version, held.handle, True)
    gateway = KafkaGateway(
        engine, engine.access_control("allow"), GatewayConfig(port=0, **config), {api.key: api}
    )
    return RunningGateway(gateway)


def api_versions_v0(correlation_id: int) -> bytes:
    """An ApiVersions v0 request frame (header v1: key, version, correlation id, client id)."""
    client = b"stop-test"
    payload = struct.pack(">hhih", 18, 0, correlation_id, len(client)) + client
    return struct.pack(">i", len(payload)) + payload


def connect(running: RunningGateway) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", running.port), timeout=WAIT)
    connection.settimeout(WAIT)
    return connection


def read_all(connection: socket.socket) -> bytes:
    """Everything the gateway sends until it closes the connection."""
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return data


def test_a_request_in_flight_is_answered_before_its_connection_closes(
    engine: Engine, held: Held
) -> None:
    running = start(engine, held)
    busy, idle = connect(running), connect(running)
    busy.sendall(api_versions_v0(correlation_id=7))
    assert held.entered.wait(WAIT)

    # When the gateway stops while it answers
    stopping = threading.Thread(target=running.stop)
    stopping.start()

    # Then the idle connection closes first, without an answer
    assert read_all(idle) == b""
    # And the busy one gets its answer once the handler finishes, then closes
    held.release.set()
    answer = read_all(busy)
    stopping.join(WAIT)
    assert not stopping.is_alive()
    (size,) = struct.unpack(">i", answer[:4])
    assert len(answer) == 4 + size
    assert struct.unpack(">i", answer[4:8]) == (7,)
    assert struct.unpack(">h", answer[8:10]) == (0,)  # error_code NONE
    with pytest.raises(OSError):
        connect(running)


def test_a_request_that_outlasts_the_drain_is_cut(engine: Engine, held: Held) -> None:
    running = start(engine, held, drain_seconds=0.05)
    busy = connect(running)
    busy.sendall(api_versions_v0(correlation_id=8))
    assert held.entered.wait(WAIT)

    running.stop()  # returns after the drain time though the handler still waits

    assert read_all(busy) == b""


def test_a_stop_right_after_the_start_still_closes_the_listener(
    engine: Engine, held: Held, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a gateway whose loop thread has bound the port but not yet run its loop (held
    # there until the stop hands the loop its work)
    loop_may_run = threading.Event()
    run_forever = asyncio.BaseEventLoop.run_forever
    runs = itertools.count()

    def run_when_released(loop: asyncio.BaseEventLoop) -> None:
        if next(runs) > 0:  # the first run is the start's (run_until_complete)
            assert loop_may_run.wait(WAIT)
        run_forever(loop)

    monkeypatch.setattr(asyncio.BaseEventLoop, "run_forever", run_when_released)
    running = start(engine, held)
    call_soon_threadsafe = running._loop.call_soon_threadsafe

    def release_then_call(callback: Any, *args: Any, **kwargs: Any) -> Any:
        loop_may_run.set()
        return call_soon_threadsafe(callback, *args, **kwargs)

    monkeypatch.setattr(running._loop, "call_soon_threadsafe", release_then_call)

    # When it is stopped at once
    try:
        running.stop()
    finally:
        loop_may_run.set()

    # Then it listens no more
    with pytest.raises(OSError):
        connect(running)


def test_a_connection_whose_turn_comes_after_the_stop_closes_at_once(engine: Engine) -> None:
    """A connection accepted just before the stop may be served only after it (its task's
    first step comes later): it must close then, not wait for a request for
    ``idle_seconds`` (Python 3.12's ``wait_closed`` waits for every connection)."""
    gateway = KafkaGateway(engine, engine.access_control("allow"), GatewayConfig(port=0))

    async def serve_after_the_stop() -> bytes:
        await gateway.start()
        await gateway.stop()
        ours, theirs = socket.socketpair()
        with ours, theirs:
            reader, writer = await asyncio.open_connection(sock=ours)
            serving = asyncio.create_task(gateway._serve(reader, writer))
            done, _ = await asyncio.wait({serving}, timeout=WAIT)
            assert done, "the connection waited for a request though the gateway stopped"
            theirs.settimeout(WAIT)
            return read_all(theirs)

    assert asyncio.run(serve_after_the_stop()) == b""
