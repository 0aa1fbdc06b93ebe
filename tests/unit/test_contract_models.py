"""The HTTP contract models: fast paths equal the models they shortcut."""

from __future__ import annotations

import json

from lakelog.contract.models import FetchReply, ProducedRecord, ProduceReply, ProduceRequest
from lakelog.types import FetchResult, RecordMetadata, StoredRecord


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
