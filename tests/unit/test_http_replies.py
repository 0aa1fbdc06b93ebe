"""What the SDK makes of replies a broken or hostile server sends: always a domain error.

A proxy's HTML page with status 200, another service's JSON, a body nested deeper than
any parser recurses, or an append reply with fewer results than records: the caller's
``except LakelogError`` catches each, and no parser's exception (pydantic's, ``KeyError``,
``RecursionError``) reaches it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from lakelog import ToOffset
from lakelog.client.http import HttpReply, HttpTransport
from lakelog.contract.errors import error_from_reply
from lakelog.contract.operations import (
    Append,
    CreateTopic,
    DescribeGroup,
    DescribeTopic,
    Fetch,
    InitProducerId,
    JoinGroup,
    ListOffset,
    ListTopics,
    OffsetForTime,
    Operation,
    ResetOffsets,
)
from lakelog.errors import InvalidRequestError, LakelogError, UnavailableError
from lakelog.types import Record

DEEP = b"[" * 100_000 + b"]" * 100_000

ANSWERED: list[Operation[Any]] = [
    CreateTopic("orders"),
    ListTopics(),
    DescribeTopic("orders"),
    InitProducerId(),
    Append("orders", [Record(value=b"a"), Record(value=b"b")]),
    Fetch("orders", 0, 0),
    ListOffset("orders", 0, "latest"),
    OffsetForTime("orders", 0, 5),
    JoinGroup("billing", ["orders"]),
    DescribeGroup("billing"),
    ResetOffsets("billing", "orders", ToOffset(0)),
]
"""Every operation whose success reply has a body."""

NOT_THE_CONTRACT = {
    "empty": b"",
    "html": b"<html>captive portal</html>",
    "null": b"null",
    "array": b"[]",
    "object": b"{}",
    "error shaped": b'{"error": "internal", "message": "no"}',
    "wrong types": b'{"results": 5, "records": 5, "topics": 5, "offset": []}',
    "too deep": DEEP,
}


def _answering(status: int, body: bytes) -> HttpTransport:
    def send(method: str, url: str, data: bytes | None, headers: Mapping[str, str]) -> HttpReply:
        return HttpReply(status, body)

    return HttpTransport("http://127.0.0.1:8080", sender=send)


@pytest.mark.parametrize("body", NOT_THE_CONTRACT.values(), ids=NOT_THE_CONTRACT.keys())
@pytest.mark.parametrize("op", ANSWERED, ids=lambda op: type(op).__name__)
def test_a_success_reply_that_is_not_the_contract_is_a_domain_error(
    op: Operation[Any], body: bytes
) -> None:
    with pytest.raises(LakelogError) as raised:
        _answering(200, body).call(op)
    assert type(raised.value) is LakelogError
    assert op.url_path() in raised.value.message


def test_an_append_reply_with_a_result_missing_is_refused() -> None:
    reply = b'{"results": [{"partition": 0, "offset": 7, "timestamp_ms": 1}]}'
    op = Append("orders", [Record(value=b"a"), Record(value=b"b")])
    with pytest.raises(LakelogError, match="1 results for 2 records"):
        _answering(200, reply).call(op)


@pytest.mark.parametrize(
    ("status", "kind"), [(400, InvalidRequestError), (500, LakelogError), (503, UnavailableError)]
)
def test_an_error_reply_nested_too_deep_maps_by_status(
    status: int, kind: type[LakelogError]
) -> None:
    error = error_from_reply(status, DEEP)
    assert type(error) is kind
    with pytest.raises(kind):
        _answering(status, DEEP).call(DescribeTopic("orders"))
