"""Every documented limit of the engine, in one place (the README's limits table mirrors it)."""

from __future__ import annotations

import re
from typing import Final

from lakelog.errors import InvalidRequestError

__all__ = [
    "MAX_APPEND_BYTES",
    "MAX_APPEND_RECORDS",
    "MAX_FETCH_BYTES",
    "MAX_FETCH_RECORDS",
    "MAX_HEADERS_PER_RECORD",
    "MAX_PARTITIONS",
    "MAX_PARTITIONS_PER_TRANSACTION",
    "MAX_RECORD_BYTES",
    "MAX_TIMESTAMP_MS",
    "MAX_TOPIC_NAME_LENGTH",
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

MAX_PARTITIONS_PER_TRANSACTION: Final = 50
"""Partitions one ledger transaction moves: DynamoDB allows 100 items, two per partition.

An append touching more partitions is split into several transactions, each atomic."""

MAX_TIMESTAMP_MS: Final = 253_402_300_799_999
"""Latest record timestamp: 9999-12-31T23:59:59.999Z, the last instant Parquet readers
(pyarrow, DuckDB, Spark) can represent as a date."""

MAX_FETCH_RECORDS: Final = 10_000
"""Upper bound of ``max_records`` in one fetch."""

MAX_FETCH_BYTES: Final = 6 * 1024 * 1024
"""Upper bound of ``max_bytes`` in one fetch (one record is returned even if larger)."""

_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]+")


def validate_topic_name(name: object) -> str:
    """Return ``name`` if it is a legal topic name, else raise `InvalidRequestError`."""
    if not isinstance(name, str) or not name:
        raise InvalidRequestError("topic name must be a non-empty string")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise InvalidRequestError(
            f"topic name is {len(name)} characters; the limit is {MAX_TOPIC_NAME_LENGTH}"
        )
    if name in (".", ".."):
        raise InvalidRequestError("topic name cannot be '.' or '..'")
    if not _TOPIC_NAME.fullmatch(name):
        raise InvalidRequestError(
            f"topic name {name!r} may contain only ASCII letters, digits, '.', '_' and '-'"
        )
    return name
