"""The operations of the API, each declared once: its parameters, its result, its HTTP binding.

An operation is a frozen dataclass of its parameters, typed by what it returns
(``DescribeGroup(Operation[GroupDescription])``). Every transport takes the same objects:
`Engine.call` runs one on the service that implements it, `HttpTransport.call` sends it as
its binding (`Http`) says and reads the reply with the contract's models, and
`Client.call` takes any of them. Adding an operation means declaring it here, its bodies in
`lakelog.contract.models`, its service method (and one line in the engine's table), its
route and its CLI command (docs/adr/0011-operations.md).

This module is plain dataclasses: importing it loads neither pydantic nor the engine; the
models load when an operation first writes a body or reads a reply (`Operation.encode`,
`Operation.decode`).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar, cast
from urllib.parse import quote

from lakelog.errors import InvalidRequestError
from lakelog.limits import DEFAULT_FETCH_BYTES, DEFAULT_FETCH_RECORDS, MAX_API_FETCH_BYTES
from lakelog.types import (
    FetchManyResult,
    FetchPosition,
    FetchResult,
    GroupDescription,
    Membership,
    OffsetAndTimestamp,
    OffsetCommit,
    ProducerBatch,
    Record,
    RecordMetadata,
    ResetTarget,
    Subscription,
    SubscriptionStatus,
    TopicDescription,
)

__all__ = [
    "AlterTopic",
    "Append",
    "CommitOffsets",
    "CreateSubscription",
    "CreateTopic",
    "DeleteSubscription",
    "DeleteTopic",
    "DescribeGroup",
    "DescribeSubscription",
    "DescribeTopic",
    "Fetch",
    "FetchMany",
    "Http",
    "InitProducerId",
    "JoinGroup",
    "LeaveGroup",
    "ListOffset",
    "ListSubscriptions",
    "ListTopics",
    "OffsetForTime",
    "Operation",
    "ResetOffsets",
]

R_co = TypeVar("R_co", covariant=True)


@dataclass(frozen=True)
class Http:
    """How an operation travels over the HTTP API v1.

    Attributes
    ----------
    method, path
        The route; ``{name}`` in ``path`` is the operation's field ``name``, URL-quoted.
    query
        Fields sent as query parameters (those left at None are not sent; booleans as
        ``true``/``false``).
    request
        Name of the request body model in `lakelog.contract.models` (None: no body); its
        ``encode(op)`` writes the body.
    reply
        Name of the reply model (None: the reply has no body); its ``decode(data, op)``
        gives the operation's result.
    compressible
        The body may be sent gzip-compressed (when the transport is asked to).
    """

    method: Literal["GET", "POST", "PATCH", "DELETE"]
    path: str
    query: tuple[str, ...] = ()
    request: str | None = None
    reply: str | None = None
    compressible: bool = False
    path_fields: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(name for _, name, _, _ in string.Formatter().parse(self.path) if name)
        object.__setattr__(self, "path_fields", names)


_PATH_FIELD_NAMES: Final = {
    "topic": "topic name",
    "group": "group id",
    "member_id": "member id",
    "name": "subscription name",
}


def _path_segment(field_name: str, value: object) -> str:
    """``value`` URL-quoted as one segment of a request path.

    A value no path can carry as itself is refused (`InvalidRequestError`), as the engine
    refuses it in direct mode: a partition that is not an int, a name that is not a
    non-empty string, and ``.`` or ``..``, which HTTP clients remove as dot segments
    (``/v1/topics/..`` is sent as ``/v1/``), so that a request never reaches another
    path than its operation's (or none, "no route").
    """
    if field_name == "partition":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequestError(f"partition must be an integer, not {value!r}")
        return str(value)
    label = _PATH_FIELD_NAMES.get(field_name, field_name)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"{label} must be a non-empty string, not {value!r}")
    if value in (".", ".."):
        raise InvalidRequestError(f"{label} cannot be '.' or '..'")
    return quote(value, safe="")


class Operation(Generic[R_co]):
    """One operation of the API, returning ``R_co``; subclasses are frozen dataclasses.

    Each subclass declares ``http``, its binding to the HTTP API (`Http`).
    """

    http: ClassVar[Http]

    def url_path(self) -> str:
        """The request path, with this operation's fields in it (`_path_segment`)."""
        values = {name: _path_segment(name, getattr(self, name)) for name in self.http.path_fields}
        return self.http.path.format_map(values)

    def url_query(self) -> dict[str, Any]:
        """The query parameters (fields left at None are not sent)."""
        values = ((name, getattr(self, name)) for name in self.http.query)
        return {
            name: (str(value).lower() if isinstance(value, bool) else value)
            for name, value in values
            if value is not None
        }

    def encode(self) -> bytes | None:
        """The request body, written by the binding's request model (None: no body)."""
        if self.http.request is None:
            return None
        body: bytes = _model(self.http.request).encode(self)
        return body

    def decode(self, data: bytes) -> R_co:
        """The result in the reply body ``data``, read by the binding's reply model."""
        if self.http.reply is None:
            return cast("R_co", None)
        return cast("R_co", _model(self.http.reply).decode(data, self))


