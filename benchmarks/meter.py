"""DynamoDB item sizes and capacity units, computed from the items a request carries.

moto does not report ``ConsumedCapacity`` for every operation (not at all for
transactions), so the benchmark computes read and write units itself, from the
low-level attribute values (``{"S": ...}``, ``{"N": ...}``) of requests and responses,
with DynamoDB's documented rules.

Item size (`item_size`), from "DynamoDB item sizes and formats"
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
the sum over attributes of the UTF-8 length of the attribute name plus the size of the
value, where

======  ===================================================================================
type    size of the value
======  ===================================================================================
S       UTF-8 length of the string
N       about one byte per two significant digits, plus one byte: ``(digits + 1) // 2 + 1``
        (leading and trailing zeroes are trimmed; the sign, point and exponent are not digits)
B       raw length of the bytes (not of their base64 form)
BOOL    1 byte; NULL: 1 byte
M, L    3 bytes + the size of each element + 1 byte per element (an element of a map
        counts its name like a top-level attribute does)
SS      sum of the UTF-8 lengths; NS: sum of the number sizes; BS: sum of the lengths
        (the documentation gives no set overhead; none is added)
======  ===================================================================================

Capacity units, from "DynamoDB read and write operations"
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html)
and "Amazon DynamoDB Transactions: capacity management"
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html):

- write: ``ceil(size / 1 KB)`` units per item, at least 1; the size is the larger of the
  item before and after a ``PutItem`` or ``UpdateItem``, and the deleted item's size for a
  ``DeleteItem``; every item of a ``TransactWriteItems`` costs twice that;
- strongly consistent read of one item (``GetItem``, each item of a ``BatchGetItem``):
  ``ceil(size / 4 KB)`` units, 1 unit when the item does not exist; an eventually consistent
  read costs half; every item of a ``TransactGetItems`` costs twice;
- ``Query`` and ``Scan``: ``ceil(sum of the sizes of every item read / 4 KB)``, at least 1
  unit, halved when eventually consistent. The items *read* count, not the attributes a
  ``ProjectionExpression`` returns: a projected query is under-counted by `query_read_units`
  when given projected items (the benchmark's fetch path does not project).

On-demand tables are billed in write and read *request* units (WRU, RRU) that follow the
same rules as write and read capacity units.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "READ_UNIT_BYTES",
    "WRITE_UNIT_BYTES",
    "item_size",
    "number_size",
    "query_read_units",
    "read_units",
    "value_size",
    "write_units",
]

WRITE_UNIT_BYTES = 1024
"""Item bytes one write unit covers."""

READ_UNIT_BYTES = 4096
"""Item bytes one strongly consistent read unit covers."""

_CONTAINER_OVERHEAD = 3
_ELEMENT_OVERHEAD = 1

AttributeValue = Mapping[str, Any]
Item = Mapping[str, AttributeValue]


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8"))


def _raw_length(data: bytes | bytearray | memoryview | str) -> int:
    if isinstance(data, str):  # a base64 string, as a JSON body would carry it
        return len(data) * 3 // 4 - data.count("=")
    return len(data)


def number_size(text: str) -> int:
    """Bytes DynamoDB counts for the number value ``text`` (an ``N`` attribute).

    Parameters
    ----------
    text
        The number as DynamoDB's wire format carries it, e.g. ``"-12.50"`` or ``"1E+3"``.

    Returns
    -------
    int
        ``(significant digits + 1) // 2 + 1``: one byte per two significant digits, plus one.
    """
    mantissa = text.strip().lstrip("+-").lower().split("e", 1)[0]
    digits = mantissa.replace(".", "").lstrip("0").rstrip("0")
    return (len(digits) + 1) // 2 + 1


def value_size(value: AttributeValue) -> int:
    """Bytes DynamoDB counts for one attribute value, without the attribute's name.

    Parameters
    ----------
    value
        A low-level attribute value such as ``{"S": "abc"}`` or ``{"M": {...}}``.

    Returns
    -------
    int
        The value's size by the rules in this module's docstring.

    Raises
    ------
    ValueError
        ``value`` is not a single-type attribute value.
    """
    if len(value) != 1:
        raise ValueError(f"not an attribute value: {value!r}")
    ((kind, data),) = value.items()
    if kind == "S":
        return _utf8_length(data)
    if kind == "N":
        return number_size(data)
    if kind == "B":
        return _raw_length(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(_utf8_length(element) for element in data)
    if kind == "NS":
        return sum(number_size(element) for element in data)
    if kind == "BS":
        return sum(_raw_length(element) for element in data)
    if kind == "L":
        return _CONTAINER_OVERHEAD + sum(_ELEMENT_OVERHEAD + value_size(v) for v in data)
    if kind == "M":
        return _CONTAINER_OVERHEAD + sum(
            _ELEMENT_OVERHEAD + _utf8_length(name) + value_size(v) for name, v in data.items()
        )
    raise ValueError(f"unknown attribute type {kind!r}")


def item_size(item: Item | None) -> int:
    """Bytes DynamoDB counts for a whole item: names plus values of every attribute.

    Parameters
    ----------
    item
        A low-level item (attribute name -> attribute value); None or empty for no item.

    Returns
    -------
    int
        The item size; 0 when there is no item.
    """
    if not item:
        return 0
    return sum(_utf8_length(name) + value_size(value) for name, value in item.items())


def write_units(size: int, *, transactional: bool = False) -> int:
    """Write units of writing (or deleting) one item of ``size`` bytes.

    Parameters
    ----------
    size
        The larger of the item's sizes before and after the write.
    transactional
        True inside ``TransactWriteItems``, which costs twice.

    Returns
    -------
    int
        ``ceil(size / 1024)``, at least 1, doubled when transactional.
    """
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return 2 * units if transactional else units


def read_units(size: int, *, consistent: bool = True, transactional: bool = False) -> float:
    """Read units of reading one item of ``size`` bytes (``GetItem``, ``BatchGetItem``).

    Parameters
    ----------
    size
        Size of the item; 0 when it does not exist (still 1 unit).
    consistent
        Strongly consistent read; an eventually consistent one costs half.
    transactional
        Inside ``TransactGetItems``, which costs twice a strongly consistent read.

    Returns
    -------
    float
        ``ceil(size / 4096)`` (at least 1), halved or doubled as above.
    """
    units = float(max(1, math.ceil(size / READ_UNIT_BYTES)))
    if transactional:
        return 2 * units
    return units if consistent else units / 2


def query_read_units(sizes: Iterable[int], *, consistent: bool = True) -> float:
    """Read units of one ``Query`` or ``Scan`` page that read items of ``sizes`` bytes.

    Parameters
    ----------
    sizes
        Size of every item the page read.
    consistent
        ``ConsistentRead``; an eventually consistent page costs half.

    Returns
    -------
    float
        ``ceil(sum(sizes) / 4096)`` (at least 1), halved when eventually consistent.
    """
    units = float(max(1, math.ceil(sum(sizes) / READ_UNIT_BYTES)))
    return units if consistent else units / 2
