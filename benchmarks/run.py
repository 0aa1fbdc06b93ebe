"""Run every workload on moto and print the results table (`make bench`).

AWS is emulated by moto with fake credentials: in-process (``mock_aws``) for the engine
workloads, and as a server in a child process on 127.0.0.1 for the HTTP API workload
(`benchmarks.api`), whose CPU must not include moto's. Nothing reaches AWS. The table
goes to stdout and, with a one-line header, to ``benchmarks/results.md``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import boto3
from moto import mock_aws

from benchmarks.api import ApiWorkload, run_api
from benchmarks.compaction import CompactionWorkload, run_compaction
from benchmarks.cost import CostWorkload, WorkloadResult, run_cost
from benchmarks.gateway import GatewayWorkload, run_gateway
from benchmarks.report import (
    build_rows,
    compaction_rows,
    compaction_verdict,
    cost_rows,
    cost_verdict,
    gateway_rows,
    render,
    trigger_rows,
    trigger_verdict,
    verdict,
)
from benchmarks.sdk import SdkWorkload, run_sdk
from benchmarks.startup import StartupWorkload, run_startup
from benchmarks.triggers import TriggerWorkload, run_triggers
from benchmarks.workloads import (
    Bench,
    CpuReport,
    Workload,
    make_values,
    run_codec_cpu,
    run_engine_cpu,
    run_fetches,
    run_multi_partition_appends,
    run_single_partition_appends,
)
from lakelog import ResourceNames
from lakelog.storage import create_resources

__all__ = ["RESULTS_PATH", "main", "run", "update_readme"]

REGION = "us-east-1"
RESULTS_PATH = Path(__file__).with_name("results.md")
README_PATH = Path(__file__).parent.parent / "README.md"
README_BEGIN = "<!-- benchmark:begin -->"
README_END = "<!-- benchmark:end -->"
_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
_REAL_AWS_VARIABLES = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def _use_fake_credentials() -> None:
    """Make sure no call can reach real AWS, even if moto were not active."""
    os.environ.update(_FAKE_CREDENTIALS)
    for name in _REAL_AWS_VARIABLES:
        os.environ.pop(name, None)


def _date_u(now: datetime) -> str:
    """``now`` (UTC) as ``date -u`` prints it, e.g. ``Tue Jun  4 09:05:01 UTC 2024``."""
    return f"{now:%a %b} {now.day:2d} {now:%H:%M:%S} UTC {now.year}"


def run(
    workload: Workload,
    api_workload: ApiWorkload | None = None,
    sdk_workload: SdkWorkload | None = None,
    startup_workload: StartupWorkload | None = None,
    cost_workload: CostWorkload | None = None,
    compaction_workload: CompactionWorkload | None = None,
    trigger_workload: TriggerWorkload | None = None,
    gateway_workload: GatewayWorkload | None = None,
) -> str:
    """Run the workloads on fresh moto deployments; the table and its verdict line.

    Parameters
    ----------
    workload
        Sizes of the engine workloads.
    api_workload
        Sizes of the HTTP API workload (`ApiWorkload` defaults when None).
    sdk_workload
        Sizes of the SDK workload (`SdkWorkload` defaults when None).
    startup_workload
        Runs of the start-up workload (`StartupWorkload` defaults when None).
    cost_workload
        The named workloads W1-W4 (`CostWorkload` defaults when None).
    compaction_workload
        The compactor's topics (`CompactionWorkload` defaults when None).
    trigger_workload
        The trigger benchmark's appends (`TriggerWorkload` defaults when None).
    gateway_workload
        The Kafka gateway's records and W1 window (`GatewayWorkload` defaults when None).

    Returns
    -------
    str
        The Markdown table followed by a line saying which targets were met, then the
        monthly cost table of the named workloads and its own count of targets met, then
        the compactor's table and count, then the triggers' table and count, then the
        Kafka gateway's table.
    """
    _use_fake_credentials()
    # First, in a process that holds nothing else yet, like a fresh Lambda.
    api = run_api(api_workload or ApiWorkload(seed=workload.seed))
    sdk = run_sdk(sdk_workload)
    startup = run_startup(startup_workload)
    values = make_values(workload.records_per_append, workload.value_bytes, workload.seed)
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        names = ResourceNames.for_prefix("bench")
        create_resources(session.client("s3"), session.client("dynamodb"), names)
        bench = Bench(session, names, workload.seed)
        single = run_single_partition_appends(bench, values, workload.appends)
        multi = run_multi_partition_appends(
            bench, values, workload.partitions, workload.multi_partition_appends
        )
        fetches = run_fetches(bench, workload.cold_fetches)
        engine_append, engine_fetch = run_engine_cpu(bench, values, workload.cpu_appends)
    encode, decode = run_codec_cpu(values, workload.codec_repetitions)
    rows = build_rows(
        single,
        multi,
        fetches,
        CpuReport(encode, decode, engine_append, engine_fetch),
        api,
        sdk,
        startup,
    )
    cost_report = run_cost(cost_workload, sys.stderr.write)
    cost = cost_rows(cost_report)
    started = time.monotonic()
    compaction = compaction_rows(
        run_compaction(compaction_workload), _w1_total(cost_report.results)
    )
    sys.stderr.write(f"compactor workload: {time.monotonic() - started:.1f} s\n")
    started = time.monotonic()
    triggers = trigger_rows(run_triggers(trigger_workload), _w1_total(cost_report.results))
    sys.stderr.write(f"trigger workload: {time.monotonic() - started:.1f} s\n")
    started = time.monotonic()
    kafka = gateway_rows(run_gateway(gateway_workload), sdk, cost_report)
    sys.stderr.write(f"gateway workload: {time.monotonic() - started:.1f} s\n")
    return (
        f"{render(rows)}\n\n{verdict(rows)}\n\n"
        f"### A month of each named workload (us-east-1 list prices)\n\n"
        f"{render(cost)}\n\n{cost_verdict(cost)}\n\n"
        f"### The compactor (W1-like topic on moto, scaled to a month of W1)\n\n"
        f"{render(compaction)}\n\n{compaction_verdict(compaction)}\n\n"
        f"### Triggers (`lakelog dev` wiring for the lag; W1's stream on moto, scaled to a "
        f"month)\n\n"
        f"{render(triggers)}\n\n{trigger_verdict(triggers)}\n\n"
        f"### The Kafka gateway (librdkafka on this machine; W1 in real time on moto, "
        f"scaled to a month)\n\n"
        f"{render(kafka)}\n"
    )


def _w1_total(results: Sequence[WorkloadResult]) -> float:
    """W1's monthly cost as the cost benchmark measured it."""
    return next(result.cost.total for result in results if result.spec.name == "W1")


def update_readme(text: str, readme: Path = README_PATH) -> bool:
    """Replace the README's text between the benchmark markers with ``text``.

    Returns False (and changes nothing) when the README has no markers.
    """
    if not readme.exists():
        return False
    content = readme.read_text(encoding="utf-8")
    begin, end = content.find(README_BEGIN), content.find(README_END)
    if begin < 0 or end < begin:
        return False
    updated = f"{content[: begin + len(README_BEGIN)]}\n{text}{content[end:]}"
    readme.write_text(updated, encoding="utf-8")
    return True


def main() -> int:
    """Run the benchmark, print the table and write it to `RESULTS_PATH`."""
    started = time.monotonic()
    table = run(Workload())
    header = (
        f"Produced by `make bench` (python -m benchmarks.run), AWS emulated by moto "
        f"in-process (API rows: moto server in a child process; SDK rows: `lakelog dev` "
        f"in a child process), "
        f"on {_date_u(datetime.now(UTC))}.\n\n"
    )
    RESULTS_PATH.write_text(header + table, encoding="utf-8")
    update_readme(header + table)
    sys.stdout.write(table)
    sys.stderr.write(f"benchmark took {time.monotonic() - started:.1f} s; wrote {RESULTS_PATH}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