def _model(name: str) -> Any:
    """The model ``name`` of `lakelog.contract.models` (pydantic loads at the first use)."""
    from lakelog.contract import models  # noqa: PLC0415 - the models load at first use

    return getattr(models, name)


# Topics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateTopic(Operation[TopicDescription]):
    """Create a topic; raises `TopicExistsError` if it exists."""

    http: ClassVar = Http("POST", "/v1/topics", request="TopicCreate", reply="TopicState")
    name: str
    partitions: int = 1
    config: dict[str, Any] | None = None


@dataclass(frozen=True)
class ListTopics(Operation[list[str]]):
    """Names of every topic (the caller may see)."""

    http: ClassVar = Http("GET", "/v1/topics", reply="TopicList")


@dataclass(frozen=True)
class DescribeTopic(Operation[TopicDescription]):
    """Config and per-partition offsets and bytes of a topic; with ``levels``, also its
    segments and bytes per storage level (L0, L1), which costs more reads."""

    http: ClassVar = Http("GET", "/v1/topics/{topic}", query=("levels",), reply="TopicState")
    topic: str
    levels: bool | None = None


@dataclass(frozen=True)
class AlterTopic(Operation[TopicDescription]):
    """Change config keys and/or grow the partition count."""

    http: ClassVar = Http("PATCH", "/v1/topics/{topic}", request="TopicAlter", reply="TopicState")
    topic: str
    config: dict[str, Any] | None = None
    partitions: int | None = None


@dataclass(frozen=True)
class DeleteTopic(Operation[None]):
    """Delete a topic; its segments go to gc."""

    http: ClassVar = Http("DELETE", "/v1/topics/{topic}")
    topic: str


# Records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InitProducerId(Operation[int]):
    """A producer id no producer had before (idempotent producers), at epoch 0."""

    http: ClassVar = Http("POST", "/v1/producers", reply="ProducerIdReply")


@dataclass(frozen=True)
class Append(Operation[list[RecordMetadata]]):
    """Append records; one result per record, in order."""

    http: ClassVar = Http(
        "POST",
        "/v1/topics/{topic}/records",
        request="ProduceRequest",
        reply="ProduceReply",
        compressible=True,
    )
    topic: str
    records: Sequence[Record]
    producer: ProducerBatch | None = None


@dataclass(frozen=True)
class Fetch(Operation[FetchResult]):
    """Records of one partition from ``offset``, within ``max_records`` and ``max_bytes``."""

    http: ClassVar = Http(
        "GET",
        "/v1/topics/{topic}/partitions/{partition}/records",
        query=("offset", "max_records", "max_bytes"),
        reply="FetchReply",
    )
    topic: str
    partition: int
    offset: int
    max_records: int = DEFAULT_FETCH_RECORDS
    max_bytes: int = DEFAULT_FETCH_BYTES

    def url_query(self) -> dict[str, Any]:
        """Over HTTP at most `MAX_API_FETCH_BYTES` (asking less is always valid)."""
        return super().url_query() | {"max_bytes": min(self.max_bytes, MAX_API_FETCH_BYTES)}


@dataclass(frozen=True)
class FetchMany(Operation[FetchManyResult]):
    """Records of several partitions in one request, sharing one budget (ADR 0012 §3).

    Each position starts at its offset (and the cursor the previous fetch returned for
    it); results come in the order of ``positions``, an error of one partition in its
    place. ``max_bytes`` and ``max_records`` bound the whole request, and its first record
    is returned however large. ``member``, a heartbeat (`JoinGroup` with its
    ``member_id``), runs in the same request, exactly as `JoinGroup` runs alone.
    """

    http: ClassVar = Http("POST", "/v1/fetch", request="FetchManyRequest", reply="FetchManyReply")
    positions: Sequence[FetchPosition]
    max_bytes: int = DEFAULT_FETCH_BYTES
    max_records: int = DEFAULT_FETCH_RECORDS
    member: JoinGroup | None = None


