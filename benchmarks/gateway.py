"""The Kafka gateway benchmark: throughput, CPU and W1 priced through it (ADR 0016 §9).

The gateway (`lakelog.kafka.KafkaGateway`, its append batching at the default linger)
runs in this process over an engine on a moto server in a child process
(`benchmarks.motoserver`), so `time.process_time` of this process counts the gateway, the
engine and botocore, but neither moto nor the clients: librdkafka runs in other child
processes (`benchmarks.kafka_clients`). Nothing reaches AWS.

- **Throughput**: librdkafka's producer (defaults: acks=all, linger.ms=5) sends
  `GatewayWorkload.records` random values to a topic, then its consumer reads them all
  back from offset 0; MiB/s as the clients measure them, gateway CPU ms per MiB.
- **W1 through the gateway** (real time): a librdkafka producer paced at 1 MiB/s of keyed
  1 KiB records into 12 partitions, and three consumer groups of one librdkafka member
  each, for `GatewayWorkload.w1_seconds` after a warm-up. Every S3 request and DynamoDB
  unit the gateway's engine makes in the measured window is recorded
  (`benchmarks.recorder`) and scaled to a month; storage is W1's (7 days); Fargate and
  the Network Load Balancer are priced from the measured CPU and bytes (`price_w1`).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import boto3
from botocore.config import Config

from benchmarks.motoserver import moto_server
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
    NLB_TLS_BYTES_PER_LCU_HOUR,
    S3_GET_REQUEST,
    S3_PUT_REQUEST,
    S3_STORAGE_GB_MONTH,
)
from benchmarks.recorder import Call, CallRecorder
from lakelog import Engine, ResourceNames
from lakelog.kafka import GatewayConfig, KafkaGateway
from lakelog.kafka.server import RunningGateway
from lakelog.storage import create_resources

__all__ = ["GatewayReport", "GatewayWorkload", "W1Run", "price_w1", "run_gateway"]

REGION: Final = "us-east-1"
MIB: Final = 1 << 20
_ROOT = Path(__file__).resolve().parent.parent
TASK_VCPU: Final = 0.25
TASK_MEMORY_GB: Final = 0.5
"""The smallest Fargate task: what one gateway task of the default setting has."""
TASKS: Final = 2
"""Tasks of the default setting (two zones, so that one task can fail)."""
TASK_CPU_SHARE: Final = 0.6
"""The share of a task's vCPU the gateway may use before another task is needed."""
RETENTION_DAYS: Final = 7


@dataclass(frozen=True, slots=True)
class GatewayWorkload:
    """The throughput run's records and the W1 run's length (real seconds)."""

    records: int = 20_000
    record_bytes: int = 1024
    partitions: int = 4
    w1_warmup_s: float = 6.0
    w1_cpu_seconds: float = 10.0
    """Seconds of W1 whose CPU is measured (the recorder paused), before the calls are."""
    w1_seconds: float = 20.0


@dataclass(frozen=True, slots=True)
class Throughput:
    """One direction: MiB/s as the client measured it, the gateway's CPU per MiB."""

    mib_per_s: float
    cpu_ms_per_mib: float
    seconds: float


@dataclass(frozen=True, slots=True)
class W1Run:
    """What the gateway's engine did in W1's measured window."""

    seconds: float
    calls: tuple[Call, ...]
    produced_bytes: int
    consumed_bytes: int
    cpu_seconds: float
    """The gateway process's CPU over a window as long (measured in another)."""
    appends: int
    connections: int


@dataclass(frozen=True, slots=True)
class GatewayReport:
    """Produce and consume through the gateway, and W1 through it."""

    records: int
    record_bytes: int
    partitions: int
    produce: Throughput
    consume: Throughput
    produce_appends: int
    w1: W1Run


