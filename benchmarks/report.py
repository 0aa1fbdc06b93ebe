"""The results table: a fixed list of rows (metric | measured | target), as Markdown.

A cost through the HTTPS API reads "$total = $S3-and-DynamoDB + $API-Gateway + $Lambda",
with API Gateway metered as AWS documents it (request size) and, in brackets, as it would
be if reply bytes were metered too (`benchmarks.pricing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from benchmarks import gateway, triggers
from benchmarks.api import ApiReport, RouteReport
from benchmarks.compaction import (
    BucketState,
    CompactionReport,
    ReplayReport,
    W1Compaction,
    W1Shape,
    choose_memory,
    compact_gb_seconds_per_gib,
    compact_storage_per_gib,
    price_w1,
    replay_day,
    required_memory_mb,
    w1_segment_bytes,
)
from benchmarks.cost import CostReport, WorkloadResult
from benchmarks.gateway import GatewayReport
from benchmarks.pricing import (
    EXPRESS_REQUEST,
    GIB,
    LAMBDA_ARM_GB_SECOND,
    ApiCost,
    api_cost_per_gib,
    api_gateway_requests,
    cost_per_gib,
    express_execution_cost,
    lambda_request_cost,
)
from benchmarks.recorder import Usage
from benchmarks.sdk import SdkReport
from benchmarks.startup import StartupReport
from benchmarks.triggers import MonthlyDispatch, TriggerReport
from benchmarks.workloads import MIB, AppendReport, CpuReport, FetchReport

__all__ = [
    "API_CPU_TARGET_MS",
    "CODEC_TARGET_MS",
    "READ_TARGET_USD",
    "WRITE_TARGET_USD",
    "Row",
    "build_rows",
    "compaction_rows",
    "compaction_verdict",
    "cost_rows",
    "cost_verdict",
    "render",
    "trigger_rows",
    "trigger_verdict",
    "verdict",
]

CODEC_TARGET_MS = 15.0
"""Encode + decode CPU milliseconds per MiB."""
WRITE_TARGET_USD = 0.008
"""Request cost per GiB written in 1 MiB appends."""
READ_TARGET_USD = 0.0015
"""Request cost per GiB read once in 1 MiB fetches."""
FETCH_MAX_GETS = 2
"""S3 GETs one fetch may make."""
API_CPU_TARGET_MS = 20.0
"""API handler CPU milliseconds per MiB of records, for produce and for fetch."""


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table; ``met`` is None when the metric has no target."""

    metric: str
    measured: str
    target: str = "—"
    met: bool | None = None


