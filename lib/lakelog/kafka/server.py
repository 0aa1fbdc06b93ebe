"""The gateway's asyncio TCP server (ADR 0016 §1).

One coroutine per connection reads size-prefixed frames, answers them one at a time in
the order they came (as a Kafka broker does: a client may pipeline requests, and
correlates the answers by order and id), and closes only its own connection on a frame it
cannot parse. The gateway keeps no state of its own beyond a connection's: topics,
producer ids, groups and offsets are in the catalog and ledger, so any number of gateways
serve one cluster behind one address.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from kio.index import KioIndexError, load_response_schema
from kio.schema.errors import ErrorCode

from lakelog.kafka.apis import Api, Session
from lakelog.kafka.protocol import (
    MAX_FRAME_BYTES,
    FrameError,
    Request,
    encode_response,
    error_response,
    parse_request,
    peek_api,
)

if TYPE_CHECKING:
    from lakelog.service.acl import AccessControl
    from lakelog.service.engine import Engine

__all__ = ["GatewayConfig", "KafkaGateway", "RunningGateway"]

logger = logging.getLogger("lakelog.kafka")

R = TypeVar("R")

API_VERSIONS_KEY: Final = 18
_SIZE: Final = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Where the gateway listens and what it tells clients.

    ``advertised_host``/``advertised_port`` are the address Metadata names as the leader
    of every partition and as the coordinator of every group: the load balancer's in a
    deployment, the listening address locally (port 0 binds any free port and advertises
    it). ``default_principal`` is every connection's principal when SASL is off (``lakelog
    dev``); with ``sasl`` on, a connection must authenticate before any other request.
    """

    host: str = "127.0.0.1"
    port: int = 9092
    advertised_host: str | None = None
    advertised_port: int | None = None
    node_id: int = 0
    default_principal: str = "local"
    sasl: bool = False
    max_frame_bytes: int = MAX_FRAME_BYTES
    threads: int = 32
    drain_seconds: float = 10.0
    """How long `KafkaGateway.stop` lets requests in flight finish and answer."""


