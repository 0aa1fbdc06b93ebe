"""Every documented limit of the engine, in one place (the README's limits table mirrors it)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from lakelog.errors import InvalidRequestError, PayloadTooLargeError
from lakelog.types import Header, Record

__all__ = [
    "DEFAULT_FETCH_BYTES",
    "DEFAULT_FETCH_RECORDS",
    "DEFAULT_SESSION_TIMEOUT_MS",
    "DYNAMODB_ITEM_BYTES",
    "KAFKA_APPEND_LINGER_MS",
    "MAX_ACL_RULE_KEY_BYTES",
    "MAX_API_FETCH_BYTES",
    "MAX_API_FETCH_MANY_BYTES",
    "MAX_APPEND_BYTES",
    "MAX_APPEND_RECORDS",
    "MAX_FETCH_BYTES",
    "MAX_FETCH_MANY_REPLY_BYTES",
    "MAX_FETCH_PARTITIONS",
    "MAX_FETCH_RECORDS",
    "MAX_HEADERS_PER_RECORD",
    "MAX_OFFSETS_PER_COMMIT",
    "MAX_PARTITIONS",
    "MAX_RECORD_BYTES",
    "MAX_SESSION_TIMEOUT_MS",
    "MAX_TIMESTAMP_MS",
    "MAX_TOPICS_PER_MEMBER",
    "MAX_TOPIC_NAME_LENGTH",
    "MIN_SESSION_TIMEOUT_MS",
    "TOPIC_NAME_CHARACTERS",
    "record_size",
    "validate_group_id",
    "validate_member_id",
    "validate_record",
    "validate_topic_name",
]

MAX_TOPIC_NAME_LENGTH: Final = 249
"""Kafka's rule: 1 to 249 characters of ``[a-zA-Z0-9._-]``, and not ``.`` or ``..``."""

MAX_PARTITIONS: Final = 1000
"""Partitions per topic."""

MAX_APPEND_RECORDS: Final = 10_000
"""Records per append request."""

MAX_APPEND_BYTES: Final = 6 * 1024 * 1024
"""Encoded bytes (keys + values + headers) per append request: the Lambda payload limit."""

MAX_RECORD_BYTES: Final = MAX_APPEND_BYTES
"""Highest value a topic's ``max_record_bytes`` may take."""

MAX_HEADERS_PER_RECORD: Final = 64
"""Headers per record."""

MAX_TIMESTAMP_MS: Final = 253_402_300_799_999
"""Latest record timestamp: 9999-12-31T23:59:59.999Z, the last instant Parquet readers
(pyarrow, DuckDB, Spark) can represent as a date."""

DEFAULT_FETCH_RECORDS: Final = 500
"""``max_records`` of a fetch that does not say."""

DEFAULT_FETCH_BYTES: Final = 1024 * 1024
"""``max_bytes`` of a fetch that does not say."""

KAFKA_APPEND_LINGER_MS: Final = 250
"""How long a Kafka gateway holds a topic's plain Produce records for others to share one
append (ADR 0016 §3.1; ``lakelog kafka --append-linger-ms``)."""

MAX_FETCH_RECORDS: Final = 10_000
"""Upper bound of ``max_records`` in one fetch."""

MAX_FETCH_BYTES: Final = 6 * 1024 * 1024
"""Upper bound of ``max_bytes`` in one fetch (one record is returned even if larger)."""

MAX_API_FETCH_BYTES: Final = 4 * 1024 * 1024
"""Largest ``max_bytes`` of a fetch over HTTP: base64 inflates record bytes by 4/3 and the
whole reply must stay under Lambda's 6 MB response limit. The SDK asks for at most this
much per request (a fetch returns at most ``max_bytes``, so asking less is always valid)."""

MAX_FETCH_PARTITIONS: Final = 1000
"""Partitions one multi-partition fetch (``POST /v1/fetch``) names, each at most once."""

MAX_API_FETCH_MANY_BYTES: Final = 3 * 1024 * 1024
"""Largest ``max_bytes`` of a multi-partition fetch over HTTP: base64 makes 3 MiB of record
bytes 4 MiB of text, which leaves room for the records' JSON under
`MAX_FETCH_MANY_REPLY_BYTES`. The budget is shared by every partition of the request."""

MAX_FETCH_MANY_REPLY_BYTES: Final = 5 * 1024 * 1024
"""Encoded bytes of a multi-partition fetch reply, under Lambda's 6 MB response limit.
Records past it are left for the next fetch (the partitions' ``next_offset`` stop before
them); the first record of the reply is always sent."""

MAX_ACL_RULE_KEY_BYTES: Final = 1024
"""An ACL rule's principal and topic patterns together (DynamoDB's sort key limit, which the
rule's key must fit, less its 8 bytes of separators and effect)."""

MIN_SESSION_TIMEOUT_MS: Final = 1_000
"""Shortest session a group member may ask for (it is live this long after a heartbeat)."""

MAX_SESSION_TIMEOUT_MS: Final = 300_000
"""Longest session a group member may ask for."""

