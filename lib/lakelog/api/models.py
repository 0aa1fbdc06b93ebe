"""The HTTP API v1 contract: request and reply bodies, shared by the server and the SDK.

Keys and values travel in the Confluent REST Proxy v3 typed form on the way in
(``{"type": "BINARY", "data": "<base64>"}``, ``{"type": "JSON", "data": <any JSON>}``,
``{"type": "STRING", "data": "text"}``) and as base64 strings (or null) on the way out.
Header values are base64 both ways.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lakelog.errors import InvalidRequestError
from lakelog.limits import MAX_APPEND_RECORDS, MAX_HEADERS_PER_RECORD, MAX_PARTITIONS
from lakelog.types import FetchResult, Header, Record, StoredRecord, TopicDescription

__all__ = [
    "AclRule",
    "AclRules",
    "ErrorBody",
    "FetchReply",
    "FetchedRecord",
    "HeaderIn",
    "OffsetReply",
    "PartitionState",
    "ProduceReply",
    "ProduceRequest",
    "ProducedRecord",
    "ProducerIn",
    "RecordIn",
    "TopicAlter",
    "TopicCreate",
    "TopicList",
    "TopicState",
    "TypedData",
    "b64",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def b64(data: bytes | None) -> str | None:
    """Base64 text of ``data``, or None."""
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{what} is not valid base64") from None


class ErrorBody(BaseModel):
    """Every error reply: a stable code and a message for people."""

    error: str
    message: str
    log_start_offset: int | None = None
    high_watermark: int | None = None


class TypedData(_Strict):
    """A key or value in Confluent v3 form."""

    type: Literal["BINARY", "JSON", "STRING"]
    data: Any

    def to_bytes(self, what: str) -> bytes:
        """The bytes this key or value stands for."""
        if self.type == "BINARY":
            if not isinstance(self.data, str):
                raise InvalidRequestError(f"{what}: BINARY data must be a base64 string")
            return _unb64(self.data, what)
        if self.type == "STRING":
            if not isinstance(self.data, str):
                raise InvalidRequestError(f"{what}: STRING data must be a string")
            return self.data.encode()
        return json.dumps(self.data, separators=(",", ":"), ensure_ascii=False).encode()


class HeaderIn(_Strict):
    """A record header: name and base64 value (null allowed)."""

    key: Annotated[str, Field(min_length=1, max_length=1024)]
    value: str | None = None


class RecordIn(_Strict):
    """One record of a produce request."""

    key: TypedData | None = None
    value: TypedData | None = None
    headers: Annotated[
        list[HeaderIn], Field(default_factory=list, max_length=MAX_HEADERS_PER_RECORD)
    ]
    partition: Annotated[int, Field(ge=0, lt=MAX_PARTITIONS)] | None = None
    timestamp_ms: Annotated[int, Field(ge=0)] | None = None

    def to_record(self, position: int) -> Record:
        """The engine's record."""
        headers: list[Header] = [
            (h.key, None if h.value is None else _unb64(h.value, f"record {position} header"))
            for h in self.headers
        ]
        return Record(
            key=self.key.to_bytes(f"record {position} key") if self.key else None,
            value=self.value.to_bytes(f"record {position} value") if self.value else None,
            headers=tuple(headers),
            partition=self.partition,
            timestamp_ms=self.timestamp_ms,
        )


