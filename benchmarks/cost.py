"""A month of each named workload (W1-W4), priced beside Kinesis on-demand and MSK Serverless.

Each workload runs the real SDK `Producer` and `Consumer` (defaults unless stated) for a
short stretch of simulated time on in-process moto (`benchmarks.simulation`), over HTTPS
(`HttpTransport` to the real API handler, no socket) or in direct mode (the engine in the
client's process). Every AWS call is recorded and billed as AWS bills it; usage counted
after a warm-up (joins, first metadata reads) is scaled from the measured window to 30 days.

What is priced (us-east-1 list prices, `benchmarks.pricing`):

- S3 requests by class (PUT/COPY/POST/LIST; GET and other; DELETE free) and S3 Standard
  storage of the segments written, held for the retention period (gc does not run in a
  deployment yet: retention is priced as if it were enforced);
- DynamoDB write and read request units as `benchmarks.meter` computes them, and the
  storage of the ledger items put (chain items; item size + 100 bytes), held for the
  retention;
- API Gateway HTTP API requests in 512 KiB units of the request body (the reply is not
  metered, `benchmarks.pricing`);
- Lambda (arm64, `LAMBDA_MEMORY_MB`): one invocation per API request, billed duration =
  handler CPU measured in this process (moto and the recorder excluded) + modeled I/O wait
  of its S3 and DynamoDB calls (`benchmarks.simulation` latencies), rounded up to 1 ms;
- CloudWatch Logs: `LOG_BYTES_PER_REQUEST` per invocation at $0.50/GB ingested.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import boto3
from moto import mock_aws

from benchmarks.meter import item_size
from benchmarks.pricing import (
    API_GATEWAY_REQUEST,
    DAY_S,
    DYNAMODB_ITEM_OVERHEAD_BYTES,
    DYNAMODB_READ_UNIT,
    DYNAMODB_STORAGE_GB_MONTH,
    DYNAMODB_WRITE_UNIT,
    GIB,
    LAMBDA_ARM_GB_SECOND,
    LAMBDA_REQUEST,
    LOGS_INGESTED_GB,
    MONTH_S,
    S3_GET_REQUEST,
    S3_PUT_REQUEST,
    S3_STORAGE_GB_MONTH,
    StreamShape,
    api_gateway_requests,
    kinesis_on_demand_month,
    lambda_gb_seconds,
    msk_serverless_month,
)
from benchmarks.recorder import Call
from benchmarks.simulation import (
    CpuAccount,
    HandlerSender,
    MeteredTransport,
    Request,
    SimClock,
    TimedRecorder,
    sim_time,
)
from benchmarks.workloads import make_values
from lakelog import Engine, Record, ResourceNames
from lakelog.api import ApiSettings, make_handler
from lakelog.client import Consumer, Producer
from lakelog.client.http import HttpTransport
from lakelog.client.producer import DEFAULT_LINGER_MS
from lakelog.local.emulation import serialize_moto_dynamodb
from lakelog.storage import create_resources

if TYPE_CHECKING:
    from lakelog.client.transport import Transport

__all__ = [
    "LAMBDA_MEMORY_MB",
    "LOG_BYTES_PER_REQUEST",
    "CostReport",
    "CostWorkload",
    "Deployment",
    "MonthlyCost",
    "WorkloadResult",
    "WorkloadSpec",
    "ledger_item_bytes",
    "run_cost",
]

LAMBDA_MEMORY_MB: Final = 1024
LOG_BYTES_PER_REQUEST: Final = 400
"""CloudWatch Logs bytes per invocation: Lambda's START, END and REPORT lines (about 300
bytes) plus the handler's own lines (it logs nothing per request at INFO but errors)."""
RECORD_BYTES: Final = 1024
KEY_BYTES: Final = 16
PRINCIPAL: Final = "arn:aws:iam::000000000000:user/lakelog-cost"
ENDPOINT: Final = "http://api.in-process.test"
REGION: Final = "us-east-1"
_MIB = 1 << 20
FETCHES: Final = ("Fetch", "FetchMany")
"""The operations that read records."""
LEDGER_WRITES: Final = ("PutItem", "TransactWriteItems", "UpdateItem")
"""The DynamoDB calls an append may write the ledger with."""
_STEP_S = 0.001
"""Simulated time between two steps while records are produced."""
_IDLE_STEP_S = 0.005
"""... and while nothing is produced (consumers' idle backoff starts at 50 ms)."""


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """One named workload and how long it is simulated."""

    name: str
    label: str
    mib_per_s: float
    partitions: int
    groups: int
    https: bool
    seconds: float
    """Simulated seconds measured (after ``warmup``)."""
    warmup: float = 3.0
    """Simulated seconds of traffic before the measured window."""
    idle_start: float = 0.5
    """Simulated seconds before the producer starts, while the consumers join and find
    their positions (W4's 100 partitions take a few seconds of ListOffset each)."""
    linger_ms: float = DEFAULT_LINGER_MS
    retention_days: float = 7.0
    target: str = "—"
    target_usd: float | None = None
    """Monthly target in USD; None with ``kinesis_fraction`` or no target."""
    kinesis_fraction: float | None = None
    """Target as a fraction of the Kinesis on-demand price (W4: 1/4)."""
    latency_target_ms: float | None = None


