"""SDK fixtures: clients on both transports, and a transport that counts and cuts calls.

Every test that takes ``client``, ``wired`` or ``make_client`` runs twice: in direct mode
(the engine in-process) and over HTTP (`HttpTransport` whose requests go, without a socket,
to the real API handler as API Gateway v2 events, each client with its own handler and
engine, as separate processes would have). Both run on the same moto storage.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import pytest

from lakelog import Engine, ResourceNames
from lakelog.api import ApiSettings, make_handler
from lakelog.api.handler import Handler
from lakelog.client import Client, Consumer, ConsumerRecord, Transport
from lakelog.client.http import HttpReply, HttpTransport
from lakelog.contract.operations import Operation
from lakelog.errors import UnavailableError
from lakelog.local.events import LocalContext, http_event
from lakelog.types import Record
from tests.integration.api.conftest import quiet_powertools
from tests.integration.group_support import Clock

__all__ = [
    "BACKSTOP_S",
    "HandlerSender",
    "Wire",
    "operation_name",
    "pause",
    "quiet_powertools",
    "tick",
    "wait_until",
]

PRINCIPAL = "arn:aws:sts::123456789012:assumed-role/sdk-tests/session"
ENDPOINT = "http://api.in-process.test"

Mode = Literal["direct", "http"]
R = TypeVar("R")

BACKSTOP_S = 300
"""Longest wait for something that must happen; only a broken or hung test reaches it."""


def pause() -> None:
    """A short real pause while another thread is expected to act."""
    time.sleep(0.01)


def wait_until(
    condition: Callable[[], bool], step: Callable[[], None] = pause, timeout: float = BACKSTOP_S
) -> None:
    """Run ``step`` until ``condition`` holds; ``timeout`` seconds is a backstop, never what
    a test waits for."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        step()


def heartbeated(consumer: Consumer, clock: Clock) -> bool:
    """Whether ``consumer`` joined or heartbeat at the clock's current time (or closed)."""
    coordinator = consumer._coordinator
    assert coordinator is not None
    if consumer._closed:
        return True
    return coordinator.member_id is not None and coordinator._last_heartbeat >= clock.monotonic()


def tick(
    clock: Clock,
    ms: int,
    consumers: Sequence[Consumer],
    sink: list[ConsumerRecord] | None = None,
    *,
    poll: bool = True,
) -> None:
    """Move time ``ms`` (a heartbeat interval) and wait until each consumer heartbeated at
    the new time, from a poll or its heartbeat thread.

    With ``poll``, the test polls each consumer before and after (applying what its
    heartbeat brought), its records going to ``sink``; without, the consumers are polled
    by their own threads."""
    clock.advance(ms)
    polled = consumers if poll else ()
    for _ in range(2):  # after the wait: apply what a heartbeat thread brought
        for consumer in polled:
            records = consumer.poll(timeout_ms=0)
            if sink is not None:
                sink.extend(r for batch in records.values() for r in batch)
        wait_until(lambda: all(heartbeated(c, clock) for c in consumers))


_INVOKING = threading.Lock()
"""Held while any `HandlerSender` of the process runs its handler."""