def _number(value: float) -> str:
    """Up to two decimals, without trailing zeros: 1 -> "1", 0.6875 -> "0.69"."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _calls(usage: Usage, service: str) -> str:
    counts = usage.by_operation(service)
    return ", ".join(f"{name} {_number(n)}" for name, n in counts.items()) or "none"


def _dynamodb_is(usage: Usage, expected: dict[str, float]) -> bool:
    return usage.by_operation("dynamodb") == expected


def _append_rows(label: str, report: AppendReport) -> list[Row]:
    steady = report.steady
    puts, gets = steady.count("s3", "PutObject"), steady.count("s3", "GetObject")
    return [
        Row(
            f"{label}: S3 PUT / GET per append",
            f"{_number(puts)} / {_number(gets)}",
            "1 / 0",
            puts == 1 and gets == 0,
        ),
        Row(
            f"{label}: DynamoDB calls per append",
            _calls(steady, "dynamodb"),
            "PutItem 1",
            _dynamodb_is(steady, {"PutItem": 1}),
        ),
        Row(
            f"{label}: WRU / RRU per append",
            f"{_number(steady.write_units)} / {_number(steady.read_units)}",
        ),
        Row(
            f"{label}: segment object size per append",
            f"{steady.bytes_sent / MIB:.3f} MiB for {report.payload_bytes / MIB:g} MiB of records",
        ),
        Row(
            f"{label}: first append of a fresh engine, AWS calls",
            f"{_calls(report.first, 's3')}; {_calls(report.first, 'dynamodb')}",
        ),
    ]


def _sequential_fetch(usage: Usage) -> bool:
    """One Query per fetch, and at most one GetItem (the meta item, read while catching up:
    ADR 0012, 1.8), nothing else."""
    calls = usage.by_operation("dynamodb")
    return calls.get("Query") == 1 and calls.get("GetItem", 0) <= 1 and len(calls) <= 2


def _fetch_rows(label: str, usage: Usage, *, sequential: bool) -> list[Row]:
    gets = usage.count("s3", "GetObject")
    return [
        Row(
            f"{label}: DynamoDB calls per fetch",
            _calls(usage, "dynamodb"),
            "Query 1, GetItem ≤ 1 (meta while catching up)" if sequential else "—",
            _sequential_fetch(usage) if sequential else None,
        ),
        Row(
            f"{label}: S3 GETs per fetch (MiB received)",
            f"{_number(gets)} ({usage.bytes_received / MIB:.3f} MiB)",
            f"≤ {FETCH_MAX_GETS}",
            gets <= FETCH_MAX_GETS,
        ),
        Row(f"{label}: RRU per fetch", _number(usage.read_units)),
    ]


def _cpu_rows(cpu: CpuReport) -> list[Row]:
    both = cpu.encode + cpu.decode
    return [
        Row("codec encode CPU ms / MiB (SegmentBuilder, zstd)", f"{cpu.encode:.1f}"),
        Row("codec decode CPU ms / MiB (footer + read_rows)", f"{cpu.decode:.1f}"),
        Row(
            "codec encode + decode CPU ms / MiB",
            f"{both:.1f}",
            f"≤ {CODEC_TARGET_MS:g}",
            both <= CODEC_TARGET_MS,
        ),
        Row("engine append CPU ms / MiB (moto + botocore included)", f"{cpu.engine_append:.1f}"),
        Row("engine fetch CPU ms / MiB (moto + botocore included)", f"{cpu.engine_fetch:.1f}"),
    ]


def _cost_row(metric: str, usage: Usage, payload: float, target: float) -> Row:
    dollars = cost_per_gib(usage, payload)
    return Row(metric, f"${dollars:.5f}", f"≤ ${target:g}", dollars <= target)


def _all_calls(usage: Usage) -> str:
    return f"{_calls(usage, 's3')}; {_calls(usage, 'dynamodb')}"


def _api_cpu_row(metric: str, ms_per_mib: float, *, judged: bool = True) -> Row:
    if not judged:
        return Row(metric, f"{ms_per_mib:.1f}")
    target = f"≤ {API_CPU_TARGET_MS:g}"
    return Row(metric, f"{ms_per_mib:.1f}", target, ms_per_mib <= API_CPU_TARGET_MS)


def _route_cost(route: RouteReport, memory_mb: int) -> ApiCost:
    return api_cost_per_gib(
        route.usage,
        route.payload_bytes,
        route.request_bytes,
        route.response_bytes,
        route.wall_seconds,
        memory_mb,
    )


def _api_cost_row(metric: str, cost: ApiCost) -> Row:
    return Row(
        metric,
        f"${cost.total:.5f} = ${cost.storage:.5f} + ${cost.gateway:.5f} + "
        f"${cost.function:.5f} (API Gateway ${cost.gateway_if_replies_count:.5f} "
        "if replies were metered too)",
    )


def _api_rows(api: ApiReport) -> list[Row]:
    produce, fetch = api.produce, api.fetch
    metered = [
        f"{api_gateway_requests(r.request_bytes)} "
        f"({api_gateway_requests(r.request_bytes, r.response_bytes, count_response=True)})"
        for r in (produce, fetch)
    ]
    lambda_label = f"Lambda {api.memory_mb} MB arm64"
    return [
        _api_cpu_row(
            "API produce, BINARY values: handler CPU ms / MiB (botocore in, moto out)",
            produce.cpu_ms_per_mib,
        ),
        _api_cpu_row(
            "API produce, STRING values: handler CPU ms / MiB",
            api.produce_string_cpu_ms_per_mib,
            judged=False,
        ),
        _api_cpu_row(
            "API produce, JSON values: handler CPU ms / MiB",
            api.produce_json_cpu_ms_per_mib,
            judged=False,
        ),
        _api_cpu_row(
            "API fetch (base64 JSON reply): handler CPU ms / MiB (botocore in, moto out)",
            fetch.cpu_ms_per_mib,
        ),
        Row(
            "API produce / fetch: AWS calls per request",
            f"{_all_calls(produce.usage)} / {_all_calls(fetch.usage)}",
        ),
        Row(
            "API produce / fetch: request + reply body per request",
            f"{produce.request_bytes / MIB:.3f} + {produce.response_bytes / MIB:.3f} MiB / "
            f"{fetch.request_bytes / MIB:.3f} + {fetch.response_bytes / MIB:.3f} MiB",
        ),
        Row(
            "API produce / fetch: API Gateway metered requests (if replies were metered too)",
            " / ".join(metered),
        ),
        Row(
            "API produce / fetch: handler wall ms per request (this machine, moto; not Lambda)",
            f"{produce.wall_seconds * 1000:.1f} / {fetch.wall_seconds * 1000:.1f}",
        ),
        _api_cost_row(
            f"$ per GiB written through the HTTPS API (1 MiB produce requests): "
            f"S3 + DynamoDB + API Gateway + {lambda_label}",
            _route_cost(produce, api.memory_mb),
        ),
        _api_cost_row(
            f"$ per GiB read through the HTTPS API (1 MiB fetches, warm function): "
            f"S3 + DynamoDB + API Gateway + {lambda_label}",
            _route_cost(fetch, api.memory_mb),
        ),
    ]


def _sdk_rows(sdk: SdkReport) -> list[Row]:
    rows: list[Row] = []
    for label, result in (
        ("SDK over the local dev server (HTTP)", sdk.http),
        ("SDK direct mode (engine in-process)", sdk.direct),
    ):
        size = f"{result.records:,} x {result.record_bytes} B, {result.partitions} partitions"
        producer, consumer = result.producer, result.consumer
        rows += [
            Row(
                f"{label}: producer records/s, MiB/s ({size}, moto)",
                f"{producer.records_per_s:,.0f} rec/s, {producer.mib_per_s:.1f} MiB/s",
            ),
            Row(f"{label}: appends per 1,000 records", _number(producer.appends_per_1000)),
            Row(
                f"{label}: consumer records/s, MiB/s",
                f"{consumer.records_per_s:,.0f} rec/s, {consumer.mib_per_s:.1f} MiB/s",
            ),
        ]
    return rows


STARTUP_TARGET_S: Final = 0.3
"""An HTTP-only ``lakelog`` command starts (and fails to connect) well under this."""


def _startup_rows(startup: StartupReport) -> list[Row]:
    runs = f"median of {startup.runs}"
    return [
        Row(
            f"start-up wall s ({runs}): python -c pass / import lakelog / lakelog --help",
            f"{startup.python_s:.3f} / {startup.import_s:.3f} / {startup.help_s:.3f}",
        ),
        Row(
            f"start-up wall s ({runs}): lakelog topic list over HTTP (connection refused)",
            f"{startup.http_command_s:.3f}",
            f"< {STARTUP_TARGET_S}",
            startup.http_command_s < STARTUP_TARGET_S,
        ),
    ]


def build_rows(
    single: AppendReport,
    multi: AppendReport,
    fetches: FetchReport,
    cpu: CpuReport,
    api: ApiReport | None = None,
    sdk: SdkReport | None = None,
    startup: StartupReport | None = None,
) -> list[Row]:
    """Every row of the table, in a fixed order.

    Parameters
    ----------
    single, multi
        Workloads (a) and (b).
    fetches
        Workload (c).
    cpu
        Workload (d).
    api
        Workload (e), the HTTP API handler (no rows when None).
    sdk
        Workload (f), the SDK's producer and consumer (no rows when None).
    startup
        Workload (g), start-up of ``import lakelog`` and the CLI; its rows come last
        (none when None).

    Returns
    -------
    list of Row
        The same rows, in the same order, on every run.
    """
    return [
        *_append_rows("append 1 MiB, 1 partition", single),
        *_append_rows("append 1 MiB over 8 partitions", multi),
        *_fetch_rows(
            "fetch 1 MiB, fresh engine (topic, tail and offset search)",
            fetches.cold,
            sequential=False,
        ),
        *_fetch_rows(
            "fetch 1 MiB, warm engine with cursors, new segments", fetches.warm, sequential=True
        ),
        *_fetch_rows(
            "fetch 1 MiB, warm engine with cursors, cached segments",
            fetches.warm_cached,
            sequential=True,
        ),
        *_cpu_rows(cpu),
        _cost_row(
            "$ per GiB written (1 MiB appends, 1 partition)",
            single.steady,
            single.payload_bytes,
            WRITE_TARGET_USD,
        ),
        _cost_row(
            "$ per GiB read once (1 MiB fetches, warm engine)",
            fetches.warm,
            fetches.payload_bytes,
            READ_TARGET_USD,
        ),
        _cost_row(
            "$ per GiB read once (1 MiB fetches, fresh engine each)",
            fetches.cold,
            fetches.payload_bytes,
            READ_TARGET_USD,
        ),
        *(_api_rows(api) if api is not None else []),
        *(_sdk_rows(sdk) if sdk is not None else []),
        *(_startup_rows(startup) if startup is not None else []),
    ]


def render(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (metric | measured | target), one line per row."""
    lines = ["| metric | measured | target |", "|---|---|---|"]
    lines += [f"| {row.metric} | {row.measured} | {row.target} |" for row in rows]
    return "\n".join(lines)