@dataclass(frozen=True, slots=True)
class CostWorkload:
    """The workloads of `run_cost` (the defaults take about 110 s on two cores)."""

    specs: tuple[WorkloadSpec, ...] = (
        WorkloadSpec(
            "W1",
            "1 MiB/s keyed, 12 partitions, 3 groups, HTTPS",
            *(1, 12, 3, True, 4),
            warmup=2,
            target="≤ $150",
            target_usd=150,
            latency_target_ms=600,
        ),
        WorkloadSpec(
            "W1 linger_ms=0",
            "W1 with linger_ms=0",
            *(1, 12, 3, True, 4),
            warmup=2,
            linger_ms=0,
            latency_target_ms=350,
        ),
        WorkloadSpec(
            "W2",
            "W1 in direct mode",
            *(1, 12, 3, False, 4),
            warmup=2,
            target="≤ $80",
            target_usd=80,
        ),
        WorkloadSpec(
            "W3",
            "idle: the 3 members of W1, no producer, HTTPS",
            *(0, 12, 3, True, 15),
            warmup=5,
            target="≤ $5",
            target_usd=5,
        ),
        WorkloadSpec(
            "W4",
            "10 MiB/s keyed, 100 partitions, 2 groups, HTTPS",
            *(10, 100, 2, True, 2),
            warmup=1,
            idle_start=8,
            target="≤ Kinesis / 4",
            kinesis_fraction=0.25,
        ),
    )
    wru_partitions: tuple[int, ...] = (1, 12, 100)
    seed: int = 1


@dataclass(frozen=True, slots=True)
class MonthlyCost:
    """USD per 30-day month, by service."""

    s3_requests: float
    dynamodb_requests: float
    api_gateway: float
    lambda_: float
    logs: float
    s3_storage: float
    dynamodb_storage: float

    @property
    def total(self) -> float:
        """Every part."""
        return (
            self.s3_requests
            + self.dynamodb_requests
            + self.api_gateway
            + self.lambda_
            + self.logs
            + self.s3_storage
            + self.dynamodb_storage
        )


@dataclass(frozen=True, slots=True)
class WorkloadResult:
    """A workload's measured usage per month, its price and the managed streams' prices."""

    spec: WorkloadSpec
    cost: MonthlyCost
    kinesis: float
    msk: float
    usage: dict[str, float]
    """Monthly counts: API units, invocations, Lambda GB-s, S3 requests, WRU, RRU ..."""
    ack_p50_ms: float | None
    ack_p99_ms: float | None
    produced: int
    consumed: int


@dataclass(frozen=True, slots=True)
class CostReport:
    """Every workload, and ledger write units per append by partitions touched."""

    results: tuple[WorkloadResult, ...]
    wru_per_append: dict[int, float] = field(default_factory=dict)


