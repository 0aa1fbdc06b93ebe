"""The local dev server: the HTTP API v1 on 127.0.0.1 over AWS emulated in-process by moto.

`LocalService` starts moto's threaded server on a free loopback port, creates the bucket
and tables there, and serves the API with a stdlib ``ThreadingHTTPServer`` that turns each
HTTP request into the API Gateway HTTP API (payload 2.0) event the deployed API function
receives, calls the same handler `lakelog.api.make_handler` builds for Lambda, and writes
its reply back as the HTTP response.

One invocation at a time. Powertools' resolver keeps the request it is resolving in a
class attribute (``BaseRouter.current_event``), shared by every resolver in the process, and
its validation reads the body from there; two invocations running at once in one process
would read each other's bodies and callers. So, as in one Lambda execution environment, the
handler runs one request at a time: connections are accepted and bodies read and written
concurrently by the server's threads, while handler invocations queue for one lock.

The server reads each request body itself, by ``Content-Length`` or as a chunked body, before
the handler sees it, and refuses with the API's ``{"error", "message"}`` reply (400
``invalid_request`` or 413 ``payload_too_large``), closing the connection, any framing it
cannot read safely: both length headers, a transfer coding other than ``chunked``, a length
that is not plain digits, chunk sizes that are not hex digits, lines over
`MAX_CHUNK_LINE_BYTES`, extensions and trailers over `MAX_CHUNK_METADATA_BYTES`, bodies over
`MAX_REQUEST_BYTES` (before reading the excess) and bodies that end early.

The process environment is adjusted in `LocalService.start` and restored by `stop`:
Powertools metrics and tracing are disabled (there is no CloudWatch or X-Ray locally) and
the Powertools log level defaults to ``WARNING`` (set ``POWERTOOLS_LOG_LEVEL`` to see more).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import socketserver
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

import boto3
from botocore.config import Config

from lakelog.api import ApiSettings, make_handler
from lakelog.api.handler import Handler
from lakelog.compactor_handler import compactor_for
from lakelog.dispatcher_handler import DispatcherCalls, dispatcher_for
from lakelog.kafka.server import GatewayConfig, KafkaGateway, RunningGateway
from lakelog.local.compaction import COMPACT_PATH, DEFAULT_COMPACT_EVERY, LocalCompactor
from lakelog.local.dispatching import DEFAULT_RESUME_EVERY, LocalDispatcher
from lakelog.local.emulation import serialize_moto_dynamodb
from lakelog.local.events import LocalContext, http_event
from lakelog.service.engine import Engine
from lakelog.service.invokers import LocalInvoker, RoutingInvoker, SqsQueueSender
from lakelog.service.passes import CompactorCalls
from lakelog.service.subscriptions import FunctionPolicy
from lakelog.storage.delivery import DynamoDeliveryStateStore
from lakelog.storage.keys import ResourceNames
from lakelog.storage.resources import create_resources

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "DEFAULT_PRINCIPAL",
    "MAX_CHUNK_LINE_BYTES",
    "MAX_CHUNK_METADATA_BYTES",
    "MAX_REQUEST_BYTES",
    "KafkaPortError",
    "LocalDependencyError",
    "LocalService",
]

DEFAULT_PORT: Final = 8080
DEFAULT_PREFIX: Final = "lakelog-local"
"""Resource name prefix of the local deployment (bucket ``lakelog-local-segments``)."""
DEFAULT_PRINCIPAL: Final = "arn:aws:iam::000000000000:user/local-developer"
"""The IAM caller every local request is made as (``requestContext.authorizer.iam``)."""
MAX_REQUEST_BYTES: Final = 10 * 1024 * 1024
"""Bodies above this are refused with 413 before being read (the handler's own limit,
6 MiB, applies below it, as in API Gateway + Lambda)."""
MAX_CHUNK_LINE_BYTES: Final = 1024
"""Longest line of a chunked body (a chunk size with its extensions, or a trailer field)."""
MAX_CHUNK_METADATA_BYTES: Final = 16 * 1024
"""Chunk extensions and trailer fields of one chunked body, together; the server ignores
both, so this only bounds what a client can make it read past the body limit."""
REGION: Final = "us-east-1"
FAKE_CREDENTIALS: Final = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}
"""moto accepts any credentials; these make sure boto3 never looks for real ones."""
LINGER_SECONDS: Final = 2.0
"""How long a refused oversized body is read and dropped before the connection closes."""
DRAIN_SECONDS: Final = 5.0
"""How long `LocalService.stop` waits for requests in flight before stopping moto."""

_POWERTOOLS_ENV: Final = {
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
}
_DECIMAL: Final = re.compile(r"[0-9]+")
_HEX: Final = re.compile(rb"[0-9A-Fa-f]+")
_LINE_ENDS: Final = (b"\r\n", b"\n")
_HOP_BY_HOP: Final = frozenset(
    {"connection", "content-length", "keep-alive", "transfer-encoding", "date", "server"}
)


class LocalDependencyError(RuntimeError):
    """A package the local server needs (moto) is not installed."""


class KafkaPortError(OSError):
    """The Kafka gateway's port cannot be bound (in use, or not allowed)."""


