"""The HTTP contract models: fast paths equal the models they shortcut."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import lakelog.contract
from lakelog.contract.models import (
    FetchManyReply,
    FetchManyRequest,
    FetchReply,
    ProducedRecord,
    ProduceReply,
    ProduceRequest,
)
from lakelog.contract.operations import FetchMany, JoinGroup
from lakelog.errors import InvalidRequestError, LeaseFencedError, OffsetOutOfRangeError
from lakelog.limits import MAX_API_FETCH_MANY_BYTES
from lakelog.types import (
    Assignment,
    FetchManyResult,
    FetchPosition,
    FetchResult,
    Membership,
    ProducerBatch,
    Record,
    RecordMetadata,
    StoredRecord,
)

LIB = Path(lakelog.contract.__file__).resolve().parents[1]


def test_fetch_reply_fast_serialization_equals_the_model() -> None:
    result = FetchResult(
        topic="t",
        partition=2,
        records=[
            StoredRecord(2, 7, 1_000, b"k", b"\x00\xffv", (("h", b"x"), ("n", None))),
            StoredRecord(2, 8, 1_001, None, None, ()),
        ],
        next_offset=9,
        high_watermark=12,
        log_start_offset=0,
    )

    fast = json.loads(FetchReply.json_of(result))

    assert fast == json.loads(FetchReply.of(result).model_dump_json())
    assert fast["records"][0]["value"] == "AP92"


@pytest.mark.parametrize("cursor", [None, "c-1"])
def test_fetch_reply_fast_serialization_is_the_models_text(cursor: str | None) -> None:
    # Byte for byte: every value length mod 3 (base64 padding), empty and absent keys,
    # values and header values, and header names JSON must escape.
    records = [
        StoredRecord(0, 2**63 - 1 - n, n, b"k" * n or None, bytes(range(n)), ()) for n in range(4)
    ]
    records.append(
        StoredRecord(1, 0, 0, b"", b"", (('é "q" \\ \n\x01', b""), ("n", None), ("h", b"xy")))
    )
    for some in ([], records[:1], records):
        result = FetchResult("t", 0, some, 5, 6, 0, cursor)

        assert FetchReply.json_of(result) == FetchReply.of(result).model_dump_json()


def test_produce_request_repr_does_not_print_every_record() -> None:
    request = ProduceRequest.model_validate(
        {"records": [{"value": {"type": "STRING", "data": "x" * 10_000}}] * 100}
    )

    assert repr(request) == "ProduceRequest(<100 records>, producer=None)"
    assert str(request) == repr(request)


def test_produce_reply_fast_serialization_equals_the_model() -> None:
    acks = [RecordMetadata("t", 1, 7, 1_000), RecordMetadata("t", 0, 3, 1_001)]

    fast = json.loads(ProduceReply.json_of(acks))

    model = ProduceReply(
        results=[
            ProducedRecord(partition=a.partition, offset=a.offset, timestamp_ms=a.timestamp)
            for a in acks
        ]
    )
    assert fast == json.loads(model.model_dump_json())


@pytest.mark.parametrize(
    ("modules", "heavy"),
    [
        (
            "lakelog.contract.models, lakelog.contract.errors",
            ("boto3", "botocore", "pyarrow", "aws_lambda_powertools", "lakelog.service"),
        ),
        ("lakelog.client.http", ("boto3", "botocore", "pyarrow", "aws_lambda_powertools")),
    ],
)
def test_the_contract_and_the_http_transport_load_light(modules: str, heavy: tuple[str]) -> None:
    # The packages' __init__ modules are left out: these modules must be light on their own.
    script = (
        "import sys, types\n"
        "for name in ('lakelog', 'lakelog.client'):\n"
        "    package = types.ModuleType(name)\n"
        f"    package.__path__ = [{str(LIB)!r} + name[len('lakelog'):].replace('.', '/')]\n"
        "    sys.modules[name] = package\n"
        f"import {modules}\n"
        f"print(sorted(name for name in {heavy!r} if name in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    assert loaded.strip() == "[]"


def test_produce_request_fast_serialization_parses_back_to_the_records() -> None:
    records = [
        Record(b"\x00v", key=b"k", headers=(("h", b"x"), ("n", None)), partition=2),
        Record(None, timestamp_ms=1_000),
    ]
    producer = ProducerBatch(7, 1, {2: 5, 0: 3})

    request = ProduceRequest.parse_body(ProduceRequest.json_of(records, producer))

    assert [r.to_record() for r in request.records] == records
    assert request.to_producer() == producer


def test_the_fetch_reply_model_reads_back_the_fast_serialization() -> None:
    result = FetchResult(
        topic="t",
        partition=2,
        records=[StoredRecord(2, 7, 1_000, b"k", b"\x00\xff", (("h", b"x"), ("n", None)))],
        next_offset=8,
        high_watermark=12,
        log_start_offset=3,
    )

    assert FetchReply.model_validate_json(FetchReply.json_of(result)).to_result("t", 2) == result


def test_produce_reply_fast_parsing_reads_back_the_acks() -> None:
    acks = [RecordMetadata("t", 1, 7, 1_000), RecordMetadata("t", 0, 3, 1_001)]
    assert ProduceReply.metadata_of(ProduceReply.json_of(acks), "t") == acks


@pytest.mark.parametrize("data", ["NaN", "Infinity", "-Infinity", "1e400", '{"a":[1,NaN]}'])
def test_json_data_that_would_not_be_json_text_is_refused(data: str) -> None:
    body = '{"records":[{"value":{"type":"JSON","data":' + data + "}}]}"
    request = ProduceRequest.parse_body(body)
    with pytest.raises(InvalidRequestError, match=r"record 0: .*NaN, Infinity"):
        request.to_records()


def test_json_data_is_stored_as_its_compact_text() -> None:
    body = '{"records":[{"value":{"type":"JSON","data":{"a": [1, 2.5, "é"]}}}]}'
    assert ProduceRequest.parse_body(body).records[0].to_record().value == (
        '{"a":[1,2.5,"é"]}'.encode()
    )


# Multi-partition fetch ---------------------------------------------------------------------


def _many() -> tuple[FetchMany, FetchManyResult]:
    op = FetchMany(
        [FetchPosition("t", 0, 7, "c0"), FetchPosition("t", 1, 9), FetchPosition("u", 0, 0)],
        member=JoinGroup("g", ["t"], "m-1", 30_000),
    )
    result = FetchManyResult(
        [
            FetchResult(
                "t",
                0,
                [
                    StoredRecord(0, 7, 1_000, b"k", b"v" * 100, (("h", b"x"),)),
                    StoredRecord(0, 8, 1_001, None, b"w" * 100, ()),
                ],
                next_offset=9,
                high_watermark=12,
                log_start_offset=0,
                cursor="c9",
            ),
            OffsetOutOfRangeError("t", 1, 9, 0, 4),
            FetchResult("u", 0, [], 0, 0, 0, "cu"),
        ],
        Membership("m-1", 30_000, 10_000, (Assignment("t", 0, 3, None),)),
    )
    return op, result


def test_a_fetch_many_reply_reads_back_as_its_result() -> None:
    op, result = _many()

    back = op.decode(FetchManyReply.json_of(op.positions, result))

    assert back.partitions[0] == result.partitions[0]
    assert back.partitions[2] == result.partitions[2]
    error = back.partitions[1]
    assert isinstance(error, OffsetOutOfRangeError)
    assert (error.partition, error.offset, error.high_watermark) == (1, 9, 4)
    assert back.member == result.member
    fenced = FetchManyResult(result.partitions, LeaseFencedError("g", "m-1", (("t", 0),)))
    member = op.decode(FetchManyReply.json_of(op.positions, fenced)).member
    assert isinstance(member, LeaseFencedError)
    assert member.partitions == (("t", 0),)


def test_a_fetch_many_reply_beyond_its_limit_leaves_records_for_the_next_fetch() -> None:
    op, result = _many()
    first_only = len(FetchManyReply.json_of(op.positions, result)) - 150

    body = FetchManyReply.json_of(op.positions, result, limit=first_only)
    tiny = FetchManyReply.json_of(op.positions, result, limit=10)

    assert len(body) <= first_only
    trimmed = op.decode(body).partitions[0]
    assert isinstance(trimmed, FetchResult)
    assert ([r.offset for r in trimmed.records], trimmed.next_offset) == ([7], 8)
    assert trimmed.cursor is None  # it stood for offset 9
    assert op.decode(body).partitions[2] == result.partitions[2]
    # The first record of the reply is always sent
    assert [r.offset for r in op.decode(tiny).partitions[0].records] == [7]  # type: ignore[union-attr]


def test_a_fetch_many_request_asks_at_most_the_api_limit_and_carries_cursors() -> None:
    op, _ = _many()
    big = FetchMany(op.positions, max_bytes=1 << 30, member=op.member)

    body = json.loads(FetchManyRequest.encode(big))

    assert body["max_bytes"] == MAX_API_FETCH_MANY_BYTES
    assert body["partitions"][0] == {"topic": "t", "partition": 0, "offset": 7, "cursor": "c0"}
    assert body["member"] == {
        "group": "g",
        "member_id": "m-1",
        "topics": ["t"],
        "session_timeout_ms": 30_000,
    }
    with pytest.raises(InvalidRequestError, match="member_id"):
        FetchManyRequest.encode(FetchMany([], member=JoinGroup("g", ["t"])))
