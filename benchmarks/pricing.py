"""us-east-1 list prices and the request cost of measured usage.

Prices (USD, us-east-1, S3 Standard and DynamoDB on-demand, Standard table class):

- S3 PUT, COPY, POST and LIST requests: $0.005 per 1,000;
- S3 GET and all other requests: $0.0004 per 1,000 (DELETE is free; transfer inside the
  region is free);
- DynamoDB write request unit: $0.625 per million; read request unit: $0.125 per million;
- API Gateway HTTP API: $1.00 per million requests (first 300 million a month), metered in
  512 KB increments (`api_gateway_requests`);
- Lambda on arm64: $0.20 per million requests plus $0.0000133334 per GB-second of billed
  duration (1 ms granularity; memory in MB / 1024 is the GB), `lambda_request_cost`.

How API Gateway meters HTTP API calls. AWS's pricing page says that for HTTP APIs you "pay
only for the API calls you receive and the amount of data transferred out"
(https://aws.amazon.com/api-gateway/pricing/), and AWS's whitepaper "Best Practices for
Designing Amazon API Gateway Private APIs and Private Integration", section "Cost
optimization", says "HTTP APIs are metered in 512 KB increments"
(https://docs.aws.amazon.com/pt_br/whitepapers/latest/best-practices-api-gateway-private-apis-integration/cost-optimization.html).
Third-party summaries give the example "513 KB is metered as two requests"
(https://www.stormit.cloud/blog/amazon-api-gateway-pricing), the way the same pricing page
meters WebSocket messages ("a 33 KB message is metered as two messages"). Neither AWS text
says that the size of the *response* counts, so `api_gateway_requests` meters the request
(body) size by default: a 1 MiB produce carried as base64 JSON (about 1.37 MiB) is 3
metered requests, a fetch (a GET without a body) is 1 whatever it returns. AWS does not
rule the other reading out either, so ``count_response=True`` gives the pessimistic bound
that meters request and response bytes together (a fetch returning 1.37 MiB is then 3).
The increment is taken as 512 KiB (524,288 bytes); AWS writes "512 KB".

Data transfer out of API Gateway ($0.09 per GB to the internet in us-east-1) is left out
everywhere: it depends on where clients are. Storage is left out of the per-GiB rows above
(it depends on retention, not on the request path) and priced in the monthly workload rows
(`benchmarks.cost`) with the prices below.

Monthly prices (us-east-1, taken 2026-12-02; a month is 30 days, 720 hours; every "GB" of
a price is taken as a GiB, 2**30 bytes, as AWS bills storage and data volume):

- S3 Standard storage: $0.023 per GB-month (first 50 TB),
  https://aws.amazon.com/s3/pricing/;
- DynamoDB Standard table class storage: $0.25 per GB-month beyond the free 25 GB (the free
  tier is not applied), each item counted with 100 bytes of overhead,
  https://aws.amazon.com/dynamodb/pricing/on-demand/;
- CloudWatch Logs ingestion (standard class): $0.50 per GB,
  https://aws.amazon.com/cloudwatch/pricing/;
- Kinesis Data Streams, on-demand mode, https://aws.amazon.com/kinesis/data-streams/pricing/:
  $0.04 per stream-hour, $0.08 per GB of data in, $0.04 per GB of data out (each consumer
  or group reading counts), extended retention (beyond 24 hours, up to 7 days) $0.10 per
  GB-month. The page (as stored 2026-12-02) confirms the dimensions and that every record
  is rounded up to the nearest 1 KB (1,024 bytes) for data in; the dollar amounts could
  not be read from the stored copy and are the list prices as published since on-demand
  mode's 2021 launch (not confirmed on 2026-12-02);
- Amazon MSK Serverless, https://aws.amazon.com/msk/pricing/: $0.75 per cluster-hour,
  $0.0015 per partition-hour, $0.10 per GB in, $0.05 per GB out, $0.10 per GB-month of
  storage. The dimensions are confirmed by AWS's and third-party pages; the dollar amounts
  are the published list prices as widely quoted, not confirmed from an AWS page on
  2026-12-02.
- AWS Fargate on Linux/ARM64 (Graviton), https://aws.amazon.com/fargate/pricing/:
  $0.03238 per vCPU-hour and $0.00356 per GB-hour (memory), per second with a one-minute
  minimum; the list prices as published, not confirmed from the stored page on 2026-12-02;
- Network Load Balancer, https://aws.amazon.com/elasticloadbalancing/pricing/: $0.0225
  per hour and $0.006 per NLCU-hour; an NLCU of a TLS listener is the largest of 50 new
  TLS connections a second, 3,000 active TLS connections and 1 GB of processed bytes an
  hour (both directions); the list prices as published, not confirmed on 2026-12-02.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from benchmarks.recorder import Usage

__all__ = [
    "API_GATEWAY_METERED_BYTES",
    "API_GATEWAY_REQUEST",
    "DAY_S",
    "DYNAMODB_ITEM_OVERHEAD_BYTES",
    "DYNAMODB_READ_UNIT",
    "DYNAMODB_STORAGE_GB_MONTH",
    "DYNAMODB_WRITE_UNIT",
    "EXPRESS_BILLED_GB",
    "EXPRESS_BILLED_INCREMENT_S",
    "EXPRESS_GB_SECOND",
    "EXPRESS_REQUEST",
    "FARGATE_ARM_GB_HOUR",
    "FARGATE_ARM_VCPU_HOUR",
    "GIB",
    "HOURS_PER_MONTH",
    "KINESIS_EXTENDED_RETENTION_GB_MONTH",
    "KINESIS_GB_IN",
    "KINESIS_GB_OUT",
    "KINESIS_RECORD_UNIT_BYTES",
    "KINESIS_STREAM_HOUR",
    "LAMBDA_ARM_GB_SECOND",
    "LAMBDA_FULL_VCPU_MB",
    "LAMBDA_REQUEST",
    "LOGS_INGESTED_GB",
    "MONTH_S",
    "MSK_CLUSTER_HOUR",
    "MSK_GB_IN",
    "MSK_GB_OUT",
    "MSK_PARTITION_HOUR",
    "MSK_STORAGE_GB_MONTH",
    "NLB_HOUR",
    "NLB_LCU_HOUR",
    "NLB_TLS_ACTIVE_PER_LCU",
    "NLB_TLS_BYTES_PER_LCU_HOUR",
    "S3_GET_REQUEST",
    "S3_PUT_REQUEST",
    "S3_STORAGE_GB_MONTH",
    "ApiCost",
    "StreamShape",
    "api_cost_per_gib",
    "api_gateway_requests",
    "cost_per_gib",
    "cost_per_operation",
    "express_execution_cost",
    "kinesis_on_demand_month",
    "lambda_duration",
    "lambda_gb_seconds",
    "lambda_request_cost",
    "msk_serverless_month",
]

S3_PUT_REQUEST: Final = 0.005 / 1_000
S3_GET_REQUEST: Final = 0.0004 / 1_000
DYNAMODB_WRITE_UNIT: Final = 0.625 / 1_000_000
DYNAMODB_READ_UNIT: Final = 0.125 / 1_000_000
API_GATEWAY_REQUEST: Final = 1.00 / 1_000_000
"""One metered HTTP API request (first 300 million a month)."""
API_GATEWAY_METERED_BYTES: Final = 512 * 1024
"""Size of one metering increment of an HTTP API request."""
LAMBDA_REQUEST: Final = 0.20 / 1_000_000
LAMBDA_ARM_GB_SECOND: Final = 0.0000133334
"""Lambda duration on arm64 (Graviton), first 7.5 billion GB-seconds a month."""

S3_STORAGE_GB_MONTH: Final = 0.023
DYNAMODB_STORAGE_GB_MONTH: Final = 0.25
DYNAMODB_ITEM_OVERHEAD_BYTES: Final = 100
"""Bytes DynamoDB adds to each item's size for storage billing."""
LOGS_INGESTED_GB: Final = 0.50
KINESIS_STREAM_HOUR: Final = 0.04
KINESIS_GB_IN: Final = 0.08
KINESIS_GB_OUT: Final = 0.04
KINESIS_EXTENDED_RETENTION_GB_MONTH: Final = 0.10
KINESIS_RECORD_UNIT_BYTES: Final = 1024
MSK_CLUSTER_HOUR: Final = 0.75
MSK_PARTITION_HOUR: Final = 0.0015
MSK_GB_IN: Final = 0.10
MSK_GB_OUT: Final = 0.05
MSK_STORAGE_GB_MONTH: Final = 0.10
FARGATE_ARM_VCPU_HOUR: Final = 0.03238
FARGATE_ARM_GB_HOUR: Final = 0.00356
NLB_HOUR: Final = 0.0225
NLB_LCU_HOUR: Final = 0.006
NLB_TLS_BYTES_PER_LCU_HOUR: Final = 2**30
"""Processed bytes an NLCU of a TLS listener covers in an hour."""
NLB_TLS_ACTIVE_PER_LCU: Final = 3_000
"""Active TLS connections an NLCU covers."""
MONTH_S: Final = 30 * 24 * 3600
"""Seconds in the month every monthly figure is priced for."""
HOURS_PER_MONTH: Final = 720
DAY_S: Final = 24 * 3600

