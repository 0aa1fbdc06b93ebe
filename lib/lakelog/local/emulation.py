"""Make moto's DynamoDB behave like DynamoDB where lakelog depends on it (ADR 0006).

Part of the dev server (``lakelog dev``) and of the tests of the AWS adapters; never
imported by a Lambda function.

Atomicity. DynamoDB applies a ``TransactWriteItems`` atomically and in isolation from
every other write. moto checks and applies the items one by one, and on a cancelled
transaction restores a copy of the whole table taken when the transaction began, undoing
whatever other threads wrote meanwhile. Under concurrent requests (threads in tests, the
threaded local server) that would lose or duplicate offsets for reasons real DynamoDB
does not have. Serializing every DynamoDB request to moto restores the property lakelog
relies on: each request, and each transaction as a whole, takes effect atomically.

Cost. moto deep-copies every table a transaction touches before applying it, which makes
each append cost time proportional to the whole ledger. With requests serialized, the
conditions can be checked first, exactly as moto checks them, and the transaction applied
only when all hold, so the copy is never needed and is skipped.

All or nothing. Without that copy moto's own rollback (after a validation error of a later
item) restores nothing, and moto checks item sizes only roughly (405,000 bytes, and not
when an update grows a nested map). So the items a transaction names are copied before it
is applied and put back exactly if moto raises anything, and after applying, each item's
size is measured by DynamoDB's rules (`lakelog.storage.attributes.item_size`): one larger
than 400 KB cancels the whole transaction with the reason ``ValidationError``, as DynamoDB
does, and the items are put back.
"""

from __future__ import annotations

import copy
import functools
import threading
from typing import Any

from lakelog.limits import DYNAMODB_ITEM_BYTES
from lakelog.storage.attributes import item_size

__all__ = ["serialize_moto_dynamodb"]

_LOCK = threading.RLock()
_PATCHED = "_lakelog_serialized"


def _failed_conditions(backend: Any, transact_items: list[dict[str, Any]]) -> list[Any] | None:
    """moto's cancellation reasons if any condition fails, else None (nothing applied).

    A transaction naming one item twice raises moto's validation error here, before
    anything is applied, as DynamoDB refuses it as a whole.
    """
    from moto.dynamodb.comparisons import get_filter_expression  # noqa: PLC0415
    from moto.dynamodb.exceptions import MultipleTransactionsException  # noqa: PLC0415

    reasons: list[Any] = []
    failed = False
    named: set[tuple[str, str]] = set()
    for item in transact_items:
        op_type, op = next(iter(item.items()))
        if op_type == "Put":
            table = backend.get_table(op["TableName"])
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op["Key"]
        identity = (str(op["TableName"]), str(dict(sorted(key.items()))))
        if identity in named:
            raise MultipleTransactionsException()
        named.add(identity)
        condition = op.get("ConditionExpression")
        if condition is None:
            reasons.append((None, None, None))
            continue
        current = backend.get_item(op["TableName"], key)
        expression = get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        )
        if expression.expr(current):
            reasons.append((None, None, None))
            continue
        failed = True
        old = None
        if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
            old = current.to_json()["Attributes"]
        reasons.append(("ConditionalCheckFailed", "The conditional request failed", old))
    return reasons if failed else None


_TOO_LARGE = ("ValidationError", "Item size to update has exceeded the maximum allowed size")


def _named_items(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
    """``(table, hash key, range key)`` of every item the transaction names, in order."""
    named = []
    for item in transact_items:
        op = next(iter(item.values()))
        table = backend.get_table(op["TableName"])
        key = op.get("Key")
        if key is None:
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        hash_key, range_key = backend.get_keys_value(table, key)
        named.append((table, hash_key, range_key))
    return named


def _restore(table: Any, hash_key: Any, range_key: Any, before: Any) -> None:
    """Put one item of ``table`` back as it was (absent when ``before`` is None)."""
    if range_key is None:
        if before is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = before
    elif before is None:
        table.items.get(hash_key, {}).pop(range_key, None)
    else:
        table.items[hash_key][range_key] = before


def _too_large(named: list[tuple[Any, Any, Any]]) -> list[Any] | None:
    """Cancellation reasons if an item passes DynamoDB's size limit, else None."""
    reasons: list[Any] = []
    for table, hash_key, range_key in named:
        item = table.get_item(hash_key, range_key)
        size = 0 if item is None else item_size(item.to_json()["Attributes"])
        reasons.append((*_TOO_LARGE, None) if size > DYNAMODB_ITEM_BYTES else (None, None, None))
    return reasons if any(code is not None for code, _, _ in reasons) else None


class _SharingCopy:
    """Stands in for the ``copy`` module inside moto's transaction: tables are not copied."""

    @staticmethod
    def deepcopy(value: Any) -> Any:
        from moto.dynamodb.models.table import Table  # noqa: PLC0415

        return value if isinstance(value, Table) else copy.deepcopy(value)


def serialize_moto_dynamodb() -> None:
    """Serialize moto's DynamoDB request handling (idempotent; a no-op once applied)."""
    from moto.dynamodb import models  # noqa: PLC0415 - moto is optional
    from moto.dynamodb.exceptions import TransactionCanceledException  # noqa: PLC0415
    from moto.dynamodb.responses import DynamoHandler  # noqa: PLC0415

    original_call = DynamoHandler.call_action
    if getattr(original_call, _PATCHED, False):
        return
    original_transact = models.DynamoDBBackend.transact_write_items

    @functools.wraps(original_call)
    def call_action(self: Any) -> Any:
        with _LOCK:
            return original_call(self)

    @functools.wraps(original_transact)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with _LOCK:
            reasons = _failed_conditions(self, transact_items)
            if reasons is not None:
                raise TransactionCanceledException(reasons)
            named = _named_items(self, transact_items)
            before = [copy.deepcopy(table.get_item(h, r)) for table, h, r in named]
            setattr(models, "copy", _SharingCopy)  # noqa: B010 - module attribute swap
            try:
                original_transact(self, transact_items)
                too_large = _too_large(named)
                if too_large is not None:
                    raise TransactionCanceledException(too_large)
            except BaseException:
                for (table, h, r), item in zip(named, before, strict=True):
                    _restore(table, h, r, item)
                raise
            finally:
                setattr(models, "copy", copy)  # noqa: B010

    setattr(call_action, _PATCHED, True)
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
