"""``POST /v1/producers`` and gzip-compressed request bodies."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from lakelog.api.app import MAX_BODY_BYTES
from tests.integration.api.conftest import Api, assert_error, load_event


def _gzip_event(name: str, body: bytes, **overrides: Any) -> dict[str, Any]:
    """The sample event with ``body`` as API Gateway delivers a compressed body: base64."""
    event = load_event(name, **overrides)
    event["headers"]["content-encoding"] = "gzip"
    event["headers"]["content-length"] = str(len(body))
    event["body"] = base64.b64encode(body).decode()
    event["isBase64Encoded"] = True
    return event


def _records(count: int) -> bytes:
    records = [{"value": {"type": "STRING", "data": f"v{i}"}, "partition": 0} for i in range(count)]
    return json.dumps({"records": records}).encode()


def test_producer_ids_are_fresh_each_time(api: Api) -> None:
    first = api.send("init_producer")
    second = api.send("init_producer")
    assert first.status == second.status == 200, first.text
    assert first.json["epoch"] == second.json["epoch"] == 0
    assert second.json["id"] != first.json["id"]


def test_producer_ids_need_a_principal(api: Api) -> None:
    assert_error(api.send("init_producer", principal=None), 401, "unauthorized")


def test_a_gzip_body_is_appended_like_plain_json(orders: Api) -> None:
    reply = orders.call(_gzip_event("produce", gzip.compress(_records(50))))
    assert reply.status == 200, reply.text
    assert [r["offset"] for r in reply.json["results"]] == list(range(50))
    fetched = orders.send("fetch", partition=0, query={"offset": 0}).json
    assert base64.b64decode(fetched["records"][49]["value"]) == b"v49"
    assert fetched["high_watermark"] == 50


def test_a_body_that_is_not_gzip_is_refused_and_changes_nothing(orders: Api) -> None:
    reply = orders.call(_gzip_event("produce", b"{not gzip at all"))
    assert_error(reply, 400, "invalid_request")
    truncated = gzip.compress(_records(10))[:-12]
    assert_error(orders.call(_gzip_event("produce", truncated)), 400, "invalid_request")
    assert orders.engine.list_offset("orders", 0, "latest") == 0


def test_a_gzip_bomb_is_refused_without_inflating_it(orders: Api) -> None:
    bomb = gzip.compress(b" " * (MAX_BODY_BYTES + 1024))
    assert len(bomb) < 64 * 1024
    reply = orders.call(_gzip_event("produce", bomb))
    assert_error(reply, 413, "payload_too_large")
    assert orders.engine.list_offset("orders", 0, "latest") == 0
