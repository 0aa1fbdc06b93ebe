"""``lakelog topic create|list|describe|alter|delete`` against the dev server."""

from __future__ import annotations

import json

import pytest

from lakelog.client import Client
from lakelog.errors import TopicNotFoundError
from tests.cli.conftest import Run, error_line


def test_topic_create_list_describe_alter_delete_round_trip(
    run: Run, client: Client, topic_name: str
) -> None:
    # Given a new topic with two partitions and config given as KEY=VALUE
    created = run(
        "topic", "create", topic_name, "--partitions", "2",
        "--config", "retention_ms=3600000", "--config", "cleanup_policy=compact",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"created topic {topic_name} (2 partitions)\n"

    # Then it is listed, one name a line
    listed = run("topic", "list")
    assert topic_name in listed.stdout.splitlines()

    # And described as JSON, integer-looking config values sent as integers
    described = json.loads(run("topic", "describe", topic_name, "--json").stdout)
    assert described["name"] == topic_name
    assert described["config"]["retention_ms"] == 3600000
    assert described["config"]["cleanup_policy"] == "compact"
    empty = {"segments": 0, "bytes": 0}
    assert described["partitions"] == [
        {
            "partition": p,
            "log_start_offset": 0,
            "high_watermark": 0,
            "bytes": 0,
            "levels": {"l0_bytes": 0, "l1": empty},
        }
        for p in (0, 1)
    ]
    assert described["levels"] == {"l0": empty, "l1": empty}

    # When it is altered (the global --json): one more partition and a new retention
    altered = run("--json", "topic", "alter", topic_name, "-p", "3", "-c", "retention_ms=-1")
    assert altered.returncode == 0, altered.stderr
    after = json.loads(altered.stdout)
    assert len(after["partitions"]) == 3
    assert "levels" not in after  # counted by describe only
    assert after["config"]["retention_ms"] == -1

    # When it is deleted without a question, it is gone
    deleted = run("topic", "delete", topic_name, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == f"deleted topic {topic_name}\n"
    assert topic_name not in client.list_topics()


def test_topic_describe_prints_aligned_partition_and_config_tables(
    run: Run, client: Client, topic_name: str
) -> None:
    # Given a topic with two records in partition 2, appended one at a time
    client.create_topic(topic_name, partitions=3)
    with client.producer() as producer:
        for value in (b"one", b"two"):
            producer.send(topic_name, value=value, partition=2).get(timeout=10)

    described = run("topic", "describe", topic_name)

    assert described.returncode == 0, described.stderr
    lines = described.stdout.splitlines()
    topic_id = client.describe_topic(topic_name).topic_id
    assert lines[0].split() == ["topic", topic_name, "3", "partitions,", "id", topic_id]
    assert lines[1].split() == [
        "partition", "log_start_offset", "high_watermark", "bytes",
        "l0_bytes", "l1_segments", "l1_bytes",
    ]  # fmt: skip
    rows = lines[3:6]
    assert [row.split()[:3] for row in rows] == [["0", "0", "0"], ["1", "0", "0"], ["2", "0", "2"]]
    size = int(rows[2].split()[3])
    assert size > 0
    # Nothing is merged yet: partition 2's bytes are all in L0
    assert [row.split()[4:] for row in rows] == [
        ["0", "0", "0"],
        ["0", "0", "0"],
        [str(size), "0", "0"],
    ]
    # Numbers are right-aligned: every line of the table ends in the same column.
    assert len({len(line.rstrip()) for line in [lines[1], *rows]}) == 1
    # Then the levels of the whole topic: one flush segment per append
    assert lines[7].split() == ["level", "segments", "bytes"]
    assert [line.split() for line in lines[9:11]] == [["L0", "2", str(size)], ["L1", "0", "0"]]
    config = dict(line.split() for line in lines[11:] if len(line.split()) == 2)
    assert config["cleanup_policy"] == "delete"
    assert config["compression"] == "zstd"


def test_creating_an_existing_topic_exits_1_with_topic_exists(
    run: Run, client: Client, topic_name: str
) -> None:
    client.create_topic(topic_name)

    again = run("topic", "create", topic_name)

    assert again.returncode == 1
    assert error_line(again) == f"error: topic_exists: topic '{topic_name}' already exists"
    assert again.stdout == ""


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("topic", "describe", "missing-{topic}"), "topic_not_found"),
        (("topic", "delete", "missing-{topic}", "--yes"), "topic_not_found"),
        (("topic", "create", "{topic}", "--partitions", "0"), "invalid_request"),
        (("topic", "create", "{topic}", "--config", "no_such_key=1"), "invalid_request"),
        (("topic", "alter", "{existing}", "--partitions", "1"), "invalid_request"),
    ],
    ids=["describe-missing", "delete-missing", "zero-partitions", "unknown-config", "shrink"],
)
def test_topic_errors_are_one_line_and_exit_1(
    run: Run, client: Client, topic_name: str, args: tuple[str, ...], code: str
) -> None:
    existing = f"existing-{topic_name}"
    client.create_topic(existing, partitions=2)

    failed = run(*(a.format(topic=topic_name, existing=existing) for a in args))

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert error_line(failed).startswith(f"error: {code}: ")
    assert failed.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ("topic", "create", "t", "--config", "retention_ms"),
        ("topic", "alter", "t"),
    ],
    ids=["config-without-equals", "alter-nothing"],
)
def test_bad_command_lines_are_usage_errors_with_exit_2(run: Run, args: tuple[str, ...]) -> None:
    failed = run(*args)

    assert failed.returncode == 2
    assert "Usage:" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_topic_delete_asks_first_and_keeps_the_topic_unless_confirmed(
    run: Run, client: Client, topic_name: str
) -> None:
    client.create_topic(topic_name)

    # When the question is answered no: nothing is deleted, exit 1 (aborted)
    kept = run("topic", "delete", topic_name, input="n\n")
    assert kept.returncode == 1
    assert f"Delete topic {topic_name} and all its records?" in kept.stderr
    assert client.describe_topic(topic_name).name == topic_name

    # When it is answered yes: deleted
    deleted = run("topic", "delete", topic_name, input="y\n")
    assert deleted.returncode == 0, deleted.stderr
    with pytest.raises(TopicNotFoundError):
        client.describe_topic(topic_name)