def verdict(rows: Sequence[Row]) -> str:
    """One line: how many targets the measurements meet, and which they miss."""
    judged = [row for row in rows if row.met is not None]
    missed = [row.metric for row in judged if not row.met]
    line = f"Targets met: {len(judged) - len(missed)} of {len(judged)}."
    return f"{line} Missed: {'; '.join(missed)}." if missed else line


# Cost of a month of each named workload ------------------------------------------------
LEDGER_WRU_TARGET: Final = 8.0
"""Ledger write units per append, whatever the partitions it touches (up to 100)."""
COST_MISS_REASON: Final = (
    "W2 (direct mode) lands within a few percent of its target: its S3 PUTs (one per append, "
    "about 3 a second at linger_ms=350) and GETs (each group reads each segment once) are "
    "three quarters of it, and an idempotent append is a two-item transaction (4 WRU). "
    "The levers left are a longer linger in direct mode, plain appends (1 WRU) or segments "
    "shared between groups in one process; none is taken by default"
)


def _usd(value: float) -> str:
    return f"${value:,.0f}" if value >= 10 else f"${value:,.2f}"


def _coverage(result: WorkloadResult) -> str:
    """How much of the records the groups read in the simulated window."""
    if not result.spec.mib_per_s:
        return ""
    fraction = result.usage["read_fraction"]
    if fraction >= 1:
        return "; groups kept up"
    if fraction == 0:
        return "; groups read nothing in the window: reads are not priced"
    return (
        f"; groups read {fraction:.0%} of the records in the window (consumer fell behind), "
        "fetch usage scaled to reading all"
    )


