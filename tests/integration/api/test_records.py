"""Record routes: produce, fetch and offsets through the API handler."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from lakelog.log.partitioner import partition_for_key
from tests.integration.api.conftest import SAMPLE_PRODUCER_ID, Api, assert_error, load_event

PARTITIONS = 3
PRODUCE_TIMESTAMP = 1741774500000
"""The explicit timestamp of the third record of the sample produce event."""


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _string(text: str) -> dict[str, str]:
    return {"type": "STRING", "data": text}


def _compact(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


def _produce(api: Api, records: list[dict[str, Any]], topic: str = "orders") -> list[Any]:
    reply = api.send("produce", topic=topic, body={"records": records})
    assert reply.status == 200, reply.text
    results: list[Any] = reply.json["results"]
    return results


def _fetch(api: Api, partition: int, offset: int = 0, **query: int) -> dict[str, Any]:
    reply = api.send("fetch", partition=partition, query={"offset": offset, **query})
    assert reply.status == 200, reply.text
    body: dict[str, Any] = reply.json
    return body


def _offset(api: Api, partition: int = 0, **query: str | int) -> int:
    reply = api.send("offsets_earliest", partition=partition, query=query)
    assert reply.status == 200, reply.text
    if "timestamp_ms" not in query:
        assert set(reply.json) == {"offset"}
    elif reply.json["found"]:
        assert set(reply.json) == {"offset", "found", "timestamp_ms"}
        assert reply.json["timestamp_ms"] >= int(query["timestamp_ms"])
    else:
        assert set(reply.json) == {"offset", "found"}
    offset: int = reply.json["offset"]
    return offset


def _high_watermarks(api: Api, topic: str = "orders") -> list[int]:
    return [p.high_watermark for p in api.engine.describe_topic(topic).partitions]


def test_produce_places_typed_records_and_replies_in_request_order(orders: Api) -> None:
    # When the sample event appends: a STRING-keyed JSON value, a BINARY-keyed STRING
    # value, a keyless BINARY value on explicit partition 2, and a keyed tombstone
    reply = orders.send("produce")

    # Then each result says where its record landed, in request order
    assert reply.status == 200, reply.text
    results = reply.json["results"]
    assert len(results) == 4
    assert all(set(r) == {"partition", "offset", "timestamp_ms"} for r in results)
    customer = partition_for_key(b"customer-42", PARTITIONS)
    binary = partition_for_key(b"\x00\x01\x02\xff", PARTITIONS)
    assert [r["partition"] for r in results] == [customer, binary, 2, customer]
    assert results[3]["offset"] == results[0]["offset"] + 1
    assert results[2]["timestamp_ms"] == PRODUCE_TIMESTAMP
    assert results[0]["timestamp_ms"] == results[1]["timestamp_ms"] == results[3]["timestamp_ms"]
    assert results[0]["timestamp_ms"] > PRODUCE_TIMESTAMP
    assert sum(_high_watermarks(orders)) == 4


def test_fetch_returns_keys_values_and_header_values_in_base64_and_null_when_absent(
    orders: Api,
) -> None:
    # Given the sample records
    results = orders.send("produce").json["results"]
    customer = results[0]["partition"]

    # When the partition of "customer-42" is fetched
    body = _fetch(orders, customer)

    # Then the JSON value is its compact encoding, and the tombstone has a null value
    by_offset = {record["offset"]: record for record in body["records"]}
    first, tombstone = by_offset[results[0]["offset"]], by_offset[results[3]["offset"]]
    assert first == {
        "partition": customer,
        "offset": results[0]["offset"],
        "timestamp_ms": results[0]["timestamp_ms"],
        "key": _b64("customer-42"),
        "value": _b64('{"order_id":1001,"amount":25.5,"currency":"EUR"}'),
        "headers": [
            {"key": "content-type", "value": _b64("application/json")},
            {"key": "trace-id", "value": _b64("1-67d15f22-abc")},
        ],
    }
    assert tombstone["key"] == _b64("customer-42")
    assert tombstone["value"] is None
    assert tombstone["headers"] == []
    assert body["high_watermark"] == body["next_offset"] == len(body["records"])


def test_fetch_returns_binary_and_string_data_byte_for_byte(orders: Api) -> None:
    results = orders.send("produce").json["results"]

    # The keyless BINARY record on partition 2 has a null key and its exact bytes
    keyless = next(r for r in _fetch(orders, 2)["records"] if r["offset"] == results[2]["offset"])
    assert keyless["key"] is None
    assert base64.b64decode(keyless["value"]) == b"\x89PNG\r\n\x1a\n\x00\x00"
    assert keyless["timestamp_ms"] == PRODUCE_TIMESTAMP

    # The BINARY key and the UTF-8 STRING value, with a header whose value is null
    binary = next(
        r
        for r in _fetch(orders, results[1]["partition"])["records"]
        if r["offset"] == results[1]["offset"]
    )
    assert base64.b64decode(binary["key"]) == b"\x00\x01\x02\xff"
    assert base64.b64decode(binary["value"]).decode() == "order 1002 shipped \u2713"
    assert binary["headers"] == [{"key": "empty", "value": None}]


def test_keyed_records_land_on_the_kafka_murmur2_partition(orders: Api) -> None:
    keys = [f"customer-{i}" for i in range(40)]

    results = _produce(orders, [{"key": _string(k), "value": _string(k)} for k in keys])

    assert [r["partition"] for r in results] == [
        partition_for_key(k.encode(), PARTITIONS) for k in keys
    ]
    assert len({r["partition"] for r in results}) == PARTITIONS
    for partition in range(PARTITIONS):
        fetched = _fetch(orders, partition)["records"]
        expected = [k for k in keys if partition_for_key(k.encode(), PARTITIONS) == partition]
        assert [base64.b64decode(r["key"]).decode() for r in fetched] == expected


def test_results_follow_request_order_when_records_interleave_partitions(orders: Api) -> None:
    partitions = [2, 0, 1, 0, 2, 2]
    records = [{"value": _string(f"v{i}"), "partition": p} for i, p in enumerate(partitions)]

    results = _produce(orders, records)

    assert [(r["partition"], r["offset"]) for r in results] == [
        (2, 0),
        (0, 0),
        (1, 0),
        (0, 1),
        (2, 1),
        (2, 2),
    ]
    values = [base64.b64decode(r["value"]).decode() for r in _fetch(orders, 2)["records"]]
    assert values == ["v0", "v4", "v5"]


def test_keyless_records_of_one_request_share_one_partition(orders: Api) -> None:
    results = _produce(orders, [{"value": _string(f"v{i}")} for i in range(5)])

    assert len({r["partition"] for r in results}) == 1
    assert [r["offset"] for r in results] == [0, 1, 2, 3, 4]


def test_fetch_pages_by_max_records_and_reports_next_offset(orders: Api) -> None:
    _produce(orders, [{"value": _string(f"v{i}"), "partition": 0} for i in range(5)])

    first = _fetch(orders, 0, 0, max_records=2)
    second = _fetch(orders, 0, first["next_offset"], max_records=10)
    at_end = _fetch(orders, 0, second["next_offset"])

    assert [r["offset"] for r in first["records"]] == [0, 1]
    assert first["next_offset"] == 2
    assert first["high_watermark"] == 5
    assert [r["offset"] for r in second["records"]] == [2, 3, 4]
    assert at_end == {
        "records": [],
        "next_offset": 5,
        "high_watermark": 5,
        "log_start_offset": 0,
        "cursor": at_end["cursor"],  # where the next fetch continues (ADR 0012)
    }


def test_fetch_with_a_small_max_bytes_still_returns_one_record(orders: Api) -> None:
    _produce(orders, [{"value": _string("x" * 100), "partition": 0} for _ in range(3)])

    body = _fetch(orders, 0, 0, max_bytes=1)

    assert len(body["records"]) == 1
    assert body["next_offset"] == 1


def test_fetch_above_the_high_watermark_returns_416_with_both_bounds(orders: Api) -> None:
    _produce(orders, [{"value": _string("a"), "partition": 0}] * 2)

    body = assert_error(orders.send("fetch_out_of_range"), 416, "offset_out_of_range")

    assert body["log_start_offset"] == 0
    assert body["high_watermark"] == 2
    assert "1000" in body["message"]


@pytest.mark.parametrize(
    "query",
    [{"offset": -1}, {"offset": "first"}, {"max_records": 0}, {"max_bytes": 0}],
    ids=["negative-offset", "text-offset", "zero-max-records", "zero-max-bytes"],
)
def test_fetch_with_bad_query_parameters_returns_422(orders: Api, query: dict[str, Any]) -> None:
    assert_error(orders.send("fetch", query=query), 422, "invalid_request")


def test_fetch_above_the_documented_limits_or_a_missing_partition_returns_400(
    orders: Api,
) -> None:
    assert_error(orders.send("fetch", query={"max_records": 10_001}), 400, "invalid_request")
    assert_error(orders.send("fetch", partition=3), 400, "invalid_request")
    assert_error(orders.send("fetch", partition="zero"), 422, "invalid_request")


def test_fetch_from_unknown_topic_returns_404(api: Api) -> None:
    assert_error(api.send("fetch"), 404, "topic_not_found")


def test_offsets_earliest_and_latest_are_log_start_and_high_watermark(orders: Api) -> None:
    assert orders.send("offsets_earliest").json == {"offset": 0}
    assert orders.send("offsets_latest").json == {"offset": 0}

    _produce(orders, [{"value": _string("a"), "partition": 0}] * 3)

    assert orders.send("offsets_earliest").json == {"offset": 0}
    assert orders.send("offsets_latest").json == {"offset": 3}
    assert _offset(orders, 1, spec="latest") == 0


def test_replay_from_earliest_reads_every_record_in_order(orders: Api) -> None:
    # Given three appends to partition 0
    sent = [f"r{i}" for i in range(7)]
    for chunk in (sent[:2], sent[2:5], sent[5:]):
        _produce(orders, [{"value": _string(v), "partition": 0} for v in chunk])

    # When a consumer starts at the earliest offset and fetches until the high watermark
    offset = _offset(orders, spec="earliest")
    replayed: list[str] = []
    while True:
        page = _fetch(orders, 0, offset, max_records=3)
        replayed += [base64.b64decode(r["value"]).decode() for r in page["records"]]
        offset = page["next_offset"]
        if offset == page["high_watermark"]:
            break

    # Then it read every record once, in order
    assert replayed == sent


def test_replay_from_a_timestamp_starts_at_the_first_record_at_or_after_it(
    orders: Api,
) -> None:
    # Given records stamped 2 s and 1 s before, at, and 1 s after T
    stamps = [PRODUCE_TIMESTAMP + delta for delta in (-2000, -1000, 0, 1000)]
    _produce(
        orders,
        [
            {"value": _string(f"at{stamp}"), "partition": 0, "timestamp_ms": stamp}
            for stamp in stamps
        ],
    )

    # When the offset for T is looked up (the sample event asks for T)
    reply = orders.send("offsets_timestamp")

    # Then it is the record stamped T, and fetching from there replays T and T + 1 s
    assert reply.json == {"offset": 2, "found": True, "timestamp_ms": PRODUCE_TIMESTAMP}
    records = _fetch(orders, 0, reply.json["offset"])["records"]
    assert [r["timestamp_ms"] for r in records] == stamps[2:]
    assert _offset(orders, timestamp_ms=PRODUCE_TIMESTAMP - 1500) == 1
    assert _offset(orders, timestamp_ms=0) == 0


def test_offset_for_a_timestamp_after_every_record_is_the_high_watermark(orders: Api) -> None:
    _produce(orders, [{"value": _string("a"), "partition": 0, "timestamp_ms": 1000}])

    assert _offset(orders, timestamp_ms=PRODUCE_TIMESTAMP) == 1
    reply = orders.send("offsets_timestamp", partition=0)
    assert reply.json == {"offset": 1, "found": False}


def test_offsets_needs_exactly_one_of_spec_and_timestamp(orders: Api) -> None:
    both = assert_error(orders.send("offsets_both"), 400, "invalid_request")
    neither = orders.send("offsets_earliest", query=None)

    assert "exactly one" in both["message"]
    assert_error(neither, 400, "invalid_request")
    assert_error(orders.send("offsets_earliest", query={"spec": "newest"}), 422, "invalid_request")
    assert_error(orders.send("offsets_timestamp", topic="nope"), 404, "topic_not_found")


def test_produce_bad_base64_returns_422_and_writes_nothing(orders: Api) -> None:
    body = assert_error(orders.send("produce_bad_base64"), 422, "invalid_request")

    assert "base64" in body["message"]
    assert _high_watermarks(orders) == [0, 0, 0]


@pytest.mark.parametrize(
    "records",
    [
        [],
        [{"value": {"type": "AVRO", "data": "x"}}],
        [{"value": _string("a"), "partition": -1}],
        [{"value": _string("a"), "timestamp_ms": -5}],
        [{"value": _string("a"), "headers": [{"key": "", "value": None}]}],
        [{"value": _string("a"), "colour": "red"}],
        [{"value": {"type": "STRING", "data": 5}}],
        [{"value": {"type": "BINARY", "data": ["AA=="]}}],
        [{"value": _string("a"), "headers": [{"key": "h", "value": "%%%"}]}],
    ],
    ids=[
        "no-records",
        "unknown-type",
        "negative-partition",
        "negative-ts",
        "empty-header",
        "extra",
        "string-not-text",
        "binary-not-text",
        "header-not-base64",
    ],
)
def test_produce_with_a_malformed_body_returns_422_and_writes_nothing(
    orders: Api, records: list[Any]
) -> None:
    assert_error(orders.send("produce", body={"records": records}), 422, "invalid_request")
    assert _high_watermarks(orders) == [0, 0, 0]


@pytest.mark.parametrize(
    "record",
    [
        {"value": _string("a"), "partition": 3},
        {"value": _string("a"), "timestamp_ms": 253_402_300_800_000},
    ],
    ids=["missing-partition", "ts"],
)
def test_produce_with_values_the_engine_rejects_returns_400_and_writes_nothing(
    orders: Api, record: dict[str, Any]
) -> None:
    assert_error(orders.send("produce", body={"records": [record]}), 400, "invalid_request")
    assert _high_watermarks(orders) == [0, 0, 0]


def test_a_keyless_record_to_a_compact_topic_returns_400_and_writes_nothing(api: Api) -> None:
    # Given a topic that keeps the latest record per key (ADR 0013, 6)
    created = api.send(
        "create_topic", body={"name": "latest", "config": {"cleanup_policy": "compact"}}
    )
    assert created.status == 201, created.text
    keyed = {"key": _string("k"), "value": _string("a")}

    # When an append holds a keyless record beside a keyed one
    body = {"records": [keyed, {"value": _string("b")}]}
    reply = api.send("produce", topic="latest", body=body)

    # Then it is refused whole, saying why; a keyed append is taken
    assert "cleanup_policy=compact" in assert_error(reply, 400, "invalid_request")["message"]
    assert _high_watermarks(api, "latest") == [0]
    assert api.send("produce", topic="latest", body={"records": [keyed]}).status == 200


def test_produce_to_unknown_topic_returns_404(api: Api) -> None:
    assert_error(api.send("produce"), 404, "topic_not_found")


def test_record_over_the_topic_max_record_bytes_returns_413_and_writes_nothing(
    api: Api,
) -> None:
    # Given a topic that accepts records of at most 1 KiB
    created = api.send("create_topic", body={"name": "audit", "config": {"max_record_bytes": 1024}})
    assert created.status == 201, created.text

    # When a 2 KiB record is appended
    body = assert_error(api.send("produce_record_too_large"), 413, "payload_too_large")

    # Then it is refused whole
    assert "max_record_bytes" in body["message"]
    assert _high_watermarks(api, "audit") == [0]


@pytest.mark.parametrize("base64_body", [False, True], ids=["text", "base64"])
def test_request_body_over_6_mib_returns_413_and_writes_nothing(
    orders: Api, base64_body: bool
) -> None:
    # A valid append whose JSON body is just over the Lambda payload limit
    limit = 6 * 1024 * 1024
    padding = limit - len(_compact({"records": [{"value": _string("")}]})) + 1
    body = {"records": [{"value": _string("x" * padding)}]}
    event = load_event("produce", body=body, base64_body=base64_body)
    assert int(event["headers"]["content-length"]) == limit + 1

    reply = assert_error(orders.call(event), 413, "payload_too_large")

    assert str(limit) in reply["message"]
    assert _high_watermarks(orders) == [0, 0, 0]


def test_body_of_exactly_6_mib_is_not_refused_for_its_size(orders: Api) -> None:
    limit = 6 * 1024 * 1024
    padding = limit - len(_compact({"records": [{"value": _string("")}]}))
    event = load_event("produce", body={"records": [{"value": _string("x" * padding)}]})
    assert int(event["headers"]["content-length"]) == limit

    # The record itself is over the topic's 1 MiB max_record_bytes: 413 from the engine
    body = assert_error(orders.call(event), 413, "payload_too_large")
    assert "max_record_bytes" in body["message"]


def test_idempotent_retry_returns_the_same_offsets_without_duplicates(orders: Api) -> None:
    # Given an idempotent append (producer 4242, epoch 1, sequence 0) of two records
    first = orders.send("produce_idempotent")
    assert first.status == 200, first.text

    # When the very same request is retried (its reply was lost)
    retry = orders.send("produce_idempotent")

    # Then the retry is answered with the first offsets and nothing is appended twice
    assert retry.status == 200, retry.text
    assert retry.json == first.json
    assert [r["offset"] for r in first.json["results"]] == [0, 1]
    assert _high_watermarks(orders) == [2, 0, 0]

    # And the next sequence appends after them
    body = load_event("produce_idempotent")["body"]
    following = json.loads(body) | {"producer": {"id": 4242, "epoch": 1, "sequence": 2}}
    third = orders.send("produce_idempotent", body=following)
    assert [r["offset"] for r in third.json["results"]] == [2, 3]


def test_idempotent_producer_with_a_sequence_gap_returns_400(orders: Api) -> None:
    assert orders.send("produce_idempotent").status == 200
    request = json.loads(load_event("produce_idempotent")["body"])
    request["producer"]["sequence"] = 9

    body = assert_error(orders.send("produce", body=request), 400, "out_of_order_sequence")

    assert "expected 2" in body["message"]
    assert _high_watermarks(orders) == [2, 0, 0]


def test_idempotent_producer_with_one_sequence_per_topic(orders: Api) -> None:
    records = [
        {"value": _string("a"), "partition": 0},
        {"value": _string("b"), "partition": 1},
    ]

    def produce(producer: dict[str, Any]) -> Any:
        body = {"records": records, "producer": {"id": SAMPLE_PRODUCER_ID, "epoch": 0} | producer}
        return orders.send("produce", body=body)

    # One sequence counts the request's records, whatever partitions they land on
    reply = produce({"sequence": 0})
    again = produce({"sequence": 0})
    assert reply.status == 200, reply.text
    assert again.json == reply.json
    assert _high_watermarks(orders) == [1, 1, 0]

    # A per-partition map with several entries is refused (ledger v2), and writes nothing
    per_partition = produce({"sequences": {"0": 2, "1": 2}})
    body = assert_error(per_partition, 400, "invalid_request")
    assert "one sequence per topic since ledger v2" in body["message"]
    assert _high_watermarks(orders) == [1, 1, 0]

    # The deprecated map with one entry is the topic's sequence: the next one is 2
    single = produce({"sequences": {"1": 2}})
    assert single.status == 200, single.text
    assert _high_watermarks(orders) == [2, 2, 0]


def test_producer_sequence_keyed_by_a_non_ascii_digit_is_422(orders: Api) -> None:
    body = {
        "records": [{"value": {"type": "STRING", "data": "x"}, "partition": 0}],
        "producer": {"id": 1, "epoch": 0, "sequences": {"\u00b2": 0}},
    }
    assert_error(orders.send("produce", body=body), 422, "invalid_request")


def test_json_typed_value_without_data_is_rejected(orders: Api) -> None:
    body = {"records": [{"value": {"type": "JSON"}, "partition": 0}]}
    assert orders.send("produce", body=body).status in (400, 422)
