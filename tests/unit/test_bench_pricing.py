"""The cost benchmark's arithmetic, on hand-computed examples (nothing timed)."""

from __future__ import annotations

import math

import pytest
from benchmarks.cost import ledger_item_bytes
from benchmarks.meter import item_size, query_read_units, read_units, write_units
from benchmarks.pricing import (
    DYNAMODB_ITEM_OVERHEAD_BYTES,
    StreamShape,
    api_gateway_requests,
    kinesis_on_demand_month,
    lambda_gb_seconds,
    msk_serverless_month,
)
from benchmarks.recorder import Call
from benchmarks.simulation import io_seconds

MIB = 1 << 20


def test_dynamodb_write_units_round_up_per_kilobyte_and_double_in_transactions() -> None:
    assert write_units(1) == 1
    assert write_units(1024) == 1
    assert write_units(1025) == 2
    assert write_units(1025, transactional=True) == 4


def test_dynamodb_reads_round_up_per_4_kb_and_query_sums_the_items_first() -> None:
    assert read_units(4096) == 1
    assert read_units(4097) == 2
    assert read_units(0) == 1  # a missing item still costs a unit
    assert read_units(4097, consistent=False) == 1
    # Three items of 1,500 bytes: 4,500 bytes in all, 2 units (not 3, one per item)
    assert query_read_units([1500, 1500, 1500]) == 2


def test_item_size_counts_names_and_values() -> None:
    item = {"pk": {"S": "p#t#0"}, "sk": {"N": "12345"}}
    # "pk" 2 + "p#t#0" 5, "sk" 2 + 5 digits -> (5 + 1) // 2 + 1 = 4
    assert item_size(item) == 2 + 5 + 2 + 4


def test_api_gateway_meters_the_request_in_512_kib_units() -> None:
    assert api_gateway_requests(0) == 1
    assert api_gateway_requests(512 * 1024) == 1
    assert api_gateway_requests(512 * 1024 + 1) == 2
    # the reply is not metered unless asked for
    assert api_gateway_requests(10, 3 * MIB) == 1
    assert api_gateway_requests(10, 3 * MIB, count_response=True) == 7


def test_lambda_duration_is_billed_per_started_millisecond() -> None:
    assert lambda_gb_seconds(0.0101, 1024) == pytest.approx(0.011)
    assert lambda_gb_seconds(0.010, 2048) == pytest.approx(0.020)


W1_SHAPE = StreamShape(
    records_per_second=1024, record_bytes=1024, partitions=12, readers=3, retention_days=7
)
W1_GIB_PER_MONTH = 1024 * 1024 * 30 * 86400 / 2**30  # 2,531.25 GiB


def test_kinesis_on_demand_month_by_hand() -> None:
    stored_beyond_a_day = 1024 * 1024 * 6 * 86400 / 2**30  # 506.25 GiB
    expected = (
        720 * 0.04
        + W1_GIB_PER_MONTH * 0.08
        + 3 * W1_GIB_PER_MONTH * 0.04
        + stored_beyond_a_day * 0.10
    )
    assert kinesis_on_demand_month(W1_SHAPE) == pytest.approx(expected)
    assert kinesis_on_demand_month(W1_SHAPE) == pytest.approx(585.675)


def test_kinesis_rounds_each_record_up_to_1_kib_on_the_way_in() -> None:
    shape = StreamShape(1, 1025, 1, 0, 1)
    assert shape.gib_per_month(1024) == pytest.approx(2048 * 30 * 86400 / 2**30)


def test_msk_serverless_month_by_hand() -> None:
    stored = 1024 * 1024 * 7 * 86400 / 2**30  # 590.625 GiB
    expected = (
        720 * 0.75
        + 720 * 12 * 0.0015
        + W1_GIB_PER_MONTH * 0.10
        + 3 * W1_GIB_PER_MONTH * 0.05
        + stored * 0.10
    )
    assert msk_serverless_month(W1_SHAPE) == pytest.approx(expected)
    assert math.isclose(msk_serverless_month(W1_SHAPE), 1244.835, rel_tol=1e-9)


def test_an_idle_stream_still_pays_its_hours() -> None:
    idle = StreamShape(0, 1024, 12, 3, 7)
    assert kinesis_on_demand_month(idle) == pytest.approx(28.8)
    assert msk_serverless_month(idle) == pytest.approx(540 + 12.96)


def test_modeled_io_wait_adds_each_call_in_order() -> None:
    calls = [
        Call("s3", "PutObject", 200, bytes_sent=MIB),
        Call("dynamodb", "TransactWriteItems", 200),
        Call("dynamodb", "Query", 200),
        Call("s3", "GetObject", 200, bytes_received=MIB // 2),
    ]
    assert io_seconds(calls) == pytest.approx((0.030 + 0.010) + 0.015 + 0.005 + (0.015 + 0.005))


def test_ledger_storage_counts_plain_and_idempotent_chain_puts_only() -> None:
    item = {"pk": {"S": "t#a#0"}, "sk": {"N": "1"}, "v": {"N": "2"}}
    size = item_size(item) + DYNAMODB_ITEM_OVERHEAD_BYTES
    calls = [
        Call("dynamodb", "PutItem", 200, params={"TableName": "ledger", "Item": item}),
        Call("dynamodb", "PutItem", 400, params={"TableName": "ledger", "Item": item}),
        Call("dynamodb", "PutItem", 200, params={"TableName": "catalog", "Item": item}),
        Call(
            "dynamodb",
            "TransactWriteItems",
            200,
            params={
                "TransactItems": [
                    {"Put": {"TableName": "ledger", "Item": item}},
                    {"Update": {"TableName": "ledger", "Key": {}}},
                ]
            },
        ),
    ]

    assert ledger_item_bytes(calls, "ledger") == 2 * size
