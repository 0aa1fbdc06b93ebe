"""The OpenAPI 3.1 document and the Swagger UI of the HTTP API v1."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.api.conftest import Api, MakeApi

ROUTES = {
    "/v1/topics": {"get", "post"},
    "/v1/topics/{topic}": {"get", "patch", "delete"},
    "/v1/topics/{topic}/records": {"post"},
    "/v1/producers": {"post"},
    "/v1/fetch": {"post"},
    "/v1/topics/{topic}/partitions/{partition}/records": {"get"},
    "/v1/topics/{topic}/partitions/{partition}/offsets": {"get"},
    "/v1/acls": {"put", "get", "delete"},
    "/v1/groups/{group}": {"get"},
    "/v1/groups/{group}/members": {"post"},
    "/v1/groups/{group}/members/{member_id}": {"delete"},
    "/v1/groups/{group}/offsets": {"post"},
    "/v1/groups/{group}/offsets/reset": {"post"},
    "/v1/topics/{topic}/subscriptions": {"get", "post"},
    "/v1/topics/{topic}/subscriptions/{name}": {"get", "delete"},
}
"""Every route the API serves besides the document and the docs themselves."""


@pytest.fixture
def document(api: Api) -> dict[str, Any]:
    reply = api.send("openapi")
    assert reply.status == 200, reply.text
    assert reply.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = reply.json
    return body


def test_openapi_document_is_openapi_3_1_and_lists_every_route(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] == "lakelog HTTP API"
    assert document["info"]["version"]
    assert {path: set(ops) for path, ops in document["paths"].items()} == ROUTES


def test_openapi_document_declares_success_and_error_replies(document: dict[str, Any]) -> None:
    paths = document["paths"]
    created = paths["/v1/topics"]["post"]["responses"]
    produce = paths["/v1/topics/{topic}/records"]["post"]["responses"]
    fetch = paths["/v1/topics/{topic}/partitions/{partition}/records"]["get"]["responses"]

    assert "201" in created
    assert "409" in created
    assert {"401", "403", "404", "409", "413", "429", "503"} <= set(produce)
    assert "416" in fetch
    assert "204" in paths["/v1/topics/{topic}"]["delete"]["responses"]
    error_schema = fetch["416"]["content"]["application/json"]["schema"]["$ref"]
    error = document["components"]["schemas"][error_schema.rsplit("/", 1)[-1]]
    assert {"error", "message"} <= set(error["properties"])
    assert set(error["required"]) == {"error", "message"}


def test_openapi_document_describes_the_request_bodies_and_query_parameters(
    document: dict[str, Any],
) -> None:
    paths = document["paths"]
    produce = paths["/v1/topics/{topic}/records"]["post"]
    fetch = paths["/v1/topics/{topic}/partitions/{partition}/records"]["get"]
    offsets = paths["/v1/topics/{topic}/partitions/{partition}/offsets"]["get"]

    produce_body = produce["requestBody"]["content"]["application/json"]["schema"]
    assert produce_body["required"] == ["records"]
    assert "$ref" not in str(produce_body)  # inlined: parsed by the route in one pass
    assert {p["name"] for p in fetch["parameters"]} == {
        "topic",
        "partition",
        "offset",
        "max_records",
        "max_bytes",
    }
    assert {p["name"] for p in offsets["parameters"]} == {
        "topic",
        "partition",
        "spec",
        "timestamp_ms",
    }
    schemas = document["components"]["schemas"]
    assert {"FetchReply", "TopicState", "AclRule"} <= set(schemas)


def test_docs_returns_the_swagger_ui_html(api: Api) -> None:
    reply = api.send("docs")

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.text.lstrip().lower().startswith("<!doctype html>")
    assert "swagger" in reply.text.lower()


def test_openapi_and_docs_need_no_principal_even_under_default_deny(make_api: MakeApi) -> None:
    api = make_api("deny")

    assert api.send("openapi").status == 200
    assert api.send("docs").status == 200


def test_openapi_documents_the_success_reply_of_every_route(api: Api) -> None:
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


def test_openapi_describes_the_optional_levels_of_a_topic_description(
    document: dict[str, Any],
) -> None:
    describe = document["paths"]["/v1/topics/{topic}"]["get"]
    schemas = document["components"]["schemas"]

    [levels] = [p for p in describe["parameters"] if p["name"] == "levels"]
    assert levels["in"] == "query"
    assert levels.get("required", False) is False
    assert levels["schema"]["type"] == "boolean"
    reply = describe["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    topic_state = schemas[reply.rsplit("/", 1)[-1]]
    assert set(topic_state["required"]) == {"name", "topic_id", "config", "partitions"}
    assert "levels" in topic_state["properties"]
    partition_state = schemas["PartitionState"]
    assert set(partition_state["required"]) == {
        "partition",
        "log_start_offset",
        "high_watermark",
        "bytes",
    }
    assert "levels" in partition_state["properties"]
    assert set(schemas["LevelState"]["required"]) == {"segments", "bytes"}