class Deployment:
    """One deployment on moto, the run's clock, and the transports of its clients."""

    def __init__(self, seed: int) -> None:
        self.session = boto3.Session(region_name=REGION)
        self.names = ResourceNames.for_prefix("cost")
        create_resources(self.session.client("s3"), self.session.client("dynamodb"), self.names)
        self.clock = SimClock()
        self.world = threading.RLock()
        self.account = CpuAccount()
        self.recorder = TimedRecorder(self.session.client("dynamodb"), self.account)
        self.log: list[Request] = []
        self.seed = seed

    def engine(self) -> Engine:
        """An engine on new recorded clients, on the run's clock."""
        s3, dynamodb = self.session.client("s3"), self.session.client("dynamodb")
        self.recorder.attach(s3)
        self.recorder.attach(dynamodb)
        return Engine.from_clients(s3, dynamodb, self.names, clock_ms=self.clock.ms, seed=self.seed)

    def transport(self, *, https: bool, producer: bool) -> MeteredTransport:
        """A metered transport on its own engine (and, over HTTPS, its own handler)."""
        engine = self.engine()
        inner: Transport = engine
        sender = None
        if https:
            settings = ApiSettings(
                bucket=self.names.bucket,
                ledger_table=self.names.ledger_table,
                catalog_table=self.names.catalog_table,
                default_acl="allow",
                env="bench",
            )
            sender = HandlerSender(make_handler(settings, engine), self.account, PRINCIPAL)
            inner = HttpTransport(ENDPOINT, sender=sender)
        return MeteredTransport(
            inner,
            clock=self.clock,
            world=self.world,
            recorder=self.recorder,
            account=self.account,
            log=self.log,
            sender=sender,
            blocking=producer,
            role="producer" if producer else "consumer",
        )


def _records(count: int, seed: int) -> list[tuple[bytes, bytes]]:
    """``count`` (key, value) pairs of `RECORD_BYTES` in all, keys of `KEY_BYTES`."""
    values = make_values(count, RECORD_BYTES - KEY_BYTES, seed)
    return [(f"key-{n:012d}".encode(), value) for n, value in enumerate(values)]


def _quiet(producer: Producer, transport: MeteredTransport, clock: SimClock) -> bool:
    """Whether the producer's sender thread has done all it can at the current time."""
    until = transport.waiting_until
    now = clock.elapsed()
    if until is not None and now < until:
        return True
    with producer._lock:
        return not producer._in_flight and producer._ready_topic(clock.monotonic())[0] is None


class _Simulation:
    """The SDK clients of one workload, driven step by step in simulated time."""

    def __init__(self, spec: WorkloadSpec, run: Deployment, seed: int) -> None:
        self.spec = spec
        self.clock = run.clock
        self.topic = "cost.topic"
        with run.recorder.paused():
            run.engine().create_topic(self.topic, partitions=spec.partitions)
        self.consumers = [
            Consumer(
                run.transport(https=spec.https, producer=False),
                self.topic,
                group_id=f"group-{n}",
                auto_offset_reset="earliest",
                _clock=self.clock,
            )
            for n in range(spec.groups)
        ]
        self.producer: Producer | None = None
        self.producer_transport = run.transport(https=spec.https, producer=True)
        if spec.mib_per_s:
            self.producer = Producer(self.producer_transport, linger_ms=spec.linger_ms, seed=seed)
        self.pool = _records(4096, seed)
        self.rate = spec.mib_per_s * _MIB / RECORD_BYTES
        self.step = _STEP_S
        self.latencies: list[float] = []
        self.next_poll = [0.0] * len(self.consumers)
        self.consumed = self.produced = self.measured = 0
        self.sent = 0.0

    def run(self) -> tuple[list[float], int, int]:
        """Drive the workload; ack latencies, records produced and records consumed (all
        counted after the warm-up)."""
        now = 0.0
        spec = self.spec
        while now < spec.idle_start + spec.warmup + spec.seconds:
            producer = self.producer if now >= spec.idle_start else None
            self._wait_for(producer)
            self._poll(now)
            if producer is not None:
                self._send(producer, now)
            now = self._advance(now + (self.step if producer else _IDLE_STEP_S), producer)
        for consumer in self.consumers:
            consumer.close(autocommit=False)
        if self.producer is not None:
            self._settle(self.producer, now)
            self.producer.close()
        return self.latencies, self.measured, self.consumed

    def _wait_for(self, producer: Producer | None) -> None:
        """Let the producer's sender thread do what is due at the current time."""
        while producer is not None and not _quiet(producer, self.producer_transport, self.clock):
            time.sleep(0.0001)

    def _advance(self, to: float, producer: Producer | None) -> float:
        """Move the clock to ``to`` and wake the producer's sender for the new time."""
        now = round(to, 6)
        self.clock.advance_to(now)
        if producer is not None:
            with producer._wake:
                producer._wake.notify_all()
        return now

    def _settle(self, producer: Producer, now: float) -> None:
        """Keep time moving, step by step, until every record sent is acknowledged (the
        last ones' latencies count like the others')."""
        while True:
            self._wait_for(producer)
            with producer._lock:
                if not producer._batches and not producer._in_flight:
                    return
            now = self._advance(now + self.step, producer)

    def _poll(self, now: float) -> None:
        """Poll each consumer whose previous poll's requests are over."""
        for index, consumer in enumerate(self.consumers):
            if now < self.next_poll[index]:
                continue
            transport = consumer._transport
            assert isinstance(transport, MeteredTransport)
            batches = consumer.poll(timeout_ms=0)
            if now >= self.spec.idle_start + self.spec.warmup:
                self.consumed += sum(len(batch) for batch in batches.values())
            self.next_poll[index] = now + max(transport.pending_s, self.step)
            transport.pending_s = 0.0

    def _send(self, producer: Producer, now: float) -> None:
        """Send the records due in this step, timing the acknowledgement of each."""
        self.sent += self.rate * self.step
        clock = self.clock
        while self.produced < int(self.sent):
            key, value = self.pool[self.produced % len(self.pool)]
            future = producer.send(self.topic, value, key=key)
            if now >= self.spec.idle_start + self.spec.warmup:
                self.measured += 1
                future.add_done_callback(
                    lambda _f, s=now: self.latencies.append(clock.elapsed() - s)
                )
            self.produced += 1


