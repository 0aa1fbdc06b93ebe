"""The results table: a fixed list of rows (metric | measured | target), as Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.pricing import cost_per_gib
from benchmarks.recorder import Usage
from benchmarks.workloads import MIB, AppendReport, CpuReport, FetchReport

__all__ = [
    "CODEC_TARGET_MS",
    "READ_TARGET_USD",
    "WRITE_TARGET_USD",
    "Row",
    "build_rows",
    "render",
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
            "TransactWriteItems 1",
            _dynamodb_is(steady, {"TransactWriteItems": 1}),
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


def _fetch_rows(label: str, usage: Usage, dynamodb_target: dict[str, float]) -> list[Row]:
    gets = usage.count("s3", "GetObject")
    target = ", ".join(f"{name} {_number(n)}" for name, n in dynamodb_target.items())
    return [
        Row(
            f"{label}: DynamoDB calls per fetch",
            _calls(usage, "dynamodb"),
            target,
            _dynamodb_is(usage, dynamodb_target),
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


def build_rows(
    single: AppendReport, multi: AppendReport, fetches: FetchReport, cpu: CpuReport
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

    Returns
    -------
    list of Row
        The same rows, in the same order, on every run.
    """
    query = {"Query": 1.0}
    return [
        *_append_rows("append 1 MiB, 1 partition", single),
        *_append_rows("append 1 MiB over 8 partitions", multi),
        *_fetch_rows(
            "fetch 1 MiB, fresh engine (first read of topic and head)",
            fetches.cold,
            {"GetItem": 1.0, "BatchGetItem": 1.0, **query},
        ),
        *_fetch_rows("fetch 1 MiB, warm engine, new segments", fetches.warm, query),
        *_fetch_rows("fetch 1 MiB, warm engine, cached footers", fetches.warm_cached, query),
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
