"""The sample events in events/api are realistic HTTP API (payload 2.0) requests."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

import pytest

from tests.integration.api.conftest import (
    ADMIN,
    EVENTS_DIR,
    Api,
    event_names,
    load_event,
    route_template,
)

ROUTE_KEY = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/v1/[A-Za-z0-9_.{}/-]+)$")


def _path_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")


def test_there_is_a_sample_event_directory_with_the_events_the_tests_use() -> None:
    assert EVENTS_DIR.is_dir()
    assert {"create_topic", "produce", "fetch", "put_acl", "unauthenticated"} <= set(event_names())


@pytest.mark.parametrize("name", event_names())
def test_sample_event_is_an_api_gateway_http_api_v2_request(name: str) -> None:
    event = load_event(name)

    assert event["version"] == "2.0"
    match = ROUTE_KEY.match(event["routeKey"])
    assert match, event["routeKey"]
    method, template = match.groups()
    context = event["requestContext"]
    assert context["routeKey"] == event["routeKey"]
    assert context["http"]["method"] == method
    assert context["http"]["path"] == event["rawPath"]
    assert context["stage"] == "$default"
    assert context["requestId"]
    assert isinstance(context["timeEpoch"], int)
    path_match = _path_pattern(template).match(event["rawPath"])
    assert path_match, (template, event["rawPath"])
    assert event.get("pathParameters", {}) == path_match.groupdict()
    assert all(key == key.lower() for key in event["headers"])
    raw_query = event["rawQueryString"]
    assert event.get("queryStringParameters", {}) == dict(parse_qsl(raw_query))
    assert event["isBase64Encoded"] is False
    if "body" in event:
        json.loads(event["body"])
        assert event["headers"]["content-type"] == "application/json"
        assert int(event["headers"]["content-length"]) == len(event["body"].encode())
    authorizer = context.get("authorizer")
    if authorizer is not None:
        assert authorizer.get("iam", {}).get("userArn") or authorizer["jwt"]["claims"]["sub"]


def test_every_route_of_the_openapi_document_has_a_sample_event(api: Api) -> None:
    # Given the routes the API documents, and the routes of the sample events
    document = api.send("openapi").json
    documented = {
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
    }
    sampled = {load_event(name)["routeKey"] for name in event_names()}

    # Then each documented route, and the docs routes, have at least one sample
    assert documented | {"GET /v1/openapi.json", "GET /v1/docs"} <= sampled
    assert sampled <= documented | {"GET /v1/openapi.json", "GET /v1/docs"}


def test_load_event_overrides_principal_path_query_and_body() -> None:
    event = load_event(
        "fetch",
        principal=ADMIN,
        topic="payments",
        partition=2,
        query={"offset": 7},
    )
    assert event["rawPath"] == "/v1/topics/payments/partitions/2/records"
    assert event["requestContext"]["http"]["path"] == event["rawPath"]
    assert event["pathParameters"] == {"topic": "payments", "partition": "2"}
    assert event["rawQueryString"] == "offset=7"
    assert event["queryStringParameters"] == {"offset": "7"}
    assert event["requestContext"]["authorizer"]["iam"]["userArn"] == ADMIN

    anonymous = load_event("create_topic", principal=None, body={"name": "x"})
    assert "authorizer" not in anonymous["requestContext"]
    assert "authorization" not in anonymous["headers"]
    assert json.loads(anonymous["body"]) == {"name": "x"}
    assert anonymous["headers"]["content-length"] == str(len(anonymous["body"]))
    assert route_template(anonymous) == "/v1/topics"