def ledger_item_bytes(calls: Sequence[Call], ledger_table: str) -> int:
    """Stored bytes of the ledger items the calls put: a plain append's ``PutItem`` and the
    ``Put`` of an idempotent append's transaction (a producer state is updated in place)."""
    total = 0
    for call in calls:
        if call.status >= 400:
            continue
        if call.operation == "PutItem":
            puts: list[Any] = [call.params]
        elif call.operation == "TransactWriteItems":
            puts = [item["Put"] for item in call.params.get("TransactItems", []) if "Put" in item]
        else:
            continue
        for put in puts:
            if put.get("TableName") == ledger_table:
                total += item_size(put["Item"]) + DYNAMODB_ITEM_OVERHEAD_BYTES
    return total


def _price(
    spec: WorkloadSpec, requests: Sequence[Request], ledger_table: str, read_scale: float
) -> tuple[MonthlyCost, dict[str, float]]:
    """Monthly cost of ``requests`` measured over ``spec.seconds``; the consumers' fetches
    count ``read_scale`` times (see `run_workload`)."""
    scale = MONTH_S / spec.seconds
    totals = dict.fromkeys(
        ("api_units", "invocations", "gb_seconds", "s3_put", "s3_get", "wru", "rru"), 0.0
    )
    segment_bytes = ledger_bytes = 0
    for request in requests:
        weight = scale * (
            read_scale if request.role == "consumer" and request.operation in FETCHES else 1.0
        )
        for invocation in request.invocations:
            duration = invocation.cpu_seconds + request.io_s / len(request.invocations)
            totals["api_units"] += weight * api_gateway_requests(invocation.request_bytes)
            totals["invocations"] += weight
            totals["gb_seconds"] += weight * lambda_gb_seconds(duration, LAMBDA_MEMORY_MB)
        for call in request.calls:
            totals["s3_put"] += weight * (call.s3_class == "put")
            totals["s3_get"] += weight * (call.s3_class == "get")
            totals["wru"] += weight * call.write_units
            totals["rru"] += weight * call.read_units
        segment_bytes += sum(c.bytes_sent for c in request.calls if c.operation == "PutObject")
        ledger_bytes += ledger_item_bytes(request.calls, ledger_table)
    retention_s = spec.retention_days * DAY_S
    usage = {
        **totals,
        "segment_gib": segment_bytes / spec.seconds * retention_s / GIB,
        "ledger_gib": ledger_bytes / spec.seconds * retention_s / GIB,
        "read_scale": read_scale,
    }
    cost = MonthlyCost(
        s3_requests=usage["s3_put"] * S3_PUT_REQUEST + usage["s3_get"] * S3_GET_REQUEST,
        dynamodb_requests=usage["wru"] * DYNAMODB_WRITE_UNIT + usage["rru"] * DYNAMODB_READ_UNIT,
        api_gateway=usage["api_units"] * API_GATEWAY_REQUEST,
        lambda_=usage["invocations"] * LAMBDA_REQUEST + usage["gb_seconds"] * LAMBDA_ARM_GB_SECOND,
        logs=usage["invocations"] * LOG_BYTES_PER_REQUEST / GIB * LOGS_INGESTED_GB,
        s3_storage=usage["segment_gib"] * S3_STORAGE_GB_MONTH,
        dynamodb_storage=usage["ledger_gib"] * DYNAMODB_STORAGE_GB_MONTH,
    )
    return cost, usage


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_workload(spec: WorkloadSpec, seed: int) -> WorkloadResult:
    """Simulate ``spec`` on a fresh moto deployment and price a month of it.

    Each group must read every record. When the consumers read fewer records in the
    window than were produced times the groups (today's consumer does not keep up at
    1 MiB/s: one request per partition, one sequential GET per stored batch), their
    fetches are counted ``wanted / read`` times (``read``: records the fetches that started
    in the window returned), so the month prices reading everything
    at the measured cost per record read; the row says by how much.
    """
    with mock_aws():
        run = Deployment(seed)
        with sim_time(run.clock), run.account.excluding_moto(), run.account.excluding_gc():
            latencies, produced, _ = _Simulation(spec, run, seed).run()
        begin = spec.idle_start + spec.warmup
        window = [r for r in run.log if begin <= r.start_s < begin + spec.seconds]
        # Records read by the fetches of the window (the window whose usage is priced)
        consumed = sum(r.records for r in window if r.operation in FETCHES)
        wanted = produced * spec.groups
        read_scale = wanted / consumed if consumed and wanted > consumed else 1.0
        cost, usage = _price(spec, window, run.names.ledger_table, read_scale)
        usage["read_fraction"] = consumed / wanted if wanted else 1.0
    shape = StreamShape(
        spec.mib_per_s * _MIB / RECORD_BYTES,
        RECORD_BYTES,
        spec.partitions,
        spec.groups,
        spec.retention_days,
    )
    return WorkloadResult(
        spec=spec,
        cost=cost,
        kinesis=kinesis_on_demand_month(shape),
        msk=msk_serverless_month(shape),
        usage=usage,
        ack_p50_ms=statistics.median(latencies) * 1000 if latencies else None,
        ack_p99_ms=_percentile(latencies, 0.99) * 1000 if latencies else None,
        produced=produced,
        consumed=consumed,
    )