def _workload_target(result: WorkloadResult) -> tuple[str, bool | None]:
    spec = result.spec
    if spec.target_usd is not None:
        return spec.target, result.cost.total <= spec.target_usd
    if spec.kinesis_fraction is not None:
        limit = result.kinesis * spec.kinesis_fraction
        return f"{spec.target} = {_usd(limit)}", result.cost.total <= limit
    return "—", None


def cost_rows(report: CostReport) -> list[Row]:
    """One row per workload (its monthly price and the managed streams'), then the ledger
    write units per append and the modeled produce ack latencies."""
    rows: list[Row] = []
    for result in report.results:
        spec, cost = result.spec, result.cost
        target, met = _workload_target(result)
        parts = (
            f"S3 req {_usd(cost.s3_requests)}, DynamoDB req {_usd(cost.dynamodb_requests)}, "
            f"API Gateway {_usd(cost.api_gateway)}, Lambda {_usd(cost.lambda_)}, "
            f"logs {_usd(cost.logs)}, S3 storage {_usd(cost.s3_storage)}, "
            f"DynamoDB storage {_usd(cost.dynamodb_storage)}"
        )
        rows.append(
            Row(
                f"{spec.name} ({spec.label}): $/month",
                f"{_usd(cost.total)} ({parts}); Kinesis on-demand {_usd(result.kinesis)} "
                f"(lakelog / Kinesis = {cost.total / result.kinesis:.2f}), MSK Serverless "
                f"{_usd(result.msk)} (lakelog / MSK = {cost.total / result.msk:.2f})",
                target,
                met,
            )
        )
        usage = result.usage
        rows.append(
            Row(
                f"{spec.name}: units per month",
                f"API Gateway {usage['api_units'] / 1e6:,.1f} M, Lambda "
                f"{usage['invocations'] / 1e6:,.1f} M invocations / "
                f"{usage['gb_seconds'] / 1e6:,.2f} M GB-s, S3 PUT {usage['s3_put'] / 1e6:,.2f} M / "
                f"GET {usage['s3_get'] / 1e6:,.1f} M, WRU {usage['wru'] / 1e6:,.0f} M / RRU "
                f"{usage['rru'] / 1e6:,.0f} M, stored {usage['segment_gib']:,.0f} GiB S3 + "
                f"{usage['ledger_gib']:,.1f} GiB DynamoDB{_coverage(result)}",
            )
        )
        if spec.latency_target_ms is not None and result.ack_p99_ms is not None:
            p50, p99 = result.ack_p50_ms or 0.0, result.ack_p99_ms
            rows.append(
                Row(
                    f"{spec.name}: modeled produce ack latency p50 / p99 ms "
                    f"(linger_ms={spec.linger_ms:g})",
                    f"{p50:.0f} / {p99:.0f}",
                    f"p99 ≤ {spec.latency_target_ms:g}",
                    p99 <= spec.latency_target_ms,
                )
            )
    for partitions, units in report.wru_per_append.items():
        rows.append(
            Row(
                f"ledger WRU per append touching {partitions} partition(s) (measured)",
                _number(units),
                f"≤ {LEDGER_WRU_TARGET:g}",
                units <= LEDGER_WRU_TARGET,
            )
        )
    return rows