GIB: Final = 1024**3
_MIB_PER_GB = 1024


def cost_per_operation(usage: Usage) -> float:
    """Request cost in USD of one engine operation (one append or one fetch).

    Parameters
    ----------
    usage
        Calls measured over some operations.

    Returns
    -------
    float
        S3 request charges plus DynamoDB request-unit charges, per operation.
    """
    return (
        usage.s3_requests("put") * S3_PUT_REQUEST
        + usage.s3_requests("get") * S3_GET_REQUEST
        + usage.write_units * DYNAMODB_WRITE_UNIT
        + usage.read_units * DYNAMODB_READ_UNIT
    )


def cost_per_gib(usage: Usage, payload_bytes_per_operation: float) -> float:
    """Request cost in USD of moving one GiB of record payload in operations like these.

    Parameters
    ----------
    usage
        Calls measured over some operations.
    payload_bytes_per_operation
        Record bytes (keys, values, headers) one operation appends or returns.

    Returns
    -------
    float
        `cost_per_operation` times the operations one GiB takes.
    """
    return cost_per_operation(usage) * GIB / payload_bytes_per_operation


def api_gateway_requests(
    request_bytes: int, response_bytes: int = 0, *, count_response: bool = False
) -> int:
    """Metered HTTP API requests of one call: one per started 512 KiB (at least one).

    Parameters
    ----------
    request_bytes
        Size of the request body as the client sends it.
    response_bytes
        Size of the response body; counted only with ``count_response``.
    count_response
        Meter request and response bytes together (the pessimistic reading, see the
        module docstring) instead of the request alone (what AWS documents).

    Returns
    -------
    int
        ``ceil(bytes / 512 KiB)``, at least 1.
    """
    size = request_bytes + (response_bytes if count_response else 0)
    return max(1, math.ceil(size / API_GATEWAY_METERED_BYTES))


