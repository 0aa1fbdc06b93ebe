"""The engine: every use case over one set of stores, as one object."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import boto3

from lakelog.contract import operations as ops
from lakelog.contract.operations import Operation
from lakelog.errors import InvalidRequestError, LakelogError
from lakelog.limits import (
    MAX_APPEND_BYTES,
    record_size,
    validate_member_id,
)
from lakelog.service.acl import AccessControl, Effect
from lakelog.service.admin import TopicAdmin
from lakelog.service.context import EngineContext, now_ms
from lakelog.service.fetch import Fetcher
from lakelog.service.gc import DEFAULT_GRACE_MS, GarbageCollector
from lakelog.service.groups import GroupCoordinator
from lakelog.service.kafka_groups import KafkaGroups
from lakelog.service.produce import Appender, AppendHook, AppendRetryPolicy
from lakelog.service.producers import DIRECT_PRINCIPAL, ProducerIds
from lakelog.service.subscriptions import FunctionPolicy, Subscriptions, check_user_group
from lakelog.storage.delivery import DeliveryStateStore, DynamoDeliveryStateStore
from lakelog.storage.dynamodb import DynamoCatalogStore, DynamoLedgerStore
from lakelog.storage.groups import DynamoGroupStore
from lakelog.storage.kafka_groups import (
    DynamoKafkaGroupStore,
    KafkaGroupStore,
    MemoryKafkaGroupStore,
)
from lakelog.storage.keys import ResourceNames
from lakelog.storage.ports import CatalogStore, GroupStore, LedgerStore, ObjectStore
from lakelog.storage.s3 import S3ObjectStore
from lakelog.types import FetchManyResult, Membership, Record

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

__all__ = ["Engine"]

R = TypeVar("R")

Handler = Callable[[Any, str], Any]
"""Runs an operation for a principal."""
Op = TypeVar("Op", bound=Operation[Any])


def _on(kind: type[Op], run: Callable[[Op], object]) -> tuple[type[Operation[Any]], Handler]:
    """``kind`` and what runs it (typed: ``run`` reads the fields ``kind`` has)."""
    return kind, lambda op, _principal: run(op)


def _as_caller(
    kind: type[Op], run: Callable[[Op, str], object]
) -> tuple[type[Operation[Any]], Handler]:
    """``kind`` and what runs it on behalf of the caller's principal."""
    return kind, run


def _fetch_many(fetcher: Fetcher, groups: GroupCoordinator, op: ops.FetchMany) -> FetchManyResult:
    """The records of ``op``'s partitions, then the heartbeat it carries, if any.

    The heartbeat is `GroupCoordinator.join`, as ``JoinGroup`` runs it (ADR 0009); its
    error is the reply's ``member``, except bad input, which refuses the whole request.
    """
    heartbeat = op.member
    if heartbeat is not None:  # bad input is refused before anything is read
        if heartbeat.member_id is None:
            raise InvalidRequestError("a fetch carries the heartbeat of a joined member_id")
        check_user_group(heartbeat.group)
        validate_member_id(heartbeat.member_id)
    partitions = fetcher.fetch_many(op.positions, op.max_bytes, op.max_records)
    member: Membership | LakelogError | None = None
    if heartbeat is not None:
        try:
            member = groups.join(
                heartbeat.group,
                heartbeat.topics,
                heartbeat.member_id,
                heartbeat.session_timeout_ms,
            )
        except InvalidRequestError:
            raise
        except LakelogError as error:
            member = error
    return FetchManyResult(partitions, member)


def _handlers(
    admin: TopicAdmin,
    appender: Appender,
    fetcher: Fetcher,
    groups: GroupCoordinator,
    subscriptions: Subscriptions,
) -> dict[type[Operation[Any]], Handler]:
    """Each operation of the contract, and the service method that implements it.

    Group operations refuse the groups of subscriptions (`check_user_group`): only their
    delivery moves those; describing them is allowed.
    """
    return dict(
        [
            _on(ops.CreateTopic, lambda op: admin.create_topic(op.name, op.partitions, op.config)),
            _on(ops.ListTopics, lambda op: admin.list_topics()),
            _on(
                ops.DescribeTopic,
                lambda op: admin.describe_topic(op.topic, levels=bool(op.levels)),
            ),
            _on(ops.AlterTopic, lambda op: admin.alter_topic(op.topic, op.config, op.partitions)),
            _on(ops.DeleteTopic, lambda op: admin.delete_topic(op.topic)),
            _as_caller(ops.InitProducerId, lambda op, caller: admin.init_producer_id(caller)),
            _as_caller(
                ops.Append,
                lambda op, caller: appender.append(
                    op.topic, op.records, op.producer, principal=caller
                ),
            ),
            _on(
                ops.Fetch,
                lambda op: fetcher.fetch(
                    op.topic, op.partition, op.offset, op.max_records, op.max_bytes
                ),
            ),
            _on(ops.FetchMany, lambda op: _fetch_many(fetcher, groups, op)),
            _on(ops.ListOffset, lambda op: fetcher.list_offset(op.topic, op.partition, op.spec)),
            _on(
                ops.OffsetForTime,
                lambda op: fetcher.time_offset(op.topic, op.partition, op.timestamp_ms),
            ),
            _on(
                ops.JoinGroup,
                lambda op: groups.join(
                    check_user_group(op.group), op.topics, op.member_id, op.session_timeout_ms
                ),
            ),
            _on(
                ops.LeaveGroup,
                lambda op: groups.leave(check_user_group(op.group), op.member_id),
            ),
            _on(
                ops.CommitOffsets,
                lambda op: groups.commit(check_user_group(op.group), op.member_id, op.offsets),
            ),
            _on(ops.DescribeGroup, lambda op: groups.describe(op.group)),
            _on(
                ops.ResetOffsets,
                lambda op: groups.reset(check_user_group(op.group), op.topic, op.to),
            ),
            _as_caller(
                ops.CreateSubscription,
                lambda op, caller: subscriptions.create(op.subscription, caller),
            ),
            _on(ops.ListSubscriptions, lambda op: subscriptions.list(op.topic)),
            _on(ops.DescribeSubscription, lambda op: subscriptions.describe(op.topic, op.name)),
            _on(ops.DeleteSubscription, lambda op: subscriptions.delete(op.topic, op.name)),
        ]
    )


