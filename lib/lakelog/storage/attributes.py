"""DynamoDB attribute values and error replies, shared by the DynamoDB adapters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from lakelog.errors import CorruptLedgerError, LakelogError, ThrottledError, UnavailableError
from lakelog.limits import DYNAMODB_ITEM_BYTES
from lakelog.log.records import (
    LEDGER_FORMAT,
    BatchRef,
    ChainItem,
    ChainMeta,
    Entry,
    PartitionMark,
    ProducerRequest,
    ProducerStamp,
    TopicProducerState,
)
from lakelog.storage.keys import HEAD_SK, producer_state_pk
from lakelog.storage.resources import TTL_ATTRIBUTE

__all__ = [
    "Item",
    "cancellation_codes",
    "cancellation_error",
    "chain_item_from_item",
    "chain_item_to_item",
    "check_format",
    "check_item_size",
    "condition_failed",
    "entry_from_item",
    "entry_to_item",
    "get_int",
    "item_size",
    "item_too_large",
    "meta_from_item",
    "meta_to_item",
    "num",
    "pack_varints",
    "producer_attributes",
    "producer_from_item",
    "producer_item",
    "too_large_refusal",
    "transaction_cancelled",
    "ttl_seconds",
    "unpack_varints",
    "unzigzag",
    "zigzag",
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


def check_item_size(item: Item, what: str) -> None:
    """Refuse (`item_too_large`) to write ``item`` when DynamoDB would: past 400 KB."""
    if item_size(item) > DYNAMODB_ITEM_BYTES:
        raise item_too_large(what)


def too_large_refusal(exc: ClientError) -> bool:
    """Whether DynamoDB refused a request because an item would pass its size limit."""
    error = exc.response.get("Error", {})
    message = str(error.get("Message", ""))
    if error.get("Code") == "ValidationException":
        return "size" in message.lower() and "exceeded" in message.lower()
    return transaction_cancelled(exc) and "ValidationError" in cancellation_codes(exc)


# Ledger v2 items (ADR 0012, 1.1): packed binary attributes --------------------------------

_SEGMENT_ID_BYTES = 24
_PRODUCER_ID_BYTES = 8
_DIGEST_BYTES = 8
_KINDS = frozenset({"append", "genesis", "seal"})


def pack_varints(values: Iterable[int]) -> bytes:
    """``values`` as unsigned LEB128 varints, one after another.

    Raises ValueError on a negative value (`pack_zigzag` takes signed ones).
    """
    out = bytearray()
    for value in values:
        if value < 0:
            raise ValueError(f"a varint cannot hold {value}")
        rest = value
        while True:
            byte = rest & 0x7F
            rest >>= 7
            if rest:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break
    return bytes(out)


def zigzag(value: int) -> int:
    """The unsigned zigzag form of a signed int: 0, -1, 1, -2 … map to 0, 1, 2, 3 …"""
    return value * 2 if value >= 0 else -value * 2 - 1


def unzigzag(value: int) -> int:
    """The signed int whose zigzag form is ``value``."""
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


class _Reader:
    """Reads varints and fixed fields from a packed attribute, in order."""

    def __init__(self, data: bytes, key: str, name: str) -> None:
        self._data = data
        self._at = 0
        self._key = key
        self._name = name

    @property
    def done(self) -> bool:
        return self._at >= len(self._data)

    def corrupt(self, reason: str) -> CorruptLedgerError:
        return CorruptLedgerError(self._key, f"attribute {self._name}: {reason}")

    def varint(self) -> int:
        value = shift = 0
        while True:
            if self._at >= len(self._data):
                raise self.corrupt("truncated varint")
            byte = self._data[self._at]
            self._at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def fixed(self, size: int) -> bytes:
        if self._at + size > len(self._data):
            raise self.corrupt(f"truncated {size}-byte field")
        chunk = self._data[self._at : self._at + size]
        self._at += size
        return chunk


def unpack_varints(data: bytes, key: str = "", name: str = "") -> tuple[int, ...]:
    """The varints `pack_varints` packed; `CorruptLedgerError` (naming ``key``) if truncated."""
    reader = _Reader(data, key, name)
    values: list[int] = []
    while not reader.done:
        values.append(reader.varint())
    return tuple(values)


def _fixed_bytes(value: bytes, size: int, what: str) -> bytes:
    if len(value) != size:
        raise ValueError(f"{what} must be {size} bytes, not {len(value)}")
    return value


def _binary(item: Item, name: str) -> bytes:
    """A binary attribute's bytes (empty when absent)."""
    attr = item.get(name)
    return bytes(attr["B"]) if attr else b""


def _item_key(item: Item) -> str:
    return f"{item['pk']['S']}/{item['sk']['N']}"


def check_format(item: Item) -> None:
    """Raise `CorruptLedgerError` unless ``item`` carries ``v`` = `LEDGER_FORMAT`."""
    version = get_int(item, "v", -1)
    if version != LEDGER_FORMAT:
        raise CorruptLedgerError(
            _item_key(item), f"format version {version}, this version reads {LEDGER_FORMAT}"
        )


