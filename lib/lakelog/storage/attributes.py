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
    "item_size",
    "item_too_large",
    "num",
    "too_large_refusal",
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


def _value_size(value: Item) -> int:
    """Bytes DynamoDB counts for one attribute value (its documented sizing rules)."""
    kind, data = next(iter(value.items()))
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        digits = data.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(data)
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: member}) for member in data)
    if kind == "L":
        return 3 + sum(_value_size(element) + 1 for element in data)
    if kind == "M":
        return 3 + sum(len(name.encode()) + _value_size(v) + 1 for name, v in data.items())
    return 1  # BOOL, NULL


def item_size(item: Item) -> int:
    """The size DynamoDB gives ``item``: UTF-8 attribute names plus their values.

    Strings and binaries count their bytes, numbers one byte per two significant digits
    plus one, lists and maps 3 bytes plus one per element besides their elements (and the
    elements' names). Compared with `lakelog.limits.DYNAMODB_ITEM_BYTES`.
    """
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def item_too_large(what: str) -> LakelogError:
    """The error of a write refused because an item would pass DynamoDB's 400 KB limit.

    Nothing was written. Not `UnavailableError`: sending the same write again is refused
    again, so a client must not retry it; the HTTP API answers 500 ``internal``.
    """
    return LakelogError(f"storage refused the {what}: an item would exceed 400 KB")


def too_large_refusal(exc: ClientError) -> bool:
    """Whether DynamoDB refused a request because an item would pass its size limit."""
    error = exc.response.get("Error", {})
    message = str(error.get("Message", ""))
    if error.get("Code") == "ValidationException":
        return "size" in message.lower() and "exceeded" in message.lower()
    return transaction_cancelled(exc) and "ValidationError" in cancellation_codes(exc)
