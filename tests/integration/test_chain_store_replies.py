"""How the DynamoDB chain store reads DynamoDB's replies that moto never gives.

A transaction cancelled by a conflict with another one in flight, throttling, reasons
without the ``ALL_OLD`` item: each is answered from a client that replies exactly so.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from lakelog.errors import LakelogError, ThrottledError, UnavailableError
from lakelog.log.records import ChainItem
from lakelog.storage.attributes import Item, chain_item_to_item, producer_item
from lakelog.storage.dynamodb import DynamoLedgerStore
from lakelog.storage.keys import chain_pk, producer_state_pk
from lakelog.storage.ports import ChainConflict
from tests.contract.chain_support import appended, genesis, producer_update

TOPIC = "0" * 32
STAMP, UPDATE = producer_update(7, 1, 3, 2, 1, continues=True)
ITEM = appended(genesis(), {0: 1}, producer=STAMP)
THERE = appended(genesis(), {1: 4})


def _cancelled(*codes: str, items: tuple[Item | None, ...] = (None, None)) -> ClientError:
    reasons = []
    for code, item in zip(codes, items, strict=True):
        reason: dict[str, Any] = {"Code": code}
        if item is not None:
            reason["Item"] = item
        reasons.append(reason)
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": reasons,
        },
        "TransactWriteItems",
    )


def _failed(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "PutItem")


def _stored_producer() -> Item:
    return producer_item(TOPIC, UPDATE.state)


class _ReplyingDynamoDB:
    """Raises ``error`` on every write; answers GetItem from ``stored``; records requests."""

    def __init__(self, error: ClientError, stored: dict[str, Item] | None = None) -> None:
        self.error = error
        self.stored = stored or {}
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def put_item(self, **request: Any) -> None:
        self.requests.append(("put_item", request))
        raise self.error

    def transact_write_items(self, **request: Any) -> None:
        self.requests.append(("transact_write_items", request))
        raise self.error

    def get_item(self, **request: Any) -> dict[str, Any]:
        self.requests.append(("get_item", request))
        item = self.stored.get(request["Key"]["pk"]["S"])
        return {"Item": item} if item else {}


def _put(client: _ReplyingDynamoDB, item: ChainItem = ITEM, idempotent: bool = True) -> None:
    DynamoLedgerStore(client, "ledger").put_item(  # type: ignore[arg-type]
        TOPIC, item, UPDATE if idempotent else None
    )


def test_the_idempotent_put_is_one_transaction_returning_both_items_on_failure() -> None:
    client = _ReplyingDynamoDB(_cancelled("TransactionConflict", "None"))

    with pytest.raises(ChainConflict):
        _put(client)

    [(operation, request)] = client.requests
    put, update = (next(iter(part.values())) for part in request["TransactItems"])
    assert operation == "transact_write_items"
    assert put["ConditionExpression"] == "attribute_not_exists(sk)"
    assert put["Item"] == chain_item_to_item(chain_pk(TOPIC), ITEM)
    assert update["Key"] == {"pk": {"S": producer_state_pk(TOPIC, 7)}, "sk": {"N": "0"}}
    assert update["ConditionExpression"] == "#e = :e AND #l = :prev AND #expires_at >= :now"
    assert update["ExpressionAttributeValues"][":prev"] == {"N": "2"}
    assert put["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    assert update["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"


@pytest.mark.parametrize(
    "codes", [("TransactionConflict", "None"), ("None", "TransactionConflict")]
)
def test_a_conflict_with_a_transaction_in_flight_is_retryable(codes: tuple[str, str]) -> None:
    with pytest.raises(ChainConflict) as refused:
        _put(_ReplyingDynamoDB(_cancelled(*codes)))

    assert refused.value.retryable
    assert refused.value.current is None and not refused.value.producer_failed


def test_failed_conditions_without_the_old_items_are_answered_by_reading_them() -> None:
    stored = {
        chain_pk(TOPIC): chain_item_to_item(chain_pk(TOPIC), THERE),
        producer_state_pk(TOPIC, 7): _stored_producer(),
    }
    client = _ReplyingDynamoDB(
        _cancelled("ConditionalCheckFailed", "ConditionalCheckFailed"), stored
    )

    with pytest.raises(ChainConflict) as refused:
        _put(client)

    assert refused.value.current == THERE
    assert refused.value.producer_failed and refused.value.producer == UPDATE.state
    assert [operation for operation, _ in client.requests].count("get_item") == 2


def test_failed_conditions_with_the_old_items_are_answered_without_a_read() -> None:
    old = (chain_item_to_item(chain_pk(TOPIC), THERE), _stored_producer())
    client = _ReplyingDynamoDB(
        _cancelled("ConditionalCheckFailed", "ConditionalCheckFailed", items=old)
    )

    with pytest.raises(ChainConflict) as refused:
        _put(client)

    assert (refused.value.current, refused.value.producer) == (THERE, UPDATE.state)
    assert [operation for operation, _ in client.requests] == ["transact_write_items"]


def test_a_plain_put_at_a_taken_seq_reads_the_item_when_it_is_not_returned() -> None:
    stored = {chain_pk(TOPIC): chain_item_to_item(chain_pk(TOPIC), THERE)}
    client = _ReplyingDynamoDB(_failed("ConditionalCheckFailedException"), stored)

    with pytest.raises(ChainConflict) as refused:
        _put(client, appended(genesis(), {0: 1}), idempotent=False)

    assert refused.value.current == THERE and not refused.value.producer_failed
    put = client.requests[0][1]
    assert put["ConditionExpression"] == "attribute_not_exists(sk)"
    assert put["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"


@pytest.mark.parametrize(
    "error",
    [
        _failed("ProvisionedThroughputExceededException"),
        _failed("ThrottlingException"),
        _cancelled("ThrottlingError", "None"),
        _cancelled("None", "ProvisionedThroughputExceeded"),
    ],
    ids=["put-provisioned", "put-throttling", "transaction-throttling", "transaction-provisioned"],
)
def test_throttling_is_reported_as_throttled(error: ClientError) -> None:
    idempotent = error.operation_name == "TransactWriteItems"
    with pytest.raises(ThrottledError):
        _put(_ReplyingDynamoDB(error), idempotent=idempotent)


def test_a_cancellation_for_another_reason_is_unavailable_at_once() -> None:
    with pytest.raises(UnavailableError) as refused:
        _put(_ReplyingDynamoDB(_cancelled("ItemCollectionSizeLimitExceeded", "None")))

    assert not isinstance(refused.value, ChainConflict | ThrottledError)


def test_an_item_too_large_is_refused_as_not_retryable() -> None:
    with pytest.raises(LakelogError, match="400 KB") as refused:
        _put(_ReplyingDynamoDB(_cancelled("ValidationError", "None")))

    assert not isinstance(refused.value, UnavailableError)
