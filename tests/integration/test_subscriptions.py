"""Subscriptions (ADR 0015 §1): validation like a Lambda event source mapping, starting
positions, describe with lag, delete and re-create, the function policy and the reserved
``subscription.`` group prefix.

Every call goes through `Engine.call` with the contract's operations, as the API and the
SDK send them. Time is a fake clock; "busy" means records appended at a chosen point of
the creation (between reading the offsets and writing them), never by racing threads.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import pytest

from lakelog import (
    Engine,
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidRequestError,
    OffsetCommit,
    OnFailure,
    Record,
    Subscription,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    TopicNotFoundError,
)
from lakelog.contract import operations as ops
from lakelog.errors import ForbiddenError, FunctionNotAllowedError, LakelogError
from lakelog.service.subscriptions import FunctionPolicy
from lakelog.storage.faults import FailPoint, InjectedFaultError
from lakelog.storage.ports import GroupState, GroupStore, LeaseRecord, MemberRecord
from tests.contract.backends import Backend
from tests.integration.dispatch_support import Functions, Harness
from tests.integration.group_support import START_MS, Clock
from tests.integration.subscription_support import CatalogHooks

FUNCTION = "arn:aws:lambda:eu-west-1:123456789012:function:billing"
QUEUE = "arn:aws:sqs:eu-west-1:123456789012:billing-dlq"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(make_engine: Callable[..., Engine], clock: Clock) -> Engine:
    engine = make_engine(clock_ms=clock)
    engine.create_topic("orders", partitions=3)
    engine.create_topic("orders-dlq")
    return engine


def spec(name: str = "billing", topic: str = "orders", **options: Any) -> Subscription:
    return Subscription(name=name, topic=topic, **{"function_arn": FUNCTION, **options})


def create(engine: Engine, subscription: Subscription) -> Subscription:
    return engine.call(ops.CreateSubscription(subscription))


def append(engine: Engine, partition: int, *timestamps: int) -> None:
    engine.append(
        "orders", [Record(value=b"x", partition=partition, timestamp_ms=t) for t in timestamps]
    )


def committed(engine: Engine, name: str = "billing") -> list[int | None]:
    status = engine.call(ops.DescribeSubscription("orders", name))
    return [p.committed_offset for p in status.partitions]


# Validation ---------------------------------------------------------------------------

GOOD: list[tuple[str, Any]] = [
    ("batch_size", 1),
    ("batch_size", 10_000),
    ("max_batching_window_ms", 0),
    ("max_batching_window_ms", 300_000),
    ("maximum_retry_attempts", -1),
    ("maximum_retry_attempts", 0),
    ("maximum_retry_attempts", 10_000),
    ("maximum_record_age_ms", -1),
    ("maximum_record_age_ms", 60_000),
    ("maximum_record_age_ms", 604_800_000),
    ("starting_position", "TRIM_HORIZON"),
    ("starting_position", "LATEST"),
    ("bisect_batch_on_function_error", True),
    ("report_batch_item_failures", True),
    ("on_failure", OnFailure(topic="orders-dlq")),
    ("on_failure", OnFailure(sqs_arn=QUEUE)),
    ("on_failure", OnFailure(sqs_arn="arn:aws-us-gov:sqs:us-gov-west-1:123456789012:q_1")),
    ("function_arn", "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST"),
    ("function_arn", "arn:aws:lambda:ap-southeast-2:123456789012:function:my-fn_2:live"),
    ("function_arn", "arn:aws-cn:lambda:cn-north-1:123456789012:function:f:7"),
    ("name", "a" * (249 - len("subscription.orders."))),
    ("name", "Billing_2-x"),
]

BAD: list[tuple[str, Any, str]] = [
    ("batch_size", 0, "batch_size must be between 1 and 10,000"),
    ("batch_size", 10_001, "batch_size must be between 1 and 10,000"),
    ("batch_size", "10", "batch_size must be an integer"),
    ("batch_size", True, "batch_size must be an integer"),
    ("max_batching_window_ms", -1, "max_batching_window_ms must be between 0 and 300,000"),
    ("max_batching_window_ms", 300_001, "max_batching_window_ms must be between"),
    ("maximum_retry_attempts", -2, "maximum_retry_attempts must be between -1 and 10,000"),
    ("maximum_retry_attempts", 10_001, "maximum_retry_attempts must be between"),
    ("maximum_record_age_ms", 0, "between 60,000 and 604,800,000 or -1"),
    ("maximum_record_age_ms", 59_999, "between 60,000 and 604,800,000 or -1"),
    ("maximum_record_age_ms", 604_800_001, "between 60,000 and 604,800,000 or -1"),
    ("maximum_record_age_ms", -2, "between 60,000 and 604,800,000 or -1"),
    ("starting_position", "EARLIEST", "starting_position must be one of"),
    ("starting_position", "AT_TIMESTAMP", "AT_TIMESTAMP needs starting_position_timestamp_ms"),
    ("starting_position_timestamp_ms", 5, "only for starting_position AT_TIMESTAMP"),
    ("bisect_batch_on_function_error", 1, "must be true or false"),
    ("report_batch_item_failures", "yes", "must be true or false"),
    ("on_failure", OnFailure(), "exactly one of topic or sqs_arn"),
    ("on_failure", OnFailure(topic="orders-dlq", sqs_arn=QUEUE), "exactly one of"),
    ("on_failure", OnFailure(topic="orders"), "must not be the subscribed topic"),
    ("on_failure", OnFailure(topic="never"), "on_failure topic 'never' does not exist"),
    ("on_failure", OnFailure(topic="bad name"), "topic name 'bad name' may contain only"),
    ("on_failure", OnFailure(sqs_arn="arn:aws:sns:eu-west-1:123456789012:t"), "SQS queue ARN"),
    ("on_failure", OnFailure(sqs_arn="arn:aws:sqs:eu-west-1:1234:q"), "SQS queue ARN"),
    ("on_failure", {"topic": "orders-dlq"}, "on_failure must be an OnFailure"),
    ("function_arn", "billing", "must be a Lambda function ARN"),
    ("function_arn", "arn:aws:lambda:eu-west-1:123456789012:layer:x", "Lambda function ARN"),
    ("function_arn", "arn:aws:lambda:eu-west-1:12345:function:f", "Lambda function ARN"),
    ("function_arn", FUNCTION + ":a:b", "Lambda function ARN"),
    ("function_arn", "local:handlers.billing:handle", "only the local dev server"),
    ("function_arn", None, "function_arn must be a string"),
    ("name", "", "subscription name must be a non-empty string"),
    ("name", "a.b", "may contain only ASCII letters, digits, '_' and '-'"),
    ("name", "a b", "may contain only"),
    ("name", "a" * (250 - len("subscription.orders.")), "on topic 'orders' the limit is 229"),
]


@pytest.mark.parametrize(("field", "value"), GOOD)
def test_every_option_within_lambdas_ranges_is_accepted_and_stored(
    engine: Engine, field: str, value: Any
) -> None:
    wanted = dataclasses.replace(spec(), **{field: value})

    created = create(engine, wanted)

    assert created == dataclasses.replace(
        wanted,
        topic_id=engine.describe_topic("orders").topic_id,
        created_ms=START_MS,
        start_offsets=(0, 0, 0),
    )
    assert engine.call(ops.ListSubscriptions("orders")) == [created]


def test_at_timestamp_with_its_timestamp_is_accepted(engine: Engine) -> None:
    created = create(
        engine, spec(starting_position="AT_TIMESTAMP", starting_position_timestamp_ms=0)
    )
    assert created.starting_position_timestamp_ms == 0


@pytest.mark.parametrize(("field", "value", "message"), BAD)
def test_an_option_lambda_would_refuse_is_refused_with_400_and_nothing_is_stored(
    engine: Engine, field: str, value: Any, message: str
) -> None:
    bad = dataclasses.replace(spec(), **{field: value})

    with pytest.raises(InvalidRequestError) as refused:
        create(engine, bad)

    assert type(refused.value) is InvalidRequestError
    assert refused.value.code == "invalid_request"
    assert message in refused.value.message
    assert engine.call(ops.ListSubscriptions("orders")) == []
    assert engine.groups.store.read_group(bad.group) == GroupState()


def test_a_subscription_of_a_missing_topic_is_404_and_a_name_is_taken_once(
    engine: Engine,
) -> None:
    with pytest.raises(TopicNotFoundError):
        create(engine, spec(topic="never"))

    first = create(engine, spec())
    with pytest.raises(SubscriptionExistsError) as taken:
        create(engine, spec(batch_size=7, starting_position="TRIM_HORIZON"))

    assert (taken.value.code, taken.value.topic, taken.value.name) == (
        "subscription_exists",
        "orders",
        "billing",
    )
    assert engine.call(ops.ListSubscriptions("orders")) == [first]


def test_local_functions_only_where_the_engine_allows_them(
    make_engine: Callable[..., Engine], engine: Engine
) -> None:
    local = spec(function_arn="local:handlers.billing:handle")
    dev = make_engine(functions=FunctionPolicy(allow_local=True))

    assert create(dev, local).function_arn == "local:handlers.billing:handle"
    with pytest.raises(InvalidRequestError, match="only the local dev server"):
        create(engine, dataclasses.replace(local, name="other"))


def test_functions_outside_the_deployments_prefixes_are_403(
    make_engine: Callable[..., Engine], engine: Engine
) -> None:
    prefix = "arn:aws:lambda:eu-west-1:123456789012:function:bill"
    policy = FunctionPolicy.from_env({"LAKELOG_TRIGGER_FUNCTION_PREFIXES": f" {prefix} , "})
    assert policy == FunctionPolicy(prefixes=(prefix,))
    strict = make_engine(functions=policy)
    other = "arn:aws:lambda:eu-west-1:123456789012:function:payroll"

    with pytest.raises(ForbiddenError) as refused:
        strict.call(ops.CreateSubscription(spec(function_arn=other)), "alice")

    assert isinstance(refused.value, FunctionNotAllowedError)
    assert refused.value.code == "forbidden"
    assert (refused.value.principal, refused.value.topic) == ("alice", "orders")
    assert other in refused.value.message
    assert strict.call(ops.ListSubscriptions("orders")) == []
    assert create(strict, spec()).function_arn == FUNCTION
    assert FunctionPolicy.from_env({}) == FunctionPolicy()


# Starting positions -------------------------------------------------------------------


def test_trim_horizon_starts_at_each_log_start_and_latest_at_each_high_watermark(
    engine: Engine,
) -> None:
    append(engine, 0, START_MS, START_MS)
    append(engine, 2, START_MS)

    create(engine, spec("from-start", starting_position="TRIM_HORIZON"))
    create(engine, spec("from-now", starting_position="LATEST"))
    create(engine, spec("default"))

    assert committed(engine, "from-start") == [0, 0, 0]
    assert committed(engine, "from-now") == [2, 0, 1]
    assert committed(engine, "default") == [2, 0, 1]


def test_at_timestamp_starts_at_the_first_record_at_or_after_it(engine: Engine) -> None:
    append(engine, 0, START_MS - 2000, START_MS - 1000, START_MS, START_MS + 1000)
    append(engine, 1, START_MS - 5000)
    append(engine, 2, START_MS + 5000)

    create(
        engine,
        spec(starting_position="AT_TIMESTAMP", starting_position_timestamp_ms=START_MS - 1000),
    )

    # Partition 0: offset 1 is the first at the time; 1: none is (its high watermark);
    # 2: its only record is later (offset 0)
    assert committed(engine) == [1, 1, 0]


class _BeforeReset:
    """A group store that runs ``hook`` just before creation writes the offsets: records
    landing, as producers of a busy topic would append them, or a crash."""

    def __init__(self, inner: GroupStore, hook: Callable[[], None]) -> None:
        self._inner = inner
        self._hook = hook

    def reset_leases(self, group: str, resets: Any) -> bool:
        self._hook()
        return self._inner.reset_leases(group, resets)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize(
    ("position", "expected_committed", "expected_lag"),
    [("LATEST", [3, 0, 0], [2, 1, 0]), ("TRIM_HORIZON", [0, 0, 0], [5, 1, 0])],
)
def test_on_a_busy_topic_records_appended_during_creation_are_not_skipped(
    backend: Backend,
    engine: Engine,
    position: str,
    expected_committed: list[int],
    expected_lag: list[int],
) -> None:
    # Given a topic with records, and producers that append while the subscription is made
    append(engine, 0, START_MS, START_MS, START_MS)
    objects, ledger, catalog, groups = backend.stores()

    def producers() -> None:
        append(engine, 0, START_MS, START_MS)
        append(engine, 1, START_MS)

    busy = Engine(objects, ledger, catalog, _BeforeReset(groups, producers))

    # When it is created
    busy.call(ops.CreateSubscription(spec(starting_position=position)))

    # Then its offsets are those read when it was made, and what landed meanwhile is lag
    status = engine.call(ops.DescribeSubscription("orders", "billing"))
    assert [p.committed_offset for p in status.partitions] == expected_committed
    assert [p.lag for p in status.partitions] == expected_lag
    assert [p.high_watermark for p in status.partitions] == [5, 1, 0]


# Racing creations, crashes and stale progress ------------------------------------------


def unbatched(**options: Any) -> Subscription:
    """The subscription ``billing`` of ``orders`` without a batching window."""
    return spec(max_batching_window_ms=0, **options)


def deliver(engine: Engine, subscription: Subscription, **dispatcher: Any) -> Functions:
    """Run one delivery of every partition of ``subscription`` (no batching window) with
    records; what its function received."""
    harness = Harness(engine, subscription)
    harness.dispatcher(sleep=pytest.fail, **dispatcher).on_appended([subscription.topic_id])
    return harness.functions


@pytest.mark.moto
@pytest.mark.parametrize(
    ("winner", "loser", "winners_offsets"),
    [("LATEST", "TRIM_HORIZON", [3, 1, 0]), ("TRIM_HORIZON", "LATEST", [1, 1, 0])],
)
def test_a_creation_that_loses_the_race_for_its_name_changes_nothing(
    backend: Backend,
    engine: Engine,
    clock: Clock,
    winner: str,
    loser: str,
    winners_offsets: list[int],
) -> None:
    # Given a topic with history, and a creation of the name that, once this one found the
    # name free, wins the name and delivers a batch of one record per partition
    append(engine, 0, START_MS, START_MS, START_MS)
    append(engine, 1, START_MS)
    objects, ledger, catalog, groups = backend.stores()
    won: list[Subscription] = []

    def rival() -> None:
        won.append(create(engine, unbatched(starting_position=winner, batch_size=1)))
        deliver(engine, won[0], max_batches=1)

    racing = Engine(
        objects, ledger, CatalogHooks(catalog, after_check=rival), groups, clock_ms=clock
    )

    # When the other creation, past its check, goes on
    with pytest.raises(SubscriptionExistsError):
        racing.call(ops.CreateSubscription(unbatched(starting_position=loser)))

    # Then only the winner's subscription exists, with the winner's progress
    assert engine.call(ops.ListSubscriptions("orders")) == won
    assert committed(engine) == winners_offsets


def test_of_two_creations_of_one_name_past_the_check_together_one_wins_whole(
    backend: Backend, engine: Engine, clock: Clock
) -> None:
    # Given two creations of one name with different starting positions, each held after
    # its check until the other has made it too
    append(engine, 0, START_MS, START_MS)
    objects, ledger, catalog, groups = backend.stores()
    both_checked = threading.Barrier(2, timeout=30)
    outcomes: dict[str, Subscription | LakelogError] = {}

    def creation(position: str) -> None:
        hooks = CatalogHooks(catalog, after_check=both_checked.wait)
        racer = Engine(objects, ledger, hooks, groups, clock_ms=clock)
        try:
            outcomes[position] = racer.call(
                ops.CreateSubscription(unbatched(starting_position=position))
            )
        except LakelogError as error:
            outcomes[position] = error

    # When both go on at once
    threads = [threading.Thread(target=creation, args=(p,)) for p in ("LATEST", "TRIM_HORIZON")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then one is stored and the other refused, and the group starts where the stored one does
    created = [o for o in outcomes.values() if isinstance(o, Subscription)]
    refused = [o for o in outcomes.values() if not isinstance(o, Subscription)]
    assert len(created) == 1, outcomes
    assert [type(error) for error in refused] == [SubscriptionExistsError]
    assert engine.call(ops.ListSubscriptions("orders")) == created
    assert committed(engine) == list(created[0].start_offsets)
    assert (
        created[0].start_offsets
        == {"LATEST": (2, 0, 0), "TRIM_HORIZON": (0, 0, 0)}[created[0].starting_position]
    )


@pytest.mark.moto
def test_a_creation_that_crashes_before_writing_the_groups_offsets_starts_at_its_item(
    backend: Backend, engine: Engine, clock: Clock
) -> None:
    # Given a creation that crashes after its item is stored, before the group's offsets
    append(engine, 0, START_MS, START_MS, START_MS)
    append(engine, 1, START_MS)
    objects, ledger, catalog, groups = backend.stores()

    def crash() -> None:
        raise InjectedFaultError(FailPoint.BEFORE_COMMIT)

    crashing = Engine(objects, ledger, catalog, _BeforeReset(groups, crash), clock_ms=clock)
    with pytest.raises(InjectedFaultError):
        crashing.call(ops.CreateSubscription(unbatched(starting_position="LATEST")))

    # When records arrive and the subscription is described, then delivered
    append(engine, 0, START_MS)
    append(engine, 2, START_MS, START_MS)
    [stored] = engine.call(ops.ListSubscriptions("orders"))
    status = engine.call(ops.DescribeSubscription("orders", "billing"))
    functions = deliver(engine, stored)

    # Then it starts where its item says: only what arrived after it was created
    assert stored.start_offsets == (3, 1, 0)
    assert [(p.committed_offset, p.high_watermark, p.lag) for p in status.partitions] == [
        (None, 4, 1),
        (None, 1, 0),
        (None, 2, 2),
    ]
    assert [functions.offsets(f"orders-{p}") for p in range(3)] == [[3], [], [0, 1]]
    assert committed(engine) == [4, None, 2]
    # and a retried creation of the name is refused: the first one stands
    with pytest.raises(SubscriptionExistsError):
        create(engine, unbatched(starting_position="TRIM_HORIZON"))


@pytest.mark.moto
def test_a_delivery_that_starts_before_the_groups_offsets_are_written_keeps_its_progress(
    backend: Backend, engine: Engine, clock: Clock
) -> None:
    # Given records on two partitions, and a delivery that runs as soon as the item is put
    append(engine, 0, START_MS, START_MS)
    append(engine, 1, START_MS)
    objects, ledger, catalog, groups = backend.stores()
    delivered: list[Functions] = []

    def delivery(subscription: Subscription) -> None:
        append(engine, 0, START_MS)
        delivered.append(deliver(engine, subscription))

    hooks = CatalogHooks(catalog, after_put=delivery)
    eager = Engine(objects, ledger, hooks, groups, clock_ms=clock)

    # When the subscription is created from the start
    eager.call(ops.CreateSubscription(unbatched(starting_position="TRIM_HORIZON")))

    # Then the delivery started at the item's offsets and creation left its progress alone
    assert [delivered[0].offsets(f"orders-{p}") for p in range(3)] == [[0, 1, 2], [0], []]
    assert committed(engine) == [3, 1, 0]


@pytest.mark.moto
def test_offsets_left_by_a_delete_that_crashed_do_not_leak_into_a_re_created_subscription(
    engine: Engine,
) -> None:
    # Given a subscription that delivered everything, deleted by a delete that crashed
    # after removing the item, before removing the group's items
    append(engine, 0, START_MS, START_MS, START_MS)
    first = create(engine, unbatched(starting_position="TRIM_HORIZON"))
    deliver(engine, first)
    assert committed(engine) == [3, 0, 0]
    assert engine.context.catalog.delete_subscription("orders", "billing")

    # When the name is subscribed again from the start
    again = create(engine, unbatched(starting_position="TRIM_HORIZON"))

    # Then it starts from the start, not from the old progress
    assert again.start_offsets == (0, 0, 0)
    assert committed(engine) == [0, 0, 0]
    assert deliver(engine, again).offsets("orders-0") == [0, 1, 2]


def test_a_name_whose_deleted_subscription_still_delivers_is_refused_storing_nothing(
    engine: Engine, clock: Clock
) -> None:
    # Given a subscription deleted while a delivery of it still runs (its member renewed)
    created = create(engine, unbatched(starting_position="TRIM_HORIZON"))
    engine.call(ops.DeleteSubscription("orders", "billing"))
    session = MemberRecord("dispatcher-1", ("orders",), 330_000, clock() + 330_000)
    engine.groups.store.put_member(created.group, session)

    # When the name is subscribed again, then it is refused and nothing is stored
    with pytest.raises(GroupNotEmptyError):
        create(engine, unbatched(starting_position="LATEST"))
    assert engine.call(ops.ListSubscriptions("orders")) == []
    assert engine.groups.store.read_group(created.group) == GroupState(members=(session,))


# Describe, delete, re-create ----------------------------------------------------------


def test_describe_shows_lag_per_partition_and_new_partitions_start_at_zero(
    engine: Engine,
) -> None:
    created = create(engine, spec())
    append(engine, 0, START_MS, START_MS)
    append(engine, 1, START_MS)
    engine.alter_topic("orders", partitions=4)
    append(engine, 3, START_MS, START_MS, START_MS)

    status = engine.call(ops.DescribeSubscription("orders", "billing"))

    assert status.subscription == created
    assert status.state == {}
    assert [
        (p.partition, p.committed_offset, p.high_watermark, p.lag) for p in status.partitions
    ] == [
        (0, 0, 2, 2),
        (1, 0, 1, 1),
        (2, 0, 0, 0),
        (3, None, 3, 3),
    ]
    # The group shows the same progress, like any group's
    group = engine.describe_group(created.group)
    assert [(p.partition, p.committed_offset) for p in group.partitions] == [
        (0, 0),
        (1, 0),
        (2, 0),
        (3, None),
    ]


def test_describe_and_delete_of_an_unknown_subscription_are_404(engine: Engine) -> None:
    for op in (
        ops.DescribeSubscription("orders", "never"),
        ops.DeleteSubscription("orders", "never"),
    ):
        with pytest.raises(SubscriptionNotFoundError) as missing:
            engine.call(op)
        assert (missing.value.code, missing.value.topic, missing.value.name) == (
            "subscription_not_found",
            "orders",
            "never",
        )


@pytest.mark.moto
def test_delete_removes_the_subscription_and_its_progress_and_the_name_can_be_reused(
    engine: Engine,
) -> None:
    append(engine, 0, START_MS, START_MS)
    create(engine, spec(starting_position="LATEST"))
    create(engine, spec("audit"))

    engine.call(ops.DeleteSubscription("orders", "billing"))

    assert [s.name for s in engine.call(ops.ListSubscriptions("orders"))] == ["audit"]
    with pytest.raises(GroupNotFoundError):
        engine.describe_group("subscription.orders.billing")
    with pytest.raises(SubscriptionNotFoundError):
        engine.call(ops.DeleteSubscription("orders", "billing"))
    assert committed(engine, "audit") == [2, 0, 0]

    # Re-created from the start, it starts afresh
    create(engine, spec(starting_position="TRIM_HORIZON"))
    assert committed(engine) == [0, 0, 0]


def test_a_deleted_topics_subscriptions_are_still_listed_and_deletable(engine: Engine) -> None:
    create(engine, spec())
    engine.delete_topic("orders")

    assert [s.name for s in engine.call(ops.ListSubscriptions("orders"))] == ["billing"]
    with pytest.raises(TopicNotFoundError):
        engine.call(ops.DescribeSubscription("orders", "billing"))
    engine.call(ops.DeleteSubscription("orders", "billing"))
    assert engine.call(ops.ListSubscriptions("orders")) == []


# The reserved group prefix ------------------------------------------------------------

RESERVED = "subscription.orders.billing"


@pytest.mark.parametrize(
    "op",
    [
        ops.JoinGroup(RESERVED, ["orders"]),
        ops.LeaveGroup(RESERVED, "m1"),
        ops.CommitOffsets(RESERVED, "m1", [OffsetCommit("orders", 0, 1, 1)]),
        ops.ResetOffsets(RESERVED, "orders", "earliest"),
        ops.ResetOffsets("subscription.anything", "orders", "latest"),
        ops.FetchMany([], member=ops.JoinGroup(RESERVED, ["orders"], member_id="m1")),
    ],
    ids=["join", "leave", "commit", "reset", "reset-other", "fetch-heartbeat"],
)
def test_users_may_not_move_the_groups_of_subscriptions(
    engine: Engine, op: ops.Operation[Any]
) -> None:
    created = create(engine, spec(starting_position="TRIM_HORIZON"))
    before = engine.describe_group(created.group)

    with pytest.raises(InvalidRequestError, match="reserved for subscriptions") as refused:
        engine.call(op)

    assert refused.value.code == "invalid_request"
    assert engine.call(ops.DescribeGroup(created.group)) == before


def test_other_groups_are_not_reserved(engine: Engine) -> None:
    assert engine.call(ops.ResetOffsets("subscriptions", "orders", "earliest")) == {
        0: 0,
        1: 0,
        2: 0,
    }
    assert engine.call(ops.JoinGroup("my.subscription.x", ["orders"])).assignments


def test_the_dispatcher_takes_the_subscription_groups_leases_through_the_store(
    engine: Engine,
) -> None:
    # The reservation is the API's: delivery moves the group's leases itself (ADR 0009)
    created = create(engine, spec(starting_position="TRIM_HORIZON"))
    store = engine.groups.store
    lease = next(x for x in store.read_group(created.group).leases if x.partition == 0)
    taken = store.take_lease(created.group, lease, "dispatcher", created.topic_id)

    assert isinstance(taken, LeaseRecord)
    assert taken.committed_offset == 0


def test_errors_are_lakelog_errors(engine: Engine) -> None:
    with pytest.raises(LakelogError):
        create(engine, spec(batch_size=0))