class Engine:
    """Topics, append, fetch and consumer groups on an object store, a ledger and a catalog.

    `call` runs any operation of the contract (`lakelog.contract.operations`) on the
    service method that implements it, which makes the engine a `Transport`. For programs
    in this process, each use case is also an attribute named after its operation
    (``engine.append`` is ``engine.appender.append``, ``engine.reset_offsets`` is
    ``engine.groups.reset``).

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
    functions
        Which functions topics may subscribe (default: any Lambda function ARN, no
        ``local:`` function; the local dev server allows those).
    on_append
        Called with the topic id after each committed append (`AppendHook`): ``lakelog
        dev`` queues the topic for its dispatcher (ADR 0015 §4). None in Lambda, where
        the ledger's stream starts the dispatcher.
    deliveries
        The dispatcher's delivery states, which describing a subscription reports (the
        DynamoDB store on the catalog table with `Engine.from_clients`).
    kafka_groups
        The Kafka gateway's group coordinator state (ADR 0016 §5; the DynamoDB store on
        the catalog table with `Engine.from_clients`, else one in memory of this engine).
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
        functions: FunctionPolicy | None = None,
        on_append: AppendHook | None = None,
        deliveries: DeliveryStateStore | None = None,
        kafka_groups: KafkaGroupStore | None = None,
    ) -> None:
        self.context = EngineContext.create(objects, ledger, catalog, clock_ms)
        producers = ProducerIds(self.context.catalog, self.context.clock_ms)
        self.admin = TopicAdmin(self.context, producers)
        self.appender = Appender(
            self.context, retry, sleep or time.sleep, seed, producers, on_append
        )
        self.fetcher = Fetcher(self.context)
        self.gc = GarbageCollector(self.context, grace_ms)
        self.groups = GroupCoordinator(
            self.context,
            groups,
            self.fetcher,
            other_members=lambda group: self.kafka_groups.members(group),  # noqa: PLW0108 - made below
        )
        self.subscriptions = Subscriptions(
            self.context, self.groups, functions or FunctionPolicy(), deliveries
        )
        self._handlers = _handlers(
            self.admin, self.appender, self.fetcher, self.groups, self.subscriptions
        )
        # The Kafka gateway's groups (ADR 0016 §5): not operations of the contract, the
        # gateway calls them directly.
        self.kafka_groups = KafkaGroups(
            kafka_groups or MemoryKafkaGroupStore(), self.groups, self.context.clock_ms
        )
        # The use cases by the names of their operations (aliases, not wrappers)
        self.create_topic = self.admin.create_topic
        self.list_topics = self.admin.list_topics
        self.describe_topic = self.admin.describe_topic
        self.alter_topic = self.admin.alter_topic
        self.delete_topic = self.admin.delete_topic
        self.init_producer_id = self.admin.init_producer_id
        self.append = self.appender.append
        self.fetch = self.fetcher.fetch
        self.list_offset = self.fetcher.list_offset
        self.offset_for_time = self.fetcher.offset_for_time
        self.join_group = self.groups.join
        self.leave_group = self.groups.leave
        self.member_topics = self.groups.member_topics
        self.commit_offsets = self.groups.commit
        self.describe_group = self.groups.describe
        self.reset_offsets = self.groups.reset
        self.create_subscription = self.subscriptions.create
        self.list_subscriptions = self.subscriptions.list
        self.describe_subscription = self.subscriptions.describe
        self.delete_subscription = self.subscriptions.delete

    @classmethod
    def from_clients(
        cls,
        s3_client: S3Client,
        dynamodb_client: DynamoDBClient,
        names: ResourceNames,
        **kwargs: Any,
    ) -> Engine:
        """An engine on S3 and DynamoDB through the given boto3 clients."""
        kwargs.setdefault(
            "deliveries", DynamoDeliveryStateStore(dynamodb_client, names.catalog_table)
        )
        kwargs.setdefault(
            "kafka_groups", DynamoKafkaGroupStore(dynamodb_client, names.catalog_table)
        )
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
        """Access rules on this engine's catalog, cached on its clock; see `AccessControl`."""
        clock_ms = self.context.clock_ms
        return AccessControl(
            self.context.catalog, default, clock=lambda: clock_ms() / 1000, admins=admins
        )

    @property
    def operations(self) -> frozenset[type[Operation[Any]]]:
        """The operations `call` runs: every one the contract declares."""
        return frozenset(self._handlers)

    def call(self, op: Operation[R], principal: str = DIRECT_PRINCIPAL) -> R:
        """Run ``op`` on the service that implements it (`Transport.call`, direct mode).

        ``principal`` is who calls: the HTTP API passes the request's caller; direct mode
        is `DIRECT_PRINCIPAL`. It decides which producer ids an append may use.
        """
        handler = self._handlers.get(type(op))
        if handler is None:
            raise InvalidRequestError(f"the engine runs no operation {type(op).__name__}")
        result: R = handler(op, principal)
        return result

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
        """Stop the fetcher's GET threads; the AWS clients belong to whoever made them."""
        self.fetcher.close()