def cost_verdict(rows: Sequence[Row]) -> str:
    """The cost targets' own count, with the reason the missed ones are missed."""
    line = verdict(rows).replace("Targets met", "Cost targets met")
    missed = any(row.met is False for row in rows)
    return f"{line} Why: {COST_MISS_REASON}." if missed else line


# The compactor ---------------------------------------------------------------------------
COMPACTION_SHARE_TARGET: Final = 0.10
"""What the compactor running every 5 minutes may add to W1's monthly cost."""
REPLAY_MIB_PER_GET_TARGET: Final = 32.0
"""Record MiB a replay of merged data reads per S3 GET, on average."""
ADR_TOPICS: Final = 1000
"""ADR 0013 5.2's deployment: 1,000 topics, every one needing a step every pass."""
ADR_TASK_S: Final = 0.3
ADR_MEMORY_MB: Final = 1769
COMPACTION_MISS_REASON: Final = (
    "see the rows: the full gc's scan (every segment listed, every chain item and L1 entry "
    "read) runs once a day, the 5-minute passes' collect reads only each topic's tail, and "
    "the truncation deletes the L0 segments of the items it deletes (ADR 0013 5.5)"
)


def _bucket(state: BucketState) -> str:
    objects = state.l0_objects + state.l1_objects
    size = (state.l0_bytes + state.l1_bytes) / MIB
    return (
        f"{objects:,} objects, {size:.1f} MiB (L0 {state.l0_objects:,} / "
        f"{state.l0_bytes / MIB:.1f} MiB, L1 {state.l1_objects:,} / "
        f"{state.l1_bytes / MIB:.1f} MiB)"
    )


def _per_gib(report: CompactionReport, count: float) -> str:
    return _number(count * GIB / report.record_bytes)


def _compact_rows(report: CompactionReport, memory_mb: int) -> list[Row]:
    """Objects before and after, and what the merge and truncation cost per GiB."""
    workload = report.workload
    tasks = (*report.merge.compact, *report.truncate.compact)
    calls = [c for task in tasks for c in task.calls]
    count = {op: sum(1 for c in calls if c.operation == op) for op in ("GetObject", "PutObject")}
    wru = sum(c.write_units for c in calls)
    rru = sum(c.read_units for c in calls)
    cpu = sum(task.cpu_s for task in tasks)
    append_bytes = report.record_bytes / workload.appends
    here = report.record_bytes / workload.partitions / MIB
    w1 = w1_segment_bytes(workload.settings, append_bytes, W1Shape().partitions) / MIB
    express = sum(
        express_execution_cost(p.execution_s(memory_mb)) - EXPRESS_REQUEST
        for p in (report.merge, report.truncate)
    )
    return [
        Row(
            f"compactor: bucket before / after the merge ({workload.partitions} partitions, "
            f"{workload.appends} W1-sized appends, {report.record_bytes / MIB:.0f} MiB; "
            f"chain items {report.chain_items_before} / {report.chain_items_after})",
            f"{_bucket(report.before)} / {_bucket(report.after)}",
        ),
        Row(
            "compactor: compact tasks (merge, then truncation), AWS calls per GiB merged "
            f"(this scale: L1 segments of {here:.0f} MiB, a W1 step's {w1:.0f} MiB)",
            f"S3 GET {_per_gib(report, count['GetObject'])}, PUT "
            f"{_per_gib(report, count['PutObject'])}; DynamoDB WRU "
            f"{_per_gib(report, wru)} / RRU {_per_gib(report, rru)}",
        ),
        Row(
            f"compactor: $ per GiB merged: S3 + DynamoDB + Lambda {memory_mb} MB + Express "
            "(this scale)",
            f"${compact_storage_per_gib(report):.5f} + "
            f"${compact_gb_seconds_per_gib(report, memory_mb) * LAMBDA_ARM_GB_SECOND:.5f} + "
            f"${express * GIB / report.record_bytes:.6f} (Express duration)",
        ),
        Row(
            "compactor: compact task CPU ms per MiB merged; peak memory a merge step holds "
            "per MiB; memory a W1 step needs",
            f"{cpu * 1000 * MIB / report.record_bytes:.1f} ms; "
            f"{report.peak_mib_per_mib:.2f} MiB; {required_memory_mb(report):,.0f} MB "
            f"({workload.settings.max_merge_bytes / MIB:.0f} MiB step) -> "
            f"{memory_mb} MB chosen, "
            f"{compact_gb_seconds_per_gib(report, memory_mb):.0f} GB-s per GiB",
        ),
    ]


