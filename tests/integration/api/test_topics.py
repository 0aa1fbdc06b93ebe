"""Topic routes: create, list, describe, alter and delete through the API handler."""

from __future__ import annotations

from typing import Any

from tests.integration.api.conftest import Api, assert_error, load_event

CREATED_CONFIG = {
    "retention_ms": 604800000,
    "retention_bytes": -1,
    "cleanup_policy": "delete",
    "delete_retention_ms": 86_400_000,
    "max_record_bytes": 1048576,
    "compression": "zstd",
}


def _empty_partitions(count: int) -> list[dict[str, int]]:
    return [
        {"partition": p, "log_start_offset": 0, "high_watermark": 0, "bytes": 0}
        for p in range(count)
    ]


def _describe(api: Api, topic: str = "orders") -> dict[str, Any]:
    reply = api.send("describe_topic", topic=topic)
    assert reply.status == 200, reply.text
    body: dict[str, Any] = reply.json
    return body


def test_create_topic_returns_201_with_its_config_and_empty_partitions(api: Api) -> None:
    reply = api.send("create_topic")

    assert reply.status == 201, reply.text
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.json == {
        "name": "orders",
        "topic_id": api.engine.describe_topic("orders").topic_id,
        "config": CREATED_CONFIG,
        "partitions": _empty_partitions(3),
    }
    assert api.engine.list_topics() == ["orders"]


def test_create_topic_defaults_to_one_partition_and_the_default_config(api: Api) -> None:
    reply = api.send("create_topic", body={"name": "events"})

    assert reply.status == 201, reply.text
    assert reply.json["partitions"] == _empty_partitions(1)
    assert reply.json["config"]["cleanup_policy"] == "delete"


def test_create_existing_topic_returns_409_topic_exists_and_keeps_the_first(orders: Api) -> None:
    reply = orders.send("create_topic", body={"name": "orders", "partitions": 7})

    assert_error(reply, 409, "topic_exists")
    assert len(_describe(orders)["partitions"]) == 3


def test_create_topic_with_an_illegal_name_returns_400_and_creates_nothing(api: Api) -> None:
    body = assert_error(api.send("create_topic_invalid_name"), 400, "invalid_request")

    assert "orders/eu west" in body["message"]
    assert api.engine.list_topics() == []


def test_create_topic_with_a_mistyped_field_returns_422_in_the_error_shape(api: Api) -> None:
    body = assert_error(api.send("create_topic_bad_body"), 422, "invalid_request")

    assert "partitions" in body["message"]
    assert api.engine.list_topics() == []


def test_create_topic_with_unknown_fields_or_a_bad_config_is_rejected(api: Api) -> None:
    # Unknown top-level fields fail the model (422); a bad config value fails the engine (400)
    unknown = api.send("create_topic", body={"name": "a", "replication_factor": 3})
    bad_config = api.send("create_topic", body={"name": "b", "config": {"compression": "gzip"}})
    too_many = api.send("create_topic", body={"name": "c", "partitions": 1001})
    not_json = api.send("create_topic", raw_body='{"name": "d",')

    assert_error(unknown, 422, "invalid_request")
    assert "compression" in assert_error(bad_config, 400, "invalid_request")["message"]
    assert_error(too_many, 422, "invalid_request")
    assert_error(not_json, 422, "invalid_request")
    assert api.engine.list_topics() == []


def test_list_topics_returns_every_topic_name_sorted(api: Api) -> None:
    assert api.send("list_topics").json == {"topics": []}
    for name in ("payments", "orders", "audit"):
        assert api.send("create_topic", body={"name": name}).status == 201

    reply = api.send("list_topics")

    assert reply.status == 200
    assert reply.json == {"topics": ["audit", "orders", "payments"]}


def test_describe_topic_reports_each_partition_high_watermark_and_bytes(orders: Api) -> None:
    # Given two records appended to partition 1
    records = [{"value": {"type": "STRING", "data": v}, "partition": 1} for v in ("a", "b")]
    assert orders.send("produce", body={"records": records}).status == 200

    # When the topic is described
    described = _describe(orders)

    # Then partition 1 moved and the others did not
    assert described["name"] == "orders"
    assert described["config"] == CREATED_CONFIG
    partitions = described["partitions"]
    assert [p["high_watermark"] for p in partitions] == [0, 2, 0]
    assert [p["log_start_offset"] for p in partitions] == [0, 0, 0]
    assert partitions[1]["bytes"] > 0
    assert partitions[0]["bytes"] == partitions[2]["bytes"] == 0


