"""Authentication and storage failures map to their documented codes and error bodies.

Topic, record and ACL errors are tested with their routes; here: 401 for a request with no
caller, and 429/503 when storage throttles or fails (injected with the fault wrappers).
"""

from __future__ import annotations

import json

import pytest

from lakelog import Engine
from lakelog.service.produce import AppendRetryPolicy
from lakelog.storage.faults import FailPoint, FaultInjector
from tests.conftest import MakeFaulty
from tests.integration.api.conftest import (
    Api,
    MakeApi,
    assert_error,
    grant,
    hold_producer,
    load_event,
)

FaultyApi = tuple[Api, FaultInjector]


@pytest.fixture
def faulty(make_faulty: MakeFaulty, make_api: MakeApi) -> FaultyApi:
    """The API on stores that fail where the injector says, with one append attempt."""
    engine, injector = make_faulty(seed=7, retry=AppendRetryPolicy(max_attempts=1))
    api = make_api("allow", engine)
    assert api.send("create_topic").status == 201
    hold_producer(engine)
    return api, injector


def _high_watermark(api: Api, partition: int = 0) -> int:
    return api.engine.describe_topic("orders").partitions[partition].high_watermark


def test_request_without_a_caller_returns_401_unauthorized(api: Api) -> None:
    body = assert_error(api.send("unauthenticated"), 401, "unauthorized")

    assert "caller" in body["message"]


def test_unauthenticated_write_returns_401_and_writes_nothing(orders: Api) -> None:
    assert_error(orders.send("produce", principal=None), 401, "unauthorized")
    assert_error(orders.send("delete_topic", principal=None), 401, "unauthorized")

    assert orders.engine.list_topics() == ["orders"]
    assert _high_watermark(orders) == 0


def test_jwt_subject_is_the_principal_when_there_is_no_iam_caller(
    make_api: MakeApi, engine: Engine
) -> None:
    # Given a JWT subject allowed to consume "orders" under the deny default
    engine.create_topic("orders")
    engine.create_topic("payments")
    subject = load_event("list_topics_jwt")["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
    grant(engine, subject, "orders", ["consume"])
    api = make_api("deny", engine)

    # When it lists topics with a JWT authorizer context
    reply = api.send("list_topics_jwt")

    # Then it is recognised and sees only its topic
    assert reply.status == 200, reply.text
    assert reply.json == {"topics": ["orders"]}


def test_throttle_that_outlasts_the_retry_budget_returns_429_and_appends_nothing(
    faulty: FaultyApi,
) -> None:
    api, injector = faulty
    injector.arm(FailPoint.THROTTLE)

    body = assert_error(api.send("produce_idempotent"), 429, "throttled")

    assert injector.hits[FailPoint.THROTTLE] == 1
    assert "throttle" in body["message"]
    assert _high_watermark(api) == 0
    # The throttle has passed: the same request now succeeds
    assert api.send("produce_idempotent").status == 200
    assert _high_watermark(api) == 2


@pytest.mark.parametrize(
    "point", [FailPoint.BEFORE_PUT, FailPoint.AFTER_PUT, FailPoint.BEFORE_LEDGER]
)
def test_storage_fault_before_the_ledger_moves_returns_503_and_appends_nothing(
    faulty: FaultyApi, point: FailPoint
) -> None:
    api, injector = faulty
    injector.arm(point)

    body = assert_error(api.send("produce"), 503, "unavailable")

    assert str(point) in body["message"]
    assert injector.hits[point] == 1
    assert [p.high_watermark for p in api.engine.describe_topic("orders").partitions] == [0, 0, 0]


def test_storage_fault_after_the_ledger_moved_returns_503_and_an_idempotent_retry_is_not_duplicated(
    faulty: FaultyApi,
) -> None:
    # Given a fault after the ledger transaction: the append happened, its reply is lost
    api, injector = faulty
    injector.arm(FailPoint.AFTER_LEDGER)
    assert_error(api.send("produce_idempotent"), 503, "unavailable")
    assert _high_watermark(api) == 2

    # When the producer retries the same batch
    retry = api.send("produce_idempotent")

    # Then the retry is answered with the offsets of the first attempt
    assert retry.status == 200, retry.text
    assert [r["offset"] for r in retry.json["results"]] == [0, 1]
    assert _high_watermark(api) == 2


def test_storage_timeout_during_a_fetch_returns_503(faulty: FaultyApi) -> None:
    api, injector = faulty
    assert api.send("produce_idempotent").status == 200
    injector.arm(FailPoint.GET_TIMEOUT)

    assert_error(api.send("fetch"), 503, "unavailable")

    assert len(api.send("fetch").json["records"]) == 2


def test_stale_producer_epoch_returns_409_producer_fenced_and_appends_nothing(
    orders: Api,
) -> None:
    # Given producer 4242 wrote with epoch 1
    assert orders.send("produce_idempotent").status == 200
    stale = json.loads(load_event("produce_idempotent")["body"])
    stale["producer"] = {"id": 4242, "epoch": 0, "sequence": 2}

    # When an older instance of it (epoch 0) appends
    body = assert_error(orders.send("produce", body=stale), 409, "producer_fenced")

    # Then it is fenced (the reply names the producer and both epochs) and nothing written
    assert "epoch 0" in body["message"]
    assert (body["producer_id"], body["epoch"], body["current_epoch"]) == (4242, 0, 1)
    assert _high_watermark(orders) == 2


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("create_topic_invalid_name", 400, "invalid_request"),
        ("create_topic_bad_body", 422, "invalid_request"),
        ("offsets_both", 400, "invalid_request"),
        ("produce_bad_base64", 422, "invalid_request"),
        ("alter_topic_fewer_partitions", 400, "invalid_request"),
        ("unauthenticated", 401, "unauthorized"),
        ("describe_topic_unknown", 404, "topic_not_found"),
        ("create_topic", 409, "topic_exists"),
        ("produce_record_too_large", 404, "topic_not_found"),
        ("fetch_out_of_range", 416, "offset_out_of_range"),
    ],
)
def test_sample_error_event_gets_its_status_and_exactly_the_error_body(
    orders: Api, name: str, status: int, code: str
) -> None:
    # Given the topic "orders" (the sample "audit" topic of the large record is not there)
    assert_error(orders.send(name), status, code)