def _fetch_row(label: str, replay: ReplayReport, *, judged: bool) -> Row:
    dollars = replay.per_gib(replay.storage_cost)
    measured = (
        f"{replay.per_gib(replay.gets):,.0f} / {replay.per_gib(replay.read_units):,.0f}, "
        f"${dollars:.5f} ({replay.record_bytes_per_get / MIB:.2f} MiB of records per GET)"
    )
    metric = (
        f"fetch of one partition from offset 0, {label}: S3 GETs / RRU per GiB, "
        "$ per GiB (S3 + DynamoDB)"
    )
    if not judged:
        return Row(metric, measured)
    return Row(metric, measured, f"≤ ${READ_TARGET_USD:g}", dollars <= READ_TARGET_USD)


def _w1_parts(cost: W1Compaction) -> str:
    return (
        f"merge S3 + DynamoDB {_usd(cost.merge_storage)}, compact Lambda "
        f"{_usd(cost.merge_lambda)}, gc reads {_usd(cost.gc_storage)}, list queries "
        f"{_usd(cost.list_storage)}, list + collect Lambda {_usd(cost.pass_lambda)}, Express "
        f"{_usd(cost.express)}, storage {_usd(cost.storage_change)}"
    )


def compaction_rows(report: CompactionReport, w1_total: float) -> list[Row]:
    """The compactor benchmark's rows (`benchmarks.compaction`), W1 priced at ``w1_total``
    a month without it."""
    memory_mb = choose_memory(report)
    shape = W1Shape()
    added = price_w1(report, memory_mb, shape)
    every = price_w1(report, memory_mb, replace(shape, full_gc_every_s=None))
    day = replay_day(report, shape)
    share = added.total / w1_total
    steps = report.truncate.compact
    small_s = steps[0].duration_s(memory_mb) if steps else 0.0
    passes = shape.passes_per_month
    adr = ADR_TOPICS * passes * lambda_request_cost(ADR_TASK_S, ADR_MEMORY_MB)
    measured = ADR_TOPICS * passes * lambda_request_cost(small_s, memory_mb)
    usage = added.usage
    return [
        *_compact_rows(report, memory_mb),
        _fetch_row("before the merge (L0)", report.fetch_before, judged=False),
        _fetch_row("after the merge (L1)", report.fetch_after, judged=True),
        Row(
            f"replay of one day of one W1 partition after the merge ({day.record_gib:.2f} "
            "GiB, SDK over HTTPS, one warm function): S3 GETs, API requests, Queries, modeled "
            "time; record MiB (S3 MiB) per GET",
            f"{day.gets:,.0f}, {day.api_requests:,.0f}, {day.queries:,.0f}, "
            f"{day.modeled_s:,.0f} s; {day.record_mib_per_get:.1f} "
            f"({day.s3_mib_per_get:.1f}) MiB per GET",
            f"≥ {REPLAY_MIB_PER_GET_TARGET:g} MiB of records per GET",
            day.record_mib_per_get >= REPLAY_MIB_PER_GET_TARGET,
        ),
        Row(
            "W1 with the compactor every 5 minutes (light gc) and a full gc a day: $/month added",
            f"{_usd(added.total)} = {_w1_parts(added)}; W1 {_usd(w1_total)} -> "
            f"{_usd(w1_total + added.total)} (+{share:.1%}); the daily full gc reads "
            f"{usage['gc_objects']:,.0f} objects and {usage['gc_items']:,.0f} items "
            f"({usage['gc_scan_s']:.0f} s); the truncation reads "
            f"{usage['truncation_rru']:,.0f} RRU a merge and leaves "
            f"{usage['left_to_full_gc']:.0%} of the L0 segments to the full gc",
            f"≤ +{COMPACTION_SHARE_TARGET:.0%} of W1 = {_usd(w1_total * COMPACTION_SHARE_TARGET)}",
            share <= COMPACTION_SHARE_TARGET,
        ),
        Row(
            "Before: the full gc in every pass's collect, no targeted deletion",
            f"{_usd(every.total)} = {_w1_parts(every)} (+{every.total / w1_total:.1%})",
        ),
        Row(
            f"{ADR_TOPICS:,} topics each needing one small step every pass (ADR 0013 5.2's "
            "worst case): compact task Lambda $/month",
            f"{_usd(measured)} at {memory_mb} MB x {small_s * 1000:.0f} ms measured "
            f"(ADR's estimate {_usd(adr)} at {ADR_MEMORY_MB} MB x {ADR_TASK_S * 1000:.0f} ms)",
        ),
    ]


