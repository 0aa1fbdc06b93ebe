"""The SDK's producer and consumer against ``lakelog dev`` and in direct mode.

`run_sdk` starts ``lakelog dev --port 0`` in a child process
(`lakelog.local.process.DevProcess`), then runs `lakelog.bench.run` twice: with
``Client(api_url)`` (HTTP to the local API, which runs the engine on moto in that child)
and with ``Client.direct(...)`` on the same moto (the engine in this process). Numbers are
throughput on this machine with moto standing in for AWS: compare them run to run, not with
AWS.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import boto3
from botocore.config import Config

from lakelog import ResourceNames
from lakelog.bench import BenchResult, run
from lakelog.client import Client
from lakelog.local.process import DevProcess, start_dev

__all__ = ["SdkReport", "SdkWorkload", "direct_client", "run_sdk"]


@dataclass(frozen=True, slots=True)
class SdkWorkload:
    """Records per run, their size, and the partitions of the scratch topic."""

    records: int = 20_000
    record_bytes: int = 1024
    partitions: int = 4
    linger_ms: float = 5


@dataclass(frozen=True, slots=True)
class SdkReport:
    """One run over HTTP to the local dev server, one in direct mode."""

    http: BenchResult
    direct: BenchResult


def direct_client(server: DevProcess) -> Client:
    """A direct-mode client on the dev server's moto (fake credentials)."""
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    config = Config(s3={"addressing_style": "path"})
    endpoint = server.s3_endpoint_url
    return Client.direct(
        names=ResourceNames.for_prefix(server.bucket.removesuffix("-segments")),
        s3_client=session.client("s3", endpoint_url=endpoint, config=config),
        dynamodb_client=session.client("dynamodb", endpoint_url=endpoint),
    )


def run_sdk(workload: SdkWorkload | None = None) -> SdkReport:
    """Producer then consumer throughput, over HTTP and in direct mode."""
    workload = workload or SdkWorkload()
    options = {"linger_ms": workload.linger_ms}
    with start_dev() as server:
        results = [
            run(
                client,
                records=workload.records,
                record_bytes=workload.record_bytes,
                partitions=workload.partitions,
                producer_options=options,
            )
            for client in (Client(server.api_url), direct_client(server))
        ]
    return SdkReport(http=results[0], direct=results[1])


if __name__ == "__main__":
    report = run_sdk()
    for label, result in (("http", report.http), ("direct", report.direct)):
        sys.stdout.write(f"{label}: {result}\n")