class _Invoker:
    """Calls the handler with one event at a time (see the module docstring for why)."""

    def __init__(self) -> None:
        self.handler: Handler | None = None
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        """The handler's reply to ``event``, invoked with a fresh `LocalContext`."""
        with self._lock:
            if self.handler is None:
                raise RuntimeError("the local server has no handler yet")
            return self.handler(event, LocalContext())

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no invocation runs; False if ``timeout`` passed first."""
        if not self._lock.acquire(timeout=timeout):
            return False
        self._lock.release()
        return True


class _ApiServer(ThreadingHTTPServer):
    """The HTTP server; request threads find the handler and settings here."""

    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not delay shutdown

    def __init__(
        self,
        address: tuple[str, int],
        invoke: _Invoker,
        principal: str | None,
        access_log: TextIO | None,
    ) -> None:
        self.invoke = invoke
        self.compactor: LocalCompactor | None = None
        self.principal = principal
        self.access_log = access_log
        self.stopping = threading.Event()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _ApiRequestHandler)

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s reverse DNS lookup (seconds on some laptops)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _ApiRequestHandler(BaseHTTPRequestHandler):
    """HTTP request -> API Gateway v2 event -> handler -> HTTP response."""

    protocol_version = "HTTP/1.1"
    server_version = "lakelog-dev"
    sys_version = ""
    _started: float = 0.0

    @property
    def api(self) -> _ApiServer:
        """The server this request arrived on."""
        server = self.server
        assert isinstance(server, _ApiServer)
        return server

    # Every method goes to the handler, which answers 404 for routes it does not have.
    def do_GET(self) -> None:
        """Serve a GET."""
        self._serve()

    def do_HEAD(self) -> None:
        """Serve a HEAD."""
        self._serve()

    def do_POST(self) -> None:
        """Serve a POST."""
        self._serve()

    def do_PUT(self) -> None:
        """Serve a PUT."""
        self._serve()

    def do_PATCH(self) -> None:
        """Serve a PATCH."""
        self._serve()

    def do_DELETE(self) -> None:
        """Serve a DELETE."""
        self._serve()

    def do_OPTIONS(self) -> None:
        """Serve an OPTIONS."""
        self._serve()

    def do_TRACE(self) -> None:
        """Serve a TRACE (the handler answers it; the stdlib's default is a 501 page)."""
        self._serve()

    def parse_request(self) -> bool:
        """Note when the request arrived, for the access log."""
        self._started = time.perf_counter()
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        """Refuse a body the server will not read before the client sends it.

        The client waits for this answer (``Expect: 100-continue``), so nothing is drained.
        """
        try:
            self._body_length()
        except _RefusedError as refusal:
            self._refuse(refusal, unread=0)
            return False
        return super().handle_expect_100()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access log lines are written by `_send`, with the request's duration."""

    def log_message(self, format: str, *args: Any) -> None:
        """Protocol errors from the stdlib go to the access log too."""
        if self.api.access_log is not None:
            print(f"lakelog dev: {format % args}", file=self.api.access_log, flush=True)

    # ------------------------------------------------------------------------------------
    def _serve(self) -> None:
        if self.api.stopping.is_set():
            self.close_connection = True
            self._send_json(
                HTTPStatus.SERVICE_UNAVAILABLE,
                {"error": "unavailable", "message": "the local server is stopping"},
            )
            return
        try:
            length = self._body_length()
            body = self._read_chunked() if length is None else self._read_exactly(length)
        except _RefusedError as refusal:
            self._refuse(refusal)
            return
        self._dispatch(body)

    def _body_length(self) -> int | None:
        """The body's length from the request's head; None for a chunked body.

        Raises
        ------
        _RefusedError
            The head declares no length the server can trust (RFC 9112, section 6): both
            ``Content-Length`` and ``Transfer-Encoding``, a transfer coding other than
            ``chunked`` alone, or a ``Content-Length`` that is not one decimal number; or
            it declares more than `MAX_REQUEST_BYTES`.
        """
        codings = self.headers.get_all("Transfer-Encoding")
        lengths = self.headers.get_all("Content-Length")
        if codings is not None:
            if lengths is not None:
                raise _invalid("a request carries Content-Length or Transfer-Encoding, not both")
            if [c.strip().lower() for c in ",".join(codings).split(",")] != ["chunked"]:
                raise _invalid("the only Transfer-Encoding the local server reads is chunked")
            return None
        if lengths is None:
            return 0
        values = {value.strip() for value in ",".join(lengths).split(",")}
        declared = values.pop()
        if values or not _DECIMAL.fullmatch(declared):
            raise _invalid("Content-Length must be one decimal number of bytes")
        if len(declared.lstrip("0")) > len(str(MAX_REQUEST_BYTES)):
            raise _too_large(unread=sys.maxsize)
        length = int(declared)
        if length > MAX_REQUEST_BYTES:
            raise _too_large(unread=length)
        return length

    def _read_exactly(self, length: int) -> bytes:
        body = self.rfile.read(length)
        if len(body) < length:
            raise _ended_early()
        return body

    def _read_chunked(self) -> bytes:
        """A chunked body (RFC 9112, section 7.1), its extensions and trailers dropped.

        Raises
        ------
        _RefusedError
            At the first line that is not chunked framing, as soon as the sizes read so far
            add up past `MAX_REQUEST_BYTES` (before the excess is read), once extensions
            and trailers pass `MAX_CHUNK_METADATA_BYTES`, or when the body ends early.
        """
        parts: list[bytes] = []
        total = metadata = 0
        while True:
            digits, semicolon, extension = self._framing_line().partition(b";")
            digits = digits.rstrip(b" \t")
            if not _HEX.fullmatch(digits):
                raise _invalid(f"chunk size {digits[:32]!r} is not hexadecimal digits")
            metadata += len(semicolon) + len(extension)
            _check_metadata(metadata)
            size = int(digits, 16)
            if size == 0:
                break
            total += size
            if total > MAX_REQUEST_BYTES:
                raise _too_large(unread=sys.maxsize)
            parts.append(self._read_exactly(size))
            end = self.rfile.readline(2)
            if end not in _LINE_ENDS:
                raise (
                    _invalid("chunk data is longer than its size")
                    if end.strip()
                    else _ended_early()
                )
        while trailer := self._framing_line():
            metadata += len(trailer)
            _check_metadata(metadata)
        return b"".join(parts)

    def _framing_line(self) -> bytes:
        """One line of chunked framing, without its line end."""
        line = self.rfile.readline(MAX_CHUNK_LINE_BYTES)
        if not line.endswith(b"\n"):
            if len(line) == MAX_CHUNK_LINE_BYTES:
                raise _invalid(f"a chunk size or trailer line is over {MAX_CHUNK_LINE_BYTES} bytes")
            raise _ended_early()
        line = line[:-1]
        return line[:-1] if line.endswith(b"\r") else line

    def _refuse(self, refusal: _RefusedError, *, unread: int | None = None) -> None:
        """Answer ``refusal`` and close; ``unread``: body bytes the client may still send."""
        self.close_connection = True
        self._send_json(refusal.status, {"error": refusal.code, "message": str(refusal)})
        drain = refusal.unread if unread is None else unread
        if drain > 0:
            self._discard_unread(drain)

    def _discard_unread(self, limit: int) -> None:
        """Drop what the client still sends, for a moment, so that it reads the refusal.

        Closing a socket with unread data makes the peer see a reset instead of the reply
        (clients that send the whole body before reading, like urllib, then report a
        broken pipe). Nothing is kept; this gives up after ``LINGER_SECONDS``.
        """
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_SECONDS)
            deadline = time.monotonic() + LINGER_SECONDS
            while limit > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(limit, 1 << 16))
                if not chunk:
                    break
                limit -= len(chunk)
        except OSError:
            pass

    def _event(self, body: bytes) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        headers: dict[str, str] = {}
        for name in dict.fromkeys(k.lower() for k in self.headers):
            headers[name] = ",".join(self.headers.get_all(name) or ())
        cookies = headers.pop("cookie", None)
        event = http_event(
            self.command,
            path or "/",
            query=query,
            body=body,
            headers=headers,
            principal=self.api.principal,
            source_ip=self.client_address[0],
        )
        if cookies:
            event["cookies"] = [c.strip() for c in cookies.split(";") if c.strip()]
        return event

    def _dispatch(self, body: bytes) -> None:
        compactor = self.api.compactor
        if compactor is not None and (self.command, self.path) == ("POST", COMPACT_PATH):
            self._send_json(*compactor.reply(body))
            return
        event = self._event(body)
        try:
            reply = self.api.invoke(event)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self._send_json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": "internal", "message": "the API handler raised; see the log"},
            )
            return
        self._send_reply(reply)

    def _send_reply(self, reply: Any) -> None:
        if not isinstance(reply, dict) or "statusCode" not in reply:
            # API Gateway's payload 2.0 inference: any other value is a JSON 200 body.
            self._send(HTTPStatus.OK, {"content-type": "application/json"}, [], _dumps(reply))
            return
        raw = reply.get("body") or ""
        data = base64.b64decode(raw) if reply.get("isBase64Encoded") else str(raw).encode()
        headers = {
            str(k).lower(): ", ".join(v) if isinstance(v, list) else str(v)
            for k, v in (reply.get("headers") or {}).items()
        }
        for k, values in (reply.get("multiValueHeaders") or {}).items():
            headers[str(k).lower()] = ", ".join(str(v) for v in values)
        status = int(reply["statusCode"])
        self._send(status, headers, [str(c) for c in reply.get("cookies") or ()], data)

    def _send_json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        self._send(status, {"content-type": "application/json"}, [], _dumps(body))

    def _send(self, status: int, headers: dict[str, str], cookies: list[str], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name not in _HOP_BY_HOP:
                self.send_header(name, value)
        for cookie in cookies:
            self.send_header("Set-Cookie", cookie)
        no_body = status in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED) or status < 200
        if not no_body:
            self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self._log_access(status)  # before the reply: whoever has the reply can find the line
        self.end_headers()
        if not no_body and self.command != "HEAD":
            self.wfile.write(data)

    def _log_access(self, status: int) -> None:
        if self.api.access_log is not None:
            elapsed = (time.perf_counter() - self._started) * 1000
            print(
                f"{self.command} {self.path} -> {status} ({elapsed:.0f} ms)",
                file=self.api.access_log,
                flush=True,
            )


