"""Kafka's wire framing: size-prefixed frames, request and response headers (ADR 0016).

A frame is ``int32 size`` then ``size`` bytes. A request frame starts with its header::

    int16  request_api_key
    int16  request_api_version
    int32  correlation_id
    string client_id            (header v1 and v2)
    tagged fields               (header v2: the flexible versions of an API)

and the request body of that API and version. A response frame is the correlation id
(response header v0; v1 adds tagged fields for flexible versions, except ApiVersions,
whose response header is always v0) and the response body.

The message types are kio's, generated from Kafka's own JSON schemas, so a request
and its response are encoded by the same definitions as in Kafka itself. This module only
frames them: it knows no API.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import types
import typing
from dataclasses import dataclass
from typing import Any, Final

from kio.index import KioIndexError, load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer
from kio.static.protocol import RequestPayload, ResponsePayload

__all__ = [
    "MAX_FRAME_BYTES",
    "FrameError",
    "Request",
    "build",
    "encode_response",
    "error_response",
    "item_type",
    "parse_request",
    "peek_api",
]

MAX_FRAME_BYTES: Final = 100 * 1024 * 1024
"""The largest request frame the gateway reads (Kafka's ``socket.request.max.bytes``);
a larger size closes the connection before its bytes are read."""

_API: Final = struct.Struct(">hhi")


class FrameError(Exception):
    """A frame that cannot be parsed: truncated, oversized, an unknown API or version.

    Only the connection that sent it is closed.
    """


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request: its header fields and its body (a kio request payload)."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: RequestPayload


def peek_api(frame: bytes) -> tuple[int, int, int]:
    """The API key, version and correlation id a frame starts with."""
    if len(frame) < _API.size:
        raise FrameError(f"a request frame of {len(frame)} bytes has no header")
    key, version, correlation_id = _API.unpack_from(frame)
    return key, version, correlation_id


def parse_request(frame: bytes) -> Request:
    """Parse a request frame (without its size prefix).

    Raises
    ------
    FrameError
        The frame is truncated, or names an API or version that
        Kafka's schemas do not define.
    """
    key, version, _ = peek_api(frame)
    try:
        schema = load_request_schema(key, version)
    except KioIndexError:
        raise FrameError(f"no request API {key} version {version}") from None
    view = memoryview(frame)
    try:
        header, used = entity_reader(schema.__header_schema__)(view, 0)
        body, _ = entity_reader(schema)(view, used)
    except Exception as exc:  # kio's readers raise several kinds on corrupt bytes
        raise FrameError(f"API {key} version {version}: {type(exc).__name__}: {exc}") from None
    # Bytes after the body are ignored, as Kafka's brokers do: librdkafka 2.x sends
    # three after its Metadata v12 body.
    return Request(key, version, header.correlation_id, getattr(header, "client_id", None), body)


def encode_response(request: Request, response: ResponsePayload) -> bytes:
    """The size-prefixed frame answering ``request`` with ``response``."""
    header_schema: Any = response.__header_schema__
    buffer = io.BytesIO()
    buffer.write(b"\0\0\0\0")
    entity_writer(header_schema)(buffer, header_schema(correlation_id=request.correlation_id))
    entity_writer(type(response))(buffer, response)
    frame = buffer.getbuffer()
    struct.pack_into(">i", frame, 0, len(frame) - 4)
    return bytes(frame)


def error_response(api_key: int, version: int, code: ErrorCode) -> ResponsePayload:
    """A response of the API and version whose every error code is ``code`` and whose
    lists are empty: the answer to a request the gateway does not serve."""
    schema = load_response_schema(api_key, version)
    return typing.cast(ResponsePayload, _filled(schema, code))


E = typing.TypeVar("E")


def build(entity: type[E], **values: Any) -> E:
    """An instance of a kio type of one version from the fields a handler knows.

    Handlers serve several versions of an API, whose types differ by fields: values of
    fields the version lacks are dropped, and the fields it has but ``values`` does not
    name take their schema default, else a neutral value (none, empty, zero; error codes
    ``none``). Plain ints and strs are accepted where kio's types wrap them.
    """
    return typing.cast(E, _filled(entity, ErrorCode.none, values))


def item_type(entity: type[Any], field_name: str) -> type[Any]:
    """The element type of a list field of a kio type (``item_type(MetadataResponse,
    "topics")`` is that version's ``MetadataResponseTopic``); nullable lists too."""
    hint = typing.get_type_hints(entity)[field_name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # a nullable list
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    args = typing.get_args(hint)
    if typing.get_origin(hint) is not tuple or not args:
        raise TypeError(f"{entity.__name__}.{field_name} is not a list field")
    return typing.cast(type[Any], args[0])


def _filled(entity: type[Any], code: ErrorCode, values: dict[str, Any] | None = None) -> Any:
    hints = typing.get_type_hints(entity)
    given = values or {}
    known: dict[str, Any] = {}
    for field in dataclasses.fields(entity):
        if field.name in given:
            known[field.name] = given[field.name]
            continue
        if field.default is not dataclasses.MISSING or (
            field.default_factory is not dataclasses.MISSING
        ):
            continue
        known[field.name] = _zero(hints[field.name], field.metadata.get("kafka_type"), code)
    return entity(**known)


def _zero(hint: Any, kafka_type: str | None, code: ErrorCode) -> Any:
    """The neutral value of a field: ``code`` for error codes, empty for lists and
    strings, None where allowed, zero otherwise."""
    if kafka_type == "error_code":
        return code
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is tuple:
        return ()
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        return None
    if dataclasses.is_dataclass(hint):
        return _filled(typing.cast(type[Any], hint), code)
    if kafka_type == "string":
        return ""
    if kafka_type in ("bytes", "records"):
        return b""
    if kafka_type == "bool":
        return False
    if kafka_type == "uuid":
        return None
    if kafka_type and kafka_type.startswith("timedelta"):
        return datetime.timedelta(0)
    if kafka_type == "datetime_i64":
        return datetime.datetime.fromtimestamp(0, datetime.UTC)
    return 0
