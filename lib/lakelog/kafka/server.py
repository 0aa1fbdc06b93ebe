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
import ssl
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from kio.index import KioIndexError, load_response_schema
from kio.schema.errors import ErrorCode
from kio.static.protocol import ResponsePayload

from lakelog.contract.operations import Append
from lakelog.errors import LakelogError
from lakelog.kafka.apis import TICKET, Api, CloseConnection, Session
from lakelog.kafka.appends import AppendSignal
from lakelog.kafka.batching import DEFAULT_LINGER_MS, AppendBatcher
from lakelog.kafka.errors import error_code
from lakelog.kafka.protocol import (
    MAX_FRAME_BYTES,
    FrameError,
    Request,
    encode_response,
    error_response,
    parse_request,
    peek_api,
)
from lakelog.kafka.sasl import Authenticator, OAuthBearerAuthenticator, PlainAuthenticator
from lakelog.limits import MAX_APPEND_BYTES

if TYPE_CHECKING:
    from lakelog.kafka.sts import CallerIdentityVerifier
    from lakelog.service.acl import AccessControl
    from lakelog.service.engine import Engine
    from lakelog.types import Record, RecordMetadata

__all__ = ["GatewayConfig", "KafkaGateway", "RunningGateway"]

logger = logging.getLogger("lakelog.kafka")

R = TypeVar("R")

