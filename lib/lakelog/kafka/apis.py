"""What the gateway serves: each API key, its versions and its handler (ADR 0016 §2).

A handler is a coroutine that takes the parsed request body and the connection's
`Session` and returns the response body. Each API lives in its own module beside this
one, which lists it in `SERVED`; service calls are synchronous (boto3), so handlers run
them on the gateway's threads through `Session.call`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from kio.static.protocol import RequestPayload, ResponsePayload

    from lakelog.contract.operations import Operation
    from lakelog.kafka.appends import AppendSignal
    from lakelog.kafka.batching import AppendBatcher
    from lakelog.kafka.sasl import Authenticator
    from lakelog.kafka.server import GatewayConfig
    from lakelog.service.acl import AccessControl
    from lakelog.service.engine import Engine

__all__ = [
    "TICKET",
    "Api",
    "CloseConnection",
    "Handler",
    "Services",
    "Session",
    "Turns",
    "registry",
    "response_type",
]

R = TypeVar("R")


class CloseConnection(Exception):  # noqa: N818 - an instruction to the server, not an error
    """Raised by a handler whose request ends the connection instead of being answered:
    Kafka closes an ``acks=0`` producer's connection when a partition failed, its only
    way to tell a producer that reads no answers."""


class Services(Protocol):
    """What handlers reach through their session: the engine, access control, and the
    gateway's thread pool and settings."""

    engine: Engine
    access: AccessControl
    apis: Mapping[int, Api]
    config: GatewayConfig
    appends: AppendSignal
    batcher: AppendBatcher
    advertised_host: str
    advertised_port: int
    node_id: int
    max_frame_bytes: int
    authenticators: Mapping[str, Authenticator]
    """The SASL mechanisms offered, by name."""

    async def run(self, function: Callable[..., R], *args: Any) -> R:
        """Run a blocking call (a service call) off the event loop."""


TICKET: ContextVar[int] = ContextVar("lakelog_kafka_ticket", default=-1)
"""The arrival number of the request a handler answers, on its connection."""


class Turns:
    """Arrival order of one connection's requests, for handlers that answer concurrently.

    The server issues each request a ticket (`TICKET`) as it arrives and releases it when
    its answer is ready; `Session.in_order` lets a handler wait until every earlier
    request of its connection is released, then release its own early.
    """

    def __init__(self) -> None:
        self._issued = 0
        self._lowest = 0
        """Every ticket below it is released."""
        self._released: set[int] = set()
        self._changed = asyncio.Condition()

    def issue(self) -> int:
        """The next ticket, in arrival order."""
        ticket = self._issued
        self._issued += 1
        return ticket

    async def wait(self, ticket: int) -> None:
        """Until every ticket before ``ticket`` is released."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._lowest >= ticket)

    async def release(self, ticket: int) -> None:
        """Release ``ticket`` (again is harmless)."""
        if ticket < self._lowest or ticket in self._released:
            return
        self._released.add(ticket)
        while self._lowest in self._released:
            self._released.remove(self._lowest)
            self._lowest += 1
        async with self._changed:
            self._changed.notify_all()


@dataclass
class Session:
    """One client connection: who it is, and what it negotiated.

    ``principal`` is the authenticated caller (SASL), or the gateway's default principal
    where it runs without SASL (``lakelog dev``); every service call is made as it.
    """

    services: Services
    principal: str
    client_id: str | None = None
    authenticated: bool = False
    sasl_mechanism: str | None = None
    """The mechanism the principal authenticated with (None: not by SASL)."""
    closing: bool = False
    """Set by a handler whose answer is the connection's last (a failed authentication)."""
    client_host: str = ""
    """The client's address as Kafka reports it (``/127.0.0.1``; DescribeGroups)."""
    state: dict[str, Any] = field(default_factory=dict)
    """Per-connection state of handlers that need it (by handler module)."""
    turns: Turns = field(default_factory=Turns)

    @contextlib.asynccontextmanager
    async def in_order(self) -> AsyncIterator[None]:
        """Run the block after every earlier request of this connection has left its own
        (or been answered), and before any later one enters: a pipelined API (Produce)
        submits its appends here, so that they keep the order the client sent them in."""
        ticket = TICKET.get()
        await self.turns.wait(ticket)
        try:
            yield
        finally:
            await self.turns.release(ticket)

    async def call(self, op: Operation[R]) -> R:
        """Run ``op`` on the engine as this session's principal."""
        return await self.services.run(self.services.engine.call, op, self.principal)

    async def allowed(self, operation: str, topic: str) -> bool:
        """Whether lakelog's ACLs let this session's principal ``operation`` (``produce``,
        ``consume``, ``admin``) on ``topic``."""
        access = self.services.access
        return await self.services.run(access.allowed, self.principal, operation, topic)


Handler = Callable[[Any, Session], Awaitable["ResponsePayload | None"]]
"""Answers one request body of an API (any served version) for a session; None for a
request that gets no response at all (Produce with acks=0)."""


@dataclass(frozen=True, slots=True)
class Api:
    """One served API: its key, the versions served, and its handler.

    The handler receives the body of the version the client sent (a kio request type of
    that version) and returns the response type of the same version, or None when the
    protocol sends no response (Produce with ``acks=0``).
    """

    key: int
    min_version: int
    max_version: int
    handle: Handler
    before_auth: bool = False
    """Served before SASL completes (ApiVersions, SaslHandshake, SaslAuthenticate)."""
    pipelined: bool = False
    """The connection reads on while this API's requests are answered (their answers
    still leave in order): for Produce, whose appends wait for a batch. Other requests
    are answered one at a time, as a broker does."""

    def serves(self, version: int) -> bool:
        """Whether ``version`` of the API is served."""
        return self.min_version <= version <= self.max_version


def response_type(body: RequestPayload) -> type[ResponsePayload]:
    """The response type of ``body``'s API at the same version."""
    from kio.index import load_response_schema  # noqa: PLC0415

    return load_response_schema(body.__api_key__, body.__version__)


def registry(*apis: Api) -> Mapping[int, Api]:
    """``apis`` by key; a key listed twice is a programming error."""
    served: dict[int, Api] = {}
    for api in apis:
        if api.key in served:
            raise ValueError(f"API {api.key} is listed twice")
        served[api.key] = api
    return served
