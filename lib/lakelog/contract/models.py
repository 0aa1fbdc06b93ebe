"""The HTTP API v1 contract: request and reply bodies, shared by the server and the SDK.

The server validates requests with these models and serializes replies from them; the SDK
(`lakelog.client.http`) builds its requests from the same models and reads replies with
them (``to_...`` methods give the engine's types), so neither side can drift. The hot
paths (produce and fetch) have ``json_of``/``..._of`` shortcuts that skip building a model
per record; unit tests hold each shortcut equal to its model.

Keys and values travel in the Confluent REST Proxy v3 typed form on the way in
(``{"type": "BINARY", "data": "<base64>"}``, ``{"type": "JSON", "data": <any JSON>}``,
``{"type": "STRING", "data": "text"}``) and as base64 strings (or null) on the way out.
Header values are base64 both ways.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Self, TypeVar

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from lakelog.contract.errors import error_body, error_of_body
from lakelog.errors import InvalidRequestError, LakelogError
from lakelog.limits import (
    DEFAULT_FETCH_BYTES,
    DEFAULT_FETCH_RECORDS,
    MAX_API_FETCH_BYTES,
    MAX_API_FETCH_MANY_BYTES,
    MAX_APPEND_RECORDS,
    MAX_FETCH_MANY_REPLY_BYTES,
    MAX_FETCH_PARTITIONS,
    MAX_FETCH_RECORDS,
    MAX_HEADERS_PER_RECORD,
    MAX_OFFSETS_PER_COMMIT,
    MAX_PARTITIONS,
    MAX_SESSION_TIMEOUT_MS,
    MAX_TOPIC_NAME_LENGTH,
    MAX_TOPICS_PER_MEMBER,
    MIN_SESSION_TIMEOUT_MS,
)
from lakelog.types import (
    Assignment,
    FetchManyResult,
    FetchPosition,
    FetchResult,
    GroupDescription,
    Header,
    LevelUsage,
    MemberInfo,
    Membership,
    OffsetAndTimestamp,
    OffsetCommit,
    OnFailure,
    PartitionInfo,
    PartitionLag,
    PartitionLevels,
    ProducerBatch,
    Record,
    RecordMetadata,
    ResetTarget,
    StorageLevels,
    StoredRecord,
    Subscription,
    SubscriptionStatus,
    ToOffset,
    TopicDescription,
    TopicPartition,
    ToTimestamp,
)
from lakelog.validation import summarize

if TYPE_CHECKING:
    from lakelog.contract.operations import (
        AlterTopic,
        Append,
        CommitOffsets,
        CreateSubscription,
        CreateTopic,
        Fetch,
        FetchMany,
        JoinGroup,
        OffsetForTime,
        ResetOffsets,
    )

__all__ = [
    "MAX_API_FETCH_BYTES",
    "MAX_INT64",
    "AclRule",
    "AclRules",
    "AssignmentState",
    "BinaryData",
    "CommitRequest",
    "ErrorBody",
    "FetchManyReply",
    "FetchManyRequest",
    "FetchReply",
    "FetchedHeader",
    "FetchedPartition",
    "FetchedRecord",
    "GroupReply",
    "HeaderIn",
    "JoinRequest",
    "JsonData",
    "LevelState",
    "MemberHeartbeatIn",
    "MemberState",
    "MembershipReply",
    "OffsetCommitIn",
    "OffsetReply",
    "OnFailureBody",
    "PartitionLagState",
    "PartitionLevelsState",
    "PartitionPositionIn",
    "PartitionState",
    "ProduceReply",
    "ProduceRequest",
    "ProducedRecord",
    "ProducerIdReply",
    "ProducerIn",
    "RecordIn",
    "ResetPartition",
    "ResetReply",
    "ResetRequest",
    "ResetToOffset",
    "ResetToTimestamp",
    "StringData",
    "SubscriptionCreate",
    "SubscriptionList",
    "SubscriptionState",
    "SubscriptionStatusReply",
    "TimeOffsetReply",
    "TopicAlter",
    "TopicCreate",
    "TopicLevelsState",
    "TopicList",
    "TopicPartitionState",
    "TopicState",
    "TypedData",
    "b64",
    "build",
    "request_body",
]


MAX_INT64: Final = 2**63 - 1
"""Largest integer of any field: offsets, epochs, ids and sequences are signed 64-bit."""

NonNegative = Annotated[int, Field(ge=0, le=MAX_INT64)]
"""An integer from 0 to `MAX_INT64`."""


class _Reply(BaseModel):
    """Reply bodies; validators are built at first use, so importing the contract is cheap.

    A reply to an operation (`lakelog.contract.operations`) gives its result with
    `decode`, which reads the body with the model and calls `result`.
    """

    model_config = ConfigDict(defer_build=True)

    @classmethod
    def decode(cls, data: bytes, op: Any) -> Any:
        """The result of ``op`` that the reply body ``data`` holds."""
        return cls.model_validate_json(data).result(op)

    def result(self, op: Any) -> Any:
        """The result of ``op`` this reply stands for (replies to operations define it)."""
        raise NotImplementedError(f"{type(self).__name__} answers no operation")


class _Strict(BaseModel):
    """Request bodies: unknown fields and loose types are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)


class _Request(_Strict):
    """The body of an operation's request: `encode` writes it from the operation."""

    @classmethod
    def of_operation(cls, op: Any) -> Self:
        """The body of ``op``, validated as the server will validate it."""
        raise NotImplementedError(f"{cls.__name__} is built from no operation")

    @classmethod
    def encode(cls, op: Any) -> bytes:
        """The JSON body of ``op``'s request.

        Raises
        ------
        InvalidRequestError
            The request breaks the contract (the server would answer 422).
        """
        return json.dumps(request_body(cls.of_operation(op))).encode()


