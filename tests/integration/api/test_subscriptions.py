"""Subscriptions through the API (ADR 0015 §1): create, list, describe with lag, delete,
their error replies, their ACLs and the deployment's function prefixes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from lakelog import Engine, Record
from lakelog.api import ApiSettings, make_handler
from lakelog.service.subscriptions import FunctionPolicy
from tests.contract.backends import Backend
from tests.integration.api.conftest import (
    ACCOUNT,
    ADMIN,
    CONSUMER,
    Api,
    ApiReply,
    MakeApi,
    assert_error,
    grant,
    load_event,
)
from tests.integration.subscription_support import CatalogHooks

SAMPLE: dict[str, Any] = json.loads(load_event("create_subscription")["body"])
"""The sample subscription: ``billing`` of ``orders``, every option, an SQS destination."""
STRANGER = f"arn:aws:sts::{ACCOUNT}:assumed-role/stranger/session"


def test_create_list_describe_and_delete_a_subscription(orders: Api) -> None:
    orders.engine.append("orders", [Record(b"a", partition=0), Record(b"b", partition=0)])

    created = orders.send("create_subscription")
    assert created.status == 201, created.text
    body = created.json
    assert body == {
        **SAMPLE,
        "topic": "orders",
        "group": "subscription.orders.billing",
        "starting_position_timestamp_ms": None,
        "on_failure": {"topic": None, "sqs_arn": SAMPLE["on_failure"]["sqs_arn"]},
        "topic_id": orders.engine.describe_topic("orders").topic_id,
        "created_ms": body["created_ms"],
        "start_offsets": [0, 0, 0],  # TRIM_HORIZON
    }
    assert_error(orders.send("create_subscription"), 409, "subscription_exists")

    listed = orders.send("list_subscriptions")
    assert listed.status == 200, listed.text
    assert listed.json == {"subscriptions": [body]}

    orders.engine.append("orders", [Record(b"c", partition=1)])
    described = orders.send("describe_subscription")
    assert described.status == 200, described.text
    assert described.json["subscription"] == body
    assert described.json["state"] == {}
    progress = [
        (p["partition"], p["committed_offset"], p["high_watermark"], p["lag"])
        for p in described.json["partitions"]
    ]
    assert progress == [(0, 0, 2, 2), (1, 0, 1, 1), (2, 0, 0, 0)]  # TRIM_HORIZON

    deleted = orders.send("delete_subscription")
    assert deleted.status == 204, deleted.text
    assert deleted.text == ""
    assert_error(orders.send("delete_subscription"), 404, "subscription_not_found")
    assert_error(orders.send("describe_subscription"), 404, "subscription_not_found")
    assert orders.send("list_subscriptions").json == {"subscriptions": []}


def test_of_two_creations_of_one_name_racing_one_is_201_and_the_other_409_changing_nothing(
    orders: Api, make_api: MakeApi, backend: Backend
) -> None:
    # Given records, and an API instance whose creation, once it found the name free, is
    # overtaken by another instance's creation of the name from the latest offsets
    orders.engine.append("orders", [Record(b"a", partition=0), Record(b"b", partition=0)])
    objects, ledger, catalog, groups = backend.stores()
    won: list[ApiReply] = []

    def rival() -> None:
        latest = {**SAMPLE, "starting_position": "LATEST"}
        won.append(orders.send("create_subscription", body=latest))

    hooks = CatalogHooks(catalog, after_check=rival)
    racing = make_api(engine=Engine(objects, ledger, hooks, groups, sleep=lambda _s: None))

    # When that creation (from the start) goes on
    lost = racing.send("create_subscription")

    # Then one is 201 and the other 409, and the subscription starts where the winner does
    assert won[0].status == 201, won[0].text
    assert_error(lost, 409, "subscription_exists")
    described = orders.send("describe_subscription").json
    assert [p["committed_offset"] for p in described["partitions"]] == [2, 0, 0]
    assert described["subscription"] == won[0].json
    assert described["subscription"]["start_offsets"] == [2, 0, 0]


def test_options_left_out_take_lambdas_defaults(orders: Api) -> None:
    arn = SAMPLE["function_arn"]
    reply = orders.send("create_subscription", body={"name": "audit", "function_arn": arn})

    assert reply.status == 201, reply.text
    assert {k: reply.json[k] for k in ("batch_size", "starting_position", "on_failure")} == {
        "batch_size": 100,
        "starting_position": "LATEST",
        "on_failure": None,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 20_000}, "batch_size must be between 1 and 10,000"),
        ({"maximum_record_age_ms": 1000}, "maximum_record_age_ms must be between"),
        ({"starting_position": "AT_TIMESTAMP"}, "needs starting_position_timestamp_ms"),
        ({"on_failure": {"topic": "nowhere"}}, "on_failure topic 'nowhere' does not exist"),
        ({"on_failure": {}}, "exactly one of topic or sqs_arn"),
        ({"function_arn": "local:handlers.billing:handle"}, "only the local dev server"),
        ({"name": "bill.ing"}, "subscription name 'bill.ing' may contain only"),
    ],
)
def test_an_invalid_option_is_400_and_stores_nothing(
    orders: Api, change: dict[str, Any], message: str
) -> None:
    reply = orders.send("create_subscription", body={**SAMPLE, **change})

    assert message in assert_error(reply, 400, "invalid_request")["message"]
    assert orders.send("list_subscriptions").json == {"subscriptions": []}


def test_the_sample_bad_option_is_400_and_a_mistyped_one_422(orders: Api) -> None:
    assert_error(orders.send("create_subscription_bad_option"), 400, "invalid_request")
    mistyped = orders.send("create_subscription", body={**SAMPLE, "batch_size": "10"})
    assert_error(mistyped, 422, "invalid_request")
    assert_error(orders.send("create_subscription", topic="never"), 404, "topic_not_found")


def test_functions_outside_the_prefixes_of_the_deployment_are_403(
    api_settings: Callable[..., ApiSettings], make_engine: Callable[..., Engine]
) -> None:
    settings = api_settings("allow").model_copy(
        update={"function_prefixes": ("arn:aws:lambda:eu-west-1:123456789012:function:ops-",)}
    )
    engine = make_engine(functions=FunctionPolicy(prefixes=settings.function_prefixes))
    engine.create_topic("orders", 3)
    api = Api(make_handler(settings, engine=engine), engine)

    refused = api.send("create_subscription")

    body = assert_error(refused, 403, "forbidden")
    assert SAMPLE["function_arn"] in body["message"]
    allowed = {**SAMPLE, "function_arn": "arn:aws:lambda:eu-west-1:123456789012:function:ops-x"}
    assert api.send("create_subscription", body=allowed).status == 201


def test_the_prefixes_are_read_from_the_environment() -> None:
    environ = {
        "LAKELOG_BUCKET": "b-segments",
        "LAKELOG_LEDGER_TABLE": "b-ledger",
        "LAKELOG_CATALOG_TABLE": "b-catalog",
        "LAKELOG_TRIGGER_FUNCTION_PREFIXES": "arn:aws:lambda:eu-west-1:1:function:a-, x",
    }
    settings = ApiSettings.from_env(environ)
    assert settings.function_prefixes == ("arn:aws:lambda:eu-west-1:1:function:a-", "x")
    assert ApiSettings.from_env({**environ, "LAKELOG_TRIGGER_FUNCTION_PREFIXES": ""}) == (
        settings.model_copy(update={"function_prefixes": ()})
    )


@pytest.fixture
def secured(engine: Engine) -> Engine:
    """Topics ``orders`` and ``orders-dlq``; the admin administers everything, the consumer
    may only consume ``orders``."""
    engine.create_topic("orders", 3)
    engine.create_topic("orders-dlq")
    grant(engine, ADMIN, "*", ["admin"])
    grant(engine, CONSUMER, "orders", ["consume"])
    return engine


def test_creating_and_deleting_need_admin_and_reading_needs_consume(
    make_api: MakeApi, secured: Engine
) -> None:
    api = make_api("deny", engine=secured)

    for name in ("create_subscription", "delete_subscription"):
        assert_error(api.send(name, principal=CONSUMER), 403, "forbidden")
    assert api.send("create_subscription").status == 201  # as the admin
    assert api.send("list_subscriptions").status == 200  # as the consumer
    assert api.send("describe_subscription").status == 200
    for name in ("list_subscriptions", "describe_subscription"):
        assert_error(api.send(name, principal=STRANGER), 403, "forbidden")
    assert api.send("delete_subscription").status == 204


def test_an_on_failure_topic_needs_produce_on_it(make_api: MakeApi, secured: Engine) -> None:
    team_admin = f"arn:aws:sts::{ACCOUNT}:assumed-role/orders-admin/bob"
    grant(secured, team_admin, "orders", ["admin"])
    grant(secured, ADMIN, "orders-dlq", ["produce"])
    api = make_api("deny", engine=secured)
    body = {**SAMPLE, "on_failure": {"topic": "orders-dlq"}}

    refused = api.send("create_subscription", principal=team_admin, body=body)

    assert assert_error(refused, 403, "forbidden")["topic"] == "orders-dlq"
    assert api.send("create_subscription", body=body).status == 201  # the admin may


def test_the_groups_of_subscriptions_are_reserved_but_can_be_described(orders: Api) -> None:
    assert orders.send("create_subscription").status == 201
    group = {"group": "subscription.orders.billing"}

    joined = orders.send("join_group", path=group)
    reset = orders.send("reset_offsets", path=group)

    for reply in (joined, reset):
        assert (
            "reserved for subscriptions" in assert_error(reply, 400, "invalid_request")["message"]
        )
    described = orders.send("describe_group", path=group)
    assert described.status == 200, described.text
    assert [p["committed_offset"] for p in described.json["partitions"]] == [0, 0, 0]
