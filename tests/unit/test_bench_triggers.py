"""The trigger benchmark's arithmetic and rows, on hand-computed examples (nothing timed)."""

from __future__ import annotations

import pytest
from benchmarks.pricing import (
    DYNAMODB_READ_UNIT,
    DYNAMODB_WRITE_UNIT,
    LAMBDA_ARM_GB_SECOND,
    LAMBDA_REQUEST,
    MONTH_S,
    S3_GET_REQUEST,
)
from benchmarks.recorder import Call
from benchmarks.report import trigger_rows, trigger_verdict
from benchmarks.simulation import DDB_READ_S, DDB_WRITE_S
from benchmarks.triggers import (
    ALARM_MONTH,
    ALARMS,
    DISPATCHER_MEMORY_MB,
    INVOKE_WAIT_S,
    DeliveryPath,
    LagReport,
    TriggerReport,
    W1Dispatch,
    percentile,
    price_w1,
    price_w3,
    run_seconds,
)

GB = DISPATCHER_MEMORY_MB / 1024
QUERY = Call("dynamodb", "Query", 200, read_units=1.0)
COMMIT = Call("dynamodb", "UpdateItem", 200, write_units=1.0)
GET = Call("s3", "GetObject", 200, s3_class="GET")


def _w1(**changes: object) -> W1Dispatch:
    base: dict[str, object] = {
        "seconds": 10.0,
        "records": 10_000,
        "stream_calls": 10,
        "invocations": 100,
        "calls": (COMMIT,) * 300 + (QUERY,) * 400 + (GET,) * 20,
        "cpu_s": 0.5,
        "schedule_calls": (QUERY,),
        "schedule_cpu_s": 0.001,
    }
    base.update(changes)
    return W1Dispatch(**base)  # type: ignore[arg-type]


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) == 0.0


def test_an_idle_subscription_costs_its_schedule_and_the_alarms() -> None:
    w1 = _w1()
    runs = MONTH_S / 60
    duration = 0.001 + DDB_READ_S  # CPU below a full vCPU is not stretched at 1,769 MB
    idle = price_w3(w1)
    assert idle.requests == pytest.approx(runs * LAMBDA_REQUEST)
    assert idle.duration == pytest.approx(runs * duration * GB * LAMBDA_ARM_GB_SECOND)
    assert idle.dynamodb == pytest.approx(runs * DYNAMODB_READ_UNIT)
    assert idle.alarms == pytest.approx(ALARMS * ALARM_MONTH)
    assert idle.s3 == 0.0
    assert idle.function_invocations == 0.0
    assert 0.30 < idle.total < 0.50


def test_w1_scales_the_measured_stream_runs_to_a_month_and_adds_the_schedule() -> None:
    w1 = _w1()
    idle = price_w3(w1)
    scale = MONTH_S / 10
    month = price_w1(w1)
    assert month.requests == pytest.approx(scale * 10 * LAMBDA_REQUEST + idle.requests)
    units = 300 * DYNAMODB_WRITE_UNIT + 400 * DYNAMODB_READ_UNIT
    assert month.dynamodb == pytest.approx(scale * units + idle.dynamodb)
    assert month.s3 == pytest.approx(scale * 20 * S3_GET_REQUEST)
    assert month.function_invocations == pytest.approx(scale * 100)
    # the modeled waits: every call's latency plus one invoke wait per invocation
    assert w1.duration_s > 0.5 + 100 * INVOKE_WAIT_S
    assert month.duration == pytest.approx(
        scale * w1.duration_s * GB * LAMBDA_ARM_GB_SECOND + idle.duration
    )
    assert month.total == pytest.approx(
        month.requests + month.duration + month.dynamodb + month.s3 + month.logs + month.alarms
    )


def test_the_rows_judge_lag_batching_and_the_idle_cost() -> None:
    good = TriggerReport(LagReport((0.2,) * 99 + (1.5,), 10), _w1())
    rows = trigger_rows(good, 137.0)
    assert [row.met for row in rows if row.met is not None] == [True, True, True]
    assert "10 (100 records a batch)" in rows[1].measured
    assert trigger_verdict(rows) == "Trigger targets met: 3 of 3."
    slow = TriggerReport(LagReport((0.2,) * 98 + (2.5, 2.5), 10), _w1(invocations=300))
    missed = trigger_verdict(trigger_rows(slow, 137.0))
    assert missed.startswith("Trigger targets met: 1 of 3. Missed: delivery lag")


def test_a_concurrent_run_lasts_its_longest_delivery_path_not_their_sum() -> None:
    caller = DeliveryPath((QUERY,), cpu_s=0.001)
    short = DeliveryPath((COMMIT,), cpu_s=0.002, invocations=1)
    long = DeliveryPath((COMMIT, COMMIT), cpu_s=0.002, invocations=2)
    assert long.seconds == pytest.approx(0.002 + 2 * DDB_WRITE_S + 2 * INVOKE_WAIT_S)
    assert caller.seconds == pytest.approx(0.001 + DDB_READ_S)
    # the caller plans before and leaves after: added; the deliveries overlap: the longest
    assert run_seconds(caller, [short, long]) == pytest.approx(caller.seconds + long.seconds)
    # never less than the deliveries' CPU together (one vCPU)
    busy = [DeliveryPath(cpu_s=0.1)] * 3
    assert run_seconds(caller, busy) == pytest.approx(caller.seconds + 0.3)
    # the in-process window waits are added whole; no delivery: the caller alone
    assert run_seconds(caller, [short], 0.5) == pytest.approx(caller.seconds + short.seconds + 0.5)
    assert run_seconds(caller, []) == pytest.approx(caller.seconds)


def test_w1_bills_the_modeled_wall_clock_of_its_runs_when_it_has_one() -> None:
    serial = _w1()
    assert _w1(modeled_s=1.25).duration_s == 1.25
    assert serial.duration_s > 1.25  # every call and invoke one after another