class _Deployment:
    """The bucket and tables on the moto server, and engines on recorded clients."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.names = ResourceNames.for_prefix("gateway")
        self.session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        self.recorder = CallRecorder(self.client("dynamodb"))
        create_resources(self.client("s3"), self.client("dynamodb"), self.names)

    def client(self, service: Literal["s3", "dynamodb"]) -> Any:
        config = Config(s3={"addressing_style": "path"}, max_pool_connections=64)
        return self.session.client(service, endpoint_url=self.endpoint, config=config)

    def engine(self) -> Engine:
        s3, dynamodb = self.client("s3"), self.client("dynamodb")
        self.recorder.attach(s3)
        self.recorder.attach(dynamodb)
        return Engine.from_clients(s3, dynamodb, self.names)


@contextmanager
def _gateway(engine: Engine) -> Iterator[RunningGateway]:
    gateway = KafkaGateway(engine, engine.access_control("allow"), GatewayConfig(port=0))
    with RunningGateway(gateway) as running:
        yield running


def _client(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.kafka_clients", *map(str, args)],
        cwd=_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen[str], timeout: float = 600) -> dict[str, Any]:
    out, _ = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"a Kafka client failed (exit code {process.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _throughput(
    bootstrap: str, workload: GatewayWorkload, direction: Literal["produce", "consume"]
) -> Throughput:
    topic, n, size = "throughput", workload.records, workload.record_bytes
    args: tuple[object, ...] = (
        ("produce", bootstrap, topic, n, size)
        if direction == "produce"
        else ("consume", bootstrap, topic, workload.partitions, n)
    )
    cpu = time.process_time()
    result = _result(_client(*args))
    cpu = time.process_time() - cpu
    mib = n * size / MIB
    return Throughput(mib / result["seconds"], cpu * 1000 / mib, result["seconds"])


def _run_w1(deployment: _Deployment, workload: GatewayWorkload) -> W1Run:
    engine = deployment.engine()
    engine.create_topic("w1", 12)
    with _gateway(engine) as running:
        total_s = workload.w1_warmup_s + workload.w1_cpu_seconds + workload.w1_seconds
        records = int(total_s * 1024)
        groups = [
            _client("group", running.bootstrap, "w1", f"g{n}", records, total_s + 120)
            for n in range(3)
        ]
        producer = _client("produce", running.bootstrap, "w1", records, 1008, "--rate", 1, "--keys")
        time.sleep(workload.w1_warmup_s)
        # CPU first, with the recorder paused (it reads item sizes for each write)
        with deployment.recorder.paused():
            cpu = time.process_time()
            time.sleep(workload.w1_cpu_seconds)
            cpu = (time.process_time() - cpu) / workload.w1_cpu_seconds
        batcher = running.gateway.batcher
        appends = batcher.appends
        start = time.perf_counter()
        with deployment.recorder.capture() as calls:
            time.sleep(workload.w1_seconds)
            window = time.perf_counter() - start
        captured = tuple(calls)  # filled as the block ends
        appends = batcher.appends - appends
        produced = _result(producer)
        consumed = [_result(group) for group in groups]
    short = [c["records"] for c in consumed if c["records"] != produced["records"]]
    if short:
        raise RuntimeError(f"groups read {short} of {produced['records']} records")
    rate = produced["bytes"] / produced["seconds"]
    return W1Run(
        seconds=window,
        calls=captured,
        produced_bytes=int(rate * window),
        consumed_bytes=int(3 * rate * window),
        cpu_seconds=cpu * window,
        appends=appends,
        connections=4,
    )


def run_gateway(workload: GatewayWorkload | None = None) -> GatewayReport:
    """Run the throughput and W1 measurements on a fresh moto server."""
    workload = workload or GatewayWorkload()
    with moto_server() as endpoint:
        deployment = _Deployment(endpoint)
        engine = deployment.engine()
        engine.create_topic("throughput", workload.partitions)
        with _gateway(engine) as running:
            produce = _throughput(running.bootstrap, workload, "produce")
            produce_appends = running.gateway.batcher.appends
            consume = _throughput(running.bootstrap, workload, "consume")
        w1 = _run_w1(deployment, workload)
    return GatewayReport(
        workload.records,
        workload.record_bytes,
        workload.partitions,
        produce,
        consume,
        produce_appends,
        w1,
    )


@dataclass(frozen=True, slots=True)
class W1Price:
    """W1 through the gateway: USD a month by part, and the usage behind them."""

    s3_requests: float
    dynamodb_requests: float
    s3_storage: float
    fargate: float
    nlb: float
    tasks: int
    appends_per_s: float
    vcpu_used: float

    @property
    def total(self) -> float:
        """Every part."""
        return self.s3_requests + self.dynamodb_requests + self.s3_storage + self.fargate + self.nlb


def price_w1(run: W1Run) -> W1Price:
    """A month of W1 through the gateway from the measured window."""
    scale = MONTH_S / run.seconds
    puts = sum(1 for c in run.calls if c.s3_class == "put") * scale
    gets = sum(1 for c in run.calls if c.s3_class == "get") * scale
    wru = sum(c.write_units for c in run.calls) * scale
    rru = sum(c.read_units for c in run.calls) * scale
    segment_bytes = sum(c.bytes_sent for c in run.calls if c.operation == "PutObject")
    stored_gib = segment_bytes / run.seconds * RETENTION_DAYS * 86_400 / GIB
    vcpu = run.cpu_seconds / run.seconds
    tasks = max(TASKS, math.ceil(vcpu / (TASK_VCPU * TASK_CPU_SHARE)))
    task_hour = TASK_VCPU * FARGATE_ARM_VCPU_HOUR + TASK_MEMORY_GB * FARGATE_ARM_GB_HOUR
    processed_per_hour = (run.produced_bytes + run.consumed_bytes) / run.seconds * 3600
    lcus = max(processed_per_hour / NLB_TLS_BYTES_PER_LCU_HOUR, 1.0)
    return W1Price(
        s3_requests=puts * S3_PUT_REQUEST + gets * S3_GET_REQUEST,
        dynamodb_requests=wru * DYNAMODB_WRITE_UNIT + rru * DYNAMODB_READ_UNIT,
        s3_storage=stored_gib * S3_STORAGE_GB_MONTH,
        fargate=tasks * task_hour * HOURS_PER_MONTH,
        nlb=(NLB_HOUR + lcus * NLB_LCU_HOUR) * HOURS_PER_MONTH,
        tasks=tasks,
        appends_per_s=run.appends / run.seconds,
        vcpu_used=vcpu,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark alone and print its numbers."""
    report = run_gateway()
    price = price_w1(report.w1)
    print(report.produce, report.consume, f"appends {report.produce_appends}", sep="\n")
    print(price, f"total ${price.total:,.2f}/month", sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
