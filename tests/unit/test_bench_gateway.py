"""The gateway benchmark's monthly arithmetic, on a hand-computed window (nothing timed)."""

from __future__ import annotations

import pytest
from benchmarks.gateway import TASK_MEMORY_GB, TASK_VCPU, W1Run, price_w1
from benchmarks.pricing import (
    DYNAMODB_READ_UNIT,
    DYNAMODB_WRITE_UNIT,
    FARGATE_ARM_GB_HOUR,
    FARGATE_ARM_VCPU_HOUR,
    GIB,
    HOURS_PER_MONTH,
    MONTH_S,
    NLB_HOUR,
    NLB_LCU_HOUR,
    S3_GET_REQUEST,
    S3_PUT_REQUEST,
    S3_STORAGE_GB_MONTH,
)
from benchmarks.recorder import Call

MIB = 1 << 20
PUT = Call("s3", "PutObject", 200, bytes_sent=MIB, s3_class="put")
GET = Call("s3", "GetObject", 200, s3_class="get")
APPEND = Call("dynamodb", "PutItem", 200, write_units=2.0)
QUERY = Call("dynamodb", "Query", 200, read_units=0.5)


def window(cpu_seconds: float) -> W1Run:
    """10 s of W1: 40 appends (a 1 MiB segment and a 2 WRU item each), 120 segment GETs
    and 300 Queries; 10 MiB in, 30 MiB out."""
    return W1Run(
        seconds=10.0,
        calls=(PUT, APPEND) * 40 + (GET,) * 120 + (QUERY,) * 300,
        produced_bytes=10 * MIB,
        consumed_bytes=30 * MIB,
        cpu_seconds=cpu_seconds,
        appends=40,
        connections=4,
    )


def test_a_month_of_w1_through_the_gateway_scales_the_window_and_adds_fargate_and_the_nlb() -> None:
    price = price_w1(window(cpu_seconds=1.0))  # 0.1 vCPU: the two smallest tasks suffice

    scale = MONTH_S / 10
    assert price.s3_requests == pytest.approx(scale * (40 * S3_PUT_REQUEST + 120 * S3_GET_REQUEST))
    assert price.dynamodb_requests == pytest.approx(
        scale * (80 * DYNAMODB_WRITE_UNIT + 150 * DYNAMODB_READ_UNIT)
    )
    stored_gib = 40 * MIB / 10 * 7 * 86_400 / GIB  # a week of segments
    assert price.s3_storage == pytest.approx(stored_gib * S3_STORAGE_GB_MONTH)
    assert price.tasks == 2
    task_hour = TASK_VCPU * FARGATE_ARM_VCPU_HOUR + TASK_MEMORY_GB * FARGATE_ARM_GB_HOUR
    assert price.fargate == pytest.approx(2 * task_hour * HOURS_PER_MONTH)
    lcus = 40 * MIB / 10 * 3600 / GIB  # bytes in and out an hour, 1 GB an NLCU
    assert price.nlb == pytest.approx((NLB_HOUR + lcus * NLB_LCU_HOUR) * HOURS_PER_MONTH)
    assert price.appends_per_s == 4.0
    assert price.total == pytest.approx(
        price.s3_requests + price.dynamodb_requests + price.s3_storage + price.fargate + price.nlb
    )


def test_more_cpu_than_two_tasks_give_adds_tasks() -> None:
    # 1.2 vCPU used; a task may use 60% of its 0.25 vCPU: 8 tasks
    assert price_w1(window(cpu_seconds=12.0)).tasks == 8