class ProducerIn(_Strict):
    """Idempotent producer identity.

    ``sequence`` is the base sequence when every record goes to one partition;
    ``sequences`` maps partition (as a string) to base sequence otherwise.
    """

    id: Annotated[int, Field(ge=0)]
    epoch: Annotated[int, Field(ge=0)]
    sequence: Annotated[int, Field(ge=0)] | None = None
    sequences: dict[str, Annotated[int, Field(ge=0)]] | None = None

    @field_validator("sequences")
    @classmethod
    def _partition_keys(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None and not all(key.isascii() and key.isdigit() for key in value):
            raise ValueError("sequences keys must be partition numbers")
        return value


class ProduceRequest(_Strict):
    """``POST /v1/topics/{topic}/records``."""

    records: Annotated[list[RecordIn], Field(min_length=1, max_length=MAX_APPEND_RECORDS)]
    producer: ProducerIn | None = None

    def __repr__(self) -> str:
        # Frameworks log route arguments; printing a megabyte of records would cost more
        # CPU than appending them.
        return f"ProduceRequest(<{len(self.records)} records>, producer={self.producer!r})"

    __str__ = __repr__


class ProducedRecord(BaseModel):
    """Where one record landed."""

    partition: int
    offset: int
    timestamp_ms: int


class ProduceReply(BaseModel):
    """Results in request order."""

    results: list[ProducedRecord]


class FetchedHeader(BaseModel):
    """A header as fetched: name and base64 value."""

    key: str
    value: str | None


class FetchedRecord(BaseModel):
    """A record as fetched: key, value and header values in base64 (null when absent)."""

    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    value: str | None
    headers: list[FetchedHeader]

    @classmethod
    def of(cls, record: StoredRecord) -> FetchedRecord:
        """The reply form of a stored record."""
        return cls(
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp_ms,
            key=b64(record.key),
            value=b64(record.value),
            headers=[FetchedHeader(key=k, value=b64(v)) for k, v in record.headers],
        )


class FetchReply(BaseModel):
    """``GET .../records``: records, where to read next, and the high watermark."""

    records: list[FetchedRecord]
    next_offset: int
    high_watermark: int

    @classmethod
    def of(cls, result: FetchResult) -> FetchReply:
        """The reply form of a fetch result."""
        return cls(
            records=[FetchedRecord.of(r) for r in result.records],
            next_offset=result.next_offset,
            high_watermark=result.high_watermark,
        )

    @staticmethod
    def json_of(result: FetchResult) -> bytes:
        """The reply body of a fetch result, serialized without building a model per record.

        Produces exactly what ``FetchReply.of(result).model_dump_json()`` would, several
        times faster: a fetch reply holds up to thousands of records.
        """
        return pydantic_core.to_json(
            {
                "records": [
                    {
                        "partition": r.partition,
                        "offset": r.offset,
                        "timestamp_ms": r.timestamp_ms,
                        "key": b64(r.key),
                        "value": b64(r.value),
                        "headers": [{"key": k, "value": b64(v)} for k, v in r.headers],
                    }
                    for r in result.records
                ],
                "next_offset": result.next_offset,
                "high_watermark": result.high_watermark,
            }
        )


class OffsetReply(BaseModel):
    """``GET .../offsets``."""

    offset: int


class TopicCreate(_Strict):
    """``POST /v1/topics``."""

    name: str
    partitions: Annotated[int, Field(ge=1, le=MAX_PARTITIONS)] = 1
    config: dict[str, Any] | None = None


class TopicAlter(_Strict):
    """``PATCH /v1/topics/{topic}``: grow partitions and/or change config keys."""

    partitions: Annotated[int, Field(ge=1, le=MAX_PARTITIONS)] | None = None
    config: dict[str, Any] | None = None


class PartitionState(BaseModel):
    """One partition of a described topic."""

    partition: int
    log_start_offset: int
    high_watermark: int
    bytes: int


class TopicState(BaseModel):
    """``GET /v1/topics/{topic}``."""

    name: str
    config: dict[str, Any]
    partitions: list[PartitionState]

    @classmethod
    def of(cls, topic: TopicDescription) -> TopicState:
        """The reply form of a topic description."""
        return cls(
            name=topic.name,
            config=topic.config,
            partitions=[
                PartitionState(
                    partition=p.partition,
                    log_start_offset=p.log_start_offset,
                    high_watermark=p.high_watermark,
                    bytes=p.bytes,
                )
                for p in topic.partitions
            ],
        )


class TopicList(BaseModel):
    """``GET /v1/topics``."""

    topics: list[str]


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


class AclRules(BaseModel):
    """``GET /v1/acls``."""

    acls: list[AclRule]