def measure_wru_per_append(partitions: Sequence[int], seed: int) -> dict[int, float]:
    """Ledger write units of one append touching N partitions, measured from the recorder.

    Each append carries 100 records of 1 KiB spread round-robin over the N partitions of
    its topic; the median over 3 appends after a first one is reported.
    """
    result: dict[int, float] = {}
    with mock_aws():
        run = Deployment(seed)
        pool = _records(100, seed)
        for count in partitions:
            engine = run.engine()
            topic = f"cost.wru-{count}"
            engine.create_topic(topic, partitions=count)
            records = [
                Record(key=key, value=value, partition=i % count)
                for i, (key, value) in enumerate(pool)
            ]
            engine.append(topic, records)
            catalog = run.names.catalog_table
            units: list[float] = []
            for _ in range(3):
                with run.recorder.capture() as calls:
                    engine.append(topic, records)
                units.append(
                    sum(
                        c.write_units
                        for c in calls
                        if c.operation in LEDGER_WRITES and c.params.get("TableName") != catalog
                    )
                )
            result[count] = statistics.median(units)
    return result


def run_cost(
    workload: CostWorkload | None = None, report: Callable[[str], Any] | None = None
) -> CostReport:
    """Every workload of ``workload`` and the write units per append.

    Parameters
    ----------
    workload
        The workloads (`CostWorkload` defaults when None).
    report
        Called with a progress line after each workload (e.g. ``sys.stderr.write``).

    Returns
    -------
    CostReport
        Results in the order of ``workload.specs``.
    """
    workload = workload or CostWorkload()
    serialize_moto_dynamodb()
    results = []
    for spec in workload.specs:
        started = time.monotonic()
        results.append(run_workload(spec, workload.seed))
        if report is not None:
            report(f"cost workload {spec.name}: {time.monotonic() - started:.1f} s\n")
    return CostReport(
        tuple(results), measure_wru_per_append(workload.wru_partitions, workload.seed)
    )
