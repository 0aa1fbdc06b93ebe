"""Consumer group routes through the API handler: join, heartbeat, commit, leave, describe,
reset, their errors, their access rules and their OpenAPI description.

The sample events are the group ``billing`` of the consumer role, member
``billing-service-7f3a``, on ``orders`` (3 partitions, made by the ``orders`` fixture).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lakelog import Engine, GroupNotFoundError, Record
from lakelog.limits import MAX_OFFSETS_PER_COMMIT, MAX_TOPICS_PER_MEMBER
from lakelog.storage.faults import FailPoint
from tests.conftest import MakeFaulty
from tests.integration.api.conftest import (
    ACCOUNT,
    ADMIN,
    CONSUMER,
    Api,
    MakeApi,
    assert_error,
    grant,
    load_event,
)

MEMBER = "billing-service-7f3a"
STRANGER = f"arn:aws:sts::{ACCOUNT}:assumed-role/stranger/session"
SAMPLE_COMMIT: dict[str, Any] = json.loads(load_event("commit_offsets")["body"])


def _heartbeat(api: Api, **overrides: Any) -> dict[str, Any]:
    reply = api.send("join_group_heartbeat", **overrides)
    assert reply.status == 200, reply.text
    body: dict[str, Any] = reply.json
    return body


def _describe(api: Api, **overrides: Any) -> dict[str, Any]:
    reply = api.send("describe_group", **overrides)
    assert reply.status == 200, reply.text
    body: dict[str, Any] = reply.json
    return body


def _commit(offset: int, partition: int = 0, epoch: int = 1, **fields: Any) -> dict[str, Any]:
    entry = {"topic": "orders", "partition": partition, "offset": offset, "lease_epoch": epoch}
    return {"member_id": MEMBER, "offsets": [{**entry, **fields}]}


def _no_group(engine: Engine, group: str = "billing") -> None:
    with pytest.raises(GroupNotFoundError):
        engine.describe_group(group)


# Join and heartbeat -----------------------------------------------------------------------


def test_join_gives_a_fresh_member_its_session_and_every_lease(orders: Api) -> None:
    reply = orders.send("join_group")

    assert reply.status == 200, reply.text
    body = reply.json
    assert set(body) == {"member_id", "session_timeout_ms", "heartbeat_interval_ms", "assignments"}
    assert len(body["member_id"]) == 32
    assert (body["session_timeout_ms"], body["heartbeat_interval_ms"]) == (30_000, 10_000)
    assert body["assignments"] == [
        {"topic": "orders", "partition": p, "lease_epoch": 1, "committed_offset": None}
        for p in range(3)
    ]


def test_heartbeats_keep_the_member_and_its_leases_and_a_second_member_shares_them(
    orders: Api,
) -> None:
    first = _heartbeat(orders)
    assert first["member_id"] == MEMBER
    assert _heartbeat(orders) == first

    # When another member joins and both heartbeat again, the partitions are shared 2 + 1
    other = orders.send("join_group", body={"topics": ["orders"], "member_id": "other-1"}).json
    mine = _heartbeat(orders)
    other = orders.send("join_group", body={"topics": ["orders"], "member_id": "other-1"}).json
    assert sorted([len(mine["assignments"]), len(other["assignments"])]) == [1, 2]
    partitions = [a["partition"] for a in mine["assignments"] + other["assignments"]]
    assert sorted(partitions) == [0, 1, 2]


@pytest.mark.parametrize(
    ("name", "overrides", "status", "code", "message"),
    [
        ("join_group_unknown_topic", {}, 404, "topic_not_found", "'refunds' does not exist"),
        ("join_group_bad_body", {}, 422, "invalid_request", "topics"),
        ("join_group_invalid_id", {}, 400, "invalid_request", "group id"),
        ("join_group", {"body": {"topics": []}}, 422, "invalid_request", "topics"),
        (
            "join_group",
            {"body": {"topics": [f"t{i}" for i in range(MAX_TOPICS_PER_MEMBER + 1)]}},
            422,
            "invalid_request",
            "topics",
        ),
        (
            "join_group",
            {"body": {"topics": ["orders"], "session_timeout_ms": 300_001}},
            422,
            "invalid_request",
            "session_timeout_ms",
        ),
        (
            "join_group",
            {"body": {"topics": ["orders"], "member_id": "no spaces"}},
            400,
            "invalid_request",
            "member id",
        ),
        (
            "join_group",
            {"body": {"topics": ["orders"], "extra": 1}},
            422,
            "invalid_request",
            "extra",
        ),
        ("join_group", {"raw_body": "{not json"}, 422, "invalid_request", ""),
    ],
    ids=[
        "unknown-topic",
        "bad-body",
        "invalid-group-id",
        "no-topics",
        "too-many-topics",
        "session-too-long",
        "bad-member-id",
        "extra-field",
        "not-json",
    ],
)
def test_a_bad_join_is_refused_and_creates_no_group(
    orders: Api, name: str, overrides: dict[str, Any], status: int, code: str, message: str
) -> None:
    body = assert_error(orders.send(name, **overrides), status, code)

    assert message in body["message"]
    _no_group(orders.engine)


# Commit -----------------------------------------------------------------------------------


def test_commit_then_describe_shows_the_offset_and_the_lag(orders: Api) -> None:
    # Given 5 records on partition 0 and a member holding every partition
    orders.engine.append("orders", [Record(value=b"v", partition=0) for _ in range(5)])
    joined = _heartbeat(orders)

    # When it commits offset 2 of partition 0 (the sample)
    reply = orders.send("commit_offsets")

    # Then 204, and describe reports the offset, its owner and the lag
    assert reply.status == 204, reply.text
    assert reply.text == ""
    body = _describe(orders)
    assert body["group"] == "billing"
    assert [m["member_id"] for m in body["members"]] == [MEMBER]
    member = body["members"][0]
    assert member["topics"] == ["orders"]
    assert member["expires_ms"] > 0
    assert member["assignments"] == [{"topic": "orders", "partition": p} for p in range(3)]
    assert body["partitions"][0] == {
        "topic": "orders",
        "partition": 0,
        "owner": MEMBER,
        "lease_epoch": 1,
        "committed_offset": 2,
        "high_watermark": 5,
        "lag": 3,
    }
    assert body["partitions"][1]["committed_offset"] is None
    assert body["partitions"][1]["lag"] is None
    # and the next heartbeat hands the committed offset back
    again = _heartbeat(orders)
    assert again["assignments"][0]["committed_offset"] == 2
    assert again["assignments"][1:] == joined["assignments"][1:]


def test_a_commit_at_a_stale_epoch_or_by_a_non_owner_is_409_fenced_and_changes_nothing(
    orders: Api,
) -> None:
    # Nobody holds the lease yet
    body = assert_error(orders.send("commit_offsets"), 409, "fenced")
    assert MEMBER in body["message"]
    _heartbeat(orders)

    assert_error(orders.send("commit_offsets", body=_commit(2, epoch=2)), 409, "fenced")
    other = _commit(2) | {"member_id": "someone-else"}
    assert_error(orders.send("commit_offsets", body=other), 409, "fenced")
    assert {p["committed_offset"] for p in _describe(orders)["partitions"]} == {None}


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (_commit(-1), 422, "invalid_request", "offset"),
        (_commit(1, partition=-1), 422, "invalid_request", "partition"),
        (_commit(1, partition=3), 400, "invalid_request", "partition 3 does not exist"),
        (_commit(1, topic="refunds"), 404, "topic_not_found", "'refunds'"),
        (_commit(1, epoch="1"), 422, "invalid_request", "lease_epoch"),
        ({"offsets": []}, 422, "invalid_request", "member_id"),
        (
            {
                "member_id": MEMBER,
                "offsets": [_commit(1)["offsets"][0]] * (MAX_OFFSETS_PER_COMMIT + 1),
            },
            422,
            "invalid_request",
            "offsets",
        ),
        (
            {"member_id": MEMBER, "offsets": _commit(1)["offsets"] * 2},
            400,
            "invalid_request",
            "twice",
        ),
    ],
    ids=[
        "negative-offset",
        "negative-partition",
        "no-such-partition",
        "unknown-topic",
        "epoch-as-text",
        "no-member",
        "too-many",
        "duplicate",
    ],
)
def test_a_bad_commit_is_refused_and_commits_nothing(
    orders: Api, body: dict[str, Any], status: int, code: str, message: str
) -> None:
    _heartbeat(orders)

    reply = assert_error(orders.send("commit_offsets", body=body), status, code)

    assert message in reply["message"]
    assert {p["committed_offset"] for p in _describe(orders)["partitions"]} == {None}


def test_a_storage_failure_during_a_commit_is_503_and_commits_nothing(
    make_faulty: MakeFaulty, make_api: MakeApi
) -> None:
    engine, injector = make_faulty()
    api = make_api("allow", engine)
    assert api.send("create_topic").status == 201
    _heartbeat(api)
    injector.arm(FailPoint.BEFORE_COMMIT)

    body = assert_error(api.send("commit_offsets"), 503, "unavailable")

    assert "before_commit" in body["message"]
    assert {p["committed_offset"] for p in _describe(api)["partitions"]} == {None}
    assert api.send("commit_offsets").status == 204  # the retry lands


def test_the_sample_bad_commit_is_422(orders: Api) -> None:
    body = assert_error(orders.send("commit_offsets_bad_body"), 422, "invalid_request")
    assert "offset" in body["message"]


# Leave and describe -----------------------------------------------------------------------


def test_leave_releases_every_lease_at_once(orders: Api) -> None:
    _heartbeat(orders)

    reply = orders.send("leave_group")

    assert reply.status == 204, reply.text
    assert reply.text == ""
    body = _describe(orders)
    assert body["members"] == []
    assert [(p["owner"], p["lease_epoch"]) for p in body["partitions"]] == [(None, 2)] * 3
    assert orders.send("leave_group").status == 204  # leaving twice is not an error


def test_leave_and_describe_with_invalid_ids_are_400(orders: Api) -> None:
    bad_member = orders.send("leave_group", path={"member_id": "a:b"})
    assert "member id" in assert_error(bad_member, 400, "invalid_request")["message"]
    bad_group = orders.send("describe_group", path={"group": "a:b"})
    assert "group id" in assert_error(bad_group, 400, "invalid_request")["message"]


def test_describe_of_an_unknown_group_is_404_group_not_found(orders: Api) -> None:
    body = assert_error(orders.send("describe_group_unknown"), 404, "group_not_found")
    assert "'nobody'" in body["message"]


# Reset ------------------------------------------------------------------------------------


def test_reset_is_409_while_a_member_is_live_and_200_once_it_left(orders: Api) -> None:
    orders.engine.append("orders", [Record(value=b"v", partition=1) for _ in range(4)])
    joined = _heartbeat(orders)

    body = assert_error(orders.send("reset_offsets"), 409, "group_not_empty")
    assert MEMBER in body["message"]

    assert orders.send("leave_group").status == 204
    reply = orders.send("reset_offsets", body={"topic": "orders", "to": "latest"})
    assert reply.status == 200, reply.text
    assert reply.json == {
        "topic": "orders",
        "partitions": [
            {"partition": 0, "offset": 0},
            {"partition": 1, "offset": 4},
            {"partition": 2, "offset": 0},
        ],
    }
    # The member's next heartbeat starts from the reset offsets, at new epochs
    again = _heartbeat(orders)
    assert [a["committed_offset"] for a in again["assignments"]] == [0, 4, 0]
    assert all(
        a["lease_epoch"] > b["lease_epoch"]
        for a, b in zip(again["assignments"], joined["assignments"], strict=True)
    )


@pytest.mark.parametrize(
    ("overrides", "offsets"),
    [
        ({}, [0, 0, 0]),
        ({"body": {"topic": "orders", "to": {"offset": 1}}}, [1, 1, 0]),
        ({"body": {"topic": "orders", "to": {"offset": 100}}}, [2, 2, 0]),
    ],
    ids=["earliest", "offset", "offset-clamped"],
)
def test_reset_targets(orders: Api, overrides: dict[str, Any], offsets: list[int]) -> None:
    orders.engine.append("orders", [Record(value=b"v", partition=p) for p in (0, 0, 1, 1)])

    reply = orders.send("reset_offsets", **overrides)

    assert reply.status == 200, reply.text
    assert [p["offset"] for p in reply.json["partitions"]] == offsets
    assert [p["committed_offset"] for p in _describe(orders)["partitions"]] == offsets


def test_reset_to_a_timestamp_finds_the_first_record_at_or_after_it(orders: Api) -> None:
    # Given the sample records (the third, on partition 2, has the sample's timestamp)
    assert orders.send("produce").status == 200

    reply = orders.send("reset_offsets_timestamp")

    assert reply.status == 200, reply.text
    by_partition = {p["partition"]: p["offset"] for p in reply.json["partitions"]}
    high_watermarks = [p.high_watermark for p in orders.engine.describe_topic("orders").partitions]
    assert by_partition[2] == 0
    for partition in (0, 1):  # the other records are stamped "now", after the sample time
        assert by_partition[partition] in (0, high_watermarks[partition])


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"name": "reset_offsets_bad_target"}, 422, "invalid_request"),
        (
            {"body": {"topic": "orders", "to": {"offset": 1, "timestamp_ms": 2}}},
            422,
            "invalid_request",
        ),
        ({"body": {"topic": "orders", "to": {"offset": -1}}}, 422, "invalid_request"),
        ({"body": {"topic": "orders"}}, 422, "invalid_request"),
        ({"body": {"topic": "refunds", "to": "earliest"}}, 404, "topic_not_found"),
        ({"path": {"group": "a:b"}}, 400, "invalid_request"),
    ],
    ids=["sideways", "two-targets", "negative-offset", "no-target", "unknown-topic", "bad-group"],
)
def test_a_bad_reset_is_refused_and_writes_nothing(
    orders: Api, overrides: dict[str, Any], status: int, code: str
) -> None:
    changes = dict(overrides)
    name = changes.pop("name", "reset_offsets")

    assert_error(orders.send(name, **changes), status, code)

    _no_group(orders.engine)


# Access -----------------------------------------------------------------------------------


@pytest.fixture
def secured(engine: Engine) -> Engine:
    """orders (3 partitions) and payments; the admin may administer orders."""
    engine.create_topic("orders", 3)
    engine.create_topic("payments", 1)
    grant(engine, ADMIN, "orders", ["admin"])
    return engine


GROUP_ROUTES = ["join_group", "commit_offsets", "describe_group", "leave_group", "reset_offsets"]


@pytest.mark.parametrize("name", GROUP_ROUTES)
def test_under_default_deny_a_caller_without_rules_is_forbidden_every_group_route(
    make_api: MakeApi, secured: Engine, name: str
) -> None:
    # Given a group whose member (the sample's) holds every partition of orders
    secured.join_group("billing", ["orders"], MEMBER)
    before = secured.describe_group("billing")
    api = make_api("deny", secured)

    body = assert_error(api.send(name, principal=STRANGER), 403, "forbidden")

    assert STRANGER in body["message"]
    after = secured.describe_group("billing")
    assert (after.partitions, [m.member_id for m in after.members]) == (
        before.partitions,
        [m.member_id for m in before.members],
    )


def test_consume_on_the_topic_allows_every_member_route_but_not_reset(
    make_api: MakeApi, secured: Engine
) -> None:
    grant(secured, CONSUMER, "orders", ["consume"])
    api = make_api("deny", secured)

    assert _heartbeat(api)["assignments"]
    assert api.send("commit_offsets").status == 204
    assert _describe(api)["partitions"][0]["committed_offset"] == 2
    assert api.send("leave_group").status == 204
    assert_error(api.send("reset_offsets", principal=CONSUMER), 403, "forbidden")
    reply = api.send("reset_offsets")  # the admin, who holds admin on orders
    assert reply.status == 200, reply.text


def test_every_topic_involved_needs_consume(make_api: MakeApi, secured: Engine) -> None:
    # Given the consumer may consume orders but not payments
    grant(secured, CONSUMER, "orders", ["consume"])
    api = make_api("deny", secured)

    # A join naming payments too is refused and writes nothing
    both = {"topics": ["orders", "payments"], "member_id": MEMBER}
    assert_error(api.send("join_group", body=both), 403, "forbidden")
    _no_group(secured)
    # A group that also reads payments cannot be described by it
    secured.join_group("billing", ["orders", "payments"], "other-member")
    assert_error(api.send("describe_group"), 403, "forbidden")
    # nor can that member be made to leave by it
    assert_error(api.send("leave_group", path={"member_id": "other-member"}), 403, "forbidden")
    assert [m.member_id for m in secured.describe_group("billing").members] == ["other-member"]
    # nor a commit name payments
    payments = _commit(1) | {"offsets": [_commit(1, topic="payments")["offsets"][0]]}
    assert_error(api.send("commit_offsets", body=payments), 403, "forbidden")


@pytest.mark.parametrize("name", GROUP_ROUTES)
def test_a_group_request_without_principal_is_401(orders: Api, name: str) -> None:
    assert_error(orders.send(name, principal=None), 401, "unauthorized")
    _no_group(orders.engine)


# OpenAPI ----------------------------------------------------------------------------------


def test_openapi_describes_the_group_routes_and_their_replies(orders: Api) -> None:
    paths = orders.send("openapi").json["paths"]

    members = paths["/v1/groups/{group}/members"]["post"]
    leave = paths["/v1/groups/{group}/members/{member_id}"]["delete"]
    commit = paths["/v1/groups/{group}/offsets"]["post"]
    describe = paths["/v1/groups/{group}"]["get"]
    reset = paths["/v1/groups/{group}/offsets/reset"]["post"]
    assert {"200", "403", "404", "422"} <= set(members["responses"])
    assert {"204", "403"} <= set(leave["responses"])
    assert {"204", "403", "404", "409", "413"} <= set(commit["responses"])
    assert {"200", "403", "404"} <= set(describe["responses"])
    assert {"200", "403", "404", "409"} <= set(reset["responses"])
    for operation in (members, leave, commit, describe, reset):
        assert operation["tags"] == ["groups"]
    assert {p["name"] for p in leave["parameters"]} == {"group", "member_id"}
    body = commit["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/CommitRequest")
