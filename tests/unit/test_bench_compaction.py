"""The compactor benchmark's arithmetic, on hand-computed examples (nothing timed)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from benchmarks.compaction import (
    BucketState,
    CompactionReport,
    CompactionWorkload,
    PassCost,
    ReplayReport,
    TaskRun,
    W1Shape,
    choose_memory,
    gc_scan,
    left_to_full_gc,
    merge_units,
    price_w1,
    replay_day,
    required_memory_mb,
    truncation_read_units,
    w1_segment_bytes,
)
from benchmarks.pricing import (
    DYNAMODB_READ_UNIT,
    S3_PUT_REQUEST,
    express_execution_cost,
    lambda_duration,
)
from benchmarks.recorder import Call
from benchmarks.report import compaction_rows, compaction_verdict

from lakelog.service.compactor import CompactionSettings

MIB = 1 << 20
GIB = 1 << 30


def test_express_bills_each_started_100_ms_at_64_mb_plus_the_request() -> None:
    assert express_execution_cost(1.01) == pytest.approx(1e-6 + 0.00001667 * 0.0625 * 1.1)
    assert express_execution_cost(1.0) == pytest.approx(1e-6 + 0.00001667 * 0.0625 * 1.0)


def test_lambda_cpu_stretches_below_a_full_vcpu_only() -> None:
    assert lambda_duration(1.0, 0.5, 1769) == pytest.approx(1.5)
    assert lambda_duration(1.0, 0.5, 3008) == pytest.approx(1.5)
    assert lambda_duration(1.0, 0.5, 1024) == pytest.approx(1769 / 1024 + 0.5)


def test_w1_schedule_by_hand() -> None:
    shape = W1Shape()
    assert shape.passes_per_month == 8640
    assert (shape.light_passes_per_month, shape.full_gc_per_month) == (8640, 30)
    every = replace(shape, full_gc_every_s=None)
    assert (every.light_passes_per_month, every.full_gc_per_month) == (0, 8640)
    assert shape.merge_every_s == 3600 + 300
    # a day, half a merge interval waiting, a merge interval until deleted
    assert shape.chain_hold_s == 86400 + 1950 + 3900
    assert shape.gib_per_month == pytest.approx(2531.25)


def test_a_w1_step_cuts_each_partition_its_share_up_to_the_target() -> None:
    settings = CompactionSettings(max_merge_items=4000, max_merge_bytes=512 * MIB)
    # 4,000 appends of 341 KiB (1.3 GiB) are more than 512 MiB: 512 / 12 partitions
    assert w1_segment_bytes(settings, 341 * 1024, 12) == pytest.approx(512 * MIB / 12)
    # one partition: the 64 MiB target
    assert w1_segment_bytes(settings, 341 * 1024, 1) == 64 * MIB
    # few items: their bytes
    few = replace(settings, max_merge_items=100)
    assert w1_segment_bytes(few, MIB, 4) == pytest.approx(25 * MIB)


def _call(operation: str, **fields: object) -> Call:
    service = "s3" if operation.endswith("Object") or operation.startswith("List") else "dynamodb"
    return Call(service=service, operation=operation, status=200, **fields)  # type: ignore[arg-type]


def _task(*calls: Call, cpu_s: float = 0.0) -> TaskRun:
    return TaskRun(cpu_s, tuple(calls))


def _pass(*compact: TaskRun, collect: TaskRun | None = None, **counts: int) -> PassCost:
    listing = _task(_call("Query", read_units=3), cpu_s=0.002)
    return PassCost(listing, compact, collect or _task(), len(compact), **counts)


def _replay(record_bytes: int, gets: int, l1_gets: int) -> ReplayReport:
    return ReplayReport(
        record_bytes=record_bytes,
        gets=gets,
        get_bytes=record_bytes // 2,
        api_requests=record_bytes // (3 * MIB),
        queries=10,
        read_units=10,
        modeled_s=2.0,
        storage_cost=0.0,
        l1_gets=l1_gets,
    )


def _report(**changes: object) -> CompactionReport:
    """A W1-like run of 10 appends of 1 MiB over 12 partitions, made up by hand."""
    merge = _task(
        *[_call("GetObject", s3_class="get") for _ in range(9)],
        *[_call("PutObject", s3_class="put") for _ in range(12)],
        *[_call("PutItem", write_units=1, params={"Item": {"pk": {"S": "p#t#0"}}})] * 24,
        _call("PutItem", write_units=1, params={"Item": {"pk": {"S": "t#t#0"}}}),
        cpu_s=0.3,
    )
    truncate = _task(_call("BatchWriteItem", write_units=10), cpu_s=0.01)
    report = CompactionReport(
        workload=CompactionWorkload(appends=10, memory_mb=(1024, 1769)),
        record_bytes=10 * MIB,
        before=BucketState(10, 5 * MIB, 0, 0),
        after=BucketState(1, MIB // 2, 12, int(4.5 * MIB)),
        chain_items_before=11,
        chain_items_after=1,
        early=_pass(collect=_task(cpu_s=0.022)),
        merge=_pass(merge, segments_merged=9),
        truncate=_pass(truncate, items_removed=10),
        idle=_pass(collect=_task(cpu_s=0.002)),
        fetch_before=_replay(MIB, 10, 0),
        fetch_after=_replay(MIB, 1, 1),
        replay=_replay(86 * MIB, 3, 2),
        replay_segment_bytes=43 * MIB,
        peak_mib_per_mib=1.5,
        chain_item_bytes=256,
        entry_bytes=384,
    )
    return replace(report, **changes)  # type: ignore[arg-type]


def test_merge_units_are_counted_per_unit_of_work() -> None:
    units = merge_units(_report())
    assert units.gets_per_segment == 1.0
    assert units.wru_per_item == 1.0
    assert units.wru_per_entry == 1.0  # the meta item's put is not an entry
    # left over: the meta put (1 WRU) and the list tasks' queries are not per merge here
    assert units.per_merge == pytest.approx(0.625 / 1e6)


def test_gc_scan_lists_every_object_and_reads_every_item_and_entry() -> None:
    shape = W1Shape()
    scan = gc_scan(_report(), shape)
    items = 3.0 * shape.chain_hold_s
    assert scan.chain_items == pytest.approx(items)
    l1_bytes = MIB * (7 * 86400 - shape.chain_hold_s)
    segment = 512 * MIB / 12
    assert scan.objects == pytest.approx(items + l1_bytes / segment)
    assert scan.entries == pytest.approx(l1_bytes / MIB + l1_bytes / segment)
    assert scan.list_requests == math.ceil(scan.objects / 1000)
    assert scan.read_units == math.ceil((items * 256 + scan.entries * 384) / 4096)
    # CPU: (22 ms - 2 ms) over 10 items and 10 objects, per thing read
    things = items + scan.entries + scan.objects
    assert scan.cpu_s == pytest.approx(0.001 * things)


def test_the_full_gc_scans_once_a_day_and_the_truncation_reads_the_items_it_deletes() -> None:
    light_collect = _task(_call("Query", read_units=1), cpu_s=0.002)
    report = _report(idle=_pass(collect=light_collect))
    shape = W1Shape()
    scan = gc_scan(report, shape)
    scan_cost = scan.list_requests * S3_PUT_REQUEST + scan.read_units * DYNAMODB_READ_UNIT
    # A merge interval's 11,700 items (3/s x 3,900 s) in Queries of 1,000, plus the page
    # from the chain start: 13 Queries of 1,000 items of 256 B, 63 RRU each
    assert truncation_read_units(report, shape) == 13 * 63
    daily = price_w1(report, 1769)
    assert daily.gc_storage == pytest.approx(
        30 * scan_cost
        + 8640 * DYNAMODB_READ_UNIT
        + shape.merges_per_month * 13 * 63 * DYNAMODB_READ_UNIT
    )
    # Segments uploaded in the 15 minutes before the page's last item (the page spans
    # 333 s of appends) wait for the full gc
    assert left_to_full_gc(report, shape) == pytest.approx((900 - 1000 / 3) / 3900)
    every = price_w1(report, 1769, replace(shape, full_gc_every_s=None))
    assert every.gc_storage == pytest.approx(8640 * scan_cost)
    assert daily.total < every.total
    assert every.merge_storage == daily.merge_storage
    assert daily.storage_change > every.storage_change  # the segments left a while longer


def test_a_replay_day_scales_the_measured_replay_and_counts_l1_gets_only() -> None:
    day = replay_day(_report())
    assert day.record_gib == pytest.approx(86400 / 12 / 1024)
    assert day.record_mib_per_get == pytest.approx(43)  # 86 MiB over 2 L1 GETs
    assert day.gets == pytest.approx(2 * 86400 / 12 / 86)


def test_the_memory_chosen_is_the_cheapest_that_fits_a_w1_step() -> None:
    # A W1 step: 4,000 appends of 1 MiB, bounded to 512 MiB
    report = _report()
    assert required_memory_mb(report) == pytest.approx(200 + 1.5 * 512)
    assert choose_memory(report) == 1769  # 968 MB and a quarter more do not fit 1,024
    light = replace(report, peak_mib_per_mib=0.5)  # 456 MB
    assert choose_memory(light) == 1024


def test_the_w1_share_and_the_replay_are_judged_against_their_targets() -> None:
    report = _report()
    added = price_w1(report, choose_memory(report)).total
    rows = {row.metric.split(":")[0]: row for row in compaction_rows(report, added * 10.5)}
    share = next(key for key in rows if key.startswith("W1 with the compactor every 5 minutes"))
    assert rows[share].met is True
    replay = next(row for key, row in rows.items() if key.startswith("replay of one day"))
    assert replay.met is True
    missed = compaction_rows(report, added * 9.5)
    assert [row.met for row in missed if row.metric.startswith("W1 with the compactor every")] == [
        False
    ]
    assert "Why:" in compaction_verdict(missed)
    slow = replace(report, replay=_replay(60 * MIB, 2, 2))  # 30 MiB per GET
    assert not next(
        row.met for row in compaction_rows(slow, 1e9) if row.metric.startswith("replay")
    )