DEFAULT_SESSION_TIMEOUT_MS: Final = 30_000
"""A group member's session when it asks for none; it heartbeats every third of it (10 s,
carried by its fetches). A crashed member's partitions move after this long: a shorter
session fails over sooner and costs a heartbeat request more often (README, cost)."""

MAX_OFFSETS_PER_COMMIT: Final = 100
"""Offsets one commit carries, all or none: one conditional write per offsets item (100
partitions of a topic each), a transaction of at most 100 items when it spans several."""

MAX_TOPICS_PER_MEMBER: Final = 100
"""Topics one group member subscribes to."""

DYNAMODB_ITEM_BYTES: Final = 400 * 1024
"""DynamoDB's item size limit: attribute names and values, as
`lakelog.storage.attributes.item_size` counts them. A write that would make an item larger
is refused and changes nothing."""

TOPIC_NAME_CHARACTERS: Final = "a-zA-Z0-9._-"
"""What topic names, group ids and member ids are made of (a regular expression class)."""
_NAME = re.compile(f"[{TOPIC_NAME_CHARACTERS}]+")


def _validate_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"{kind} must be a non-empty string")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise InvalidRequestError(
            f"{kind} is {len(name)} characters; the limit is {MAX_TOPIC_NAME_LENGTH}"
        )
    if name in (".", ".."):
        raise InvalidRequestError(f"{kind} cannot be '.' or '..'")
    if not _NAME.fullmatch(name):
        raise InvalidRequestError(
            f"{kind} {name!r} may contain only ASCII letters, digits, '.', '_' and '-'"
        )
    return name


def validate_topic_name(name: object) -> str:
    """Return ``name`` if it is a legal topic name, else raise `InvalidRequestError`."""
    return _validate_name("topic name", name)


def validate_group_id(group: object) -> str:
    """Return ``group`` if it is a legal group id (the topic-name rules), else raise."""
    return _validate_name("group id", group)


def validate_member_id(member_id: object) -> str:
    """Return ``member_id`` if it is a legal member id (the topic-name rules), else raise."""
    return _validate_name("member id", member_id)


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[Header]) -> int:
    """Bytes a record counts against size limits: key + value + header keys and values."""
    size = len(key or b"") + len(value or b"")
    for name, data in headers:
        size += len(name.encode()) + len(data or b"")
    return size


def _record(position: int | None) -> str:
    return "record" if position is None else f"record {position}"


def validate_record(record: object, position: int | None, max_record_bytes: int) -> int:
    """Check one record against the documented rules; its size in bytes.

    ``position`` is the record's place in its request, named by the errors (None: a record
    on its own, as the SDK producer's `send` checks it). The engine runs this once per
    record of every append: the common case (bytes key and value, no headers, no
    timestamp) is decided with exact type checks before anything slower.

    Raises
    ------
    InvalidRequestError
        ``record`` is not a `Record`, or a field has the wrong type or range.
    PayloadTooLargeError
        The record is over ``max_record_bytes`` (`record_size`).
    """
    if type(record) is not Record and not isinstance(record, Record):
        raise InvalidRequestError(f"{_record(position)} is not a Record")
    key, value, headers, timestamp = record.key, record.value, record.headers, record.timestamp_ms
    for name, data in (("key", key), ("value", value)):
        if data is not None and type(data) is not bytes and not isinstance(data, bytearray):
            raise InvalidRequestError(f"{_record(position)}: {name} must be bytes or None")
    if headers or not isinstance(headers, tuple | list):
        _check_headers(headers, position)
    if timestamp is not None and (
        type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP_MS
    ):
        raise InvalidRequestError(
            f"{_record(position)}: timestamp_ms must be an integer from 0 to {MAX_TIMESTAMP_MS}"
        )
    size = record_size(key, value, headers)
    if size > max_record_bytes:
        raise PayloadTooLargeError(
            f"{_record(position)} is {size} bytes; the topic's max_record_bytes is "
            f"{max_record_bytes}"
        )
    return size


def _check_headers(headers: object, position: int | None) -> None:
    """Raise `InvalidRequestError` unless ``headers`` is a short list of (str, bytes) pairs."""
    if not isinstance(headers, tuple | list):
        raise InvalidRequestError(f"{_record(position)}: headers must be a list of pairs")
    if len(headers) > MAX_HEADERS_PER_RECORD:
        raise InvalidRequestError(
            f"{_record(position)} has {len(headers)} headers; the limit is {MAX_HEADERS_PER_RECORD}"
        )
    for header in headers:
        if (
            not isinstance(header, tuple)
            or len(header) != 2
            or not isinstance(header[0], str)
            or not isinstance(header[1], bytes | bytearray | None)
        ):
            raise InvalidRequestError(f"{_record(position)}: headers must be (str, bytes) pairs")
        try:
            header[0].encode()
        except UnicodeEncodeError:
            raise InvalidRequestError(
                f"{_record(position)}: header name {header[0]!r} is not valid UTF-8"
            ) from None