def chain_item_to_item(pk: str, item: ChainItem) -> Item:
    """The ledger item of chain item ``item`` (``g z f t m n s h b p k``; ADR 0012, 1.1).

    Empty ``h`` and ``b`` and absent ``g``, ``s``, ``p`` are left out; ``k`` is written for a
    seal (and a genesis anywhere but seq 0), an append has none.
    """
    attrs: Item = {
        "pk": {"S": pk},
        "sk": num(item.seq),
        "v": num(item.version),
        "t": num(item.append_time_ms),
        "m": num(item.max_timestamp),
        "n": num(item.partitions),
    }
    if item.segment_id is not None:
        attrs["g"] = {"B": _fixed_bytes(item.segment_id, _SEGMENT_ID_BYTES, "a segment id")}
        attrs["z"] = num(item.segment_size)
        attrs["f"] = num(item.footer_offset)
    if item.sticky is not None:
        attrs["s"] = num(item.sticky)
    snapshot = pack_varints(
        v for mark in item.snapshot for v in (mark.high_watermark, mark.cumulative_bytes)
    )
    if snapshot:
        attrs["h"] = {"B": snapshot}
    batches = b"".join(
        pack_varints(
            (
                b.partition,
                b.record_count,
                b.byte_length,
                b.record_bytes,
                zigzag(b.max_timestamp - item.append_time_ms),
            )
        )
        for b in item.batches
    )
    if batches:
        attrs["b"] = {"B": batches}
    if item.producer is not None:
        attrs["p"] = {"B": _pack_stamp(item.producer)}
    if item.kind != "append" and not (item.kind == "genesis" and item.seq == 0):
        attrs["k"] = {"S": item.kind}
    return attrs


def _pack_stamp(stamp: ProducerStamp) -> bytes:
    return (
        stamp.producer_id.to_bytes(_PRODUCER_ID_BYTES, "big")
        + pack_varints((stamp.epoch, stamp.first_sequence, stamp.record_count))
        + _fixed_bytes(stamp.digest, _DIGEST_BYTES, "a digest")
    )


def chain_item_from_item(attrs: Item) -> ChainItem:
    """The chain item a ledger item holds; `CorruptLedgerError` if it is not format 2."""
    check_format(attrs)
    key = _item_key(attrs)
    seq = int(attrs["sk"]["N"])
    t = get_int(attrs, "t")
    marks = unpack_varints(_binary(attrs, "h"), key, "h")
    if len(marks) % 2:
        raise CorruptLedgerError(key, "attribute h: odd number of varints")
    fields = unpack_varints(_binary(attrs, "b"), key, "b")
    if len(fields) % 5:
        raise CorruptLedgerError(key, "attribute b: incomplete batch")
    batches = tuple(
        BatchRef(
            partition=fields[i],
            record_count=fields[i + 1],
            byte_length=fields[i + 2],
            record_bytes=fields[i + 3],
            max_timestamp=t + unzigzag(fields[i + 4]),
        )
        for i in range(0, len(fields), 5)
    )
    stamp = None
    if "p" in attrs:
        reader = _Reader(_binary(attrs, "p"), key, "p")
        stamp = ProducerStamp(
            producer_id=int.from_bytes(reader.fixed(_PRODUCER_ID_BYTES), "big"),
            epoch=reader.varint(),
            first_sequence=reader.varint(),
            record_count=reader.varint(),
            digest=reader.fixed(_DIGEST_BYTES),
        )
        if not reader.done:
            raise reader.corrupt("bytes after the producer stamp")
    segment_id = _binary(attrs, "g") if "g" in attrs else None
    kind: Any = (
        attrs["k"]["S"]
        if "k" in attrs
        else "genesis"
        if seq == 0 and segment_id is None
        else "append"
    )
    if kind not in _KINDS:
        raise CorruptLedgerError(key, f"attribute k: unknown kind {kind!r}")
    return ChainItem(
        seq=seq,
        append_time_ms=t,
        max_timestamp=get_int(attrs, "m", -1),
        partitions=get_int(attrs, "n"),
        snapshot=tuple(PartitionMark(marks[i], marks[i + 1]) for i in range(0, len(marks), 2)),
        batches=batches,
        kind=kind,
        segment_id=segment_id,
        segment_size=get_int(attrs, "z"),
        footer_offset=get_int(attrs, "f"),
        sticky=get_int(attrs, "s") if "s" in attrs else None,
        producer=stamp,
        version=LEDGER_FORMAT,
    )


def meta_to_item(pk: str, meta: ChainMeta, version: int | None = None) -> Item:
    """The meta item of ``meta`` (``ls lb l1 ce cs csm sealed ver v``), at ``version`` if
    given."""
    attrs: Item = {
        "pk": {"S": pk},
        "sk": num(HEAD_SK),
        "v": num(meta.format_version),
        "cs": num(meta.chain_start),
        "ver": num(meta.version if version is None else version),
    }
    for name, values in (
        ("ls", meta.log_start),
        ("lb", meta.bytes_below),
        ("l1", meta.l1_end),
        ("ce", meta.compacted_end),
    ):
        if values:
            attrs[name] = {"B": pack_varints(values)}
    if meta.sealed_ms is not None:
        attrs["sealed"] = num(meta.sealed_ms)
    if meta.chain_start_ms is not None:
        attrs["csm"] = num(meta.chain_start_ms)
    return attrs


