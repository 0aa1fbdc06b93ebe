"""The one interface the SDK talks to: the engine in-process, or the HTTP API.

`lakelog.Engine` satisfies `Transport` as it is (``Client.direct``);
`lakelog.client.http.HttpTransport` satisfies it over HTTPS. Producer, Consumer and
Client depend on nothing else, so both modes run the same client code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal, Protocol

from lakelog.errors import ThrottledError, UnavailableError
from lakelog.types import (
    FetchResult,
    GroupDescription,
    Membership,
    OffsetCommit,
    ProducerBatch,
    Record,
    RecordMetadata,
    TopicDescription,
)

__all__ = ["RETRYABLE", "Transport"]

RETRYABLE: Final = (ThrottledError, UnavailableError)
"""Errors after which the same request may simply be sent again (429, 503, no connection,
an append that kept losing to other appends)."""


class Transport(Protocol):
    """Topics, records and groups: the operations of the HTTP API v1, and what a producer
    needs to know of the transport (how it measures and compresses a request)."""

    @property
    def max_request_bytes(self) -> int:
        """Bytes the records of one append may take, each measured by `request_bytes`."""

    def request_bytes(self, record: Record) -> int:
        """Bytes ``record`` takes in an append request, in this transport's own measure."""

    def compressed(self, compression: Literal["gzip"] | None) -> Transport:
        """This transport sending append bodies with ``compression`` (or as it is)."""

    def close(self) -> None:
        """Release connections."""

    def create_topic(
        self, name: str, partitions: int = 1, config: dict[str, Any] | None = None
    ) -> TopicDescription:
        """Create a topic."""

    def list_topics(self) -> list[str]:
        """Names of every topic."""

    def describe_topic(self, name: str) -> TopicDescription:
        """Config and per-partition state of a topic."""

    def alter_topic(
        self, name: str, config: dict[str, Any] | None = None, partitions: int | None = None
    ) -> TopicDescription:
        """Change config and/or add partitions."""

    def delete_topic(self, name: str) -> None:
        """Delete a topic."""

    def init_producer_id(self) -> int:
        """A fresh idempotent producer id."""

    def append(
        self, topic: str, records: Sequence[Record], producer: ProducerBatch | None = None
    ) -> list[RecordMetadata]:
        """Append records; one result per record, in order."""

    def fetch(
        self, topic: str, partition: int, offset: int, max_records: int, max_bytes: int
    ) -> FetchResult:
        """Records of one partition from ``offset``."""

    def list_offset(self, topic: str, partition: int, spec: Literal["earliest", "latest"]) -> int:
        """Earliest (log start) or latest (high watermark) offset."""

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int | None:
        """First offset with a timestamp >= ``timestamp_ms``, or None."""

    def join_group(
        self,
        group: str,
        topics: Sequence[str],
        member_id: str | None = None,
        session_timeout_ms: int | None = None,
    ) -> Membership:
        """Join a group or heartbeat in it; the reply holds the member's leases."""

    def leave_group(self, group: str, member_id: str) -> None:
        """Leave a group, releasing the member's leases at once."""

    def commit_offsets(self, group: str, member_id: str, offsets: Sequence[OffsetCommit]) -> None:
        """Commit offsets, each fenced by its lease epoch."""

    def describe_group(self, group: str) -> GroupDescription:
        """Members, leases, committed offsets and lag."""

    def reset_offsets(
        self,
        group: str,
        topic: str,
        *,
        to: Literal["earliest", "latest"] | None = None,
        offset: int | None = None,
        timestamp_ms: int | None = None,
    ) -> dict[int, int]:
        """Move a group's committed offsets of ``topic``; only with no live member."""
