"""The engine: every use case over one set of stores, as one object."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import boto3

from lakelog.limits import DEFAULT_FETCH_BYTES, DEFAULT_FETCH_RECORDS, MAX_APPEND_BYTES, record_size
from lakelog.service.acl import AccessControl, Effect
from lakelog.service.admin import TopicAdmin
from lakelog.service.context import EngineContext, now_ms
from lakelog.service.fetch import Fetcher
from lakelog.service.gc import DEFAULT_GRACE_MS, GarbageCollector
from lakelog.service.groups import GroupCoordinator
from lakelog.service.produce import Appender, AppendRetryPolicy
from lakelog.storage.dynamodb import DynamoCatalogStore, DynamoLedgerStore
from lakelog.storage.groups import DynamoGroupStore
from lakelog.storage.keys import ResourceNames
from lakelog.storage.ports import CatalogStore, GroupStore, LedgerStore, ObjectStore
from lakelog.storage.s3 import S3ObjectStore
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

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

__all__ = ["Engine"]


class Engine:
    """Topics, append, fetch and consumer groups on an object store, a ledger and a catalog.

    Parameters
    ----------
    objects, ledger, catalog, groups
        The storage ports (see `Engine.from_clients` for the AWS adapters).
    retry
        Backoff of ledger conflicts and throttles during appends.
    grace_ms
        Age below which gc never deletes an unreferenced segment.
    clock_ms, sleep, seed
        Injected time, sleep and randomness, for tests.
    """

    def __init__(
        self,
        objects: ObjectStore,
        ledger: LedgerStore,
        catalog: CatalogStore,
        groups: GroupStore,
        *,
        retry: AppendRetryPolicy | None = None,
        grace_ms: int = DEFAULT_GRACE_MS,
        clock_ms: Callable[[], int] = now_ms,
        sleep: Callable[[float], None] | None = None,
        seed: int | None = None,
    ) -> None:
        self.context = EngineContext.create(objects, ledger, catalog, clock_ms)
        self.admin = TopicAdmin(self.context)
        self.appender = Appender(self.context, retry, sleep or time.sleep, seed)
        self.fetcher = Fetcher(self.context)
        self.gc = GarbageCollector(self.context, grace_ms)
        self.groups = GroupCoordinator(self.context, groups, self.fetcher)

    @classmethod
    def from_clients(
        cls,
        s3_client: S3Client,
        dynamodb_client: DynamoDBClient,
        names: ResourceNames,
        **kwargs: Any,
    ) -> Engine:
        """An engine on S3 and DynamoDB through the given boto3 clients."""
        return cls(
            S3ObjectStore(s3_client, names.bucket),
            DynamoLedgerStore(dynamodb_client, names.ledger_table),
            DynamoCatalogStore(dynamodb_client, names.catalog_table),
            DynamoGroupStore(dynamodb_client, names.catalog_table),
            **kwargs,
        )

    @classmethod
    def from_session(
        cls, names: ResourceNames, session: boto3.Session | None = None, **kwargs: Any
    ) -> Engine:
        """An engine on clients made from ``session`` (the default session when None)."""
        session = session or boto3.Session()
        return cls.from_clients(session.client("s3"), session.client("dynamodb"), names, **kwargs)

    def access_control(self, default: Effect, admins: Iterable[str] = ()) -> AccessControl:
        """Access rules on this engine's catalog; see `AccessControl`."""
        return AccessControl(self.context.catalog, default, admins=admins)

    # Topics -------------------------------------------------------------------------
    def create_topic(
        self, name: str, partitions: int = 1, config: dict[str, Any] | None = None
    ) -> TopicDescription:
        """Create a topic; see `TopicAdmin.create_topic`."""
        return self.admin.create_topic(name, partitions, config)

    def describe_topic(self, name: str) -> TopicDescription:
        """Config and per-partition state of a topic."""
        return self.admin.describe_topic(name)

    def list_topics(self) -> list[str]:
        """Names of every topic."""
        return self.admin.list_topics()

    def alter_topic(
        self, name: str, config: dict[str, Any] | None = None, partitions: int | None = None
    ) -> TopicDescription:
        """Change config and/or add partitions."""
        return self.admin.alter_topic(name, config, partitions)

    def delete_topic(self, name: str) -> None:
        """Delete a topic; its segments go to gc."""
        self.admin.delete_topic(name)

    def init_producer_id(self) -> int:
        """A fresh idempotent producer id."""
        return self.admin.init_producer_id()

    # Records ------------------------------------------------------------------------
    def append(
        self, topic: str, records: Sequence[Record], producer: ProducerBatch | None = None
    ) -> list[RecordMetadata]:
        """Append records; see `Appender.append`."""
        return self.appender.append(topic, records, producer)

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        max_records: int = DEFAULT_FETCH_RECORDS,
        max_bytes: int = DEFAULT_FETCH_BYTES,
    ) -> FetchResult:
        """Read records from an offset; see `Fetcher.fetch`."""
        return self.fetcher.fetch(topic, partition, offset, max_records, max_bytes)

    def list_offset(self, topic: str, partition: int, spec: Literal["earliest", "latest"]) -> int:
        """Earliest (log start) or latest (high watermark) offset."""
        return self.fetcher.list_offset(topic, partition, spec)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int | None:
        """First offset with a timestamp >= ``timestamp_ms``, or None."""
        return self.fetcher.offset_for_time(topic, partition, timestamp_ms)

    # Consumer groups ----------------------------------------------------------------
    def join_group(
        self,
        group: str,
        topics: Sequence[str],
        member_id: str | None = None,
        session_timeout_ms: int | None = None,
    ) -> Membership:
        """Join a group or heartbeat in it; see `GroupCoordinator.join`."""
        return self.groups.join(group, topics, member_id, session_timeout_ms)

    def leave_group(self, group: str, member_id: str) -> None:
        """Leave a group, releasing the member's leases at once."""
        self.groups.leave(group, member_id)

    def member_topics(self, group: str, member_id: str) -> tuple[str, ...]:
        """Topics a member subscribes to or holds leases on (for access checks)."""
        return self.groups.member_topics(group, member_id)

    def commit_offsets(self, group: str, member_id: str, offsets: Sequence[OffsetCommit]) -> None:
        """Commit offsets, all or none; raises `LeaseFencedError` if a lease moved."""
        self.groups.commit(group, member_id, offsets)

    def describe_group(self, group: str) -> GroupDescription:
        """Members, leases, committed offsets and lag; see `GroupCoordinator.describe`."""
        return self.groups.describe(group)

    def reset_offsets(
        self,
        group: str,
        topic: str,
        *,
        to: Literal["earliest", "latest"] | None = None,
        offset: int | None = None,
        timestamp_ms: int | None = None,
    ) -> dict[int, int]:
        """Move a group's committed offsets of a topic; see `GroupCoordinator.reset`."""
        return self.groups.reset(group, topic, to=to, offset=offset, timestamp_ms=timestamp_ms)

    # What the SDK needs of a transport besides the operations ------------------------------
    max_request_bytes: Final = MAX_APPEND_BYTES
    """Bytes of the records of one append, each measured by `request_bytes`."""

    @staticmethod
    def request_bytes(record: Record) -> int:
        """Bytes ``record`` counts against `max_request_bytes` (`record_size`)."""
        return record_size(record.key, record.value, record.headers)

    def compressed(self, compression: Literal["gzip"] | None) -> Engine:
        """This engine: segments are compressed with each topic's codec whatever is asked."""
        return self

    def close(self) -> None:
        """Nothing to release: the AWS clients belong to whoever made them."""