API_VERSIONS_KEY: Final = 18
_SIZE: Final = struct.Struct(">i")
MAX_UNAUTHENTICATED_FRAME_BYTES: Final = 512 * 1024
"""The largest frame read before SASL authentication completes (Kafka's
``sasl.server.max.receive.size``): an unauthenticated peer cannot make the gateway buffer
100 MiB per connection."""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Where the gateway listens and what it tells clients.

    ``advertised_host``/``advertised_port`` are the address Metadata names as the leader
    of every partition and as the coordinator of every group: the load balancer's in a
    deployment, the listening address locally (port 0 binds any free port and advertises
    it). ``default_principal`` is every connection's principal when SASL is off (``lakelog
    dev``); with ``sasl`` on, a connection must authenticate before any other request.
    SASL/PLAIN is offered when ``users`` (passwords by username) is set, or with
    ``any_password`` (any password accepted: ``lakelog dev`` only); OAUTHBEARER when the
    gateway is given a `CallerIdentityVerifier`, its tokens signed for ``audience``
    (ADR 0016 §7). ``tls_certificate`` and ``tls_key`` (PEM files) make the listener speak
    TLS (``SASL_SSL``); in AWS the load balancer terminates TLS instead. A connection that
    sends no complete request for ``idle_seconds`` is closed (Kafka's
    ``connections.max.idle.ms``, 10 minutes); clients reconnect when they need to. A
    refused SASL exchange is answered after ``failed_authentication_delay_seconds`` (Kafka's
    ``connection.failed.authentication.delay.ms``), which slows guessing passwords.
    """

    host: str = "127.0.0.1"
    port: int = 9092
    advertised_host: str | None = None
    advertised_port: int | None = None
    node_id: int = 0
    default_principal: str = "local"
    sasl: bool = False
    users: Mapping[str, str] | None = None
    any_password: bool = False
    audience: str = "lakelog"
    tls_certificate: str | None = None
    tls_key: str | None = None
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_in_flight: int = 1_000
    """Requests of one connection read ahead of their answers (pipelined APIs only):
    librdkafka keeps up to 1,000,000 in flight, kafka-python 5."""
    max_in_flight_bytes: int = 64 * 1024 * 1024
    """Bytes of one connection's unanswered requests beyond which it reads no more until
    some are answered (the memory a connection may hold)."""
    idle_seconds: float = 600.0
    failed_authentication_delay_seconds: float = 0.1
    threads: int = 32
    fetch_max_wait_ms: int = 500
    """The longest a Fetch waits for ``min_bytes`` whatever its ``max_wait_ms`` asks
    (ADR 0016 §4): a gateway holds a connection, not a billed invocation, while it waits."""
    fetch_poll_ms: int = 250
    """How often a waiting Fetch reads again for appends made by other processes (this
    process's own appends wake it at once)."""
    append_linger_ms: float = DEFAULT_LINGER_MS
    """How long Produce requests' plain records wait for others of their topic to share
    one append (ADR 0016 §3.1); 0 appends each request alone."""
    append_batch_bytes: int = MAX_APPEND_BYTES
    """A topic's batch is appended as soon as it holds this many record bytes."""
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
    identity
        Verifies OAUTHBEARER tokens against STS (`lakelog.kafka.sts.StsCallerIdentity`);
        None offers no OAUTHBEARER.
    """

    def __init__(
        self,
        engine: Engine,
        access: AccessControl,
        config: GatewayConfig | None = None,
        apis: Mapping[int, Api] | None = None,
        identity: CallerIdentityVerifier | None = None,
    ) -> None:
        if apis is None:
            from lakelog.kafka.served import SERVED  # noqa: PLC0415 - imports every API

            apis = SERVED
        self.engine = engine
        self.access = access
        self.config = config or GatewayConfig()
        self.apis = apis
        self.node_id = self.config.node_id
        self.max_frame_bytes = self.config.max_frame_bytes
        self.authenticators: Mapping[str, Authenticator] = _authenticators(self.config, identity)
        self.advertised_host = self.config.advertised_host or self.config.host
        self.advertised_port = self.config.advertised_port or self.config.port
        self._executor = ThreadPoolExecutor(self.config.threads, thread_name_prefix="kafka")
        self.appends = AppendSignal()
        self.batcher = AppendBatcher(
            self._append, self.config.append_linger_ms, self.config.append_batch_bytes
        )
        """Plain Produce records of every connection, batched per topic."""
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._drained: dict[asyncio.Task[None], asyncio.Event] = {}
        """Per connection: set while every request it read is answered."""
        self._stopping = False

    # Services --------------------------------------------------------------------------
    async def _append(self, topic: str, records: Sequence[Record]) -> list[RecordMetadata]:
        """One batch of plain records (no producer id: no principal decides anything)."""
        return await self.run(self.engine.call, Append(topic, records))

    async def run(self, function: Callable[..., R], *args: Any) -> R:
        """Run a blocking call on the gateway's threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args))

    # Serving ---------------------------------------------------------------------------
    async def start(self) -> int:
        """Listen; returns the bound port (the advertised one follows a port 0 bind)."""
        self._server = await asyncio.start_server(
            self._serve, self.config.host, self.config.port, limit=2**16, ssl=self._tls()
        )
        port = int(self._server.sockets[0].getsockname()[1])
        self.appends.start(self.engine.appender.watch)
        if self.config.advertised_port is None:
            self.advertised_port = port
        return port

    def _tls(self) -> ssl.SSLContext | None:
        certificate, key = self.config.tls_certificate, self.config.tls_key
        if certificate is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(certificate, key)
        return context

    async def stop(self) -> None:
        """Stop listening and close every connection.

        A connection waiting for its next request is closed at once; one answering
        requests reads no more and closes once it has written the answers, or after
        `GatewayConfig.drain_seconds` (so that a request the engine committed is
        answered, and a client does not send it again elsewhere).
        """
        self._stopping = True
        self.appends.stop()
        if self._server is not None:
            self._server.close()
        busy = []
        for task, drained in list(self._drained.items()):
            if drained.is_set():
                task.cancel()
            else:
                busy.append(asyncio.ensure_future(drained.wait()))
        if busy:
            await asyncio.wait(busy, timeout=self.config.drain_seconds)
            for waiting in busy:
                waiting.cancel()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection; close at once one whose turn comes after `stop`.

        A connection accepted just before the stop may get its turn only after it: `stop`
        did not see it to close it, and it would wait for a request for `idle_seconds`
        (and with it ``wait_closed``, which waits for every connection since Python 3.12).
        """
        if self._stopping:
            writer.close()
            return
        await self._converse(reader, writer)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        session = Session(
            self,
            self.config.default_principal,
            authenticated=not self.config.sasl,
            client_host=f"/{peer[0]}" if peer else "",
        )
        answers: asyncio.Queue[tuple[asyncio.Task[bytes | None], int] | None] = asyncio.Queue(
            self.config.max_in_flight
        )
        backlog = _Backlog(self.config.max_in_flight_bytes)
        drained = asyncio.Event()
        drained.set()
        self._drained[task] = drained
        replying = asyncio.create_task(self._reply(answers, writer, session, drained, backlog))
        try:
            while not replying.done():
                await backlog.room()
                try:
                    frame = await asyncio.wait_for(
                        self._read_frame(reader, self._frame_limit(session)),
                        self.config.idle_seconds,
                    )
                except TimeoutError:
                    logger.debug("closing connection from %s: idle", peer)
                    break
                if frame is None:
                    break
                if self._stopping:  # a request read while stopping is not answered
                    break
                key, _, _ = peek_api(frame)
                ticket = session.turns.issue()
                TICKET.set(ticket)  # the answer's task runs in a copy of this context
                answer = asyncio.create_task(self._answer(frame, session, ticket))
                drained.clear()
                backlog.add(len(frame))
                await answers.put((answer, len(frame)))
                api = self.apis.get(key)
                if api is None or not api.pipelined or not session.authenticated:
                    await asyncio.wait({answer, replying}, return_when=asyncio.FIRST_COMPLETED)
                if session.closing or self._stopping:  # a refused SASL exchange; a stop
                    break
            await answers.put(None)  # what was read is still answered
            await replying
        except (FrameError, CloseConnection) as exc:
            logger.info("closing connection from %s: %s", peer, exc)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception:
            logger.exception("closing connection from %s after an unexpected error", peer)
        finally:
            replying.cancel()
            self._connections.discard(task)
            self._drained.pop(task, None)
            writer.close()

    async def _reply(
        self,
        answers: asyncio.Queue[tuple[asyncio.Task[bytes | None], int] | None],
        writer: asyncio.StreamWriter,
        session: Session,
        drained: asyncio.Event,
        backlog: _Backlog,
    ) -> None:
        """Write the answers in the order their requests came; on a request that cannot be
        answered, drop the rest and close the connection. A refused SASL exchange is
        answered after `GatewayConfig.failed_authentication_delay_seconds`, as Kafka does."""
        try:
            while (queued := await answers.get()) is not None:
                answer, size = queued
                try:
                    reply = await answer
                except (FrameError, CloseConnection) as exc:
                    logger.info(
                        "closing connection from %s: %s", writer.get_extra_info("peername"), exc
                    )
                    return
                if session.closing:
                    await asyncio.sleep(self.config.failed_authentication_delay_seconds)
                if reply is not None:
                    writer.write(reply)
                    await writer.drain()
                await backlog.remove(size)
                if answers.empty():
                    drained.set()
                if session.closing:
                    return
        finally:
            while not answers.empty():
                left = answers.get_nowait()
                if left is not None:
                    left[0].cancel()
            writer.close()

    def _frame_limit(self, session: Session) -> int:
        """The largest frame ``session`` may send next (small until it authenticated)."""
        if session.authenticated:
            return self.config.max_frame_bytes
        return min(self.config.max_frame_bytes, MAX_UNAUTHENTICATED_FRAME_BYTES)

    async def _read_frame(self, reader: asyncio.StreamReader, limit: int) -> bytes | None:
        """The next frame, or None when the client closed between frames; a size over
        ``limit`` is refused before any of its bytes is read."""
        try:
            head = await reader.readexactly(_SIZE.size)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None
            raise FrameError("the connection closed inside a size prefix") from None
        (size,) = _SIZE.unpack(head)
        if size < 0 or size > limit:
            raise FrameError(f"a frame of {size} bytes (the limit is {limit})")
        try:
            return await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise FrameError(f"the connection closed inside a frame of {size} bytes") from None

    async def _answer(self, frame: bytes, session: Session, ticket: int) -> bytes | None:
        """The reply frame to one request frame (None: no reply, as for acks=0)."""
        try:
            key, version, correlation_id = peek_api(frame)
            api = self.apis.get(key)
            if (
                not session.authenticated
                and key != API_VERSIONS_KEY
                and not (api and api.before_auth)
            ):
                # Before authentication only ApiVersions and SASL are answered, as Kafka does.
                raise FrameError(f"API {key} before SASL authentication")
            if api is None or not api.serves(version):
                return self._unsupported(frame, key, version, correlation_id)
            request = parse_request(frame)
            session.client_id = request.client_id
            try:
                response = await api.handle(request.body, session)
            except LakelogError as error:
                response = self._failed(request.body, error)
            return None if response is None else encode_response(request, response)
        finally:
            await session.turns.release(ticket)

    @staticmethod
    def _failed(body: Any, error: LakelogError) -> ResponsePayload:
        """The answer to a request whose handler failed as a whole (storage unavailable or
        throttled where a handler has no per-partition place for it, as in an ACL lookup):
        every error code of the request's version set to the failure's, as a broker
        answers a request it failed to handle, rather than a dropped connection. An
        ``acks=0`` Produce gets no answer: its connection is closed, as for any failure."""
        if getattr(body, "acks", None) == 0:
            raise CloseConnection(f"an acks=0 Produce failed: {error.message}")
        logger.warning("answering %s with %s: %s", type(body).__name__, error_code(error), error)
        return error_response(body.__api_key__, body.__version__, error_code(error))

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


def _authenticators(
    config: GatewayConfig, identity: CallerIdentityVerifier | None
) -> dict[str, Authenticator]:
    """The SASL mechanisms ``config`` and ``identity`` offer, by name.

    Raises
    ------
    ValueError
        SASL is required but no mechanism is offered, or passwords are given and any
        password is accepted too.
    """
    if config.users is not None and config.any_password:
        raise ValueError("SASL/PLAIN either checks users' passwords or accepts any password")
    offered: list[Authenticator] = []
    if config.users is not None or config.any_password:
        offered.append(PlainAuthenticator(None if config.any_password else config.users))
    if identity is not None:
        offered.append(OAuthBearerAuthenticator(identity, config.audience))
    if config.sasl and not offered:
        raise ValueError("SASL is required but no mechanism is offered (users, identity)")
    return {authenticator.mechanism: authenticator for authenticator in offered}


class _Backlog:
    """Bytes of a connection's requests read but not yet answered, and a wait for room."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._changed = asyncio.Condition()

    def add(self, size: int) -> None:
        self.size += size

    async def remove(self, size: int) -> None:
        self.size -= size
        async with self._changed:
            self._changed.notify_all()

    async def room(self) -> None:
        """Until the unanswered bytes are below the limit."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.size < self.limit)


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
        self._stopped = False

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
        """Close every connection and the listener; wait for the loop to end.

        Also right after the start, when the loop thread may not run its loop yet: what
        this hands the loop waits for it (asking whether the loop runs would skip the
        stop and leave the gateway listening).
        """
        if self._stopped or not self._thread.is_alive():
            return
        self._stopped = True
        asyncio.run_coroutine_threadsafe(self.gateway.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def __enter__(self) -> RunningGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
