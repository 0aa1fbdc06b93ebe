"""us-east-1 list prices and the request cost of measured usage.

Prices (USD, us-east-1, S3 Standard and DynamoDB on-demand, Standard table class):

- S3 PUT, COPY, POST and LIST requests: $0.005 per 1,000;
- S3 GET and all other requests: $0.0004 per 1,000 (DELETE is free; transfer inside the
  region is free);
- DynamoDB write request unit: $0.625 per million; read request unit: $0.125 per million.

Storage (GB-month) is left out: it depends on retention, not on the request path.
"""

from __future__ import annotations

from typing import Final

from benchmarks.recorder import Usage

__all__ = [
    "DYNAMODB_READ_UNIT",
    "DYNAMODB_WRITE_UNIT",
    "S3_GET_REQUEST",
    "S3_PUT_REQUEST",
    "cost_per_gib",
    "cost_per_operation",
]

S3_PUT_REQUEST: Final = 0.005 / 1_000
S3_GET_REQUEST: Final = 0.0004 / 1_000
DYNAMODB_WRITE_UNIT: Final = 0.625 / 1_000_000
DYNAMODB_READ_UNIT: Final = 0.125 / 1_000_000

_GIB = 1024**3


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
    return cost_per_operation(usage) * _GIB / payload_bytes_per_operation