def lambda_request_cost(duration_seconds: float, memory_mb: int) -> float:
    """USD of one arm64 Lambda invocation: the request plus its billed duration.

    Parameters
    ----------
    duration_seconds
        Handler duration; billed rounded up to the next millisecond.
    memory_mb
        Configured memory; GB-seconds are ``memory_mb / 1024`` times the billed seconds.

    Returns
    -------
    float
        `LAMBDA_REQUEST` plus `LAMBDA_ARM_GB_SECOND` times the GB-seconds.
    """
    billed_seconds = math.ceil(duration_seconds * 1000) / 1000
    return LAMBDA_REQUEST + LAMBDA_ARM_GB_SECOND * memory_mb / _MIB_PER_GB * billed_seconds


@dataclass(frozen=True, slots=True)
class ApiCost:
    """USD per GiB of record payload moved through the HTTPS API, by service."""

    storage: float
    """S3 requests and DynamoDB request units of the engine calls."""
    gateway: float
    """API Gateway HTTP API requests, metered as AWS documents (request size only)."""
    gateway_if_replies_count: float
    """The same if reply bytes were metered too (the pessimistic reading)."""
    function: float
    """Lambda requests and arm64 duration."""

    @property
    def total(self) -> float:
        """Storage plus gateway (as documented) plus function."""
        return self.storage + self.gateway + self.function


def api_cost_per_gib(
    usage: Usage,
    payload_bytes: float,
    request_bytes: int,
    response_bytes: int,
    duration_seconds: float,
    memory_mb: int,
) -> ApiCost:
    """Request cost of one GiB of records moved in HTTPS API calls like the measured ones.

    Parameters
    ----------
    usage
        AWS calls (S3, DynamoDB) per API call.
    payload_bytes
        Record bytes (keys, values, headers) one API call appends or returns.
    request_bytes, response_bytes
        Body sizes of one API call as the client sends and receives them.
    duration_seconds
        Duration of one Lambda invocation.
    memory_mb
        Memory configured for the function.

    Returns
    -------
    ApiCost
        Each part's cost per call times the calls one GiB takes.
    """
    calls = GIB / payload_bytes
    return ApiCost(
        storage=cost_per_operation(usage) * calls,
        gateway=api_gateway_requests(request_bytes) * API_GATEWAY_REQUEST * calls,
        gateway_if_replies_count=(
            api_gateway_requests(request_bytes, response_bytes, count_response=True)
            * API_GATEWAY_REQUEST
            * calls
        ),
        function=lambda_request_cost(duration_seconds, memory_mb) * calls,
    )


def lambda_gb_seconds(duration_seconds: float, memory_mb: int) -> float:
    """GB-seconds of one invocation: duration rounded up to the millisecond, times GB.

    Parameters
    ----------
    duration_seconds
        Handler duration.
    memory_mb
        Configured memory.

    Returns
    -------
    float
        ``ceil(duration in ms) / 1000 * memory_mb / 1024``.
    """
    return math.ceil(duration_seconds * 1000) / 1000 * memory_mb / _MIB_PER_GB