_OFFSETS: Final = "/v1/topics/{topic}/partitions/{partition}/offsets"


@dataclass(frozen=True)
class ListOffset(Operation[int]):
    """A partition's log start (``"earliest"``) or high watermark (``"latest"``)."""

    http: ClassVar = Http("GET", _OFFSETS, query=("spec",), reply="OffsetReply")
    topic: str
    partition: int
    spec: Literal["earliest", "latest"]


@dataclass(frozen=True)
class OffsetForTime(Operation[OffsetAndTimestamp | None]):
    """The first offset with a timestamp >= ``timestamp_ms`` and that record's timestamp,
    or None.

    One request answers "which offset", "is there such a record" and "what is its
    timestamp", so an append, retention or deletion landing meanwhile cannot change the
    answer.
    """

    http: ClassVar = Http("GET", _OFFSETS, query=("timestamp_ms",), reply="TimeOffsetReply")
    topic: str
    partition: int
    timestamp_ms: int


# Consumer groups ---------------------------------------------------------------------


@dataclass(frozen=True)
class JoinGroup(Operation[Membership]):
    """Join a group, or heartbeat in it with ``member_id``; the reply holds the leases."""

    http: ClassVar = Http(
        "POST", "/v1/groups/{group}/members", request="JoinRequest", reply="MembershipReply"
    )
    group: str
    topics: Sequence[str]
    member_id: str | None = None
    session_timeout_ms: int | None = None


@dataclass(frozen=True)
class LeaveGroup(Operation[None]):
    """Leave a group, releasing the member's leases at once."""

    http: ClassVar = Http("DELETE", "/v1/groups/{group}/members/{member_id}")
    group: str
    member_id: str


@dataclass(frozen=True)
class CommitOffsets(Operation[None]):
    """Commit offsets, all or none, each fenced by its lease epoch."""

    http: ClassVar = Http("POST", "/v1/groups/{group}/offsets", request="CommitRequest")
    group: str
    member_id: str
    offsets: Sequence[OffsetCommit]


@dataclass(frozen=True)
class DescribeGroup(Operation[GroupDescription]):
    """Members, leases, committed offsets and lag of a group."""

    http: ClassVar = Http("GET", "/v1/groups/{group}", reply="GroupReply")
    group: str


@dataclass(frozen=True)
class ResetOffsets(Operation[dict[int, int]]):
    """Move a group's committed offsets of ``topic`` to ``to`` (only with no live member);
    the result maps partition to new committed offset."""

    http: ClassVar = Http(
        "POST", "/v1/groups/{group}/offsets/reset", request="ResetRequest", reply="ResetReply"
    )
    group: str
    topic: str
    to: ResetTarget


# Subscriptions (ADR 0015 §1) ----------------------------------------------------------

_SUBSCRIPTIONS: Final = "/v1/topics/{topic}/subscriptions"


@dataclass(frozen=True)
class CreateSubscription(Operation[Subscription]):
    """Subscribe a function to ``subscription.topic``; the stored subscription (with its
    topic id and creation time). Raises `SubscriptionExistsError` if the name is taken."""

    http: ClassVar = Http(
        "POST", _SUBSCRIPTIONS, request="SubscriptionCreate", reply="SubscriptionState"
    )
    subscription: Subscription
    topic: str = field(init=False)
    """The subscribed topic (the route's ``{topic}``): ``subscription.topic``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "topic", self.subscription.topic)


@dataclass(frozen=True)
class ListSubscriptions(Operation[list[Subscription]]):
    """Every subscription of a topic, by name."""

    http: ClassVar = Http("GET", _SUBSCRIPTIONS, reply="SubscriptionList")
    topic: str


@dataclass(frozen=True)
class DescribeSubscription(Operation[SubscriptionStatus]):
    """A subscription with its committed offset, high watermark and lag per partition."""

    http: ClassVar = Http("GET", _SUBSCRIPTIONS + "/{name}", reply="SubscriptionStatusReply")
    topic: str
    name: str


@dataclass(frozen=True)
class DeleteSubscription(Operation[None]):
    """Delete a subscription and its progress (its consumer group)."""

    http: ClassVar = Http("DELETE", _SUBSCRIPTIONS + "/{name}")
    topic: str
    name: str
