"""``lakelog produce`` (lines from stdin) and ``lakelog consume`` without a group."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest

from lakelog.client import Client
from lakelog.types import TopicPartition
from tests.cli.conftest import Run, error_line

MISSING = "topic 'missing-{topic}' does not exist"
SUMMARY = re.compile(
    r"^produced (\d+) records? \((\d+) bytes\) to (\S+) in [\d.]+ s: [\d,]+ records/s$", re.M
)


def test_produced_lines_come_back_in_order_from_the_beginning(
    run: Run, client: Client, topic_name: str
) -> None:
    # Given a one-partition topic and lines with UTF-8, an empty line and a tab
    client.create_topic(topic_name)
    lines = ["first", "héllo wörld ✓", "", "tab\there", "last"]
    stdin = "".join(f"{line}\n" for line in lines)

    produced = run("produce", topic_name, input=stdin)

    assert produced.returncode == 0, produced.stderr
    summary = SUMMARY.search(produced.stderr)
    assert summary, produced.stderr
    assert int(summary.group(1)) == len(lines)
    assert int(summary.group(2)) == len(stdin.encode()) - len(lines)  # values only
    assert summary.group(3) == topic_name
    assert produced.stdout == ""

    # When they are consumed from the beginning, stopping after as many records
    consumed = run("consume", topic_name, "--from-beginning", "--max", str(len(lines)))

    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout == stdin
    assert f"consumed {len(lines)} records" in consumed.stderr


def test_summaries_of_one_record_say_record(run: Run, client: Client, topic_name: str) -> None:
    # Given a topic
    client.create_topic(topic_name)

    # When one line is produced and consumed
    produced = run("produce", topic_name, input="only\n")
    consumed = run("consume", topic_name, "--from-beginning", "--max", "1")

    # Then both summaries count it in the singular
    assert produced.returncode == 0, produced.stderr
    assert f"produced 1 record (4 bytes) to {topic_name} in " in produced.stderr
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stderr.splitlines() == ["consumed 1 record"]


def test_key_separator_splits_keys_that_come_back_with_print_key_and_json(
    run: Run, client: Client, topic_name: str
) -> None:
    # Given keyed lines (a separator in the value stays in the value) on three partitions
    client.create_topic(topic_name, partitions=3)
    lines = [f"customer-{i}:order {i}:{i * 10}" for i in range(12)]

    produced = run("produce", topic_name, "--key-separator", ":", input="\n".join(lines))

    assert produced.returncode == 0, produced.stderr
    assert "produced 12 records" in produced.stderr

    # Then --print-key prints KEY SEP VALUE with the separator asked for
    printed = run(
        "consume", topic_name, "--from-beginning", "--max", "12", "--print-key", "-k", ":"
    )
    assert printed.returncode == 0, printed.stderr
    assert sorted(printed.stdout.splitlines()) == sorted(lines)

    # And --json gives each record's coordinates, key and value as text
    as_json = run("consume", topic_name, "--from-beginning", "--max", "12", "--json")
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(records) == 12
    assert {(r["key"], r["value"]) for r in records} == {
        tuple(line.split(":", 1)) for line in lines
    }
    assert {r["topic"] for r in records} == {topic_name}
    for record in records:
        assert set(record) == {
            "topic", "partition", "offset", "timestamp", "key", "key_base64",
            "value", "value_base64", "headers",
        }  # fmt: skip
        assert record["key_base64"] is record["value_base64"] is False
    # The same key always lands in the same partition, offsets dense per partition
    by_partition: dict[int, list[int]] = {}
    for record in records:
        by_partition.setdefault(record["partition"], []).append(record["offset"])
    assert all(sorted(o) == list(range(len(o))) for o in by_partition.values())


def test_a_line_without_the_key_separator_fails_with_its_number_after_the_lines_before_it(
    run: Run, client: Client, topic_name: str
) -> None:
    client.create_topic(topic_name)

    produced = run("produce", topic_name, "-k", "=", input="a=1\nb=2\nno separator\nc=3\n")

    assert produced.returncode == 1
    assert error_line(produced) == (
        "error: invalid_input: line 3 has no key separator '='; the 2 lines before it were produced"
    )
    partition = TopicPartition(topic_name, 0)
    with client.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([partition])
        records = consumer.poll(timeout_ms=5000)[partition]
    assert [(r.key, r.value) for r in records] == [(b"a", b"1"), (b"b", b"2")]


def test_headers_and_partition_apply_to_every_record_and_consume_reads_from_an_offset(
    run: Run, client: Client, topic_name: str
) -> None:
    # Given five records with two headers, all sent to partition 1 of 2
    client.create_topic(topic_name, partitions=2)
    produced = run(
        "produce", topic_name, "--partition", "1", "-H", "source=cli", "-H", "team=ops",
        input="".join(f"r{i}\n" for i in range(5)),
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr

    # When partition 1 is read from offset 3
    consumed = run(
        "consume", topic_name, "--partition", "1", "--offset", "3", "--json", "--max", "2",
    )  # fmt: skip

    # Then only offsets 3 and 4 come back, headers and all
    assert consumed.returncode == 0, consumed.stderr
    records = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert [(r["partition"], r["offset"], r["value"]) for r in records] == [
        (1, 3, "r3"),
        (1, 4, "r4"),
    ]
    assert records[0]["headers"] == [
        {"key": "source", "value": "cli", "value_base64": False},
        {"key": "team", "value": "ops", "value_base64": False},
    ]
    assert records[0]["key"] is None


def test_consume_since_starts_at_the_first_record_of_that_window(
    run: Run, client: Client, topic_name: str
) -> None:
    # Given two records from two hours ago and two from now, on two partitions
    client.create_topic(topic_name, partitions=2)
    now_ms = int(time.time() * 1000)
    with client.producer() as producer:
        for partition in (0, 1):
            producer.send(
                topic_name, value=b"old", partition=partition, timestamp_ms=now_ms - 7_200_000
            )
            producer.send(topic_name, value=b"new", partition=partition, timestamp_ms=now_ms)

    recent = run("consume", topic_name, "--since", "30m", "--max", "2")
    everything = run("consume", topic_name, "--since", "1d", "--max", "4")

    assert recent.returncode == 0, recent.stderr
    assert recent.stdout.splitlines() == ["new", "new"]
    assert sorted(everything.stdout.splitlines()) == ["new", "new", "old", "old"]


@pytest.mark.parametrize("since", ["100000000d", "9" * 400 + "s"], ids=["past-the-epoch", "huge"])
def test_consume_since_further_back_than_the_epoch_reads_from_the_beginning(
    run: Run, client: Client, topic_name: str, since: str
) -> None:
    client.create_topic(topic_name)
    with client.producer() as producer:
        producer.send(topic_name, value=b"first", timestamp_ms=0)
        producer.send(topic_name, value=b"second")

    consumed = run("consume", topic_name, "--since", since, "--max", "2")

    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == ["first", "second"]


def test_consume_json_gives_bytes_that_are_not_utf8_as_base64(
    run: Run, client: Client, topic_name: str
) -> None:
    client.create_topic(topic_name)
    with client.producer() as producer:
        producer.send(topic_name, value=b"\xff\x00\xfe", key=b"\x80", headers=[("h", b"\xc3")])
        producer.send(topic_name, value=None, key=b"gone")  # a tombstone

    consumed = run("--json", "consume", topic_name, "--from-beginning", "--max", "2")

    first, tombstone = (json.loads(line) for line in consumed.stdout.splitlines())
    assert base64.b64decode(first["value"]) == b"\xff\x00\xfe"
    assert first["value_base64"] is True
    assert base64.b64decode(first["key"]) == b"\x80"
    assert first["key_base64"] is True
    assert first["headers"] == [
        {"key": "h", "value": base64.b64encode(b"\xc3").decode(), "value_base64": True}
    ]
    assert (tombstone["key"], tombstone["value"], tombstone["value_base64"]) == (
        "gone",
        None,
        False,
    )


def test_consume_without_new_records_stops_after_the_idle_timeout(
    run: Run, client: Client, topic_name: str
) -> None:
    client.create_topic(topic_name)

    consumed = run("consume", topic_name, "--timeout", "1")  # RUN_TIMEOUT bounds the run

    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout == ""
    assert "consumed 0 records" in consumed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("produce", "missing-{topic}"), f"topic_not_found: {MISSING}"),
        (("consume", "missing-{topic}", "--timeout", "1"), f"topic_not_found: {MISSING}"),
        (
            ("produce", "{topic}", "--partition", "5"),
            "invalid_request: partition 5 of '{topic}' does not exist (it has 1)",
        ),
    ],
    ids=["produce-missing-topic", "consume-missing-topic", "produce-missing-partition"],
)  # fmt: skip
def test_produce_and_consume_errors_are_one_line_and_exit_1(
    run: Run, client: Client, topic_name: str, args: tuple[str, ...], message: str
) -> None:
    client.create_topic(topic_name)

    failed = run(*(a.format(topic=topic_name) for a in args), input="x\n")

    assert failed.returncode == 1
    assert error_line(failed) == "error: " + message.format(topic=topic_name)


@pytest.mark.parametrize(
    "args",
    [
        ("consume", "t", "--from-beginning", "--offset", "3"),
        ("consume", "t", "--group", "g", "--since", "10m"),
        ("consume", "t", "--since", "10 minutes"),
        ("consume", "t", "--timeout", "nan"),
        ("consume", "t", "--timeout", "inf"),
        ("produce", "t", "--linger-ms", "nan"),
    ],
    ids=[
        "two-starts",
        "group-with-since",
        "bad-duration",
        "nan-timeout",
        "inf-timeout",
        "nan-linger",
    ],
)
def test_consume_usage_errors_exit_2(run: Run, args: tuple[str, ...]) -> None:
    failed = run(*args)

    assert failed.returncode == 2
    assert "Usage:" in failed.stderr
