"""DynamoDB attribute values and error replies, shared by the DynamoDB adapters."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from lakelog.errors import LakelogError, ThrottledError, UnavailableError

__all__ = [
    "Item",
    "cancellation_codes",
    "cancellation_error",
    "condition_failed",
    "get_int",
    "num",
    "transaction_cancelled",
]

Item = dict[str, Any]
"""A DynamoDB item (or key) in the low-level client's attribute-value form."""

_THROTTLED_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded"})
_EXPECTED_REASONS = frozenset({"ConditionalCheckFailed", "TransactionConflict"})


def num(value: int) -> dict[str, str]:
    """The number attribute value of ``value``."""
    return {"N": str(value)}


def get_int(item: Item, name: str, default: int = 0) -> int:
    """The number attribute ``name`` of ``item`` as an int, or ``default`` when absent."""
    attr = item.get(name)
    return int(attr["N"]) if attr else default


def condition_failed(exc: ClientError) -> bool:
    """Whether a single-item write failed its condition."""
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def transaction_cancelled(exc: ClientError) -> bool:
    """Whether a ``TransactWriteItems`` was cancelled (nothing of it was applied)."""
    return exc.response.get("Error", {}).get("Code") == "TransactionCanceledException"


def cancellation_codes(exc: ClientError) -> list[str | None]:
    """The reason code of each item of a cancelled transaction, in request order.

    An item that did not cause the cancellation has None.
    """
    reasons: list[Any] = list(exc.response.get("CancellationReasons", []))
    return [None if reason.get("Code") in (None, "None") else reason["Code"] for reason in reasons]


def cancellation_error(codes: list[str | None], what: str) -> LakelogError | None:
    """The error to raise for a cancelled transaction that no caller can resolve.

    Throttled items give `ThrottledError`, any reason besides a failed condition or a
    conflict with another transaction `UnavailableError`; None when every reason is one
    of those two, which the caller handles.
    """
    present = {code for code in codes if code is not None}
    if present & _THROTTLED_REASONS:
        return ThrottledError(f"storage throttled the {what}")
    unexpected = present - _EXPECTED_REASONS
    if unexpected:
        return UnavailableError(f"storage cancelled the {what}: {sorted(unexpected)}")
    return None
