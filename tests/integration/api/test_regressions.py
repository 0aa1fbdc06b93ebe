"""API edge cases that once answered with the wrong status, shape or schema."""

from __future__ import annotations

import json
import warnings

import pytest

from lakelog.service.produce import AppendRetryPolicy
from lakelog.storage.faults import FailPoint
from tests.conftest import MakeFaulty
from tests.integration.api.conftest import Api, MakeApi, assert_error


def test_ledger_conflict_after_the_retry_budget_is_503_not_500(
    make_faulty: MakeFaulty, make_api: MakeApi
) -> None:
    engine, injector = make_faulty(retry=AppendRetryPolicy(max_attempts=1))
    api = make_api("allow", engine)
    assert api.send("create_topic").status == 201
    injector.arm(FailPoint.CONFLICT)
    assert_error(api.send("produce"), 503, "unavailable")


def test_non_ascii_digit_sequence_key_is_422_not_an_unhandled_valueerror(orders: Api) -> None:
    body = {
        "records": [{"value": {"type": "STRING", "data": "x"}, "partition": 0}],
        "producer": {"id": 1, "epoch": 0, "sequences": {"\u00b2": 0}},
    }
    assert_error(orders.send("produce", body=body), 422, "invalid_request")


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream"])
def test_unsupported_content_type_uses_the_error_shape(orders: Api, content_type: str) -> None:
    reply = orders.send("produce", headers={"content-type": content_type})
    assert set(reply.json) == {"error", "message"}, reply.text
    assert reply.json["error"] == "invalid_request"


def test_body_over_6_mib_is_413_even_when_it_is_not_valid_json(orders: Api) -> None:
    text = "{" + "x" * (6 * 1024 * 1024)
    assert_error(orders.send("produce", raw_body=text), 413, "payload_too_large")


def test_unauthenticated_request_is_401_before_body_validation(orders: Api) -> None:
    reply = orders.send("create_topic_bad_body", principal=None)
    assert_error(reply, 401, "unauthorized")


def test_openapi_documents_the_200_reply_of_every_route(api: Api) -> None:
    document = api.send("openapi").json
    missing = [
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if not {"200", "201", "204"} & set(operation["responses"])
    ]
    assert missing == []


def test_openapi_422_replies_use_the_error_body_schema(api: Api) -> None:
    document = api.send("openapi").json
    wrong = [
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "HTTPValidationError" in json.dumps(operation["responses"].get("422", {}))
    ]
    assert wrong == []


def test_acl_rule_with_a_long_principal_is_400_not_an_unhandled_client_error(
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


def test_json_typed_value_without_data_is_rejected_not_stored_as_null(orders: Api) -> None:
    body = {"records": [{"value": {"type": "JSON"}, "partition": 0}]}
    assert orders.send("produce", body=body).status in (400, 422)


def test_put_acl_echoes_the_rule_as_stored(api: Api) -> None:
    rule = {"principal": "p", "topic": "t", "operations": ["produce", "produce"], "effect": "allow"}
    reply = api.send("put_acl", body=rule)
    assert reply.json["operations"] == ["produce"]


def test_delete_acl_of_an_operation_the_rule_does_not_hold_is_404(api: Api) -> None:
    rule = {"principal": "p", "topic": "t", "operations": ["produce"], "effect": "allow"}
    assert api.send("put_acl", body=rule).status == 200
    assert api.send("delete_acl", body=rule | {"operations": ["consume"]}).status == 404


def test_no_powertools_warning_per_request_when_metrics_are_disabled(api: Api) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # handler.py clears the disabled metrics before log_metrics flushes them
        assert api.send("list_topics").status == 200
