"""Access control through the API: allow, deny, prefix patterns, defaults, admin routes.

A rule matches when its principal and topic patterns (exact, or a prefix ending in ``*``)
match and it lists the operation; any matching deny forbids, else any matching allow
permits, else the deployment's default decides. Managing rules needs admin on ``*``.

Rules are stored before a handler's first request (`grant`), or changed through
``PUT``/``DELETE /v1/acls`` of the same handler, since a handler caches rules for 10 s.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest

from lakelog import Engine
from tests.integration.api.conftest import (
    ACCOUNT,
    ADMIN,
    CONSUMER,
    PRODUCER,
    Api,
    MakeApi,
    assert_error,
    grant,
    hold_producer,
    load_event,
)

BILLING_READER = f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-reader/nightly"
BILLING_AUDIT = f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-audit/q1-review"
BILL = f"arn:aws:sts::{ACCOUNT}:assumed-role/bill/adhoc"
TEAM_ADMIN = f"arn:aws:sts::{ACCOUNT}:assumed-role/orders-team-admin/alice"
STRANGER = f"arn:aws:sts::{ACCOUNT}:assumed-role/stranger/session"

TOPICS = ["orders", "orders.eu", "payments"]
SAMPLE_RULE: dict[str, Any] = json.loads(load_event("put_acl")["body"])
"""The sample rule: billing-* roles may consume orders*."""


@pytest.fixture
def secured(engine: Engine) -> Engine:
    """An engine with three topics, a cluster admin and the sample rule, and no handler yet."""
    engine.create_topic("orders", 3)
    engine.create_topic("orders.eu")
    engine.create_topic("payments")
    grant(engine, ADMIN, "*", ["admin"])
    grant(engine, f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-*", "orders*", ["consume"])
    return engine


def _fetch(api: Api, principal: str, topic: str = "orders") -> int:
    return api.send("fetch", principal=principal, topic=topic).status


def _produce(api: Api, principal: str, topic: str = "orders") -> int:
    record = {"value": {"type": "STRING", "data": "hello"}}
    return api.send("produce", principal=principal, topic=topic, body={"records": [record]}).status


def _state(engine: Engine) -> tuple[list[str], list[int], list[Any]]:
    """Topics, the high watermarks of "orders" and the rules: what a refusal must not change."""
    watermarks = [p.high_watermark for p in engine.describe_topic("orders").partitions]
    rules = sorted(engine.context.catalog.list_acls(), key=repr)
    return engine.list_topics(), watermarks, rules


def _acl(
    principal: str, topic: str, operations: list[str], effect: str = "allow"
) -> dict[str, Any]:
    return {"principal": principal, "topic": topic, "operations": operations, "effect": effect}


# Each route's sample event, made valid for the secured engine, with the status it gets
# when the caller is allowed. The new topic name keeps create_topic from a 409.
ROUTE_CASES: list[tuple[str, dict[str, Any], int]] = [
    ("create_topic", {"body": {"name": "fresh"}}, 201),
    ("list_topics", {}, 200),
    ("describe_topic", {}, 200),
    ("alter_topic", {}, 200),
    ("delete_topic", {}, 204),
    ("produce", {}, 200),
    ("produce_idempotent", {}, 200),
    ("fetch", {}, 200),
    ("fetch_many", {}, 200),
    ("offsets_earliest", {}, 200),
    ("offsets_latest", {}, 200),
    ("offsets_timestamp", {}, 200),
    ("put_acl", {}, 200),
    ("list_acls", {}, 200),
    ("delete_acl", {}, 204),
]
ROUTE_IDS = [case[0] for case in ROUTE_CASES]


@pytest.mark.parametrize(("name", "overrides", "status"), ROUTE_CASES, ids=ROUTE_IDS)
def test_under_default_deny_a_principal_without_rules_is_forbidden_every_route(
    make_api: MakeApi, secured: Engine, name: str, overrides: dict[str, Any], status: int
) -> None:
    # Given a deployment that denies by default, and a caller no rule mentions
    api = make_api("deny", secured)
    before = _state(secured)

    # When it calls the route
    reply = api.send(name, principal=STRANGER, **overrides)

    # Then it is refused (listing topics is filtered instead) and nothing changed
    if name == "list_topics":
        assert reply.status == 200, reply.text
        assert reply.json == {"topics": []}
    else:
        body = assert_error(reply, 403, "forbidden")
        assert STRANGER in body["message"]
    assert _state(secured) == before


@pytest.mark.parametrize(("name", "overrides", "status"), ROUTE_CASES, ids=ROUTE_IDS)
def test_a_request_without_principal_is_unauthorized_on_every_route(
    make_api: MakeApi, secured: Engine, name: str, overrides: dict[str, Any], status: int
) -> None:
    api = make_api("allow", secured)
    before = _state(secured)

    assert_error(api.send(name, principal=None, **overrides), 401, "unauthorized")
    assert _state(secured) == before


@pytest.mark.parametrize(("name", "overrides", "status"), ROUTE_CASES, ids=ROUTE_IDS)
def test_under_default_allow_a_principal_without_rules_may_call_every_route(
    make_api: MakeApi, secured: Engine, name: str, overrides: dict[str, Any], status: int
) -> None:
    api = make_api("allow", secured)
    hold_producer(secured, STRANGER)  # the sample idempotent event's id, obtained by it

    reply = api.send(name, principal=STRANGER, **overrides)

    assert reply.status == status, reply.text


@pytest.mark.parametrize("name", ["openapi", "docs"])
@pytest.mark.parametrize("default_acl", ["allow", "deny"])
def test_openapi_and_docs_are_served_to_anyone(
    make_api: MakeApi, secured: Engine, name: str, default_acl: Literal["allow", "deny"]
) -> None:
    api = make_api(default_acl, secured)

    assert api.send(name).status == 200
    assert api.send(name, principal=STRANGER).status == 200


def test_an_allow_rule_permits_only_its_operations_on_its_topic(
    make_api: MakeApi, secured: Engine
) -> None:
    # Given the producer may produce to "orders", under default deny
    grant(secured, PRODUCER, "orders", ["produce"])
    api = make_api("deny", secured)

    # Then it may produce there, but not consume there nor produce elsewhere
    assert _produce(api, PRODUCER) == 200
    assert_error(api.send("fetch", principal=PRODUCER), 403, "forbidden")
    assert_error(api.send("produce", principal=PRODUCER, topic="payments"), 403, "forbidden")
    assert_error(api.send("produce", principal=PRODUCER, topic="orders.eu"), 403, "forbidden")
    assert _produce(api, STRANGER) == 403


def test_a_deny_rule_forbids_under_default_allow(make_api: MakeApi, secured: Engine) -> None:
    # Given the consumer is denied consume on "orders", under default allow
    grant(secured, CONSUMER, "orders", ["consume"], effect="deny")
    api = make_api("allow", secured)

    # Then it may not fetch or look up offsets there, but may still produce, and others fetch
    assert_error(api.send("fetch", principal=CONSUMER), 403, "forbidden")
    assert_error(api.send("offsets_earliest", principal=CONSUMER), 403, "forbidden")
    assert_error(api.send("offsets_timestamp", principal=CONSUMER), 403, "forbidden")
    assert _produce(api, CONSUMER) == 200
    assert _fetch(api, CONSUMER, "payments") == 200
    assert _fetch(api, STRANGER) == 200


def test_principal_prefix_pattern_matches_every_principal_starting_with_it(
    make_api: MakeApi, secured: Engine
) -> None:
    # Given the sample rule: roles "billing-*" may consume "orders*"
    api = make_api("deny", secured)

    assert _fetch(api, BILLING_READER) == 200
    assert _fetch(api, BILLING_AUDIT) == 200
    assert _fetch(api, BILL) == 403
    assert _fetch(api, CONSUMER) == 403
    assert _fetch(api, "arn:aws:sts::999999999999:assumed-role/billing-reader/x") == 403


def test_topic_prefix_pattern_matches_every_topic_starting_with_it(
    make_api: MakeApi, secured: Engine
) -> None:
    api = make_api("deny", secured)

    assert _fetch(api, BILLING_READER, "orders") == 200
    assert _fetch(api, BILLING_READER, "orders.eu") == 200
    assert _fetch(api, BILLING_READER, "payments") == 403
    # The rule covers a topic created after it
    secured.create_topic("orders-archive")
    assert _fetch(api, BILLING_READER, "orders-archive") == 200


@pytest.mark.parametrize(
    ("allow", "deny"),
    [
        (("billing-*", "orders*"), ("billing-reader/nightly", "orders.eu")),
        (("billing-reader/nightly", "orders.eu"), ("billing-*", "orders*")),
        (("billing-reader/nightly", "orders.eu"), ("billing-reader/nightly", "orders.eu")),
        (("billing-reader/nightly", "orders.eu"), ("*", "*")),
    ],
    ids=["exact-deny-over-prefix-allow", "prefix-deny-over-exact-allow", "same-rule", "all"],
)
def test_deny_wins_over_allow_whichever_is_more_specific(
    make_api: MakeApi,
    engine: Engine,
    allow: tuple[str, str],
    deny: tuple[str, str],
) -> None:
    # Given an allow rule and a deny rule that both match billing-reader on "orders.eu"
    engine.create_topic("orders")
    engine.create_topic("orders.eu")
    role = f"arn:aws:sts::{ACCOUNT}:assumed-role/"
    deny_principal = deny[0] if deny[0] == "*" else role + deny[0]
    grant(engine, role + allow[0], allow[1], ["consume"])
    grant(engine, deny_principal, deny[1], ["consume"], effect="deny")
    api = make_api("allow", engine)

    # Then the deny wins
    assert_error(api.send("fetch", principal=BILLING_READER, topic="orders.eu"), 403, "forbidden")


def test_deny_on_one_operation_leaves_other_allowed_operations(
    make_api: MakeApi, secured: Engine
) -> None:
    grant(secured, BILLING_READER, "orders*", ["produce", "consume"])
    grant(secured, BILLING_READER, "orders.eu", ["produce"], effect="deny")
    api = make_api("deny", secured)

    assert _produce(api, BILLING_READER, "orders") == 200
    assert _produce(api, BILLING_READER, "orders.eu") == 403
    assert _fetch(api, BILLING_READER, "orders.eu") == 200


def test_topic_admin_routes_need_admin_on_the_topic(make_api: MakeApi, secured: Engine) -> None:
    # Given a producer and consumer of "orders*", and a team admin of "orders*"
    grant(secured, PRODUCER, "orders*", ["produce", "consume"])
    grant(secured, TEAM_ADMIN, "orders*", ["admin"])
    api = make_api("deny", secured)

    # Then the producer may not create, alter or delete topics
    for name, overrides in (
        ("create_topic", {"body": {"name": "orders.us"}}),
        ("alter_topic", {}),
        ("delete_topic", {"topic": "orders.eu"}),
    ):
        assert_error(api.send(name, principal=PRODUCER, **overrides), 403, "forbidden")

    # And the team admin may, on its own topics only
    assert api.send("create_topic", principal=TEAM_ADMIN, body={"name": "orders.us"}).status == 201
    assert api.send("alter_topic", principal=TEAM_ADMIN).status == 200
    assert api.send("delete_topic", principal=TEAM_ADMIN, topic="orders.eu").status == 204
    denied = api.send("create_topic", principal=TEAM_ADMIN, body={"name": "payments.us"})
    assert_error(denied, 403, "forbidden")
    assert secured.list_topics() == ["orders", "orders.us", "payments"]


def test_admin_of_some_topics_may_not_manage_access_rules(
    make_api: MakeApi, secured: Engine
) -> None:
    grant(secured, TEAM_ADMIN, "orders*", ["admin", "produce", "consume"])
    api = make_api("deny", secured)

    for name in ("put_acl", "list_acls", "delete_acl"):
        assert_error(api.send(name, principal=TEAM_ADMIN), 403, "forbidden")
    # Not even a rule about its own topics
    own = _acl(TEAM_ADMIN, "orders", ["consume"])
    assert_error(api.send("put_acl", principal=TEAM_ADMIN, body=own), 403, "forbidden")


def test_cluster_admin_manages_rules_and_changes_apply_at_once(
    make_api: MakeApi, secured: Engine
) -> None:
    # Given a reader with no rule of its own
    api = make_api("deny", secured)
    reader = f"arn:aws:sts::{ACCOUNT}:assumed-role/ledger-reader/etl"
    rule = _acl(reader, "payments", ["consume", "produce"])
    assert _fetch(api, reader, "payments") == 403

    # When the cluster admin (admin on "*") adds a rule through the API
    put = api.send("put_acl", body=rule)

    # Then it is stored and applies to the next request of the same function instance
    assert put.status == 200, put.text
    assert put.json == rule
    assert _fetch(api, reader, "payments") == 200
    listed = api.send("list_acls").json["acls"]
    assert _acl(reader, "payments", ["consume", "produce"]) in listed
    assert _acl(ADMIN, "*", ["admin"]) in listed

    # When it removes one operation, then the other remains
    removed = api.send("delete_acl", body=_acl(reader, "payments", ["consume"]))
    assert removed.status == 204
    assert removed.text == ""
    assert _fetch(api, reader, "payments") == 403
    assert _produce(api, reader, "payments") == 200
    assert _acl(reader, "payments", ["produce"]) in api.send("list_acls").json["acls"]

    # When it removes the last one, then the rule is gone
    assert api.send("delete_acl", body=_acl(reader, "payments", ["produce"])).status == 204
    assert all(r["principal"] != reader for r in api.send("list_acls").json["acls"])


def test_sample_acl_events_add_list_and_remove_the_sample_rule(
    make_api: MakeApi, engine: Engine
) -> None:
    engine.create_topic("orders")
    grant(engine, ADMIN, "*", ["admin"])
    api = make_api("deny", engine)
    assert _fetch(api, BILLING_READER) == 403

    assert api.send("put_acl").status == 200
    assert _fetch(api, BILLING_READER) == 200
    assert api.send("list_acls").json["acls"] == [
        _acl(ADMIN, "*", ["admin"]),
        SAMPLE_RULE,
    ]
    assert api.send("delete_acl").status == 204
    assert _fetch(api, BILLING_READER) == 403


@pytest.mark.parametrize(
    "rule",
    [
        _acl("arn:aws:*:role", "orders", ["consume"]),
        _acl("someone", "ord*ers", ["consume"]),
    ],
    ids=["star-inside-principal", "star-inside-topic"],
)
def test_rule_with_a_star_before_the_end_returns_400(
    make_api: MakeApi, secured: Engine, rule: dict[str, Any]
) -> None:
    api = make_api("deny", secured)
    before = _state(secured)

    body = assert_error(api.send("put_acl", body=rule), 400, "invalid_request")

    assert "prefix ending in '*'" in body["message"]
    assert _state(secured) == before


@pytest.mark.parametrize(
    "topic",
    ["orders,payments", "orders ", "bestellungen-ü*", "orders/eu", "o" * 250],
)
def test_a_rule_whose_topic_pattern_can_match_no_topic_returns_400(
    make_api: MakeApi, secured: Engine, topic: str
) -> None:
    api = make_api("deny", secured)
    before = _state(secured)

    body = assert_error(
        api.send("put_acl", body=_acl("someone", topic, ["consume"])), 400, "invalid_request"
    )

    assert "can match no topic" in body["message"]
    assert _state(secured) == before


@pytest.mark.parametrize(
    "rule",
    [
        _acl("someone", "orders", ["read"]),
        _acl("someone", "orders", []),
        _acl("someone", "orders", ["consume"], effect="maybe"),
        {"principal": "someone", "topic": "orders", "operations": ["consume"]},
        _acl("", "orders", ["consume"]),
    ],
    ids=["unknown-operation", "no-operations", "unknown-effect", "no-effect", "empty-principal"],
)
def test_malformed_rule_returns_422(
    make_api: MakeApi, secured: Engine, rule: dict[str, Any]
) -> None:
    api = make_api("deny", secured)
    before = _state(secured)

    assert_error(api.send("put_acl", body=rule), 422, "invalid_request")
    assert_error(api.send("delete_acl", body=rule), 422, "invalid_request")
    assert _state(secured) == before


def test_list_topics_shows_only_topics_the_principal_may_use(
    make_api: MakeApi, secured: Engine
) -> None:
    # Given: billing-* consume orders* (sample rule); the producer may produce to payments;
    # and billing-audit is denied consume on orders.eu
    grant(secured, PRODUCER, "payments", ["produce"])
    grant(secured, BILLING_AUDIT, "orders.eu", ["consume"], effect="deny")
    api = make_api("deny", secured)

    def listed(principal: str) -> list[str]:
        reply = api.send("list_topics", principal=principal)
        assert reply.status == 200, reply.text
        topics: list[str] = reply.json["topics"]
        return topics

    assert listed(BILLING_READER) == ["orders", "orders.eu"]
    assert listed(BILLING_AUDIT) == ["orders"]
    assert listed(PRODUCER) == ["payments"]
    assert listed(ADMIN) == TOPICS
    assert listed(STRANGER) == []


def test_describe_needs_some_permission_on_the_topic(make_api: MakeApi, secured: Engine) -> None:
    grant(secured, PRODUCER, "payments", ["produce"])
    api = make_api("deny", secured)

    assert api.send("describe_topic", principal=PRODUCER, topic="payments").status == 200
    assert api.send("describe_topic", principal=BILLING_READER).status == 200
    assert_error(api.send("describe_topic", principal=PRODUCER), 403, "forbidden")
    # An unknown topic is forbidden rather than not found: existence is not revealed
    unknown = api.send("describe_topic_unknown", principal=PRODUCER)
    assert_error(unknown, 403, "forbidden")
    assert_error(api.send("describe_topic_unknown", principal=ADMIN), 404, "topic_not_found")


def test_cluster_admin_may_administer_every_topic_but_not_read_or_write(
    make_api: MakeApi, secured: Engine
) -> None:
    api = make_api("deny", secured)

    assert api.send("alter_topic", principal=ADMIN, topic="payments").status == 200
    assert api.send("describe_topic", principal=ADMIN, topic="payments").status == 200
    assert_error(api.send("produce", principal=ADMIN), 403, "forbidden")
    assert_error(api.send("fetch", principal=ADMIN), 403, "forbidden")


def test_separate_function_instances_see_a_rule_stored_before_their_first_request(
    make_api: MakeApi, secured: Engine
) -> None:
    # Given two function instances on the same tables
    first = make_api("deny", secured)
    assert _fetch(first, CONSUMER, "payments") == 403

    # When the rule is added through the first instance
    assert first.send("put_acl", body=_acl(CONSUMER, "payments", ["consume"])).status == 200

    # Then the first applies it at once, and a new instance reads it from the catalog
    assert _fetch(first, CONSUMER, "payments") == 200
    assert _fetch(make_api("deny", secured), CONSUMER, "payments") == 200


def test_acl_rule_whose_key_exceeds_dynamodb_sort_key_limit_is_422(
    api: Api,
) -> None:
    rule = {
        "principal": "arn:aws:sts::123456789012:assumed-role/" + "r" * 1000,
        "topic": "orders",
        "operations": ["consume"],
        "effect": "allow",
    }
    # DynamoDB limits the rule's sort key to 1,024 bytes: refused as invalid, never a 5xx
    assert_error(api.send("put_acl", body=rule), 422, "invalid_request")


def test_put_acl_echoes_the_rule_as_stored(api: Api) -> None:
    rule = {"principal": "p", "topic": "t", "operations": ["produce", "produce"], "effect": "allow"}
    reply = api.send("put_acl", body=rule)
    assert reply.json["operations"] == ["produce"]


def test_delete_acl_of_an_operation_the_rule_does_not_hold_is_404(api: Api) -> None:
    rule = {"principal": "p", "topic": "t", "operations": ["produce"], "effect": "allow"}
    assert api.send("put_acl", body=rule).status == 200
    assert api.send("delete_acl", body=rule | {"operations": ["consume"]}).status == 404
