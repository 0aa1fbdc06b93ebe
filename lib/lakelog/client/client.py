"""`Client`: topics, producers and consumers over HTTPS or in-process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from lakelog.client.consumer import Consumer
from lakelog.client.http import HttpTransport
from lakelog.client.producer import Producer
from lakelog.client.subscription import OffsetReset
from lakelog.client.transport import Transport
from lakelog.contract.operations import (
    AlterTopic,
    CreateSubscription,
    CreateTopic,
    DeleteSubscription,
    DeleteTopic,
    DescribeGroup,
    DescribeSubscription,
    DescribeTopic,
    ListSubscriptions,
    ListTopics,
    Operation,
    ResetOffsets,
)
from lakelog.errors import InvalidRequestError
from lakelog.types import (
    GroupDescription,
    OnFailure,
    ResetTarget,
    Subscription,
    SubscriptionStatus,
    TopicDescription,
)

if TYPE_CHECKING:
    import boto3

    from lakelog.storage.keys import ResourceNames

__all__ = ["Client"]

R = TypeVar("R")


class Client:
    """The entry point of the SDK.

    ``Client(endpoint)`` talks to the HTTP API (SigV4-signed with the session's credentials
    unless the endpoint is a loopback address); ``Client.direct(...)`` runs the engine
    in-process on the deployment's bucket and tables. Both expose the same methods.

    Examples
    --------
    >>> c = Client("http://127.0.0.1:8080")                      # doctest: +SKIP
    >>> c.create_topic("orders", partitions=6)                    # doctest: +SKIP
    >>> with c.producer(linger_ms=5) as p:                        # doctest: +SKIP
    ...     p.send("orders", value=b"{}", key=b"42").get(timeout=10)
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        session: boto3.Session | None = None,
        region: str | None = None,
        sign: bool | None = None,
        timeout_s: float = 30.0,
        transport: Transport | None = None,
    ) -> None:
        if transport is None:
            if endpoint is None:
                raise TypeError("give an endpoint URL, or use Client.direct(...)")
            transport = HttpTransport(
                endpoint, session=session, region=region, sign=sign, timeout_s=timeout_s
            )
        self.transport = transport

    @classmethod
    def direct(
        cls,
        bucket: str | None = None,
        ledger_table: str | None = None,
        catalog_table: str | None = None,
        *,
        names: ResourceNames | None = None,
        session: boto3.Session | None = None,
        s3_client: Any = None,
        dynamodb_client: Any = None,
    ) -> Client:
        """A client running the engine in this process, on the names the stack outputs.

        Give ``bucket``, ``ledger_table`` and ``catalog_table`` (the ``BucketName``,
        ``LedgerTableName`` and ``CatalogTableName`` outputs) or ``names``; clients come from
        ``session`` (the default session when None) unless given. The engine, boto3 and
        pyarrow are imported here, not when the SDK is.
        """
        import boto3  # noqa: PLC0415 - direct mode only

        from lakelog.service.engine import Engine  # noqa: PLC0415 - direct mode only
        from lakelog.storage.keys import ResourceNames  # noqa: PLC0415 - direct mode only

        if names is None:
            if not (bucket and ledger_table and catalog_table):
                raise TypeError("give bucket, ledger_table and catalog_table, or names=")
            names = ResourceNames(bucket, ledger_table, catalog_table)
        session = session or boto3.Session()
        engine = Engine.from_clients(
            s3_client or session.client("s3"),
            dynamodb_client or session.client("dynamodb"),
            names,
        )
        return cls(transport=engine)

    def call(self, op: Operation[R]) -> R:
        """Run any operation of the contract (`lakelog.contract.operations`) and return its
        result; the methods below are the common ones by name.

        Examples
        --------
        >>> from lakelog.contract.operations import DescribeGroup
        >>> c.call(DescribeGroup("billing")).partitions            # doctest: +SKIP
        """
        return self.transport.call(op)

    # Topics ------------------------------------------------------------------------------
    def create_topic(
        self, name: str, partitions: int = 1, config: dict[str, Any] | None = None
    ) -> TopicDescription:
        """Create a topic; raises `TopicExistsError` if it exists."""
        return self.call(CreateTopic(name, partitions, config))

    def list_topics(self) -> list[str]:
        """Names of every topic the caller may see."""
        return self.call(ListTopics())

    def describe_topic(self, name: str, *, levels: bool = False) -> TopicDescription:
        """Config and per-partition offsets and bytes.

        With ``levels``, also the segments and bytes per storage level (L0 flush segments,
        L1 merged segments) of the topic and of each partition (``description.levels``,
        ``partition.levels``): one more ledger read, plus one per 1,000 L1 entries of each
        merged partition.
        """
        return self.call(DescribeTopic(name, levels=levels or None))

    def alter_topic(
        self, name: str, config: dict[str, Any] | None = None, partitions: int | None = None
    ) -> TopicDescription:
        """Change config keys and/or grow the partition count."""
        return self.call(AlterTopic(name, config, partitions))

    def delete_topic(self, name: str) -> None:
        """Delete a topic and (through gc) its data."""
        self.call(DeleteTopic(name))

    # Groups ------------------------------------------------------------------------------
    def describe_group(self, group: str) -> GroupDescription:
        """Members, leases, committed offsets and lag of a group."""
        return self.call(DescribeGroup(group))

    def reset_offsets(self, group: str, topic: str, to: ResetTarget) -> dict[int, int]:
        """Move a group's committed offsets of ``topic`` (only with no live member).

        ``to`` is ``"earliest"``, ``"latest"``, ``ToOffset(n)`` or ``ToTimestamp(ms)``;
        returns partition -> new committed offset.
        """
        return self.call(ResetOffsets(group, topic, to))

    # Subscriptions (ADR 0015 §1) -------------------------------------------------------------
    def create_subscription(
        self, topic: str, name: str, function_arn: str, **options: Any
    ) -> Subscription:
        """Subscribe ``function_arn`` to ``topic`` under ``name``; the stored subscription.

        ``options`` are the fields of `Subscription` (``batch_size``,
        ``max_batching_window_ms``, ``starting_position``, ``starting_position_timestamp_ms``,
        ``maximum_retry_attempts``, ``maximum_record_age_ms``,
        ``bisect_batch_on_function_error``, ``report_batch_item_failures``, ``on_failure``:
        an `OnFailure` or ``{"topic": ...}`` / ``{"sqs_arn": ...}``), with the ranges of a
        Lambda event source mapping. Raises `InvalidRequestError` for a bad one,
        `SubscriptionExistsError` if the topic has a subscription of that name.

        Examples
        --------
        >>> c.create_subscription("orders", "billing",                 # doctest: +SKIP
        ...     "arn:aws:lambda:eu-west-1:123456789012:function:billing",
        ...     batch_size=500, starting_position="TRIM_HORIZON",
        ...     on_failure={"topic": "orders-dlq"})
        """
        failure = options.get("on_failure")
        if isinstance(failure, dict):
            options["on_failure"] = OnFailure(**failure)
        elif not isinstance(failure, OnFailure | None):
            raise InvalidRequestError(
                "on_failure must be an OnFailure or {'topic': ...} / {'sqs_arn': ...}, "
                f"not {failure!r}"
            )
        spec = Subscription(name=name, topic=topic, function_arn=function_arn, **options)
        return self.call(CreateSubscription(spec))

    def list_subscriptions(self, topic: str) -> list[Subscription]:
        """Every subscription of ``topic``, by name."""
        return self.call(ListSubscriptions(topic))

    def describe_subscription(self, topic: str, name: str) -> SubscriptionStatus:
        """A subscription with its committed offset, high watermark and lag per partition."""
        return self.call(DescribeSubscription(topic, name))

    def delete_subscription(self, topic: str, name: str) -> None:
        """Delete a subscription and its progress; raises `SubscriptionNotFoundError`."""
        self.call(DeleteSubscription(topic, name))

    # Producers and consumers ---------------------------------------------------------------
    def producer(self, **options: Any) -> Producer:
        """A `Producer` on this client; options as `Producer` takes them."""
        return Producer(self.transport, **options)

    def consumer(
        self,
        *topics: str,
        group_id: str | None = None,
        auto_offset_reset: OffsetReset = "latest",
        **options: Any,
    ) -> Consumer:
        """A `Consumer` of ``topics`` (in ``group_id`` when given); options as `Consumer`."""
        return Consumer(
            self.transport,
            *topics,
            group_id=group_id,
            auto_offset_reset=auto_offset_reset,
            **options,
        )

    def close(self) -> None:
        """Release the transport's connections."""
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
