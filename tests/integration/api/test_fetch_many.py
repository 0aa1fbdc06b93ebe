"""``POST /v1/fetch``: several partitions and topics in one request, one budget, errors in
place, the whole request refused for one forbidden topic, and the heartbeat it carries.

The sample event (``fetch_many``) reads partitions 0-2 of ``orders`` from offset 0 with the
heartbeat of member ``billing-service-7f3a`` of ``billing``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from lakelog import Engine, Record
from lakelog.limits import MAX_FETCH_PARTITIONS, MAX_FETCH_RECORDS
from lakelog.types import FetchPosition
from tests.integration.api.conftest import (
    ACCOUNT,
    CONSUMER,
    Api,
    MakeApi,
    assert_error,
    grant,
    load_event,
)

MEMBER = "billing-service-7f3a"
STRANGER = f"arn:aws:sts::{ACCOUNT}:assumed-role/stranger/session"
SAMPLE: dict[str, Any] = json.loads(load_event("fetch_many")["body"])
KIB = 1024


def _at(topic: str, partition: int, offset: int = 0) -> dict[str, Any]:
    return {"topic": topic, "partition": partition, "offset": offset}


def _fetch(api: Api, body: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    reply = api.send("fetch_many", body=body, **overrides)
    assert reply.status == 200, reply.text
    result: dict[str, Any] = reply.json
    return result


def _values(entry: dict[str, Any]) -> list[bytes]:
    return [base64.b64decode(r["value"]) for r in entry["records"]]


def _append(engine: Engine, topic: str, partition: int, *values: bytes) -> None:
    engine.append(topic, [Record(value=v, partition=partition) for v in values])


class CountingReads:
    """Counts the ledger queries of an engine (what a refused request must not make)."""

    def __init__(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        ledger = engine.context.ledger
        query = ledger.query

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return query(*args, **kwargs)

        monkeypatch.setattr(ledger, "query", counted)


# Several partitions and topics ------------------------------------------------------------


def test_one_request_reads_several_partitions_of_several_topics_in_request_order(
    orders: Api,
) -> None:
    engine = orders.engine
    engine.create_topic("payments", 2)
    _append(engine, "orders", 0, b"o0-a", b"o0-b")
    _append(engine, "orders", 2, b"o2-a")
    _append(engine, "payments", 1, b"p1-a")

    body = _fetch(
        orders,
        {
            "partitions": [
                _at("payments", 1),
                _at("orders", 2),
                _at("orders", 0, 1),
                _at("orders", 1),
            ]
        },
    )

    entries = body["partitions"]
    assert [(e["topic"], e["partition"]) for e in entries] == [
        ("payments", 1),
        ("orders", 2),
        ("orders", 0),
        ("orders", 1),
    ]
    assert [_values(e) for e in entries] == [[b"p1-a"], [b"o2-a"], [b"o0-b"], []]
    assert [e["next_offset"] for e in entries] == [1, 1, 2, 0]
    assert [e["high_watermark"] for e in entries] == [1, 1, 2, 0]
    assert all(e["log_start_offset"] == 0 and "error" not in e for e in entries)
    assert all("cursor" in e for e in entries)
    assert "member" not in body
    assert entries[2]["records"][0] == {
        "partition": 0,
        "offset": 1,
        "timestamp_ms": entries[2]["records"][0]["timestamp_ms"],
        "key": None,
        "value": base64.b64encode(b"o0-b").decode(),
        "headers": [],
    }


def test_the_sample_event_reads_every_partition_and_heartbeats(orders: Api) -> None:
    _append(orders.engine, "orders", 1, b"x")

    body = _fetch(orders, SAMPLE)

    assert [_values(e) for e in body["partitions"]] == [[], [b"x"], []]
    assert body["member"]["member_id"] == MEMBER
    assert [a["partition"] for a in body["member"]["assignments"]] == [0, 1, 2]


def test_an_out_of_range_partition_gets_its_error_in_place_and_the_others_their_records(
    orders: Api,
) -> None:
    engine = orders.engine
    _append(engine, "orders", 0, b"a")
    _append(engine, "orders", 1, b"b")

    body = _fetch(
        orders,
        {
            "partitions": [
                _at("orders", 0),
                _at("orders", 1, 7),
                _at("missing", 0),
                _at("orders", 2),
            ]
        },
    )

    first, out_of_range, missing, last = body["partitions"]
    assert _values(first) == [b"a"]
    assert set(out_of_range) == {"topic", "partition", "error"}
    assert out_of_range["error"] == {
        "error": "offset_out_of_range",
        "message": out_of_range["error"]["message"],
        "topic": "orders",
        "partition": 1,
        "offset": 7,
        "log_start_offset": 0,
        "high_watermark": 1,
    }
    assert missing["error"]["error"] == "topic_not_found"
    assert missing["error"]["topic"] == "missing"
    assert (_values(last), last["next_offset"]) == ([], 0)


# Access ---------------------------------------------------------------------------------------


def test_one_forbidden_topic_refuses_the_whole_fetch(
    make_api: MakeApi, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a reader of orders* under default deny, and records in orders and payments
    engine.create_topic("orders", 3)
    engine.create_topic("payments")
    _append(engine, "orders", 0, b"readable")
    _append(engine, "payments", 0, b"secret")
    grant(engine, CONSUMER, "orders*", ["consume"])
    api = make_api("deny", engine)
    reads = CountingReads(engine, monkeypatch)

    # When one request asks for both
    reply = api.send("fetch_many", body={"partitions": [_at("orders", 0), _at("payments", 0)]})

    # Then the whole request is refused and nothing was read
    body = assert_error(reply, 403, "forbidden")
    assert body["topic"] == "payments"
    assert reads.count == 0
    # And orders alone is served
    assert _values(_fetch(api, {"partitions": [_at("orders", 0)]})["partitions"][0]) == [
        b"readable"
    ]


def test_a_heartbeat_needs_consume_on_its_subscription_as_the_heartbeat_route_does(
    make_api: MakeApi, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.create_topic("orders", 3)
    engine.create_topic("payments")
    grant(engine, CONSUMER, "orders*", ["consume"])
    api = make_api("deny", engine)
    reads = CountingReads(engine, monkeypatch)
    member = {"group": "billing", "member_id": MEMBER, "topics": ["orders", "payments"]}

    reply = api.send("fetch_many", body={"partitions": [_at("orders", 0)], "member": member})
    heartbeat = api.send(
        "join_group_heartbeat", body={"topics": ["orders", "payments"], "member_id": MEMBER}
    )

    assert_error(reply, 403, "forbidden")
    assert_error(heartbeat, 403, "forbidden")
    assert reads.count == 0
    assert engine.groups.store.read_group("billing").members == ()


# Bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"partitions": [_at("orders", 0), _at("orders", 0, 3)]}, 400, "named twice"),
        ({"partitions": [_at("no such name", 0)]}, 400, "topic name"),
        ({"partitions": [_at("orders", 0)], "max_bytes": 0}, 422, "max_bytes"),
        ({"partitions": [_at("orders", 0)], "max_bytes": 3 * KIB * KIB + 1}, 422, "max_bytes"),
        (
            {"partitions": [_at("orders", 0)], "max_records": MAX_FETCH_RECORDS + 1},
            422,
            "max_records",
        ),
        ({"partitions": [_at("orders", 0, -1)]}, 422, "offset"),
        ({"partitions": [{"topic": "orders", "partition": 0}]}, 422, "offset"),
        ({"partitions": [_at("orders", 0) | {"extra": 1}]}, 422, "extra"),
        (
            {"partitions": [_at(f"t{i}", 0) for i in range(MAX_FETCH_PARTITIONS + 1)]},
            422,
            "partitions",
        ),
        (
            {
                "partitions": [_at("orders", 0)],
                "member": {"group": "billing", "topics": ["orders"]},
            },
            422,
            "member_id",
        ),
        (
            {
                "partitions": [_at("orders", 0)],
                "member": {"group": "b g", "member_id": MEMBER, "topics": ["orders"]},
            },
            400,
            "group id",
        ),
        (
            {
                "partitions": [_at("orders", 0)],
                "member": {"group": "billing", "member_id": "m 1", "topics": ["orders"]},
            },
            400,
            "member id",
        ),
        ({}, 422, "partitions"),
    ],
    ids=[
        "partition-twice",
        "bad-topic-name",
        "no-bytes",
        "too-many-bytes",
        "too-many-records",
        "negative-offset",
        "no-offset",
        "extra-field",
        "too-many-partitions",
        "heartbeat-without-member-id",
        "bad-group-id",
        "bad-member-id",
        "no-partitions-field",
    ],
)
def test_bad_input_is_refused_with_a_clear_message_before_anything_is_read(
    orders: Api,
    monkeypatch: pytest.MonkeyPatch,
    body: dict[str, Any],
    status: int,
    words: str,
) -> None:
    _append(orders.engine, "orders", 0, b"a")
    reads = CountingReads(orders.engine, monkeypatch)

    reply = orders.send("fetch_many", body=body)

    error = assert_error(reply, status, "invalid_request")
    assert words in error["message"]
    assert reads.count == 0
    with pytest.raises(Exception, match="does not exist"):
        orders.engine.describe_group("billing")


# Budget ------------------------------------------------------------------------------------


def test_the_budget_is_shared_by_every_partition_and_the_first_record_is_always_returned(
    orders: Api,
) -> None:
    engine = orders.engine
    _append(engine, "orders", 0, b"a" * 300 * KIB)  # alone larger than the whole budget
    _append(engine, "orders", 1, b"b" * 10 * KIB, b"c" * 10 * KIB)
    _append(engine, "orders", 2, b"d" * 10 * KIB)
    everything = [_at("orders", p) for p in range(3)]

    larger_first = _fetch(orders, {"partitions": everything, "max_bytes": 100 * KIB})
    small_first = _fetch(
        orders, {"partitions": [_at("orders", 1), _at("orders", 2)], "max_bytes": 15 * KIB}
    )
    by_records = _fetch(orders, {"partitions": everything[1:], "max_records": 2})

    # The first record of the request comes however large; nothing after it fits
    first, second, third = larger_first["partitions"]
    assert [len(v) for v in _values(first)] == [300 * KIB]
    assert (_values(second), second["next_offset"], second["high_watermark"]) == ([], 0, 2)
    assert (_values(third), third["next_offset"]) == ([], 0)
    # A budget spent within a partition stops there, and later partitions get nothing
    one, two = small_first["partitions"]
    assert (len(_values(one)), one["next_offset"]) == (1, 1)
    assert (_values(two), two["next_offset"]) == ([], 0)
    # max_records is shared too
    assert [len(_values(e)) for e in by_records["partitions"]] == [2, 0]


def test_an_engine_fetch_many_shares_the_budget_in_request_order(orders: Api) -> None:
    engine = orders.engine
    _append(engine, "orders", 0, b"x" * 40, b"y" * 40)
    _append(engine, "orders", 1, b"z" * 40)

    results = engine.fetcher.fetch_many(
        [FetchPosition("orders", 1, 0), FetchPosition("orders", 0, 0)], 60, 10
    )

    assert [[r.value for r in result.records] for result in results] == [[b"z" * 40], []]  # type: ignore[union-attr]


# Heartbeat carried by a fetch ----------------------------------------------------------------


def test_a_heartbeat_carried_by_a_fetch_takes_and_gives_up_leases_like_a_heartbeat(
    orders: Api,
) -> None:
    member = {"group": "billing", "member_id": MEMBER, "topics": ["orders"]}
    positions = [_at("orders", p) for p in range(3)]

    # A member heartbeating inside its fetch takes every free lease
    alone = _fetch(orders, {"partitions": positions, "member": member})["member"]
    assert [(a["partition"], a["lease_epoch"]) for a in alone["assignments"]] == [
        (0, 1),
        (1, 1),
        (2, 1),
    ]
    # Another member joins through the heartbeat route: nothing is free yet
    other = orders.send("join_group", body={"topics": ["orders"], "member_id": "other-1"}).json
    assert other["assignments"] == []

    # The next carried heartbeat gives up the highest partition, fenced by its epoch
    shared = _fetch(orders, {"partitions": positions, "member": member})["member"]
    assert [(a["partition"], a["lease_epoch"]) for a in shared["assignments"]] == [(0, 1), (1, 1)]
    taken = orders.send("join_group", body={"topics": ["orders"], "member_id": "other-1"}).json
    assert [(a["partition"], a["lease_epoch"]) for a in taken["assignments"]] == [(2, 3)]
    # The lease it gave up can no longer be committed at the old epoch
    commit = {
        "member_id": MEMBER,
        "offsets": [{"topic": "orders", "partition": 2, "offset": 0, "lease_epoch": 1}],
    }
    assert_error(orders.send("commit_offsets", body=commit), 409, "fenced")
    # And the carried heartbeat answers as the heartbeat route does
    route = orders.send("join_group_heartbeat", body={"topics": ["orders"], "member_id": MEMBER})
    assert _fetch(orders, {"partitions": [], "member": member})["member"] == route.json


def test_a_heartbeat_error_is_the_reply_member_and_the_records_still_come(orders: Api) -> None:
    _append(orders.engine, "orders", 0, b"a")
    member = {"group": "billing", "member_id": MEMBER, "topics": ["gone"]}

    body = _fetch(orders, {"partitions": [_at("orders", 0)], "member": member})

    assert _values(body["partitions"][0]) == [b"a"]
    assert body["member"]["error"] == "topic_not_found"


def test_the_single_partition_fetch_reply_has_a_cursor(orders: Api) -> None:
    reply = orders.send("fetch", query={"offset": 0})

    assert reply.status == 200, reply.text
    assert "cursor" in reply.json