def b64(data: bytes | None) -> str | None:
    """Base64 text of ``data``, or None."""
    return None if data is None else base64.b64encode(data).decode("ascii")


def request_body(model: BaseModel) -> dict[str, Any]:
    """The JSON body of a request model (fields left at None are not sent)."""
    return model.model_dump(mode="json", exclude_none=True)


_Model = TypeVar("_Model", bound=BaseModel)


def build(model: type[_Model], **fields: Any) -> _Model:
    """A request model of ``fields``, validated as the server will validate it.

    Raises
    ------
    InvalidRequestError
        The request breaks the contract (the server would answer 422).
    """
    try:
        return model(**fields)
    except ValidationError as error:
        raise InvalidRequestError(summarize(error.errors()) or "invalid request") from None


class ErrorBody(_Reply):
    """Every error reply: a stable code, a message for people, and the code's fields.

    Which fields come with which code is `lakelog.contract.errors.ERRORS`.
    """

    error: str
    message: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    log_start_offset: int | None = None
    high_watermark: int | None = None
    group: str | None = None
    member_id: str | None = None
    partitions: list[Annotated[list[str | int], Field(min_length=2, max_length=2)]] | None = None
    """``[topic, partition]`` pairs."""
    members: list[str] | None = None
    producer_id: int | None = None
    epoch: int | None = None
    current_epoch: int | None = None
    sequence: int | None = None
    expected: int | None = None
    principal: str | None = None
    operation: str | None = None
    segment_key: str | None = None
    reason: str | None = None
    name: str | None = None
    """A subscription's name (with ``topic``)."""


class _Bytes(_Strict):
    """Models whose ``bytes`` fields are base64 text in JSON (decoded while parsing)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, val_json_bytes="base64", defer_build=True
    )


class BinaryData(_Bytes):
    """``{"type": "BINARY", "data": "<base64>"}``."""

    type: Literal["BINARY"]
    data: bytes

    def to_bytes(self) -> bytes:
        """The bytes this key or value stands for."""
        return self.data


class StringData(_Strict):
    """``{"type": "STRING", "data": "text"}``: the UTF-8 bytes of the text."""

    type: Literal["STRING"]
    data: str

    def to_bytes(self) -> bytes:
        """The bytes this key or value stands for."""
        return self.data.encode()


class JsonData(_Strict):
    """``{"type": "JSON", "data": <any JSON>}``: the compact JSON text of ``data``.

    ``NaN``, ``Infinity`` and numbers too large for a double (``1e400``) are refused when
    the text is written (`to_bytes`), the one pass over ``data`` a record needs: their text
    would not be JSON.
    """

    type: Literal["JSON"]
    data: Any

    def to_bytes(self) -> bytes:
        """The bytes this key or value stands for.

        Raises
        ------
        InvalidRequestError
            ``data`` holds a number JSON text cannot (NaN, an infinity).
        """
        try:
            text = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError:
            raise InvalidRequestError(
                "JSON data must not hold NaN, Infinity or numbers beyond a double's range"
            ) from None
        return text.encode()


TypedData = Annotated[BinaryData | StringData | JsonData, Field(discriminator="type")]
"""A key or value in Confluent v3 form."""


class HeaderIn(_Bytes):
    """A record header: name and base64 value (null allowed)."""

    key: Annotated[str, Field(min_length=1, max_length=1024)]
    value: bytes | None = None


class RecordIn(_Strict):
    """One record of a produce request."""

    key: TypedData | None = None
    value: TypedData | None = None
    headers: Annotated[
        list[HeaderIn], Field(default_factory=list, max_length=MAX_HEADERS_PER_RECORD)
    ]
    partition: Annotated[int, Field(ge=0, lt=MAX_PARTITIONS)] | None = None
    timestamp_ms: NonNegative | None = None

    def to_record(self) -> Record:
        """The engine's record."""
        headers: tuple[Header, ...] = (
            tuple((h.key, h.value) for h in self.headers) if self.headers else ()
        )
        return Record(
            key=self.key.to_bytes() if self.key else None,
            value=self.value.to_bytes() if self.value else None,
            headers=headers,
            partition=self.partition,
            timestamp_ms=self.timestamp_ms,
        )