class _RefusedError(Exception):
    """A request the server answers itself, without the handler, closing the connection.

    ``unread`` is how many body bytes the client may still send (see `_discard_unread`).
    """

    def __init__(self, status: HTTPStatus, code: str, message: str, unread: int) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.unread = unread


def _invalid(message: str) -> _RefusedError:
    return _RefusedError(HTTPStatus.BAD_REQUEST, "invalid_request", message, unread=sys.maxsize)


def _ended_early() -> _RefusedError:
    return _invalid("the request body ended before its declared end")


def _too_large(*, unread: int) -> _RefusedError:
    return _RefusedError(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "payload_too_large",
        f"request body over {MAX_REQUEST_BYTES} bytes: the local server refuses it unread",
        unread,
    )


def _check_metadata(length: int) -> None:
    if length > MAX_CHUNK_METADATA_BYTES:
        raise _invalid(f"chunk extensions and trailers over {MAX_CHUNK_METADATA_BYTES} bytes")


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class LocalService:
    """lakelog on one machine: moto in-process, the bucket and tables, and the HTTP API.

    Parameters
    ----------
    host
        Address the API listens on (loopback by default: the server has no authentication).
    port
        Port of the API; 0 picks a free one (see `api_url` after `start`).
    principal
        IAM caller ARN every request is made as; None sends requests with no caller
        (the API then answers 401).
    default_acl
        What the API decides when no ACL rule matches.
    prefix
        Resource name prefix (see `ResourceNames.for_prefix`).
    access_log
        Where one line per request is written; None for no access log.
    compact_every
        Seconds between compactor passes over the local storage; 0 runs none (a pass
        still runs whenever ``lakelog compact`` asks, see `lakelog.local.compaction`).
    resume_every
        Seconds between the trigger dispatcher's ``resume_due`` calls; appends are handed
        to it as they commit (`lakelog.local.dispatching`).
    kafka_port
        Port of the Kafka protocol gateway on ``host`` (0 picks a free one, see
        `kafka_bootstrap` after `start`); None serves no Kafka protocol. The gateway runs
        on the API's engine, so its appends reach the dispatcher too; every connection is
        made as ``principal`` without SASL (with None, connections must authenticate).

    Examples
    --------
    >>> with LocalService(port=0) as service:  # doctest: +SKIP
    ...     print(service.api_url)
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        principal: str | None = DEFAULT_PRINCIPAL,
        default_acl: Literal["allow", "deny"] = "allow",
        prefix: str = DEFAULT_PREFIX,
        access_log: TextIO | None = None,
        compact_every: float = DEFAULT_COMPACT_EVERY,
        resume_every: float = DEFAULT_RESUME_EVERY,
        kafka_port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.principal = principal
        self.default_acl: Literal["allow", "deny"] = default_acl
        self.names = ResourceNames.for_prefix(prefix)
        self.access_log = access_log
        self.compact_every = compact_every
        self.compactor: LocalCompactor | None = None
        """Runs the passes (set by `start`)."""
        self.dispatcher = LocalDispatcher(self._make_dispatcher, resume_every, access_log)
        """Delivers appended records to subscriptions (started by `start`)."""
        self.kafka_port = kafka_port
        self.bootstrap_servers = "127.0.0.1:9092"
        """``bootstrapServers`` of the events delivered locally (the gateway's address
        when it runs)."""
        self._gateway: RunningGateway | None = None
        self._moto: Any = None
        self._moto_url: str | None = None
        self._api: _ApiServer | None = None
        self._api_thread: threading.Thread | None = None
        self._session: boto3.Session | None = None
        self._session_lock = threading.Lock()
        self._saved_env: dict[str, str | None] = {}
        self._saved_log_level: int | None = None

    # URLs -------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """Base URL of the API (no ``/v1``), with the real port."""
        if self._api is None:
            raise RuntimeError("the local service is not running; call start() first")
        host, port = self._api.server_address[:2]
        return f"http://{_url_host(str(host))}:{port}"

    @property
    def docs_url(self) -> str:
        """The Swagger UI."""
        return f"{self.api_url}/v1/docs"

    @property
    def openapi_url(self) -> str:
        """The OpenAPI document."""
        return f"{self.api_url}/v1/openapi.json"

    @property
    def s3_endpoint_url(self) -> str:
        """moto's endpoint: give it to boto3, DuckDB or pyarrow to read the segments."""
        if self._moto_url is None:
            raise RuntimeError("the local service is not running; call start() first")
        return self._moto_url

    @property
    def kafka_gateway(self) -> KafkaGateway | None:
        """The Kafka protocol gateway, on the API's engine; None when it is off."""
        return None if self._gateway is None else self._gateway.gateway

    @property
    def kafka_bootstrap(self) -> str | None:
        """``host:port`` of the Kafka protocol gateway (``bootstrap.servers``); None when
        it is off."""
        return None if self._gateway is None else self._gateway.bootstrap

    @property
    def bucket(self) -> str:
        """The bucket holding the segments."""
        return self.names.bucket

    @property
    def running(self) -> bool:
        """Whether the API is being served."""
        return self._api is not None

    # Life cycle -------------------------------------------------------------------------
    def start(self) -> LocalService:
        """Start moto, create the resources and serve the API; returns self.

        The API's port is bound first, then the Kafka gateway's, so a port in use fails
        fast.

        Raises
        ------
        LocalDependencyError
            moto (with its server extra) is not installed.
        OSError
            The API's port cannot be bound (in use, or not allowed).
        KafkaPortError
            The Kafka gateway's port cannot be bound.
        """
        if self._api is not None:
            return self
        try:
            import moto.server  # noqa: F401, PLC0415 - moto is optional
        except ImportError as exc:
            raise LocalDependencyError(
                f"the local server needs moto[server] ({exc}): pip install 'lakelog[local]'"
            ) from None
        self._adjust_process()
        try:
            invoke = _Invoker()
            self._api = _ApiServer((self.host, self.port), invoke, self.principal, self.access_log)
            self._start_moto()
            create_resources(self._s3_client(), self._dynamodb_client(), self.names)
            engine = self._engine()
            self._start_gateway(engine)
            invoke.handler = self._make_handler(engine)
            self.compactor = self._api.compactor = LocalCompactor(
                self._make_compactor, self.compact_every, self.access_log
            )
            self.compactor.start()
            self.dispatcher.start()
        except BaseException:
            self.stop()
            raise
        self._api_thread = threading.Thread(
            target=self._api.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="lakelog-dev-api",
            daemon=True,
        )
        self._api_thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, let requests in flight finish (a few seconds at most), stop moto.

        Safe to call more than once, and after a failed `start`. The process environment
        and log levels `start` changed are restored.
        """
        compactor, self.compactor = self.compactor, None
        if compactor is not None:
            compactor.stop(DRAIN_SECONDS)
        gateway, self._gateway = self._gateway, None
        if gateway is not None:
            gateway.stop()
        self.dispatcher.stop(DRAIN_SECONDS)
        api, self._api = self._api, None
        thread, self._api_thread = self._api_thread, None
        if api is not None:
            api.stopping.set()
            if thread is not None:
                api.shutdown()  # returns once serve_forever has; never call it before
                thread.join(DRAIN_SECONDS)
            api.server_close()
            api.invoke.wait_idle(DRAIN_SECONDS)
        moto, self._moto = self._moto, None
        if moto is not None:
            moto.stop()
        self._moto_url = None
        self._restore_process()

    def __enter__(self) -> LocalService:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Internals --------------------------------------------------------------------------
    def _adjust_process(self) -> None:
        """Powertools without CloudWatch or X-Ray, quiet logs; remember what was there."""
        wanted = {**_POWERTOOLS_ENV, "POWERTOOLS_LOG_LEVEL": "WARNING"}
        self._saved_env = {name: os.environ.get(name) for name in wanted}
        os.environ.update(_POWERTOOLS_ENV)
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        # werkzeug logs every S3 and DynamoDB call to moto at INFO; only problems matter.
        werkzeug = logging.getLogger("werkzeug")
        self._saved_log_level = werkzeug.level
        werkzeug.setLevel(logging.WARNING)

    def _restore_process(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}
        if self._saved_log_level is not None:
            logging.getLogger("werkzeug").setLevel(self._saved_log_level)
            self._saved_log_level = None

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer  # noqa: PLC0415 - moto is optional

        serialize_moto_dynamodb()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self._moto_url = f"http://{host}:{port}"

    def _client(self, service: Literal["s3", "dynamodb", "sqs"]) -> Any:
        # Creating clients from one session is not thread-safe.
        with self._session_lock:
            if self._session is None:
                self._session = boto3.Session(
                    aws_access_key_id=FAKE_CREDENTIALS["aws_access_key_id"],
                    aws_secret_access_key=FAKE_CREDENTIALS["aws_secret_access_key"],
                    aws_session_token=FAKE_CREDENTIALS["aws_session_token"],
                    region_name=REGION,
                )
            return self._session.client(
                service,
                endpoint_url=self.s3_endpoint_url,
                config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}),
            )

    def _s3_client(self) -> S3Client:
        client: S3Client = self._client("s3")
        return client

    def _dynamodb_client(self) -> DynamoDBClient:
        client: DynamoDBClient = self._client("dynamodb")
        return client

    def _make_handler(self, engine: Engine) -> Handler:
        settings = ApiSettings(
            bucket=self.names.bucket,
            ledger_table=self.names.ledger_table,
            catalog_table=self.names.catalog_table,
            default_acl=self.default_acl,
            env="local",
        )
        return make_handler(settings, engine=engine)

    def _start_gateway(self, engine: Engine) -> None:
        """Serve the Kafka protocol on ``engine`` when `kafka_port` is set."""
        if self.kafka_port is None:
            return
        # Without a principal the API answers 401; the gateway then asks for SASL.
        config = GatewayConfig(
            host=self.host,
            port=self.kafka_port,
            advertised_host=_url_host(self.host).strip("[]"),
            default_principal=self.principal or "",
            sasl=self.principal is None,
            # A connection may name its own principal with SASL/PLAIN (the username; any
            # password is accepted locally, ADR 0016 §7): without a principal it must, with
            # one a connection without SASL is that principal.
            any_password=True,
        )
        access = engine.access_control(self.default_acl)
        try:
            self._gateway = RunningGateway(KafkaGateway(engine, access, config))
        except OSError as exc:
            raise KafkaPortError(exc.errno, exc.strerror or str(exc)) from exc
        self.bootstrap_servers = self._gateway.bootstrap

    def _engine(self) -> Engine:
        """An engine on the local storage whose appends are handed to the dispatcher."""
        return Engine.from_clients(
            self._s3_client(),
            self._dynamodb_client(),
            self.names,
            functions=FunctionPolicy(allow_local=True),
            on_append=self.dispatcher.notify,
        )

    def _make_dispatcher(self) -> DispatcherCalls:
        """The dispatcher over the local storage, calling ``local:`` functions in process
        and sending to moto's SQS."""
        invoker = RoutingInvoker(local_invoker=LocalInvoker(log=sys.stderr))
        sender = SqsQueueSender(self._client("sqs"))
        states = DynamoDeliveryStateStore(self._dynamodb_client(), self.names.catalog_table)
        return dispatcher_for(
            self._engine(),
            invoker,
            sender,
            states=states,
            bootstrap_servers=self.bootstrap_servers,
        )

    def _make_compactor(self) -> CompactorCalls:
        engine = Engine.from_clients(self._s3_client(), self._dynamodb_client(), self.names)
        return compactor_for(engine)


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
