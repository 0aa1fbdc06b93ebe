"""``lakelog subscribe create | list | describe | delete`` against ``lakelog dev``."""

from __future__ import annotations

import json
from collections.abc import Callable

from lakelog.client import Client
from tests.cli.conftest import Run, error_line

FUNCTION = "arn:aws:lambda:eu-west-1:123456789012:function:billing"


def test_create_list_describe_and_delete_as_tables_and_json(
    run: Run, client: Client, unique: Callable[[str], str]
) -> None:
    topic, dlq = unique("orders"), unique("orders-dlq")
    client.create_topic(topic, partitions=2)
    client.create_topic(dlq)
    with client.producer() as producer:
        for partition in (0, 0, 1):
            producer.send(topic, value=b"x", partition=partition).get(timeout=30)

    created = run(
        "subscribe", "create", topic, "billing", "--function", FUNCTION,
        "--batch-size", "500", "--starting-position", "TRIM_HORIZON", "--max-retries", "3",
        "--bisect", "--on-failure-topic", dlq,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == f"subscribed {FUNCTION} to topic {topic} as billing"
    local = run(
        "--json", "subscribe", "create", topic, "audit", "--function", "local:handlers.a:b",
        "--at", "2025-03-12T10:15:30+00:00",
    )  # fmt: skip
    assert local.returncode == 0, local.stderr
    audit = json.loads(local.stdout)
    assert (audit["starting_position"], audit["starting_position_timestamp_ms"]) == (
        "AT_TIMESTAMP",
        1_741_774_530_000,
    )

    listed = run("subscribe", "list", topic)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[2:] if line.strip()]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("audit", "local:handlers.a:b", "100"),
        ("billing", FUNCTION, "500"),
    ]
    assert f"topic {dlq}" in listed.stdout
    as_json = json.loads(run("subscribe", "list", topic, "--json").stdout)
    assert [s["name"] for s in as_json["subscriptions"]] == ["audit", "billing"]

    described = run("subscribe", "describe", topic, "billing")
    assert described.returncode == 0, described.stderr
    assert f"group subscription.{topic}.billing  total lag 3" in described.stdout
    options = dict(line.split(maxsplit=1) for line in described.stdout.splitlines()[3:12])
    assert options["bisect_batch_on_function_error"].strip() == "true"
    assert options["on_failure"].strip() == f"topic {dlq}"
    status = json.loads(run("subscribe", "describe", topic, "billing", "--json").stdout)
    assert [(p["committed_offset"], p["lag"]) for p in status["partitions"]] == [(0, 2), (0, 1)]
    assert status["subscription"]["on_failure"] == {"topic": dlq, "sqs_arn": None}

    deleted = run("subscribe", "delete", topic, "billing")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted subscription billing of topic {topic}"
    again = run("subscribe", "delete", topic, "billing")
    assert again.returncode == 1
    assert error_line(again) == (
        f"error: subscription_not_found: topic {topic!r} has no subscription 'billing'"
    )


def test_invalid_options_are_the_services_400_and_usage_errors_exit_2(
    run: Run, client: Client, unique: Callable[[str], str]
) -> None:
    topic = unique("orders")
    client.create_topic(topic)

    too_big = run("subscribe", "create", topic, "s", "--function", FUNCTION, "--batch-size", "0")
    assert too_big.returncode == 1
    assert error_line(too_big) == (
        "error: invalid_request: batch_size must be between 1 and 10,000, not 0"
    )
    both = run(
        "subscribe", "create", topic, "s", "--function", FUNCTION,
        "--on-failure-topic", "a", "--on-failure-sqs", "b",
    )  # fmt: skip
    assert both.returncode == 2
    assert "at most one of --on-failure-topic and --on-failure-sqs" in both.stderr
    # AT_TIMESTAMP and --at go together: the error names the option, not the API's field
    no_time = run(
        "subscribe", "create", topic, "s", "--function", FUNCTION,
        "--starting-position", "at_timestamp",
    )  # fmt: skip
    assert no_time.returncode == 2
    assert "--starting-position AT_TIMESTAMP needs --at" in no_time.stderr
    not_at = run(
        "subscribe", "create", topic, "s", "--function", FUNCTION,
        "--starting-position", "LATEST", "--at", "2026-12-01T00:00:00Z",
    )  # fmt: skip
    assert not_at.returncode == 2
    assert "--at goes only with --starting-position AT_TIMESTAMP" in not_at.stderr
    assert run("subscribe", "list", topic, "--json").stdout.strip() == '{"subscriptions": []}'
    missing = run("subscribe", "describe", unique("never"), "s")
    assert missing.returncode == 1
    assert error_line(missing).startswith("error: subscription_not_found: ")
