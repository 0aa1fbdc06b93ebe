"""The operations of the contract: each is declared once and every layer agrees on it.

Every operation has an HTTP binding whose models exist and whose path and query name its
fields; the engine runs every one of them; the types make a bad reset target a type
error rather than a run-time "exactly one of" check.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from lakelog import (
    LevelUsage,
    OffsetAndTimestamp,
    PartitionInfo,
    PartitionLevels,
    StorageLevels,
    ToOffset,
    TopicDescription,
    ToTimestamp,
)
from lakelog.contract import models
from lakelog.contract.operations import (
    DescribeTopic,
    Fetch,
    LeaveGroup,
    ListOffset,
    Operation,
    ResetOffsets,
)
from lakelog.errors import InvalidRequestError
from lakelog.limits import MAX_API_FETCH_BYTES

OPERATIONS: list[type[Operation[Any]]] = sorted(
    Operation.__subclasses__(), key=lambda kind: kind.__name__
)


def test_the_contract_declares_the_operations_of_the_http_api() -> None:
    assert [kind.__name__ for kind in OPERATIONS] == [
        "AlterTopic",
        "Append",
        "CommitOffsets",
        "CreateSubscription",
        "CreateTopic",
        "DeleteSubscription",
        "DeleteTopic",
        "DescribeGroup",
        "DescribeSubscription",
        "DescribeTopic",
        "Fetch",
        "FetchMany",
        "InitProducerId",
        "JoinGroup",
        "LeaveGroup",
        "ListOffset",
        "ListSubscriptions",
        "ListTopics",
        "OffsetForTime",
        "ResetOffsets",
    ]


@pytest.mark.parametrize("kind", OPERATIONS, ids=lambda kind: kind.__name__)
def test_each_binding_names_fields_and_models_that_exist(kind: type[Operation[Any]]) -> None:
    binding = kind.http
    fields = {field.name for field in dataclasses.fields(kind)}  # type: ignore[arg-type]

    assert set(binding.path_fields) <= fields
    assert set(binding.query) <= fields
    assert not set(binding.path_fields) & set(binding.query)
    if binding.request is not None:
        assert issubclass(getattr(models, binding.request), models._Request)
    if binding.reply is not None:
        assert issubclass(getattr(models, binding.reply), models._Reply)


@pytest.mark.parametrize("kind", OPERATIONS, ids=lambda kind: kind.__name__)
def test_operations_are_frozen_values(kind: type[Operation[Any]]) -> None:
    assert dataclasses.is_dataclass(kind)
    assert kind.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_path_fields_are_url_quoted() -> None:
    assert LeaveGroup("g 1", "a/b").url_path() == "/v1/groups/g%201/members/a%2Fb"
    assert DescribeTopic("orders").url_path() == "/v1/topics/orders"


@pytest.mark.parametrize(
    "op",
    [DescribeTopic(".."), DescribeTopic("."), DescribeTopic(""), LeaveGroup("g", "..")],
    ids=repr,
)
def test_a_path_field_that_would_change_the_path_is_refused(op: Operation[Any]) -> None:
    # Clients remove dot segments ("/v1/topics/.." is "/v1/"), and an empty one is no field
    with pytest.raises(InvalidRequestError):
        op.url_path()


def test_a_fetch_over_http_asks_for_at_most_the_api_limit() -> None:
    query = Fetch("t", 0, 7, 10, 64 << 20).url_query()

    assert query == {"offset": 7, "max_records": 10, "max_bytes": MAX_API_FETCH_BYTES}
    assert Fetch("t", 0, 7).url_path() == "/v1/topics/t/partitions/0/records"


def test_query_fields_at_none_are_not_sent() -> None:
    assert ListOffset("t", 1, "latest").url_query() == {"spec": "latest"}
    assert DescribeTopic("t").url_query() == {}


def test_boolean_query_fields_are_sent_as_json_booleans() -> None:
    assert DescribeTopic("t", levels=True).url_query() == {"levels": "true"}
    assert DescribeTopic("t", levels=False).url_query() == {"levels": "false"}


def test_a_topic_description_with_levels_round_trips_the_wire() -> None:
    usage = LevelUsage(segments=2, bytes=300)
    described = TopicDescription(
        name="t",
        topic_id="id",
        config={},
        partitions=[
            PartitionInfo(0, 1, 5, 40, PartitionLevels(l0_bytes=10, l1=usage)),
            PartitionInfo(1, 0, 0, 0, PartitionLevels(l0_bytes=0, l1=LevelUsage(0, 0))),
        ],
        levels=StorageLevels(l0=LevelUsage(3, 10), l1=usage),
    )
    plain = dataclasses.replace(
        described,
        levels=None,
        partitions=[dataclasses.replace(p, levels=None) for p in described.partitions],
    )

    for description in (described, plain):
        body = json.dumps(models.TopicState.of(description).body()).encode()
        assert models.TopicState.decode(body, DescribeTopic("t")) == description
    assert "levels" not in json.dumps(models.TopicState.of(plain).body())


@pytest.mark.parametrize(
    ("to", "body"),
    [
        ("earliest", {"topic": "t", "to": "earliest"}),
        ("latest", {"topic": "t", "to": "latest"}),
        (ToOffset(5), {"topic": "t", "to": {"offset": 5}}),
        (ToTimestamp(1_000), {"topic": "t", "to": {"timestamp_ms": 1_000}}),
    ],
)
def test_a_reset_target_is_one_value_that_round_trips_the_wire(to: Any, body: Any) -> None:
    op = ResetOffsets("g", "t", to)

    encoded = models.ResetRequest.encode(op)

    assert models.ResetRequest.model_validate_json(encoded).model_dump(exclude_none=True) == body
    assert models.ResetRequest.model_validate_json(encoded).target() == to


def test_replies_give_each_operation_its_result() -> None:
    found = b'{"offset": 4, "found": true, "timestamp_ms": 1500}'
    missing = b'{"offset": 9, "found": false}'
    spec = b'{"offset": 3}'

    assert models.TimeOffsetReply.decode(found, None) == OffsetAndTimestamp(4, 1500)
    assert models.TimeOffsetReply.decode(missing, None) is None
    assert models.OffsetReply.decode(spec, None) == 3
    assert models.ProducerIdReply.decode(b'{"id": 7, "epoch": 0}', None) == 7
