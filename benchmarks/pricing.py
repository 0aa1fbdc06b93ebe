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

Data transfer out of API Gateway ($0.09 per GB to the internet in us-east-1) and storage
(GB-month) are left out: the first depends on where clients are, the second on retention,
not on the request path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from benchmarks.recorder import Usage

__all__ = [
    "API_GATEWAY_METERED_BYTES",
    "API_GATEWAY_REQUEST",
    "DYNAMODB_READ_UNIT",
    "DYNAMODB_WRITE_UNIT",
    "GIB",
    "LAMBDA_ARM_GB_SECOND",
    "LAMBDA_REQUEST",
    "S3_GET_REQUEST",
    "S3_PUT_REQUEST",
    "ApiCost",
    "api_cost_per_gib",
    "api_gateway_requests",
    "cost_per_gib",
    "cost_per_operation",
    "lambda_request_cost",
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