class ProducerIn(_Strict):
    """Idempotent producer identity.

    ``sequence`` is the base sequence when every record goes to one partition;
    ``sequences`` maps partition (as a string) to base sequence otherwise.
    """

    id: NonNegative
    epoch: NonNegative
    sequence: NonNegative | None = None
    sequences: dict[str, NonNegative] | None = None

    @field_validator("sequences")
    @classmethod
    def _partition_keys(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None and not all(key.isascii() and key.isdigit() for key in value):
            raise ValueError("sequences keys must be partition numbers")
        return value

    @classmethod
    def of(cls, batch: ProducerBatch) -> ProducerIn:
        """The wire form of an engine producer identity (not validated: the server does)."""
        return cls.model_construct(
            id=batch.producer_id,
            epoch=batch.epoch,
            sequence=batch.sequence,
            sequences={str(p): s for p, s in batch.sequences.items()} or None,
        )


class ProduceRequest(_Request):
    """``POST /v1/topics/{topic}/records``.

    Parse it with `ProduceRequest.parse_body`: one pass from JSON text, base64 decoded
    while parsing, several times faster than parsing JSON and then validating objects.
    """

    records: Annotated[list[RecordIn], Field(min_length=1, max_length=MAX_APPEND_RECORDS)]
    producer: ProducerIn | None = None

    @classmethod
    def parse_body(cls, body: str | bytes) -> ProduceRequest:
        """The request in ``body`` (JSON text); raises pydantic's ``ValidationError``."""
        return cls.model_validate_json(body)

    @classmethod
    def openapi_schema(cls) -> dict[str, Any]:
        """The JSON schema of the body with its definitions inlined (for OpenAPI)."""
        schema = cls.model_json_schema(mode="validation")
        definitions = schema.pop("$defs", {})

        def inline(node: Any) -> Any:
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str) and ref.startswith("#/$defs/"):
                    return inline(definitions[ref.removeprefix("#/$defs/")])
                return {key: inline(value) for key, value in node.items()}
            if isinstance(node, list):
                return [inline(item) for item in node]
            return node

        return dict(inline(schema))

    @staticmethod
    def json_of(records: Sequence[Record], producer: ProducerBatch | None = None) -> bytes:
        """The request body for ``records``, serialized without a model per record.

        Keys, values and header values go as BINARY (base64); fields left at None are not
        sent. Parses back to exactly the request the models would build.
        """
        items: list[dict[str, Any]] = []
        for record in records:
            item: dict[str, Any] = {}
            if record.key is not None:
                item["key"] = {"type": "BINARY", "data": b64(record.key)}
            if record.value is not None:
                item["value"] = {"type": "BINARY", "data": b64(record.value)}
            if record.headers:
                item["headers"] = [{"key": k, "value": b64(v)} for k, v in record.headers]
            if record.partition is not None:
                item["partition"] = record.partition
            if record.timestamp_ms is not None:
                item["timestamp_ms"] = record.timestamp_ms
            items.append(item)
        body: dict[str, Any] = {"records": items}
        if producer is not None:
            body["producer"] = request_body(ProducerIn.of(producer))
        return pydantic_core.to_json(body)

    @classmethod
    def encode(cls, op: Append) -> bytes:
        """The body of an append (`json_of`)."""
        return cls.json_of(op.records, op.producer)

    def to_records(self) -> list[Record]:
        """The engine's records; raises `InvalidRequestError` naming a record that has none."""
        records: list[Record] = []
        for index, record in enumerate(self.records):
            try:
                records.append(record.to_record())
            except InvalidRequestError as error:
                raise InvalidRequestError(f"record {index}: {error.message}") from None
        return records

    def to_producer(self) -> ProducerBatch | None:
        """The engine's producer identity, if the request has one."""
        info = self.producer
        if info is None:
            return None
        return ProducerBatch(
            producer_id=info.id,
            epoch=info.epoch,
            sequences={int(p): s for p, s in (info.sequences or {}).items()},
            sequence=info.sequence,
        )

    def __repr__(self) -> str:
        # Frameworks log route arguments; printing a megabyte of records would cost more
        # CPU than appending them.
        return f"ProduceRequest(<{len(self.records)} records>, producer={self.producer!r})"

    __str__ = __repr__


class ProducedRecord(_Reply):
    """Where one record landed."""

    partition: int
    offset: int
    timestamp_ms: int


class ProduceReply(_Reply):
    """Results in request order."""

    results: list[ProducedRecord]

    @staticmethod
    def json_of(acks: Sequence[RecordMetadata]) -> bytes:
        """The reply body for ``acks``, serialized without a model per record.

        Produces exactly what the model would serialize to, several times faster.
        """
        return pydantic_core.to_json(
            {
                "results": [
                    {"partition": a.partition, "offset": a.offset, "timestamp_ms": a.timestamp}
                    for a in acks
                ]
            }
        )

    @staticmethod
    def metadata_of(reply: bytes, topic: str) -> list[RecordMetadata]:
        """Where each record landed, read from a reply body without a model per record."""
        return [
            RecordMetadata(topic, r["partition"], r["offset"], r["timestamp_ms"])
            for r in json.loads(reply)["results"]
        ]

    @classmethod
    def decode(cls, data: bytes, op: Append) -> list[RecordMetadata]:
        """Where each record of an append landed (`metadata_of`); one result per record."""
        results = cls.metadata_of(data, op.topic)
        if len(results) != len(op.records):
            raise ValueError(f"{len(results)} results for {len(op.records)} records")
        return results


def _b64_text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