def compaction_verdict(rows: Sequence[Row]) -> str:
    """The compactor's own count of targets met, with the reason the missed ones are."""
    line = verdict(rows).replace("Targets met", "Compactor targets met")
    missed = any(row.met is False for row in rows)
    return f"{line} Why: {COMPACTION_MISS_REASON}." if missed else line


# Triggers: lag, batching and the dispatcher's cost -----------------------------------------
LAG_P99_TARGET_S: Final = 2.0
"""``lakelog dev``'s p99 delivery lag: the 500 ms batching window, then the next
``resume_due`` (every second), with room for a busy machine."""
INVOCATIONS_PER_1000_TARGET: Final = 20.0
"""Invocations per 1,000 records on W1 with batch_size 100: batches at least half full."""
IDLE_DISPATCH_TARGET_USD: Final = 0.50
"""A subscription on an idle topic (W3), per month (issue 12)."""


def _dispatch_parts(cost: MonthlyDispatch) -> str:
    parts = [
        ("Lambda requests", cost.requests),
        ("Lambda GB-s", cost.duration),
        ("DynamoDB", cost.dynamodb),
        ("S3 GET", cost.s3),
        ("logs", cost.logs),
        ("alarms", cost.alarms),
    ]
    return ", ".join(f"{name} {_usd(value)}" for name, value in parts)


def trigger_rows(report: TriggerReport, w1_total: float) -> list[Row]:
    """The trigger benchmark's rows (`benchmarks.triggers`), W1 priced at ``w1_total`` a
    month without the dispatcher."""
    lag, w1 = report.lag, report.w1
    month = triggers.price_w1(w1)
    idle = triggers.price_w3(w1)
    per_1000 = w1.invocations / w1.records * 1000
    n = w1.invocations
    ops = {name: count / n for name, count in Usage(1, w1.calls).by_operation("dynamodb").items()}
    calls = ", ".join(f"{name} {_number(v)}" for name, v in ops.items())

    return [
        Row(
            f"delivery lag from append to invocation, `lakelog dev` wiring ({len(lag.lags)} "
            "one-record appends, window 500 ms): p50 / p99 s",
            f"{lag.p50:.2f} / {lag.p99:.2f} ({lag.invocations} invocations)",
            f"p99 ≤ {LAG_P99_TARGET_S:g} s",
            lag.p99 <= LAG_P99_TARGET_S,
        ),
        Row(
            f"W1 stream ({w1.records:,} records, 12 partitions, {w1.seconds:g} s): "
            "invocations per 1,000 records (batch 100, window 500 ms)",
            f"{_number(per_1000)} ({w1.records / n:.0f} records a batch)",
            f"≤ {INVOCATIONS_PER_1000_TARGET:g}",
            per_1000 <= INVOCATIONS_PER_1000_TARGET,
        ),
        Row(
            "dispatcher per invocation: DynamoDB calls; WRU / RRU; S3 GET; Lambda Invoke",
            f"{calls}; {_number(w1.write_units / n)} / {_number(w1.read_units / n)}; "
            f"{_number(w1.count('s3', 'GetObject') / n)}; 1",
        ),
        Row(
            "dispatcher per stream-triggered run: CPU ms (moto excluded), modeled duration ms",
            f"{w1.cpu_s / w1.stream_calls * 1000:.1f}, "
            f"{w1.duration_s / w1.stream_calls * 1000:.0f}",
        ),
        Row(
            "W1 with one subscription reading everything: dispatcher $/month (the "
            "function's own cost excluded)",
            f"{_usd(month.total)} = {_dispatch_parts(month)}; the function is invoked "
            f"{month.function_invocations / 1e6:.1f} M times; W1 {_usd(w1_total)} -> "
            f"{_usd(w1_total + month.total)} (+{month.total / w1_total:.0%})",
        ),
        Row(
            "W3, an idle subscription: dispatcher $/month (the minute schedule: "
            f"{_calls(Usage(1, w1.schedule_calls), 'dynamodb')} a run; prod's alarms)",
            f"{_usd(idle.total)} = {_dispatch_parts(idle)}",
            f"≤ {_usd(IDLE_DISPATCH_TARGET_USD)}",
            idle.total <= IDLE_DISPATCH_TARGET_USD,
        ),
    ]


