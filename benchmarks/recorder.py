"""Count the AWS calls an engine makes, through botocore event hooks on its clients.

`CallRecorder.attach` registers two handlers on a boto3 client:

``before-parameter-build.{service}.{operation}``
    sees the request parameters as the caller gave them (low-level DynamoDB attribute
    values, S3 ``Body`` bytes); for DynamoDB writes it also reads, with a separate
    *inspector* client that is not hooked, the size of each item the write will touch
    (the larger of the sizes before and after a write is what DynamoDB bills).
``after-call.{service}.{operation}``
    sees the parsed response and turns the call into one `Call`: service, operation,
    HTTP status, read and write units (`benchmarks.meter`), bytes sent and received, and
    the S3 request class that prices it.

Both handlers share botocore's per-request ``context`` dict. The inspector's reads are
not recorded and cost nothing in the results; they do cost CPU, so CPU is measured with
the recorder `CallRecorder.paused`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from benchmarks.meter import item_size, query_read_units, read_units, write_units

if TYPE_CHECKING:
    from botocore.model import OperationModel
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["Call", "CallRecorder", "S3RequestClass", "Usage"]

S3RequestClass = Literal["put", "get", "free", ""]
"""How S3 prices a request: PUT/COPY/POST/LIST, GET and all other, or free (DELETE)."""

_CONTEXT_KEY = "lakelog.bench"
_S3_FREE_PREFIXES = ("Delete", "AbortMultipartUpload")
_S3_LIST_PREFIX = "List"
_HTTP_ERROR = 400

Key = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Call:
    """One recorded AWS call."""

    service: str
    operation: str
    status: int
    read_units: float = 0.0
    write_units: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    s3_class: S3RequestClass = ""
    params: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The request parameters, with an S3 ``Body`` replaced by its length."""
    thread: int = field(default=0, repr=False, compare=False)
    """The thread that made it (`threading.get_ident`): calls of one thread are made one
    after another, those of different threads may overlap."""


@dataclass(frozen=True, slots=True)
class _Write:
    """One item a DynamoDB write request touches."""

    table: str
    key: Key
    kind: Literal["put", "update", "delete", "check"]
    item: Mapping[str, Any] | None = None