class HandlerSender:
    """Sends each request to the API handler in-process, as API Gateway would deliver it.

    Requests become HTTP API payload 2.0 events (`lakelog.local.events.http_event`) with
    ``principal`` as the IAM caller; the handler's proxy reply becomes the HTTP reply.
    ``before`` runs ahead of each request (a hook for tests that need something to happen
    between two requests). Like a Lambda container (and ``lakelog dev``), the handler takes
    one event at a time: requests from several threads queue for it. The queue is the
    process's, not the sender's: Powertools keeps the current event on a class attribute
    that every resolver in the process shares, so two handlers (two members' senders)
    running at once could read each other's request.
    """

    def __init__(self, handler: Handler, principal: str = PRINCIPAL) -> None:
        self.handler = handler
        self.principal = principal
        self.before: Callable[[str, str], None] | None = None

    def __call__(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> HttpReply:
        if self.before is not None:
            self.before(method, url)
        parts = urlsplit(url)
        event = http_event(
            method,
            parts.path,
            query=parts.query,
            body=body or b"",
            headers=headers,
            principal=self.principal,
        )
        with _INVOKING:
            reply = self.handler(event, LocalContext())
        text = reply.get("body") or ""
        data = base64.b64decode(text) if reply.get("isBase64Encoded") else text.encode()
        return HttpReply(int(reply["statusCode"]), data)


def operation_name(op: Operation[Any]) -> str:
    """``append`` for `Append`, ``init_producer_id`` for `InitProducerId`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(op).__name__).lower()


class Wire:
    """A transport in front of another that counts calls and can be cut like a network.

    ``cut = True`` makes every call fail with `UnavailableError` (a crashed or partitioned
    client, as far as the service can tell); ``fail_next[name] = n`` fails the next ``n``
    calls of operation ``name`` (`operation_name`) *after* they reached the service (an
    ambiguous outcome). What sends no request (``request_bytes``, ``max_request_bytes``,
    ``close``) passes through uncounted.
    """

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.cut = False
        self.fail_next: Counter[str] = Counter()

    def call(self, op: Operation[R]) -> R:
        """``op`` on the inner transport, counted, unless the wire is cut."""
        name = operation_name(op)
        if self.cut:
            raise UnavailableError(f"{name}: connection refused (cut)")
        self.calls[name] += 1
        if getattr(op, "member", None) is not None:
            self.calls["carried_heartbeat"] += 1
        result = self.inner.call(op)
        if self.fail_next[name]:
            self.fail_next[name] -= 1
            raise UnavailableError(f"{name}: reply lost after the service acted")
        return result

    @property
    def heartbeats(self) -> int:
        """Heartbeats sent: on their own (``join_group``) or carried by a fetch."""
        return self.calls["join_group"] + self.calls["carried_heartbeat"]

    @property
    def max_request_bytes(self) -> int:
        return self.inner.max_request_bytes

    def request_bytes(self, record: Record) -> int:
        return self.inner.request_bytes(record)

    def close(self) -> None:
        self.inner.close()

    def compressed(self, compression: Literal["gzip"] | None) -> Wire:
        """This wire, now in front of ``inner.compressed(compression)``."""
        self.inner = self.inner.compressed(compression)
        return self


@pytest.fixture(params=["direct", "http"])
def transport_mode(request: pytest.FixtureRequest) -> Mode:
    """Which transport the SDK fixtures use: every SDK test runs on both."""
    mode: Mode = request.param
    return mode


Serve = Callable[[Engine], Transport]
MakeServed = Callable[[], tuple[Transport, Engine]]


@pytest.fixture
def serve(transport_mode: Mode, resources: ResourceNames) -> Serve:
    """A transport of the chosen mode served by a given engine.

    Direct: the engine itself. HTTP: a transport whose requests reach the engine through
    its own API handler (its own Lambda container, as far as the test can tell).
    """
    settings = ApiSettings(
        bucket=resources.bucket,
        ledger_table=resources.ledger_table,
        catalog_table=resources.catalog_table,
        default_acl="allow",
        env="test",
    )

    def transport(engine: Engine) -> Transport:
        if transport_mode == "direct":
            return engine
        return HttpTransport(ENDPOINT, sender=HandlerSender(make_handler(settings, engine)))

    return transport


@pytest.fixture
def make_served(serve: Serve, make_engine: Callable[..., Engine]) -> MakeServed:
    """Transports of the chosen mode, each on its own engine, with that engine."""

    def make() -> tuple[Transport, Engine]:
        engine = make_engine()
        return serve(engine), engine

    return make


@pytest.fixture
def make_transport(make_served: MakeServed) -> Callable[[], Transport]:
    """Transports of the chosen mode, each on its own engine (as separate processes)."""
    return lambda: make_served()[0]


def _wired(transport: Transport) -> tuple[Client, Wire]:
    wire = Wire(transport)
    return Client(transport=wire), wire


@pytest.fixture
def make_client(make_transport: Callable[[], Transport]) -> Callable[[], tuple[Client, Wire]]:
    """Clients of the chosen mode, each with its own transport, behind a `Wire`."""
    return lambda: _wired(make_transport())


@pytest.fixture
def clock() -> Clock:
    """A fake clock: give it to consumers as ``_clock`` to share `make_timed_client`'s time."""
    return Clock()


@pytest.fixture
def make_timed_client(
    serve: Serve, make_engine: Callable[..., Engine], clock: Clock
) -> Callable[[], tuple[Client, Wire]]:
    """Clients like `make_client`'s whose engines keep time on ``clock``."""
    return lambda: _wired(serve(make_engine(clock_ms=clock)))


@pytest.fixture
def client(make_client: Callable[[], tuple[Client, Wire]]) -> Client:
    return make_client()[0]


@pytest.fixture
def wired(make_client: Callable[[], tuple[Client, Wire]]) -> tuple[Client, Wire]:
    return make_client()