def trigger_verdict(rows: Sequence[Row]) -> str:
    """The triggers' own count of targets met."""
    return verdict(rows).replace("Targets met", "Trigger targets met")


# The Kafka gateway ------------------------------------------------------------------------
def gateway_rows(report: GatewayReport, sdk: SdkReport, cost: CostReport) -> list[Row]:
    """The gateway benchmark's rows (`benchmarks.gateway`), beside the SDK's throughput
    and W1's price over HTTPS, Kinesis and MSK Serverless (`benchmarks.cost`)."""
    w1 = next(result for result in cost.results if result.spec.name == "W1")
    month = gateway.price_w1(report.w1)
    run = report.w1
    calls = Usage(1, run.calls)
    per_s = {name: n / run.seconds for name, n in calls.by_operation("dynamodb").items()}
    s3 = {name: n / run.seconds for name, n in calls.by_operation("s3").items()}
    return [
        Row(
            f"librdkafka producer through the gateway ({report.records:,} x "
            f"{report.record_bytes} B, {report.partitions} partitions, acks=all, moto): "
            "MiB/s; gateway CPU ms/MiB; appends",
            f"{report.produce.mib_per_s:.1f} MiB/s; {report.produce.cpu_ms_per_mib:.1f} ms; "
            f"{report.produce_appends}",
        ),
        Row(
            "librdkafka consumer through the gateway, from offset 0: MiB/s; gateway CPU ms/MiB",
            f"{report.consume.mib_per_s:.1f} MiB/s; {report.consume.cpu_ms_per_mib:.1f} ms",
        ),
        Row(
            "beside them, the SDK producer / consumer MiB/s: over HTTP (`lakelog dev`); direct",
            f"{sdk.http.producer.mib_per_s:.1f} / {sdk.http.consumer.mib_per_s:.1f}; "
            f"{sdk.direct.producer.mib_per_s:.1f} / {sdk.direct.consumer.mib_per_s:.1f}",
        ),
        Row(
            f"W1 through the gateway, measured {run.seconds:.0f} s (librdkafka producer paced "
            "at 1 MiB/s, 3 librdkafka groups): MiB/s produced; appends/s; DynamoDB calls/s; "
            "S3 calls/s",
            f"{run.produced_bytes / run.seconds / MIB:.2f}; {month.appends_per_s:.1f}; "
            + ", ".join(f"{name} {_number(n)}" for name, n in per_s.items())
            + "; "
            + ", ".join(f"{name} {_number(n)}" for name, n in s3.items()),
        ),
        Row(
            "W1 through the gateway: gateway vCPU used; Fargate tasks (0.25 vCPU, 0.5 GB, "
            "arm64; at least 2)",
            f"{month.vcpu_used:.2f} vCPU; {month.tasks}",
        ),
        Row(
            "W1 through the gateway, $/month: S3 + DynamoDB requests + S3 storage + Fargate "
            "+ NLB (TLS) = total; W1 over HTTPS; Kinesis on-demand; MSK Serverless",
            f"${month.s3_requests:,.0f} + ${month.dynamodb_requests:,.0f} + "
            f"${month.s3_storage:,.0f} + ${month.fargate:,.0f} + ${month.nlb:,.0f} = "
            f"**${month.total:,.0f}**; ${w1.cost.total:,.0f}; ${w1.kinesis:,.0f}; "
            f"${w1.msk:,.0f}",
        ),
    ]