def meta_from_item(attrs: Item) -> ChainMeta:
    """The meta a meta item holds; `CorruptLedgerError` if it is not format 2."""
    check_format(attrs)
    key = _item_key(attrs)
    return ChainMeta(
        log_start=unpack_varints(_binary(attrs, "ls"), key, "ls"),
        bytes_below=unpack_varints(_binary(attrs, "lb"), key, "lb"),
        l1_end=unpack_varints(_binary(attrs, "l1"), key, "l1"),
        chain_start=get_int(attrs, "cs"),
        sealed_ms=get_int(attrs, "sealed") if "sealed" in attrs else None,
        version=get_int(attrs, "ver"),
        chain_start_ms=get_int(attrs, "csm") if "csm" in attrs else None,
        compacted_end=unpack_varints(_binary(attrs, "ce"), key, "ce"),
    )


_ENTRY_NUMBERS = (
    "base_offset",
    "row_group",
    "byte_offset",
    "byte_length",
    "segment_size",
    "footer_offset",
    "min_timestamp",
    "max_timestamp",
    "max_timestamp_cum",
    "size_bytes",
    "cumulative_bytes",
    "row_count",
)
_L1_LEVEL = 1


def entry_to_item(pk: str, entry: Entry) -> Item:
    """The ledger item of an L1 entry (``sk = last_offset``): the v1 entry attributes
    (``base_offset segment_key row_group byte_offset byte_length segment_size footer_offset
    min_timestamp max_timestamp max_timestamp_cum size_bytes``, and ``cumulative_bytes
    row_count``) plus ``v`` = 2, ``lvl`` = 1."""
    item: Item = {
        "pk": {"S": pk},
        "sk": num(entry.last_offset),
        "v": num(LEDGER_FORMAT),
        "lvl": num(_L1_LEVEL),
        "segment_key": {"S": entry.segment_key},
    }
    item.update({name: num(getattr(entry, name)) for name in _ENTRY_NUMBERS})
    return item


def entry_from_item(item: Item) -> Entry:
    """The L1 entry an item holds; `CorruptLedgerError` if it is not format 2, level 1."""
    check_format(item)
    if get_int(item, "lvl", -1) != _L1_LEVEL or "segment_key" not in item:
        raise CorruptLedgerError(_item_key(item), "not an L1 entry")
    return Entry(
        last_offset=int(item["sk"]["N"]),
        segment_key=item["segment_key"]["S"],
        **{name: get_int(item, name) for name in _ENTRY_NUMBERS},
    )


def ttl_seconds(ms: int) -> int:
    """Epoch seconds of a TTL attribute for the instant ``ms``, rounded up.

    Stored expiry times are whole seconds: a state read back expires at
    ``ttl_seconds(expires_ms) * 1000``, and comparing ``expires_at < ttl_seconds(now_ms)``
    is exactly ``expires_at * 1000 < now_ms``, so second-granular conditions agree with
    millisecond checks on what was read.
    """
    return -(-ms // 1000)


def producer_attributes(state: TopicProducerState) -> Item:
    """The producer item's attributes besides its key (``v e l r expires_at``)."""
    requests = b"".join(
        pack_varints((r.first_sequence, r.record_count, r.seq))
        + _fixed_bytes(r.digest, _DIGEST_BYTES, "a digest")
        for r in state.requests
    )
    attrs: Item = {
        "v": num(LEDGER_FORMAT),
        "e": num(state.epoch),
        "l": num(state.last_sequence),
        TTL_ATTRIBUTE: num(ttl_seconds(state.expires_ms)),
    }
    if requests:
        attrs["r"] = {"B": requests}
    return attrs


def producer_item(topic_id: str, state: TopicProducerState) -> Item:
    """The whole producer item of ``state`` in topic ``topic_id``, key included."""
    key = {"pk": {"S": producer_state_pk(topic_id, state.producer_id)}, "sk": num(0)}
    return {**key, **producer_attributes(state)}


def producer_from_item(attrs: Item) -> TopicProducerState:
    """The producer state a producer item holds; `CorruptLedgerError` if not format 2."""
    check_format(attrs)
    pk = attrs["pk"]["S"]
    reader = _Reader(_binary(attrs, "r"), _item_key(attrs), "r")
    requests: list[ProducerRequest] = []
    while not reader.done:
        requests.append(
            ProducerRequest(
                first_sequence=reader.varint(),
                record_count=reader.varint(),
                seq=reader.varint(),
                digest=reader.fixed(_DIGEST_BYTES),
            )
        )
    return TopicProducerState(
        producer_id=int(pk.rsplit("#", 1)[1]),
        epoch=get_int(attrs, "e"),
        last_sequence=get_int(attrs, "l"),
        requests=tuple(requests),
        expires_ms=get_int(attrs, TTL_ATTRIBUTE) * 1000,
    )
