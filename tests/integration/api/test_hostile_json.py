"""JSON a parser can choke on is refused with 4xx ``invalid_request`` and changes nothing.

Every route that takes a body gets the same hostile values in one of its fields: a body
nested 50,000 levels deep, an integer of 5,000 digits, and the non-JSON numbers Python's
``json`` accepts (``NaN``, ``Infinity``, ``-Infinity``) or turns into one (``1e400``).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.integration.api.conftest import Api, assert_error

DEEP = "[" * 50_000 + "]" * 50_000
HUGE = "9" * 5_000
NOT_FINITE = ("NaN", "Infinity", "-Infinity", "1e400")

BODIES: dict[str, tuple[str, str]] = {
    "create_topic": ("create_topic", '{"name":"hostile","partitions":%s}'),
    "create_topic_config": ("create_topic", '{"name":"hostile","config":{"retention_ms":%s}}'),
    "alter_topic": ("alter_topic", '{"partitions":%s}'),
    "alter_topic_config": ("alter_topic", '{"config":{"retention_bytes":%s}}'),
    "produce_value": ("produce", '{"records":[{"value":{"type":"JSON","data":%s}}]}'),
    "produce_timestamp": ("produce", '{"records":[{"timestamp_ms":%s}]}'),
    "produce_producer": (
        "produce",
        '{"records":[{}],"producer":{"id":%s,"epoch":0,"sequence":0}}',
    ),
    "produce_sequences": (
        "produce",
        '{"records":[{}],"producer":{"id":1,"epoch":0,"sequences":{"0":%s}}}',
    ),
    "join_group": ("join_group", '{"topics":["orders"],"session_timeout_ms":%s}'),
    "commit_offsets": (
        "commit_offsets",
        '{"member_id":"m","offsets":[{"topic":"orders","partition":0,"offset":%s,'
        '"lease_epoch":1}]}',
    ),
    "reset_offsets": ("reset_offsets", '{"topic":"orders","to":{"offset":%s}}'),
    "reset_timestamp": ("reset_offsets", '{"topic":"orders","to":{"timestamp_ms":%s}}'),
    "put_acl": (
        "put_acl",
        '{"principal":"p","topic":"orders","operations":["consume"],"effect":%s}',
    ),
    "delete_acl": (
        "delete_acl",
        '{"principal":"p","topic":"orders","operations":["consume"],"effect":"allow","x":%s}',
    ),
}
"""Each route with a body, with a hole for a value in one of its fields."""

BEYOND_INT64 = str(2**63)
"""Valid JSON, but no offset, epoch, id, sequence or config value can be this large."""

QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("fetch", {"query": {"offset": HUGE}}),
    ("fetch", {"query": {"offset": 0, "max_records": HUGE}}),
    ("fetch", {"query": {"offset": 0, "max_bytes": HUGE}}),
    ("fetch", {"partition": HUGE}),
    ("offsets_timestamp", {"query": {"timestamp_ms": HUGE}}),
    ("offsets_timestamp", {"query": {"timestamp_ms": BEYOND_INT64}}),
    ("fetch", {"query": {"offset": BEYOND_INT64}}),
    ("offsets_latest", {"partition": HUGE}),
]


def _state(api: Api) -> list[tuple[int, Any]]:
    """Everything a refused request could have changed, as the API reports it."""
    replies = [
        api.send("list_topics"),
        api.send("describe_topic"),
        api.send("fetch", query={"offset": 0}),
        api.send("describe_group"),
        api.send("list_acls"),
    ]
    return [(reply.status, reply.json) for reply in replies]


def _send_hostile(api: Api, case: str, value: str) -> None:
    route, template = BODIES[case]
    before = _state(api)

    reply = api.send(route, raw_body=template % value)

    assert reply.status in (400, 422), reply.text[:300]
    assert_error(reply, reply.status, "invalid_request")
    assert _state(api) == before


@pytest.mark.parametrize("value", [DEEP, HUGE, *NOT_FINITE], ids=["deep", "huge", *NOT_FINITE])
@pytest.mark.parametrize("case", sorted(BODIES))
def test_hostile_json_in_a_body_is_invalid_request_and_changes_nothing(
    orders: Api, case: str, value: str
) -> None:
    _send_hostile(orders, case, value)


@pytest.mark.parametrize("case", sorted(set(BODIES) - {"produce_value"}))
def test_an_integer_beyond_64_bits_is_invalid_request_and_changes_nothing(
    orders: Api, case: str
) -> None:
    _send_hostile(orders, case, BEYOND_INT64)


def test_a_large_integer_in_json_data_is_kept_as_its_text(orders: Api) -> None:
    body = '{"records":[{"value":{"type":"JSON","data":' + BEYOND_INT64 + '},"partition":0}]}'

    reply = orders.send("produce", raw_body=body)

    assert reply.status == 200, reply.text
    records = orders.send("fetch", partition=0, query={"offset": 0}).json["records"]
    assert [base64.b64decode(r["value"]) for r in records] == [BEYOND_INT64.encode()]


@pytest.mark.parametrize(("route", "overrides"), QUERIES)
def test_a_huge_number_in_the_query_or_path_is_invalid_request(
    orders: Api, route: str, overrides: dict[str, Any]
) -> None:
    reply = orders.send(route, **overrides)

    assert reply.status in (400, 422), reply.text[:300]
    assert_error(reply, reply.status, "invalid_request")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"name":"hostile","partitions":', "EOF while parsing a value"),
        ('{"name":"hostile"', "EOF while parsing an object"),
        ("   ", "EOF while parsing a value"),
        ('{"name":"hostile","partitions":' + str(2**64) + "}", "integers fit in 64 bits"),
        ('{"name":"hostile","partitions":NaN}', "expected value"),
        (DEEP, "recursion limit exceeded"),
    ],
    ids=["truncated-value", "truncated-object", "blank", "beyond-64-bits", "NaN", "deep"],
)
def test_a_body_that_is_not_json_is_refused_with_the_parsers_reason(
    api: Api, text: str, reason: str
) -> None:
    reply = api.send("create_topic", raw_body=text)

    message = assert_error(reply, 422, "invalid_request")["message"]
    assert message.startswith("request body is not valid JSON: "), message
    assert reason in message, message
    assert api.send("list_topics").json == {"topics": []}