class KafkaGateway:
    """Serves the Kafka protocol over ``engine`` with ``access`` applied to each caller.

    Parameters
    ----------
    engine
        The service layer (every state change goes through it).
    access
        lakelog's ACLs, checked for the session's principal.
    config
        Addresses, SASL and limits.
    apis
        The served APIs by key (default: every API of `lakelog.kafka.served`).
    """

    def __init__(
        self,
        engine: Engine,
        access: AccessControl,
        config: GatewayConfig | None = None,
        apis: Mapping[int, Api] | None = None,
    ) -> None:
        if apis is None:
            from lakelog.kafka.served import SERVED  # noqa: PLC0415 - imports every API

            apis = SERVED
        self.engine = engine
        self.access = access
        self.config = config or GatewayConfig()
        self.apis = apis
        self.node_id = self.config.node_id
        self.advertised_host = self.config.advertised_host or self.config.host
        self.advertised_port = self.config.advertised_port or self.config.port
        self._executor = ThreadPoolExecutor(self.config.threads, thread_name_prefix="kafka")
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._answering: set[asyncio.Task[None]] = set()
        """Connections between reading a request and writing its answer."""
        self._stopping = False

    # Services --------------------------------------------------------------------------
    async def run(self, function: Callable[..., R], *args: Any) -> R:
        """Run a blocking call on the gateway's threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args))

    # Serving ---------------------------------------------------------------------------
    async def start(self) -> int:
        """Listen; returns the bound port (the advertised one follows a port 0 bind)."""
        self._server = await asyncio.start_server(
            self._serve, self.config.host, self.config.port, limit=2**16
        )
        port = int(self._server.sockets[0].getsockname()[1])
        if self.config.advertised_port is None:
            self.advertised_port = port
        return port

    async def stop(self) -> None:
        """Stop listening and close every connection.

        A connection waiting for its next request is closed at once; one answering a
        request closes after writing the answer, or after `GatewayConfig.drain_seconds`
        (so that a request the engine committed is answered, and a client does not send
        it again elsewhere).
        """
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task in self._connections - self._answering:
            task.cancel()
        if self._answering:
            await asyncio.wait(set(self._answering), timeout=self.config.drain_seconds)
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        session = Session(
            self,
            self.config.default_principal,
            authenticated=not self.config.sasl,
        )
        peer = writer.get_extra_info("peername")
        try:
            while True:
                frame = await self._read_frame(reader)
                if frame is None:
                    return
                self._answering.add(task)
                try:
                    reply = await self._answer(frame, session)
                    writer.write(reply)
                    await writer.drain()
                finally:
                    self._answering.discard(task)
                if self._stopping:
                    return
        except FrameError as exc:
            logger.info("closing connection from %s: %s", peer, exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("closing connection from %s after an unexpected error", peer)
        finally:
            self._connections.discard(task)
            writer.close()

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next frame, or None when the client closed between frames."""
        try:
            head = await reader.readexactly(_SIZE.size)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None
            raise FrameError("the connection closed inside a size prefix") from None
        (size,) = _SIZE.unpack(head)
        if size < 0 or size > self.config.max_frame_bytes:
            limit = self.config.max_frame_bytes
            raise FrameError(f"a frame of {size} bytes (the limit is {limit})")
        try:
            return await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise FrameError(f"the connection closed inside a frame of {size} bytes") from None

    async def _answer(self, frame: bytes, session: Session) -> bytes:
        key, version, correlation_id = peek_api(frame)
        api = self.apis.get(key)
        if api is None or not api.serves(version):
            return self._unsupported(frame, key, version, correlation_id)
        request = parse_request(frame)
        session.client_id = request.client_id
        if not session.authenticated and not api.before_auth:
            raise FrameError(f"API {key} before SASL authentication")
        response = await api.handle(request.body, session)
        return encode_response(request, response)

    def _unsupported(self, frame: bytes, key: int, version: int, correlation_id: int) -> bytes:
        """The protocol's answer to an API or version the gateway does not serve.

        ApiVersions of a version it does not know is answered with version 0 and
        UNSUPPORTED_VERSION plus the served versions (KIP-511), so that the client can
        retry with one it knows. Another API of a version Kafka's schemas define gets that
        version's response with every error code UNSUPPORTED_VERSION; one they do not
        define cannot be answered, and closes the connection.
        """
        if key == API_VERSIONS_KEY:
            from lakelog.kafka.versions import api_versions_response  # noqa: PLC0415

            request = Request(key, 0, correlation_id, None, None)  # type: ignore[arg-type]
            return encode_response(
                request, api_versions_response(self.apis, 0, ErrorCode.unsupported_version)
            )
        try:
            load_response_schema(key, version)
        except KioIndexError:
            raise FrameError(f"API {key} version {version} is not a Kafka request") from None
        request = parse_request(frame)
        return encode_response(request, error_response(key, version, ErrorCode.unsupported_version))


class RunningGateway:
    """A gateway served by its own event loop on a daemon thread (``lakelog dev``, tests).

    Use as a context manager, or call `stop`.
    """

    def __init__(self, gateway: KafkaGateway) -> None:
        self.gateway = gateway
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._error: BaseException | None = None
        self.port = 0

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self.port = self._loop.run_until_complete(gateway.start())
            except BaseException as exc:  # reported to the starting thread
                self._error = exc
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="kafka-gateway", daemon=True)
        self._thread.start()
        started.wait()
        if self._error is not None:
            raise self._error

    @property
    def bootstrap(self) -> str:
        """``host:port`` for a client's ``bootstrap.servers``."""
        return f"{self.gateway.advertised_host}:{self.gateway.advertised_port}"

    def stop(self) -> None:
        """Close every connection and the listener; wait for the loop to end."""
        if not self._loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self.gateway.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def __enter__(self) -> RunningGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
