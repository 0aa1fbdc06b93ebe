"""Subscriptions through the SDK, on both transports: the same results and the same errors
over HTTP as in-process (ADR 0015 §1)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lakelog import (
    InvalidRequestError,
    OnFailure,
    Record,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    TopicNotFoundError,
)
from lakelog.client import Client
from lakelog.contract.operations import Append
from tests.integration.group_support import START_MS
from tests.integration.sdk.conftest import Wire

FUNCTION = "arn:aws:lambda:eu-west-1:123456789012:function:billing"


@pytest.fixture
def timed(make_timed_client: Callable[[], tuple[Client, Wire]]) -> Client:
    client = make_timed_client()[0]
    client.create_topic("orders", partitions=2)
    client.create_topic("orders-dlq")
    return client


def test_a_subscription_round_trips_through_every_method(timed: Client) -> None:
    records = [Record(b"x", partition=0, timestamp_ms=START_MS + i) for i in range(3)]
    timed.call(Append("orders", records))

    created = timed.create_subscription(
        "orders",
        "billing",
        FUNCTION,
        batch_size=500,
        starting_position="AT_TIMESTAMP",
        starting_position_timestamp_ms=START_MS + 1,
        maximum_record_age_ms=60_000,
        bisect_batch_on_function_error=True,
        on_failure={"topic": "orders-dlq"},
    )

    assert created.on_failure == OnFailure(topic="orders-dlq")
    assert created.created_ms == START_MS
    assert created.group == "subscription.orders.billing"
    assert timed.list_subscriptions("orders") == [created]
    status = timed.describe_subscription("orders", "billing")
    assert status.subscription == created
    assert [(p.committed_offset, p.lag) for p in status.partitions] == [(1, 2), (0, 0)]
    with pytest.raises(SubscriptionExistsError):
        timed.create_subscription("orders", "billing", FUNCTION)

    timed.delete_subscription("orders", "billing")
    assert timed.list_subscriptions("orders") == []
    with pytest.raises(SubscriptionNotFoundError) as missing:
        timed.describe_subscription("orders", "billing")
    assert (missing.value.topic, missing.value.name) == ("orders", "billing")


def test_errors_are_the_same_on_both_transports(timed: Client) -> None:
    with pytest.raises(InvalidRequestError, match="batch_size must be between 1 and 10,000"):
        timed.create_subscription("orders", "billing", FUNCTION, batch_size=0)
    with pytest.raises(InvalidRequestError, match="on_failure names exactly one"):
        timed.create_subscription("orders", "billing", FUNCTION, on_failure={})
    with pytest.raises(TopicNotFoundError):
        timed.create_subscription("never", "billing", FUNCTION)
    with pytest.raises(TypeError):
        timed.create_subscription("orders", "billing", FUNCTION, batch=5)
    assert timed.list_subscriptions("orders") == []


@pytest.mark.parametrize("on_failure", ["orders-dlq", ["orders-dlq"], 5], ids=repr)
def test_an_on_failure_that_is_no_destination_is_invalid_request_on_both_transports(
    timed: Client, on_failure: object
) -> None:
    with pytest.raises(InvalidRequestError, match="on_failure must be"):
        timed.create_subscription("orders", "billing", FUNCTION, on_failure=on_failure)
    assert timed.list_subscriptions("orders") == []