def test_deleting_an_acl_rule_that_does_not_exist_returns_404_in_the_error_shape(
    api: Api,
) -> None:
    reply = api.send("delete_acl")

    assert reply.status == 404
    assert set(reply.json) == {"error", "message"}


def test_ledger_conflict_past_the_retry_budget_is_503_unavailable(
    make_faulty: MakeFaulty, make_api: MakeApi
) -> None:
    engine, injector = make_faulty(retry=AppendRetryPolicy(max_attempts=1))
    api = make_api("allow", engine)
    assert api.send("create_topic").status == 201
    injector.arm(FailPoint.CONFLICT)
    assert_error(api.send("produce"), 503, "unavailable")


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream"])
def test_unsupported_content_type_is_answered_in_the_error_shape(
    orders: Api, content_type: str
) -> None:
    reply = orders.send("produce", headers={"content-type": content_type})
    assert set(reply.json) == {"error", "message"}, reply.text
    assert reply.json["error"] == "invalid_request"


@pytest.mark.parametrize(
    "content_type",
    ["APPLICATION/JSON", "Application/Json; charset=UTF-8", " application/json "],
)
def test_a_json_media_type_in_any_case_is_json(api: Api, content_type: str) -> None:
    # Media types are case-insensitive (RFC 9110, 8.3.1)
    reply = api.send("create_topic", headers={"content-type": content_type})

    assert reply.status == 201, reply.text


def test_body_over_6_mib_is_413_before_it_is_parsed(orders: Api) -> None:
    text = "{" + "x" * (6 * 1024 * 1024)
    assert_error(orders.send("produce", raw_body=text), 413, "payload_too_large")


def test_unauthenticated_request_is_401_before_its_body_is_validated(orders: Api) -> None:
    reply = orders.send("create_topic_bad_body", principal=None)
    assert_error(reply, 401, "unauthorized")