class CallRecorder:
    """Records every call of the clients it is attached to.

    Parameters
    ----------
    inspector
        An un-hooked DynamoDB client on the same endpoint, used to read item sizes
        around writes and table key schemas.
    """

    def __init__(self, inspector: DynamoDBClient) -> None:
        self._inspector = inspector
        self._calls: list[Call] = []
        self._key_schemas: dict[str, tuple[str, ...]] = {}
        self._paused = False

    def attach(self, client: Any) -> None:
        """Record the calls of ``client`` (a boto3 S3 or DynamoDB client) from now on.

        Parameters
        ----------
        client
            The client; its event system gets the two handlers.
        """
        client.meta.events.register("before-parameter-build.*.*", self._before)
        client.meta.events.register("after-call.*.*", self._after)

    @contextmanager
    def capture(self) -> Iterator[list[Call]]:
        """Collect the calls made inside the ``with`` block into the yielded list.

        Yields
        ------
        list of Call
            Empty inside the block; filled when the block exits.
        """
        captured: list[Call] = []
        start = len(self._calls)
        try:
            yield captured
        finally:
            captured.extend(self._calls[start:])

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Record nothing (and read no item sizes) inside the ``with`` block."""
        self._paused, previous = True, self._paused
        try:
            yield
        finally:
            self._paused = previous

    # Handlers ---------------------------------------------------------------------------
    def _before(
        self,
        params: dict[str, Any],
        model: OperationModel,
        context: dict[str, Any],
        **_: Any,
    ) -> None:
        if self._paused:
            return
        service = model.service_model.service_name
        writes = self._writes(model.name, params) if service == "dynamodb" else []
        before = [self._current_size(write) for write in writes]
        kept = dict(params)
        body = kept.get("Body")
        body_bytes = len(body) if isinstance(body, bytes | bytearray) else 0
        if body is not None:
            kept["Body"] = f"<{body_bytes} bytes>"
        context[_CONTEXT_KEY] = (kept, body_bytes, writes, before)

    def _after(
        self,
        http_response: Any,
        parsed: dict[str, Any],
        model: OperationModel,
        context: dict[str, Any],
        **_: Any,
    ) -> None:
        pending = context.pop(_CONTEXT_KEY, None)
        if pending is None:
            return
        params, body_bytes, writes, before = pending
        status = int(getattr(http_response, "status_code", 0))
        service = model.service_model.service_name
        if service == "s3":
            call = _s3_call(model, params, body_bytes, parsed, status)
        else:
            call = Call(
                service=service,
                operation=model.name,
                status=status,
                read_units=_read_units(model.name, params, parsed, status),
                write_units=self._write_units(model.name, writes, before, status),
                params=params,
            )
        self._calls.append(replace(call, thread=threading.get_ident()))

    # DynamoDB writes ----------------------------------------------------------------------
    def _writes(self, operation: str, params: Mapping[str, Any]) -> list[_Write]:
        if operation == "PutItem":
            table = params["TableName"]
            return [_Write(table, self._key_of(table, params["Item"]), "put", params["Item"])]
        if operation in ("UpdateItem", "DeleteItem"):
            kind: Literal["update", "delete"] = "update" if operation == "UpdateItem" else "delete"
            return [_Write(params["TableName"], params["Key"], kind)]
        if operation == "BatchWriteItem":
            return [
                self._batch_write(table, request)
                for table, requests in params["RequestItems"].items()
                for request in requests
            ]
        if operation == "TransactWriteItems":
            return [self._transact_write(entry) for entry in params["TransactItems"]]
        return []

    def _batch_write(self, table: str, request: Mapping[str, Any]) -> _Write:
        if "PutRequest" in request:
            item = request["PutRequest"]["Item"]
            return _Write(table, self._key_of(table, item), "put", item)
        return _Write(table, request["DeleteRequest"]["Key"], "delete")

    def _transact_write(self, entry: Mapping[str, Any]) -> _Write:
        ((action, body),) = entry.items()
        table = body["TableName"]
        if action == "Put":
            return _Write(table, self._key_of(table, body["Item"]), "put", body["Item"])
        kinds: dict[str, Literal["update", "delete", "check"]] = {
            "Update": "update",
            "Delete": "delete",
            "ConditionCheck": "check",
        }
        return _Write(table, body["Key"], kinds[action])

    def _key_of(self, table: str, item: Mapping[str, Any]) -> Key:
        names = self._key_schemas.get(table)
        if names is None:
            schema = self._inspector.describe_table(TableName=table)["Table"]["KeySchema"]
            names = tuple(element["AttributeName"] for element in schema)
            self._key_schemas[table] = names
        return {name: item[name] for name in names}

    def _current_size(self, write: _Write) -> int:
        response = self._inspector.get_item(
            TableName=write.table, Key=write.key, ConsistentRead=True
        )
        return item_size(response.get("Item"))

    def _write_units(
        self, operation: str, writes: Sequence[_Write], before: Sequence[int], status: int
    ) -> float:
        """Units of a write request: a failed one is charged on the items as they were."""
        transactional = operation == "TransactWriteItems"
        units = 0.0
        for write, old_size in zip(writes, before, strict=True):
            new_size = old_size
            if status < _HTTP_ERROR:
                if write.kind == "put":
                    new_size = item_size(write.item)
                elif write.kind == "update":
                    new_size = self._current_size(write)
            units += write_units(max(old_size, new_size), transactional=transactional)
        return units


def _read_units(
    operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any], status: int
) -> float:
    if status >= _HTTP_ERROR:
        return 0.0
    consistent = bool(params.get("ConsistentRead", False))
    if operation == "GetItem":
        return read_units(item_size(parsed.get("Item")), consistent=consistent)
    if operation in ("Query", "Scan"):
        sizes = [item_size(item) for item in parsed.get("Items", [])]
        return query_read_units(sizes, consistent=consistent)
    if operation == "BatchGetItem":
        return _batch_get_units(params, parsed)
    if operation == "TransactGetItems":
        return sum(
            read_units(item_size(response.get("Item")), transactional=True)
            for response in parsed.get("Responses", [])
        )
    return 0.0


def _batch_get_units(params: Mapping[str, Any], parsed: Mapping[str, Any]) -> float:
    """Each key of a ``BatchGetItem`` is one ``GetItem``: a missing item still costs 1."""
    units = 0.0
    for table, request in params["RequestItems"].items():
        consistent = bool(request.get("ConsistentRead", False))
        returned = parsed.get("Responses", {}).get(table, [])
        unprocessed = parsed.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        missing = len(request["Keys"]) - len(returned) - len(unprocessed)
        units += sum(read_units(item_size(item), consistent=consistent) for item in returned)
        units += missing * read_units(0, consistent=consistent)
    return units


def _s3_class(model: OperationModel) -> S3RequestClass:
    """S3 request pricing: PUT, COPY, POST and LIST; GET and all other; DELETE is free."""
    if model.name.startswith(_S3_FREE_PREFIXES):
        return "free"
    if model.name.startswith(_S3_LIST_PREFIX) or model.http.get("method") in ("PUT", "POST"):
        return "put"
    return "get"


def _s3_call(
    model: OperationModel,
    params: Mapping[str, Any],
    sent: int,
    parsed: Mapping[str, Any],
    status: int,
) -> Call:
    received = int(parsed.get("ContentLength", 0)) if model.name == "GetObject" else 0
    return Call(
        service="s3",
        operation=model.name,
        status=status,
        bytes_sent=sent,
        bytes_received=received,
        s3_class=_s3_class(model),
        params=params,
    )


@dataclass(frozen=True, slots=True)
class Usage:
    """The calls of ``operations`` engine operations (appends or fetches), per operation.

    Parameters
    ----------
    operations
        How many engine operations made ``calls``.
    calls
        Every AWS call they made.
    """

    operations: int
    calls: tuple[Call, ...]

    def count(self, service: str, operation: str | None = None) -> float:
        """Calls to ``service`` (and ``operation``, when given) per engine operation."""
        hits = sum(
            1
            for call in self.calls
            if call.service == service and (operation is None or call.operation == operation)
        )
        return hits / self.operations

    def by_operation(self, service: str) -> dict[str, float]:
        """Calls per engine operation of each ``service`` API operation, by name."""
        counts = Counter(call.operation for call in self.calls if call.service == service)
        return {name: counts[name] / self.operations for name in sorted(counts)}

    def s3_requests(self, request_class: S3RequestClass) -> float:
        """S3 requests of one pricing class per engine operation."""
        hits = sum(1 for call in self.calls if call.s3_class == request_class)
        return hits / self.operations

    @property
    def read_units(self) -> float:
        """DynamoDB read request units per engine operation."""
        return sum(call.read_units for call in self.calls) / self.operations

    @property
    def write_units(self) -> float:
        """DynamoDB write request units per engine operation."""
        return sum(call.write_units for call in self.calls) / self.operations

    @property
    def bytes_sent(self) -> float:
        """Request body bytes (S3 PUT bodies) per engine operation."""
        return sum(call.bytes_sent for call in self.calls) / self.operations

    @property
    def bytes_received(self) -> float:
        """Response body bytes (S3 GET bodies) per engine operation."""
        return sum(call.bytes_received for call in self.calls) / self.operations

    @property
    def failed(self) -> int:
        """Calls that got an HTTP error status."""
        return sum(1 for call in self.calls if call.status >= _HTTP_ERROR)