@dataclass(frozen=True, slots=True)
class StreamShape:
    """What a managed stream bills for one month of a workload.

    Parameters
    ----------
    records_per_second
        Records written per second.
    record_bytes
        Bytes of one record (key plus value).
    partitions
        Partitions (MSK) of the topic; Kinesis on-demand bills per stream, not per shard.
    readers
        Consumers (groups) that each read every record once.
    retention_days
        How long records are kept.
    """

    records_per_second: float
    record_bytes: int
    partitions: int
    readers: int
    retention_days: float

    def gib_per_month(self, unit_bytes: int = 1) -> float:
        """GiB written in a month, each record rounded up to ``unit_bytes``."""
        size = math.ceil(self.record_bytes / unit_bytes) * unit_bytes
        return self.records_per_second * size * MONTH_S / GIB

    def stored_gib(self, beyond_days: float = 0.0) -> float:
        """GiB held at any time in steady state, counting only what is older than
        ``beyond_days``."""
        days = max(0.0, self.retention_days - beyond_days)
        return self.records_per_second * self.record_bytes * days * DAY_S / GIB


def kinesis_on_demand_month(shape: StreamShape) -> float:
    """USD a month of ``shape`` costs on one Kinesis Data Streams on-demand stream.

    Parameters
    ----------
    shape
        The workload.

    Returns
    -------
    float
        Stream-hours, data in (records rounded up to 1 KiB), data out per reader, and
        extended retention of what is older than 24 hours (up to 7 days).
    """
    written = shape.gib_per_month(KINESIS_RECORD_UNIT_BYTES)
    return (
        HOURS_PER_MONTH * KINESIS_STREAM_HOUR
        + written * KINESIS_GB_IN
        + written * shape.readers * KINESIS_GB_OUT
        + shape.stored_gib(beyond_days=1) * KINESIS_EXTENDED_RETENTION_GB_MONTH
    )


def msk_serverless_month(shape: StreamShape) -> float:
    """USD a month of ``shape`` costs on one MSK Serverless cluster.

    Parameters
    ----------
    shape
        The workload.

    Returns
    -------
    float
        Cluster-hours, partition-hours, data in, data out per reader, storage GB-month.
    """
    written = shape.gib_per_month()
    return (
        HOURS_PER_MONTH * MSK_CLUSTER_HOUR
        + HOURS_PER_MONTH * shape.partitions * MSK_PARTITION_HOUR
        + written * MSK_GB_IN
        + written * shape.readers * MSK_GB_OUT
        + shape.stored_gib() * MSK_STORAGE_GB_MONTH
    )


# Step Functions Express and the compactor's Lambda tasks ---------------------------------
EXPRESS_REQUEST: Final = 1.00 / 1_000_000
"""One Step Functions Express execution (request), us-east-1."""
EXPRESS_GB_SECOND: Final = 0.00001667
"""Express duration, first 1,000 GB-hours a month ($0.06 per GB-hour)."""
EXPRESS_BILLED_GB: Final = 0.0625
"""Memory an Express execution is billed for: 64 MB chunks, about 51 MB used (ADR 0013, 5.2)."""
EXPRESS_BILLED_INCREMENT_S: Final = 0.1
"""Express duration is billed per started 100 ms."""
LAMBDA_FULL_VCPU_MB: Final = 1769
"""Memory at which a Lambda function gets one full vCPU; below it, CPU time stretches."""


def express_execution_cost(duration_seconds: float) -> float:
    """USD of one Express execution: the request plus its billed duration at 64 MB.

    Parameters
    ----------
    duration_seconds
        The execution's duration; billed rounded up to the next 100 ms.

    Returns
    -------
    float
        `EXPRESS_REQUEST` plus `EXPRESS_GB_SECOND` times `EXPRESS_BILLED_GB` times the
        billed seconds.
    """
    increments = math.ceil(round(duration_seconds / EXPRESS_BILLED_INCREMENT_S, 9))
    billed = increments * EXPRESS_BILLED_INCREMENT_S
    return EXPRESS_REQUEST + EXPRESS_GB_SECOND * EXPRESS_BILLED_GB * billed


def lambda_duration(cpu_seconds: float, io_seconds: float, memory_mb: int) -> float:
    """Duration of a Lambda task whose CPU was measured on a full core.

    Parameters
    ----------
    cpu_seconds
        CPU the task used (one core).
    io_seconds
        Time it waits for S3 and DynamoDB.
    memory_mb
        Configured memory: below `LAMBDA_FULL_VCPU_MB` the function gets that fraction of
        a vCPU, so its CPU time stretches by ``1769 / memory_mb``; above it, a
        single-threaded task gets no faster.

    Returns
    -------
    float
        ``cpu_seconds * max(1, 1769 / memory_mb) + io_seconds``.
    """
    return cpu_seconds * max(1.0, LAMBDA_FULL_VCPU_MB / memory_mb) + io_seconds