def test_describe_unknown_topic_returns_404_topic_not_found(api: Api) -> None:
    body = assert_error(api.send("describe_topic_unknown"), 404, "topic_not_found")

    assert "no-such-topic" in body["message"]


def test_alter_topic_adds_partitions_and_changes_only_the_given_config(orders: Api) -> None:
    reply = orders.send("alter_topic")

    assert reply.status == 200, reply.text
    assert reply.json == {
        "name": "orders",
        "topic_id": orders.engine.describe_topic("orders").topic_id,
        "config": CREATED_CONFIG | {"retention_ms": 86400000},
        "partitions": _empty_partitions(6),
    }
    assert _describe(orders) == reply.json


def test_alter_topic_to_fewer_partitions_returns_400_and_changes_nothing(orders: Api) -> None:
    before = _describe(orders)

    body = assert_error(orders.send("alter_topic_fewer_partitions"), 400, "invalid_request")

    assert "partitions can only be added" in body["message"]
    assert _describe(orders) == before


def test_alter_topic_with_a_bad_body_returns_422_or_400(orders: Api) -> None:
    before = _describe(orders)

    no_body = orders.call(_without_body(load_event("alter_topic")))
    bad_type = orders.send("alter_topic", body={"partitions": "six"})
    bad_config = orders.send("alter_topic", body={"config": {"cleanup_policy": "archive"}})

    assert_error(no_body, 422, "invalid_request")
    assert_error(bad_type, 422, "invalid_request")
    assert_error(bad_config, 400, "invalid_request")
    assert _describe(orders) == before


def test_alter_unknown_topic_returns_404(api: Api) -> None:
    assert_error(api.send("alter_topic", topic="no-such-topic"), 404, "topic_not_found")


def test_delete_topic_returns_204_with_no_body_and_the_topic_is_gone(orders: Api) -> None:
    reply = orders.send("delete_topic")

    assert reply.status == 204
    assert reply.text == ""
    assert orders.send("list_topics").json == {"topics": []}
    assert_error(orders.send("describe_topic"), 404, "topic_not_found")
    assert_error(orders.send("fetch"), 404, "topic_not_found")


def test_delete_unknown_topic_returns_404(api: Api) -> None:
    assert_error(api.send("delete_topic"), 404, "topic_not_found")


def test_topic_created_again_after_delete_starts_empty(orders: Api) -> None:
    # Given a deleted topic that held a record
    assert orders.send("produce").status == 200
    old_id = _describe(orders)["topic_id"]
    assert orders.send("delete_topic").status == 204

    # When a topic of the same name is created
    assert orders.send("create_topic").status == 201

    # Then it is another topic (a new id) with none of the old records
    assert _describe(orders)["topic_id"] != old_id
    assert [p["high_watermark"] for p in _describe(orders)["partitions"]] == [0, 0, 0]
    fetched = orders.send("fetch")
    assert fetched.json == {
        "records": [],
        "next_offset": 0,
        "high_watermark": 0,
        "log_start_offset": 0,
        "cursor": fetched.json["cursor"],  # where the next fetch continues (ADR 0012)
    }


def _without_body(event: dict[str, Any]) -> dict[str, Any]:
    event.pop("body", None)
    event["headers"].pop("content-length", None)
    return event


def test_describe_with_levels_adds_them_and_keeps_every_other_field(orders: Api) -> None:
    # Given two records in partition 1, none merged yet
    records = [{"value": {"type": "STRING", "data": v}, "partition": 1} for v in ("a", "b")]
    assert orders.send("produce", body={"records": records}).status == 200
    plain = _describe(orders)

    # When the topic is described with ?levels=true
    reply = orders.send("describe_topic_levels")

    # Then the reply is the plain one plus the levels of the topic and of each partition
    assert reply.status == 200, reply.text
    body = reply.json
    levels = [p.pop("levels") for p in body["partitions"]]
    assert body.pop("levels") == {
        "l0": {"segments": 1, "bytes": plain["partitions"][1]["bytes"]},
        "l1": {"segments": 0, "bytes": 0},
    }
    assert body == plain
    assert levels == [
        {"l0_bytes": p["bytes"], "l1": {"segments": 0, "bytes": 0}} for p in plain["partitions"]
    ]
    # And ?levels=false is the plain describe; anything but a boolean is refused
    assert orders.send("describe_topic", query={"levels": "false"}).json == plain
    assert_error(orders.send("describe_topic", query={"levels": "maybe"}), 422, "invalid_request")
