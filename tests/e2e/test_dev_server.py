"""``lakelog dev`` end to end: the HTTP API v1 over real HTTP, and the S3 it prints.

One dev server serves the whole module; each test uses its own topic.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from lakelog.log.partitioner import partition_for_key
from tests.e2e.conftest import DevProcess, create_topic, produce

MIB = 1024 * 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def fetch(api: httpx.Client, topic: str, partition: int, offset: int, **params: Any) -> Any:
    reply = api.get(
        f"/v1/topics/{topic}/partitions/{partition}/records",
        params={"offset": offset, **params},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def fetch_all(api: httpx.Client, topic: str, partition: int, offset: int = 0) -> list[Any]:
    """Every record from ``offset`` to the high watermark (a fetch may return fewer)."""
    records: list[Any] = []
    while True:
        reply = fetch(api, topic, partition, offset)
        records += reply["records"]
        offset = reply["next_offset"]
        if offset >= reply["high_watermark"]:
            return records


def offset_for(api: httpx.Client, topic: str, partition: int, **params: Any) -> int:
    reply = api.get(f"/v1/topics/{topic}/partitions/{partition}/offsets", params=params)
    assert reply.status_code == 200, reply.text
    return int(reply.json()["offset"])


def assert_error(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["error"] == code, body
    assert body["message"]
    return dict(body)


# Topics ------------------------------------------------------------------------------------


def test_create_topic_is_201_then_listed_and_described(api: httpx.Client, topic_name: str) -> None:
    created = create_topic(api, topic_name, partitions=3, config={"retention_ms": 60_000})

    assert created["name"] == topic_name
    assert created["config"]["retention_ms"] == 60_000
    assert [p["partition"] for p in created["partitions"]] == [0, 1, 2]
    assert topic_name in api.get("/v1/topics").json()["topics"]
    described = api.get(f"/v1/topics/{topic_name}").json()
    assert described["partitions"][0] == {
        "partition": 0,
        "log_start_offset": 0,
        "high_watermark": 0,
        "bytes": 0,
    }


def test_creating_an_existing_topic_is_409_topic_exists(api: httpx.Client, topic_name: str) -> None:
    create_topic(api, topic_name)

    reply = api.post("/v1/topics", json={"name": topic_name, "partitions": 2})

    assert_error(reply, 409, "topic_exists")
    assert len(api.get(f"/v1/topics/{topic_name}").json()["partitions"]) == 1


def test_unknown_topic_is_404_topic_not_found(api: httpx.Client, topic_name: str) -> None:
    record = {"value": {"type": "STRING", "data": "x"}}

    assert_error(api.get(f"/v1/topics/{topic_name}"), 404, "topic_not_found")
    assert_error(
        api.post(f"/v1/topics/{topic_name}/records", json={"records": [record]}),
        404,
        "topic_not_found",
    )
    assert_error(
        api.get(f"/v1/topics/{topic_name}/partitions/0/records", params={"offset": 0}),
        404,
        "topic_not_found",
    )
    assert_error(api.delete(f"/v1/topics/{topic_name}"), 404, "topic_not_found")


def test_deleted_topic_is_204_then_gone(api: httpx.Client, topic_name: str) -> None:
    create_topic(api, topic_name)

    reply = api.delete(f"/v1/topics/{topic_name}")

    assert reply.status_code == 204
    assert reply.content == b""
    assert_error(api.get(f"/v1/topics/{topic_name}"), 404, "topic_not_found")


# Records -----------------------------------------------------------------------------------


def test_json_string_and_binary_records_round_trip_with_keys_and_headers(
    api: httpx.Client, topic_name: str
) -> None:
    # Given a topic and three records, one of each key/value type, with headers
    create_topic(api, topic_name)
    binary = bytes(range(256))
    records = [
        {
            "key": {"type": "STRING", "data": "user-1"},
            "value": {"type": "JSON", "data": {"amount": 12.5, "items": ["a", "é"]}},
            "headers": [{"key": "trace", "value": b64(b"abc")}, {"key": "empty", "value": None}],
            "partition": 0,
        },
        {
            "key": {"type": "JSON", "data": [1, 2]},
            "value": {"type": "STRING", "data": "héllo wörld"},
            "headers": [{"key": "bin", "value": b64(b"\x00\xff")}],
            "partition": 0,
        },
        {
            "key": {"type": "BINARY", "data": b64(b"\x01\x02\x03")},
            "value": {"type": "BINARY", "data": b64(binary)},
            "partition": 0,
        },
        {"value": {"type": "STRING", "data": "no key"}, "partition": 0},
        {"key": {"type": "STRING", "data": "tombstone"}, "partition": 0},
    ]

    # When they are produced and fetched back
    results = produce(api, topic_name, records)
    fetched = fetch(api, topic_name, 0, 0)

    # Then offsets are dense, in request order, and every byte comes back
    assert [r["offset"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["partition"] for r in results] == [0] * 5
    assert fetched["high_watermark"] == 5
    assert fetched["next_offset"] == 5
    got = fetched["records"]
    assert [r["offset"] for r in got] == [0, 1, 2, 3, 4]
    assert [r["timestamp_ms"] for r in got] == [r["timestamp_ms"] for r in results]
    assert unb64(got[0]["key"]) == b"user-1"
    assert json.loads(unb64(got[0]["value"]) or b"") == {"amount": 12.5, "items": ["a", "é"]}
    assert [(h["key"], unb64(h["value"])) for h in got[0]["headers"]] == [
        ("trace", b"abc"),
        ("empty", None),
    ]
    assert json.loads(unb64(got[1]["key"]) or b"") == [1, 2]
    assert unb64(got[1]["value"]) == "héllo wörld".encode()
    assert [(h["key"], unb64(h["value"])) for h in got[1]["headers"]] == [("bin", b"\x00\xff")]
    assert unb64(got[2]["key"]) == b"\x01\x02\x03"
    assert unb64(got[2]["value"]) == binary
    assert got[2]["headers"] == []
    assert got[3]["key"] is None
    assert unb64(got[3]["value"]) == b"no key"
    assert got[4]["value"] is None


def test_fetch_honours_max_records_and_continues_at_next_offset(
    api: httpx.Client, topic_name: str
) -> None:
    create_topic(api, topic_name)
    produce(api, topic_name, [{"value": {"type": "STRING", "data": str(i)}} for i in range(5)])

    first = fetch(api, topic_name, 0, 0, max_records=2)
    rest = fetch(api, topic_name, 0, first["next_offset"])

    assert [unb64(r["value"]) for r in first["records"]] == [b"0", b"1"]
    assert first["next_offset"] == 2
    assert [unb64(r["value"]) for r in rest["records"]] == [b"2", b"3", b"4"]
    assert rest["next_offset"] == 5


def test_replay_from_earliest_and_from_a_timestamp(api: httpx.Client, topic_name: str) -> None:
    # Given two batches with known timestamps
    create_topic(api, topic_name)
    produce(
        api,
        topic_name,
        [
            {"value": {"type": "STRING", "data": f"a{i}"}, "timestamp_ms": 1_000 + i}
            for i in range(3)
        ],
    )
    produce(
        api,
        topic_name,
        [
            {"value": {"type": "STRING", "data": f"b{i}"}, "timestamp_ms": 5_000 + i}
            for i in range(3)
        ],
    )

    # When a consumer asks where to start
    earliest = offset_for(api, topic_name, 0, spec="earliest")
    latest = offset_for(api, topic_name, 0, spec="latest")
    at_5000 = offset_for(api, topic_name, 0, timestamp_ms=5_000)
    at_1001 = offset_for(api, topic_name, 0, timestamp_ms=1_001)
    after_all = offset_for(api, topic_name, 0, timestamp_ms=9_000)

    # Then earliest replays everything and a timestamp replays from its first record
    assert (earliest, latest) == (0, 6)
    assert [unb64(r["value"]) for r in fetch(api, topic_name, 0, earliest)["records"]] == [
        b"a0",
        b"a1",
        b"a2",
        b"b0",
        b"b1",
        b"b2",
    ]
    assert at_1001 == 1
    assert at_5000 == 3
    assert [unb64(r["value"]) for r in fetch(api, topic_name, 0, at_5000)["records"]] == [
        b"b0",
        b"b1",
        b"b2",
    ]
    assert after_all == latest
    assert_error(api.get(f"/v1/topics/{topic_name}/partitions/0/offsets"), 400, "invalid_request")


def test_keyed_records_land_on_the_murmur2_partition(api: httpx.Client, topic_name: str) -> None:
    partitions = 6
    create_topic(api, topic_name, partitions=partitions)
    keys = [f"customer-{i}".encode() for i in range(40)] + [b"", b"\xff\x00\x7f"]
    records = [
        {"key": {"type": "BINARY", "data": b64(k)}, "value": {"type": "STRING", "data": str(i)}}
        for i, k in enumerate(keys)
    ]

    results = produce(api, topic_name, records)

    expected = [partition_for_key(k, partitions) for k in keys]
    assert [r["partition"] for r in results] == expected
    assert len(set(expected)) > 1
    # and each record is where its result says it is
    for key, result in zip(keys, results, strict=True):
        fetched = fetch(api, topic_name, result["partition"], result["offset"], max_records=1)
        assert unb64(fetched["records"][0]["key"]) == key


def test_concurrent_appends_get_dense_unique_offsets(api: httpx.Client, topic_name: str) -> None:
    # Given one partition and eight clients appending at once through the threaded server
    # (regression: handlers running concurrently in one process read each other's bodies,
    # because Powertools keeps the current event in a class attribute)
    create_topic(api, topic_name)
    threads, per_thread = 8, 5
    results: list[tuple[int, int]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        # No request deadline: the handler serves one request at a time, so a request may
        # wait for all the others on a loaded machine; pytest's timeout is the backstop.
        with httpx.Client(base_url=str(api.base_url), timeout=None) as own:
            for i in range(per_thread):
                value = {"type": "STRING", "data": f"{worker}-{i}"}
                reply = own.post(
                    f"/v1/topics/{topic_name}/records", json={"records": [{"value": value}]}
                )
                with lock:
                    if reply.status_code != 200:
                        errors.append(reply.text)
                    else:
                        results.append((reply.json()["results"][0]["offset"], worker * 100 + i))

    workers = [threading.Thread(target=client, args=(w,)) for w in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    # Then every append is acknowledged once, offsets are dense, and each holds its record
    assert errors == []
    offsets = sorted(o for o, _ in results)
    assert offsets == list(range(threads * per_thread))
    fetched = fetch_all(api, topic_name, 0)
    by_offset = {r["offset"]: unb64(r["value"]) for r in fetched}
    for offset, tag in results:
        assert by_offset[offset] == f"{tag // 100}-{tag % 100}".encode()


# Errors ------------------------------------------------------------------------------------


def test_fetch_past_the_high_watermark_is_416_with_both_bounds(
    api: httpx.Client, topic_name: str
) -> None:
    create_topic(api, topic_name)
    produce(api, topic_name, [{"value": {"type": "STRING", "data": "x"}}] * 3)

    at_end = fetch(api, topic_name, 0, 3)
    reply = api.get(f"/v1/topics/{topic_name}/partitions/0/records", params={"offset": 4})

    assert at_end["records"] == []
    assert at_end["high_watermark"] == 3
    body = assert_error(reply, 416, "offset_out_of_range")
    assert body["log_start_offset"] == 0
    assert body["high_watermark"] == 3


def test_invalid_bodies_are_422_invalid_request_and_change_nothing(
    api: httpx.Client, topic_name: str
) -> None:
    create_topic(api, topic_name)
    path = f"/v1/topics/{topic_name}/records"
    bad_bodies: list[Any] = [
        {},
        {"records": []},
        {"records": "nope"},
        {"records": [{"value": {"type": "XML", "data": "<a/>"}}]},
        {"records": [{"value": {"type": "STRING", "data": "x"}, "surprise": 1}]},
        {"records": [{"value": {"type": "STRING", "data": "x"}, "timestamp_ms": -1}]},
    ]

    for body in bad_bodies:
        assert_error(api.post(path, json=body), 422, "invalid_request")
    assert_error(
        api.post(path, content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "invalid_request",
    )
    assert_error(api.post("/v1/topics", json={"partitions": 0}), 422, "invalid_request")
    assert fetch(api, topic_name, 0, 0)["high_watermark"] == 0


def test_body_over_6_mib_is_413_payload_too_large(api: httpx.Client, topic_name: str) -> None:
    create_topic(api, topic_name, config={"max_record_bytes": 6 * MIB})
    value = {"type": "STRING", "data": "x" * (6 * MIB + 1024)}

    reply = api.post(f"/v1/topics/{topic_name}/records", json={"records": [{"value": value}]})

    assert_error(reply, 413, "payload_too_large")
    assert fetch(api, topic_name, 0, 0)["high_watermark"] == 0


def test_record_over_max_record_bytes_is_413(api: httpx.Client, topic_name: str) -> None:
    create_topic(api, topic_name, config={"max_record_bytes": 1024})
    small = {"value": {"type": "STRING", "data": "x" * 100}}
    large = {"value": {"type": "STRING", "data": "x" * 2048}}

    reply = api.post(f"/v1/topics/{topic_name}/records", json={"records": [small, large]})

    body = assert_error(reply, 413, "payload_too_large")
    assert "max_record_bytes" in body["message"]
    assert fetch(api, topic_name, 0, 0)["high_watermark"] == 0


def test_body_over_10_mib_is_refused_before_it_is_sent(dev_server: DevProcess) -> None:
    # Given a request that announces an 11 MiB body but sends none of it
    url = urlsplit(dev_server.api_url)
    request = (
        "POST /v1/topics/whatever/records HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {11 * MIB}\r\n"
        "\r\n"
    ).encode()

    # When the headers arrive
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk

    # Then the server answers 413 at once and closes the connection
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"] == "payload_too_large"


def test_body_over_10_mib_sent_in_full_still_gets_the_413(dev_server: DevProcess) -> None:
    # urllib sends the whole body before it reads a reply
    request = urllib.request.Request(
        f"{dev_server.api_url}/v1/topics/whatever/records",
        data=b"x" * (11 * MIB),
        headers={"Content-Type": "application/json"},
        method="POST",
    )

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)

    assert refused.value.code == 413
    assert json.loads(refused.value.read())["error"] == "payload_too_large"


def test_chunked_request_bodies_are_read(api: httpx.Client, topic_name: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        yield topic_name.encode()
        yield b'", "partitions": 2}'

    reply = api.post("/v1/topics", content=chunks(), headers={"content-type": "application/json"})

    assert reply.request.headers.get("transfer-encoding") == "chunked"
    assert reply.status_code == 201, reply.text
    assert len(reply.json()["partitions"]) == 2


def test_unknown_route_is_404_in_the_error_shape(api: httpx.Client) -> None:
    assert_error(api.get("/v1/nowhere"), 404, "not_found")


# What else the dev server prints -------------------------------------------------------------


def test_docs_and_openapi_are_served(api: httpx.Client, dev_server: DevProcess) -> None:
    docs = api.get("/v1/docs")
    spec = api.get("/v1/openapi.json")

    assert dev_server.info["docs_url"] == f"{dev_server.api_url}/v1/docs"
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert spec.status_code == 200
    assert spec.json()["openapi"].startswith("3.")
    assert "/v1/topics/{topic}/records" in spec.json()["paths"]


def test_segments_are_readable_from_the_printed_s3_endpoint(
    api: httpx.Client, dev_server: DevProcess, s3: Any, topic_name: str
) -> None:
    # Given records produced through the API
    create_topic(api, topic_name)
    produce(
        api,
        topic_name,
        [
            {
                "key": {"type": "STRING", "data": f"k{i}"},
                "value": {"type": "STRING", "data": f"v{i}"},
            }
            for i in range(3)
        ],
    )

    # When a Parquet reader goes to the printed endpoint and bucket
    listed = s3.list_objects_v2(Bucket=dev_server.bucket, Prefix="segments/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    ours: list[Any] = []
    for key in keys:
        body = s3.get_object(Bucket=dev_server.bucket, Key=key)["Body"].read()
        table = pq.read_table(io.BytesIO(body))
        if b"k0" in table.column("key").to_pylist():
            ours.append((key, table))

    # Then it finds one segment with the three records, readable by boto3 and pyarrow's S3
    assert keys and all(k.endswith(".parquet") for k in keys)
    assert len(ours) == 1
    key, table = ours[0]
    assert table.column("key").to_pylist() == [b"k0", b"k1", b"k2"]
    assert table.column("value").to_pylist() == [b"v0", b"v1", b"v2"]
    endpoint = urlsplit(dev_server.s3_endpoint_url)
    fs = pafs.S3FileSystem(
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
        scheme=endpoint.scheme,
        endpoint_override=endpoint.netloc,
    )
    direct = pq.read_table(f"{dev_server.bucket}/{key}", filesystem=fs)
    assert direct.column("value").to_pylist() == [b"v0", b"v1", b"v2"]


def test_requests_are_logged_one_line_each(api: httpx.Client, dev_server: DevProcess) -> None:
    # The server writes the line before its reply, so once the reply is here the line is
    # in the pipe and only waits for the reader thread.
    api.get("/v1/topics", params={"probe": "access-log"})

    line = dev_server.wait_for_line(lambda printed: "probe=access-log" in printed)

    assert "GET /v1/topics?probe=access-log -> 200" in line, dev_server.output
    assert sum("probe=access-log" in printed for printed in dev_server.lines) == 1