Base64 = Annotated[
    bytes,
    PlainSerializer(_b64_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
"""Bytes as standard base64 text in JSON (decoded while parsing, in pydantic's core)."""


class _Fetched(_Reply):
    model_config = ConfigDict(defer_build=True, val_json_bytes="base64")


class FetchedHeader(_Fetched):
    """A header as fetched: name and base64 value."""

    key: str
    value: Base64 | None


class FetchedRecord(_Fetched):
    """A record as fetched: key, value and header values in base64 (null when absent)."""

    partition: int
    offset: int
    timestamp_ms: int
    key: Base64 | None
    value: Base64 | None
    headers: list[FetchedHeader]

    @classmethod
    def of(cls, record: StoredRecord) -> FetchedRecord:
        """The reply form of a stored record."""
        return cls(
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp_ms,
            key=record.key,
            value=record.value,
            headers=[FetchedHeader(key=k, value=v) for k, v in record.headers],
        )

    def to_record(self) -> StoredRecord:
        """The engine's stored record."""
        return StoredRecord(
            self.partition,
            self.offset,
            self.timestamp_ms,
            self.key,
            self.value,
            tuple((h.key, h.value) for h in self.headers),
        )


class FetchReply(_Fetched):
    """``GET .../records``: records, where to read next, and the partition's bounds.

    The SDK reads it with the model (base64 is decoded in pydantic's core, faster than
    parsing JSON and decoding in Python); the server writes it with `json_of`.
    """

    records: list[FetchedRecord]
    next_offset: int
    high_watermark: int
    log_start_offset: int
    cursor: str | None = None
    """Where the next fetch from ``next_offset`` continues (ADR 0012 §1.5); send it back
    with that offset. Null when the service has none to give."""

    @classmethod
    def of(cls, result: FetchResult) -> FetchReply:
        """The reply form of a fetch result."""
        return cls(
            records=[FetchedRecord.of(r) for r in result.records],
            next_offset=result.next_offset,
            high_watermark=result.high_watermark,
            log_start_offset=result.log_start_offset,
            cursor=result.cursor,
        )

    @staticmethod
    def json_of(result: FetchResult) -> str:
        """The reply body of a fetch result, serialized without building a model per record.

        Produces exactly what ``FetchReply.of(result).model_dump_json()`` would, several
        times faster: a fetch reply holds up to thousands of records. It is text, as the
        Lambda reply carries it: the megabyte is built once, in one join (the small ends
        go onto the first and last records), never copied (each copy maps fresh pages).
        """
        fields = pydantic_core.to_json(
            {
                "next_offset": result.next_offset,
                "high_watermark": result.high_watermark,
                "log_start_offset": result.log_start_offset,
                "cursor": result.cursor,
            }
        )
        records = [_record_json(r).decode() for r in result.records] or [""]
        records[0] = '{"records":[' + records[0]
        records[-1] += "]," + fields[1:].decode()
        return ",".join(records)

    def result(self, op: Fetch) -> FetchResult:
        """The result of a fetch."""
        return self.to_result(op.topic, op.partition)

    def to_result(self, topic: str, partition: int) -> FetchResult:
        """The engine's fetch result."""
        return FetchResult(
            topic=topic,
            partition=partition,
            records=[r.to_record() for r in self.records],
            next_offset=self.next_offset,
            high_watermark=self.high_watermark,
            log_start_offset=self.log_start_offset,
            cursor=self.cursor,
        )


_RECORD_JSON: Final = (
    b'{"partition":%d,"offset":%d,"timestamp_ms":%d,"key":%s,"value":%s,"headers":%s}'
)


def _b64_json(data: bytes | None) -> bytes:
    """``data`` as a JSON string of its base64 text, or ``null``."""
    return b"null" if data is None else b'"%s"' % binascii.b2a_base64(data, newline=False)


def _record_json(record: StoredRecord) -> bytes:
    """The reply form of a stored record in JSON, exactly as `FetchedRecord` serializes it.

    Written from a template: numbers and base64 text need no escaping, and a fetch reply
    holds up to thousands of records (header names, which may need escaping, go through the
    serializer).
    """
    headers = (
        pydantic_core.to_json([{"key": k, "value": b64(v)} for k, v in record.headers])
        if record.headers
        else b"[]"
    )
    return _RECORD_JSON % (
        record.partition,
        record.offset,
        record.timestamp_ms,
        _b64_json(record.key),
        _b64_json(record.value),
        headers,
    )


class ProducerIdReply(_Reply):
    """``POST /v1/producers``: an id no producer had before, at epoch 0."""

    id: int
    epoch: int

    def result(self, op: Any) -> int:
        """The producer id."""
        return self.id


class OffsetReply(_Reply):
    """``GET .../offsets``.

    For ``timestamp_ms=``, ``found`` tells whether a record at or after that time exists:
    true, ``offset`` is the first such record's and ``timestamp_ms`` its timestamp; false,
    ``offset`` is the high watermark (where such a record would be appended). All come from
    one request, so no append can land between them. Absent for ``spec=``.
    """

    offset: int
    found: bool | None = None
    timestamp_ms: int | None = None

    def result(self, op: Any) -> int | OffsetAndTimestamp | None:
        """The offset asked for with ``spec=``."""
        return self.offset


class TimeOffsetReply(OffsetReply):
    """`OffsetReply` to ``timestamp_ms=``: its result is None when ``found`` is false."""

    def result(self, op: OffsetForTime) -> OffsetAndTimestamp | None:
        """The first offset at or after the time and its record's timestamp, or None."""
        if not self.found:
            return None
        if self.timestamp_ms is None:
            raise ValueError("a found offset for a time comes with its record's timestamp_ms")
        return OffsetAndTimestamp(self.offset, self.timestamp_ms)


class TopicCreate(_Request):
    """``POST /v1/topics``."""

    name: str
    partitions: Annotated[int, Field(ge=1, le=MAX_PARTITIONS)] = 1
    config: dict[str, Any] | None = None

    @classmethod
    def of_operation(cls, op: CreateTopic) -> TopicCreate:
        """The body of a topic creation."""
        return build(cls, name=op.name, partitions=op.partitions, config=op.config or None)


class TopicAlter(_Request):
    """``PATCH /v1/topics/{topic}``: grow partitions and/or change config keys."""

    partitions: Annotated[int, Field(ge=1, le=MAX_PARTITIONS)] | None = None
    config: dict[str, Any] | None = None

    @classmethod
    def of_operation(cls, op: AlterTopic) -> TopicAlter:
        """The body of a topic change."""
        return build(cls, config=op.config, partitions=op.partitions)


class LevelState(_Reply):
    """Segments and bytes of one storage level (L0 flush segments, L1 merged segments)."""

    segments: int
    bytes: int

    def to_usage(self) -> LevelUsage:
        """The engine's level usage."""
        return LevelUsage(segments=self.segments, bytes=self.bytes)


class PartitionLevelsState(_Reply):
    """One partition's share of the levels: its L0 bytes and its L1 segments."""

    l0_bytes: int
    l1: LevelState

    def to_levels(self) -> PartitionLevels:
        """The engine's partition levels."""
        return PartitionLevels(l0_bytes=self.l0_bytes, l1=self.l1.to_usage())


class TopicLevelsState(_Reply):
    """A topic's segments and bytes per storage level."""

    l0: LevelState
    l1: LevelState

    def to_levels(self) -> StorageLevels:
        """The engine's storage levels."""
        return StorageLevels(l0=self.l0.to_usage(), l1=self.l1.to_usage())


class PartitionState(_Reply):
    """One partition of a described topic; ``levels`` only when asked for (``?levels=true``)."""

    partition: int
    log_start_offset: int
    high_watermark: int
    bytes: int
    levels: PartitionLevelsState | None = None

    def to_info(self) -> PartitionInfo:
        """The engine's partition state."""
        return PartitionInfo(
            partition=self.partition,
            log_start_offset=self.log_start_offset,
            high_watermark=self.high_watermark,
            bytes=self.bytes,
            levels=None if self.levels is None else self.levels.to_levels(),
        )


class TopicState(_Reply):
    """``GET /v1/topics/{topic}``; ``topic_id`` changes when a topic is deleted and re-created.

    ``levels`` (here and per partition) is an extension present only when the request asked
    for it with ``?levels=true`` (ADR 0014): replies without it are unchanged.
    """

    name: str
    topic_id: str
    config: dict[str, Any]
    partitions: list[PartitionState]
    levels: TopicLevelsState | None = None

    @classmethod
    def of(cls, topic: TopicDescription) -> TopicState:
        """The reply form of a topic description (its dataclasses read field by field)."""
        return cls.model_validate(topic, from_attributes=True)

    def body(self) -> dict[str, Any]:
        """The JSON reply body: the ``levels`` extension only where it was computed."""
        body = self.model_dump(mode="json", exclude={"levels"})
        for state, partition in zip(self.partitions, body["partitions"], strict=True):
            if state.levels is None:
                del partition["levels"]
        if self.levels is not None:
            body["levels"] = self.levels.model_dump(mode="json")
        return body

    def result(self, op: Any) -> TopicDescription:
        """The topic's description."""
        return self.to_description()

    def to_description(self) -> TopicDescription:
        """The engine's topic description."""
        return TopicDescription(
            name=self.name,
            topic_id=self.topic_id,
            config=self.config,
            partitions=[p.to_info() for p in self.partitions],
            levels=None if self.levels is None else self.levels.to_levels(),
        )


class TopicList(_Reply):
    """``GET /v1/topics``."""

    topics: list[str]

    def result(self, op: Any) -> list[str]:
        """The names."""
        return self.topics


Operation = Literal["produce", "consume", "admin"]


class AclRule(_Strict):
    """A rule: principal and topic are exact names or prefixes ending in ``*``."""

    principal: Annotated[str, Field(min_length=1, max_length=700)]
    topic: Annotated[str, Field(min_length=1, max_length=250)]
    operations: Annotated[list[Operation], Field(min_length=1, max_length=3)]
    effect: Literal["allow", "deny"]

    @field_validator("operations")
    @classmethod
    def _distinct(cls, value: list[Operation]) -> list[Operation]:
        return sorted(set(value))


class AclRules(_Reply):
    """``GET /v1/acls``."""

    acls: list[AclRule]


class JoinRequest(_Request):
    """``POST /v1/groups/{group}/members``: join, or heartbeat with ``member_id``."""

    topics: Annotated[list[str], Field(min_length=1, max_length=MAX_TOPICS_PER_MEMBER)]
    member_id: str | None = None
    session_timeout_ms: (
        Annotated[int, Field(ge=MIN_SESSION_TIMEOUT_MS, le=MAX_SESSION_TIMEOUT_MS)] | None
    ) = None

    @classmethod
    def of_operation(cls, op: JoinGroup) -> JoinRequest:
        """The body of a join or heartbeat."""
        if isinstance(op.topics, str):  # not its letters: refused as the engine refuses it
            raise InvalidRequestError("topics must be a list of topic names")
        return build(
            cls,
            topics=list(op.topics),
            member_id=op.member_id,
            session_timeout_ms=op.session_timeout_ms,
        )


class AssignmentState(_Reply):
    """A lease the member holds; ``committed_offset`` is where to read from (null: none)."""

    topic: str
    partition: int
    lease_epoch: int
    committed_offset: int | None


class MembershipReply(_Reply):
    """The member's id, session and leases; heartbeat within ``heartbeat_interval_ms``."""

    member_id: str
    session_timeout_ms: int
    heartbeat_interval_ms: int
    assignments: list[AssignmentState]

    @classmethod
    def of(cls, membership: Membership) -> MembershipReply:
        """The reply form of a membership (its fields have the same names)."""
        return cls.model_validate(membership, from_attributes=True)

    def result(self, op: Any) -> Membership:
        """The member's membership."""
        return self.to_membership()

    def to_membership(self) -> Membership:
        """The engine's membership."""
        return Membership(
            member_id=self.member_id,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            assignments=tuple(Assignment(**a.model_dump()) for a in self.assignments),
        )


class OffsetCommitIn(_Strict):
    """One offset to commit: the next offset to read, at the lease's epoch."""

    topic: str
    partition: NonNegative
    offset: NonNegative
    lease_epoch: NonNegative

    def to_commit(self) -> OffsetCommit:
        """The engine's offset commit."""
        return OffsetCommit(self.topic, self.partition, self.offset, self.lease_epoch)

    @classmethod
    def of(cls, commit: OffsetCommit) -> OffsetCommitIn:
        """The wire form of an engine offset commit."""
        return cls(
            topic=commit.topic,
            partition=commit.partition,
            offset=commit.offset,
            lease_epoch=commit.lease_epoch,
        )


class CommitRequest(_Request):
    """``POST /v1/groups/{group}/offsets``: all offsets are committed, or none."""

    member_id: str
    offsets: Annotated[list[OffsetCommitIn], Field(max_length=MAX_OFFSETS_PER_COMMIT)]

    @classmethod
    def of_operation(cls, op: CommitOffsets) -> CommitRequest:
        """The body of a commit."""
        offsets = [OffsetCommitIn.of(o) for o in op.offsets]
        return build(cls, member_id=op.member_id, offsets=offsets)


class TopicPartitionState(_Reply):
    """One partition of one topic."""

    topic: str
    partition: int


class MemberState(_Reply):
    """A live member: its topics, the end of its session and the partitions it holds."""

    member_id: str
    topics: list[str]
    expires_ms: int
    assignments: list[TopicPartitionState]


class PartitionLagState(_Reply):
    """A partition as the group sees it; ``lag`` is null when nothing is committed."""

    topic: str
    partition: int
    owner: str | None
    lease_epoch: int
    committed_offset: int | None
    high_watermark: int
    lag: int | None


class GroupReply(_Reply):
    """``GET /v1/groups/{group}``."""

    group: str
    members: list[MemberState]
    partitions: list[PartitionLagState]

    @classmethod
    def of(cls, description: GroupDescription) -> GroupReply:
        """The reply form of a group description (its fields have the same names)."""
        return cls.model_validate(description, from_attributes=True)

    def result(self, op: Any) -> GroupDescription:
        """The group's description."""
        return self.to_description()

    def to_description(self) -> GroupDescription:
        """The engine's group description."""
        return GroupDescription(
            group=self.group,
            members=tuple(
                MemberInfo(
                    member_id=m.member_id,
                    topics=tuple(m.topics),
                    expires_ms=m.expires_ms,
                    assignments=tuple(TopicPartition(a.topic, a.partition) for a in m.assignments),
                )
                for m in self.members
            ),
            partitions=tuple(PartitionLag(**p.model_dump()) for p in self.partitions),
        )


class ResetToTimestamp(_Strict):
    """Reset to the first offset at or after a time (the high watermark if none)."""

    timestamp_ms: NonNegative


class ResetToOffset(_Strict):
    """Reset to an offset, clamped to each partition's log start and high watermark."""

    offset: NonNegative


class ResetRequest(_Request):
    """``POST /v1/groups/{group}/offsets/reset``."""

    topic: str
    to: Literal["earliest", "latest"] | ResetToTimestamp | ResetToOffset

    def target(self) -> ResetTarget:
        """Where the offsets move, as the engine takes it."""
        if isinstance(self.to, ResetToTimestamp):
            return ToTimestamp(self.to.timestamp_ms)
        if isinstance(self.to, ResetToOffset):
            return ToOffset(self.to.offset)
        return self.to

    @classmethod
    def of_operation(cls, op: ResetOffsets) -> ResetRequest:
        """The body of a reset."""
        to: Any = op.to
        if isinstance(to, ToOffset):
            to = build(ResetToOffset, offset=to.offset)
        elif isinstance(to, ToTimestamp):
            to = build(ResetToTimestamp, timestamp_ms=to.timestamp_ms)
        return build(cls, topic=op.topic, to=to)


class ResetPartition(_Reply):
    """A partition's new committed offset."""

    partition: int
    offset: int


class ResetReply(_Reply):
    """The committed offsets a reset wrote."""

    topic: str
    partitions: list[ResetPartition]

    def result(self, op: Any) -> dict[int, int]:
        """Partition -> new committed offset."""
        return self.to_offsets()

    def to_offsets(self) -> dict[int, int]:
        """Partition -> new committed offset."""
        return {p.partition: p.offset for p in self.partitions}


# Multi-partition fetch (ADR 0012 §3) ----------------------------------------------------

Name = Annotated[str, Field(min_length=1, max_length=MAX_TOPIC_NAME_LENGTH)]
"""A topic name, group id or member id; the engine checks the characters (400)."""


class PartitionPositionIn(_Strict):
    """Where one partition of a fetch starts: an offset, and the cursor the previous fetch
    gave for it (a hint the service checks, never trusts)."""

    topic: Name
    partition: Annotated[int, Field(ge=0, lt=MAX_PARTITIONS)]
    offset: NonNegative
    cursor: Annotated[str, Field(min_length=1, max_length=1024)] | None = None

    def to_position(self) -> FetchPosition:
        """The engine's fetch position."""
        return FetchPosition(self.topic, self.partition, self.offset, self.cursor)


class MemberHeartbeatIn(_Strict):
    """The heartbeat a fetch carries: what ``POST /v1/groups/{group}/members`` takes, for a
    member that joined (``member_id`` is required)."""

    group: Name
    member_id: Name
    topics: Annotated[list[Name], Field(min_length=1, max_length=MAX_TOPICS_PER_MEMBER)]
    session_timeout_ms: (
        Annotated[int, Field(ge=MIN_SESSION_TIMEOUT_MS, le=MAX_SESSION_TIMEOUT_MS)] | None
    ) = None

    def to_join(self) -> JoinGroup:
        """The heartbeat as the operation it is."""
        from lakelog.contract.operations import JoinGroup  # noqa: PLC0415 - no import cycle

        return JoinGroup(self.group, tuple(self.topics), self.member_id, self.session_timeout_ms)


class FetchManyRequest(_Request):
    """``POST /v1/fetch``: records of several partitions, one budget, maybe a heartbeat.

    Each partition appears at most once. ``max_bytes`` (record bytes) and ``max_records``
    bound the whole request; its first record is returned however large.
    """

    partitions: Annotated[list[PartitionPositionIn], Field(max_length=MAX_FETCH_PARTITIONS)]
    max_bytes: Annotated[int, Field(ge=1, le=MAX_API_FETCH_MANY_BYTES)] = DEFAULT_FETCH_BYTES
    max_records: Annotated[int, Field(ge=1, le=MAX_FETCH_RECORDS)] = DEFAULT_FETCH_RECORDS
    member: MemberHeartbeatIn | None = None

    @classmethod
    def of_operation(cls, op: FetchMany) -> FetchManyRequest:
        """The body of a multi-partition fetch, asking at most `MAX_API_FETCH_MANY_BYTES`."""
        member = None
        if op.member is not None:
            if op.member.member_id is None:
                raise InvalidRequestError("a fetch carries the heartbeat of a joined member_id")
            if isinstance(op.member.topics, str):
                raise InvalidRequestError("topics must be a list of topic names")
            member = build(
                MemberHeartbeatIn,
                group=op.member.group,
                member_id=op.member.member_id,
                topics=list(op.member.topics),
                session_timeout_ms=op.member.session_timeout_ms,
            )
        positions = [
            build(
                PartitionPositionIn,
                topic=p.topic,
                partition=p.partition,
                offset=p.offset,
                cursor=p.cursor,
            )
            for p in op.positions
        ]
        return build(
            cls,
            partitions=positions,
            max_bytes=min(op.max_bytes, MAX_API_FETCH_MANY_BYTES),
            max_records=op.max_records,
            member=member,
        )

    def to_positions(self) -> list[FetchPosition]:
        """The engine's fetch positions, in request order."""
        return [p.to_position() for p in self.partitions]

    def topics(self) -> list[str]:
        """Every topic the request reads or heartbeats for (what the caller must consume)."""
        named = [p.topic for p in self.partitions]
        named += self.member.topics if self.member else []
        return sorted(set(named))


class FetchedPartition(_Fetched):
    """One partition of a multi-partition fetch: as `FetchReply`, or its ``error`` alone
    (an error body: ``offset_out_of_range`` with its bounds, ``topic_not_found``, ...)."""

    topic: str
    partition: int
    records: list[FetchedRecord] = Field(default_factory=list)
    next_offset: int | None = None
    cursor: str | None = None
    high_watermark: int | None = None
    log_start_offset: int | None = None
    error: ErrorBody | None = None

    def to_result(self) -> FetchResult | LakelogError:
        """The engine's result of this partition, or its error."""
        if self.error is not None:
            return error_of_body(self.error.model_dump(exclude_none=True))
        if self.next_offset is None or self.high_watermark is None or self.log_start_offset is None:
            raise ValueError(f"{self.topic}-{self.partition} has neither records nor an error")
        return FetchResult(
            topic=self.topic,
            partition=self.partition,
            records=[r.to_record() for r in self.records],
            next_offset=self.next_offset,
            high_watermark=self.high_watermark,
            log_start_offset=self.log_start_offset,
            cursor=self.cursor,
        )


_PARTITION_FIELDS_BYTES: Final = 512
"""Room kept for a partition's fields besides its records (a topic name is <= 249 bytes)."""


class FetchManyReply(_Fetched):
    """``POST /v1/fetch``: one entry per partition asked for, in request order, and the
    heartbeat's reply (its leases, or its error) when the request carried one.

    The server writes it with `json_of`, which keeps the encoded reply within
    `MAX_FETCH_MANY_REPLY_BYTES`.
    """

    partitions: list[FetchedPartition]
    member: MembershipReply | ErrorBody | None = None

    @staticmethod
    def json_of(
        positions: Sequence[FetchPosition],
        result: FetchManyResult,
        limit: int = MAX_FETCH_MANY_REPLY_BYTES,
    ) -> bytes:
        """The reply body, serialized without a model per record, at most ``limit`` bytes.

        Records that would pass ``limit`` are left out, the first record excepted: their
        partition's ``next_offset`` stops before them and its ``cursor`` is left out (it
        stood for the end of the records read), so the next fetch reads them.
        """
        if len(positions) != len(result.partitions):
            raise ValueError(f"{len(result.partitions)} results for {len(positions)} positions")
        member = result.member
        tail = b""
        if isinstance(member, LakelogError):
            tail = b',"member":' + pydantic_core.to_json(error_body(member))
        elif member is not None:
            tail = b',"member":' + MembershipReply.of(member).model_dump_json().encode()
        parts: list[bytes] = []
        size = len(b'{"partitions":[]}') + len(tail)
        kept = 0
        for position, item in zip(positions, result.partitions, strict=True):
            head: dict[str, Any] = {"topic": position.topic, "partition": position.partition}
            if isinstance(item, LakelogError):
                part = pydantic_core.to_json(head | {"error": error_body(item)})
            else:
                records: list[bytes] = []
                next_offset, cursor = item.next_offset, item.cursor
                running = size + _PARTITION_FIELDS_BYTES
                for record in item.records:
                    encoded = _record_json(record)
                    if kept and running + len(encoded) + 1 > limit:
                        next_offset, cursor = record.offset, None
                        break
                    records.append(encoded)
                    running += len(encoded) + 1
                    kept += 1
                part = (
                    pydantic_core.to_json(
                        head
                        | {
                            "next_offset": next_offset,
                            "cursor": cursor,
                            "high_watermark": item.high_watermark,
                            "log_start_offset": item.log_start_offset,
                        }
                    )[:-1]
                    + b',"records":['
                    + b",".join(records)
                    + b"]}"
                )
            size += len(part) + 1
            parts.append(part)
        return b'{"partitions":[' + b",".join(parts) + b"]" + tail + b"}"

    def result(self, op: FetchMany) -> FetchManyResult:
        """The result of a multi-partition fetch, its entries in request order."""
        asked = [(p.topic, p.partition) for p in op.positions]
        got = [(p.topic, p.partition) for p in self.partitions]
        if asked != got:
            raise ValueError("the reply's partitions are not the ones asked for, in order")
        member: Membership | LakelogError | None = None
        if isinstance(self.member, ErrorBody):
            member = error_of_body(self.member.model_dump(exclude_none=True))
        elif self.member is not None:
            member = self.member.to_membership()
        return FetchManyResult([p.to_result() for p in self.partitions], member)


# Subscriptions (ADR 0015 §1) ----------------------------------------------------------


class OnFailureBody(_Strict):
    """Where a batch goes once its retries are spent: exactly one of a lakelog ``topic``
    or an SQS queue's ``sqs_arn`` (the engine checks, 400)."""

    topic: str | None = None
    sqs_arn: str | None = None

    def to_on_failure(self) -> OnFailure:
        """The engine's destination."""
        return OnFailure(topic=self.topic, sqs_arn=self.sqs_arn)


class SubscriptionCreate(_Request):
    """``POST /v1/topics/{topic}/subscriptions``. Options left out take their defaults;
    their ranges are those of a Lambda event source mapping, checked by the engine (400
    ``invalid_request``, ADR 0015 §1)."""

    name: str
    function_arn: str
    batch_size: int | None = None
    max_batching_window_ms: int | None = None
    starting_position: str | None = None
    starting_position_timestamp_ms: int | None = None
    maximum_retry_attempts: int | None = None
    maximum_record_age_ms: int | None = None
    bisect_batch_on_function_error: bool | None = None
    report_batch_item_failures: bool | None = None
    on_failure: OnFailureBody | None = None

    @classmethod
    def of_operation(cls, op: CreateSubscription) -> SubscriptionCreate:
        """The body of a subscription's creation (every option sent)."""
        sub = op.subscription
        fields = {name: getattr(sub, name) for name in cls.model_fields if name != "on_failure"}
        failure = sub.on_failure
        if failure is not None:
            fields["on_failure"] = build(
                OnFailureBody, topic=failure.topic, sqs_arn=failure.sqs_arn
            )
        return build(cls, **fields)

    def to_subscription(self, topic: str) -> Subscription:
        """The subscription asked for (options not given keep their defaults)."""
        options = self.model_dump(exclude_none=True, exclude={"on_failure"})
        failure = self.on_failure.to_on_failure() if self.on_failure else None
        return Subscription(topic=topic, on_failure=failure, **options)


class SubscriptionState(_Reply):
    """A subscription as stored, with the consumer group holding its progress."""

    name: str
    topic: str
    function_arn: str
    group: str
    batch_size: int
    max_batching_window_ms: int
    starting_position: Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]
    starting_position_timestamp_ms: int | None
    maximum_retry_attempts: int
    maximum_record_age_ms: int
    bisect_batch_on_function_error: bool
    report_batch_item_failures: bool
    on_failure: OnFailureBody | None
    topic_id: str
    created_ms: int
    start_offsets: list[int] = []
    """Where delivery of each partition the topic had at creation started, by partition
    (left out by servers older than the field: read as none)."""

    @classmethod
    def of(cls, subscription: Subscription) -> SubscriptionState:
        """The reply form of a subscription (its fields have the same names)."""
        failure = subscription.on_failure
        return cls.model_validate(
            {
                **{name: getattr(subscription, name) for name in cls.model_fields},
                "on_failure": None
                if failure is None
                else {"topic": failure.topic, "sqs_arn": failure.sqs_arn},
            }
        )

    def result(self, op: Any) -> Subscription:
        """The subscription."""
        return self.to_subscription()

    def to_subscription(self) -> Subscription:
        """The engine's subscription."""
        fields = self.model_dump(exclude={"group", "on_failure", "start_offsets"})
        failure = self.on_failure.to_on_failure() if self.on_failure else None
        return Subscription(on_failure=failure, start_offsets=tuple(self.start_offsets), **fields)


class SubscriptionList(_Reply):
    """``GET /v1/topics/{topic}/subscriptions``."""

    subscriptions: list[SubscriptionState]

    def result(self, op: Any) -> list[Subscription]:
        """The subscriptions, by name."""
        return [s.to_subscription() for s in self.subscriptions]


class SubscriptionStatusReply(_Reply):
    """``GET /v1/topics/{topic}/subscriptions/{name}``: the subscription, its progress per
    partition (``lag`` counts from offset 0 where nothing is committed yet) and the
    delivery state of partitions with a delivery under way or waiting."""

    subscription: SubscriptionState
    partitions: list[PartitionLagState]
    state: dict[str, str]

    @classmethod
    def of(cls, status: SubscriptionStatus) -> SubscriptionStatusReply:
        """The reply form of a subscription's status."""
        return cls(
            subscription=SubscriptionState.of(status.subscription),
            partitions=[
                PartitionLagState.model_validate(p, from_attributes=True) for p in status.partitions
            ],
            state={str(partition): text for partition, text in sorted(status.state.items())},
        )

    def result(self, op: Any) -> SubscriptionStatus:
        """The subscription's status."""
        return SubscriptionStatus(
            subscription=self.subscription.to_subscription(),
            partitions=tuple(PartitionLag(**p.model_dump()) for p in self.partitions),
            state={int(partition): text for partition, text in self.state.items()},
        )
