"""JSON a parser can choke on is refused with 4xx ``invalid_request`` and changes nothing.

Every route that takes a body gets the same hostile values in one of its fields: a body
nested 50,000 levels deep, an integer of 5,000 digits, and the non-JSON numbers Python's
``json`` accepts (``NaN``, ``Infinity``, ``-Infinity``) or turns into one (``1e400``).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api.conftest import Api, assert_error

DEEP = "[" * 50_000 + "]" * 50_000
HUGE = "9" * 5_000
NOT_FINITE = ("NaN", "Infinity", "-Infinity", "1e400")

BODIES: dict[str, tuple[dict[str, Any], str]] = {
    "create_topic": ({}, '{"name":"hostile","partitions":%s}'),
    "alter_topic": ({}, '{"partitions":%s}'),
    "produce": ({}, '{"records":[{"value":{"type":"JSON","data":%s}}]}'),
    "join_group": ({}, '{"topics":["orders"],"session_timeout_ms":%s}'),
    "commit_offsets": (
        {},
        '{"member_id":"m","offsets":[{"topic":"orders","partition":0,"offset":%s,'
        '"lease_epoch":1}]}',
    ),
    "reset_offsets": ({}, '{"topic":"orders","to":{"offset":%s}}'),
    "put_acl": ({}, '{"principal":"p","topic":"orders","operations":["consume"],"effect":%s}'),
    "delete_acl": (
        {},
        '{"principal":"p","topic":"orders","operations":["consume"],"effect":"allow","x":%s}',
    ),
}
"""Each route with a body: its sample event's overrides and a body with a hole for a value."""

QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("fetch", {"query": {"offset": HUGE}}),
    ("fetch", {"query": {"offset": 0, "max_records": HUGE}}),
    ("fetch", {"query": {"offset": 0, "max_bytes": HUGE}}),
    ("fetch", {"partition": HUGE}),
    ("offsets_timestamp", {"query": {"timestamp_ms": HUGE}}),
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


@pytest.mark.parametrize("value", [DEEP, HUGE, *NOT_FINITE], ids=["deep", "huge", *NOT_FINITE])
@pytest.mark.parametrize("route", sorted(BODIES))
def test_hostile_json_in_a_body_is_invalid_request_and_changes_nothing(
    orders: Api, route: str, value: str
) -> None:
    overrides, template = BODIES[route]
    before = _state(orders)

    reply = orders.send(route, raw_body=template % value, **overrides)

    assert reply.status in (400, 422), reply.text[:300]
    assert_error(reply, reply.status, "invalid_request")
    assert _state(orders) == before


@pytest.mark.parametrize(("route", "overrides"), QUERIES)
def test_a_huge_number_in_the_query_or_path_is_invalid_request(
    orders: Api, route: str, overrides: dict[str, Any]
) -> None:
    reply = orders.send(route, **overrides)

    assert reply.status in (400, 422), reply.text[:300]
    assert_error(reply, reply.status, "invalid_request")
