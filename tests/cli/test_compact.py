"""``lakelog compact [TOPIC] [--dry-run]``: a pass inside the dev server, on its storage."""

from __future__ import annotations

import json
import time

from lakelog.client import Client
from tests.cli.conftest import Run, error_line

DAY_MS = 24 * 3600 * 1000


def _old_and_new(client: Client, topic_name: str) -> None:
    """A topic keeping a day: one batch three days old, then one from now."""
    client.create_topic(topic_name, config={"retention_ms": DAY_MS})
    now_ms = int(time.time() * 1000)
    with client.producer(linger_ms=0) as producer:
        producer.send(topic_name, value=b"old", timestamp_ms=now_ms - 3 * DAY_MS).get(timeout=30)
        producer.send(topic_name, value=b"new", timestamp_ms=now_ms).get(timeout=30)


def _log_start(run: Run, topic_name: str) -> int:
    described = json.loads(run("topic", "describe", topic_name, "--json").stdout)
    start: int = described["partitions"][0]["log_start_offset"]
    return start


def test_a_dry_run_says_what_it_would_do_and_changes_nothing(
    run: Run, client: Client, topic_name: str
) -> None:
    _old_and_new(client, topic_name)

    done = run("compact", topic_name, "--dry-run")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{topic_name}: would do: ")
    assert "gc:" not in done.stdout
    assert _log_start(run, topic_name) == 0


def test_a_pass_expires_old_batches_and_prints_what_it_did(
    run: Run, client: Client, topic_name: str
) -> None:
    _old_and_new(client, topic_name)

    done = run("compact", topic_name)
    again = run("compact", topic_name, "--json")

    assert done.returncode == 0, done.stderr
    assert f"{topic_name}: done: " in done.stdout
    assert "log_start_offset 0->1" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("gc: ")
    assert _log_start(run, topic_name) == 1
    reply = json.loads(again.stdout)
    assert [step["log_start_offsets"] for step in reply["steps"]] == [{}]
    assert set(reply["gc"]) == {"segments_deleted", "topics_purged"}


def test_compacting_an_unknown_topic_exits_1_with_topic_not_found(run: Run) -> None:
    done = run("compact", "no-such-topic-anywhere")

    assert done.returncode == 1
    assert error_line(done).startswith("error: topic_not_found: ")


def test_an_api_without_the_pass_route_is_named_as_such(run: Run, endpoint: str) -> None:
    # The dev server's HTTP API answers an unknown route as the deployed one does
    done = run("compact", endpoint=f"{endpoint}/elsewhere")

    assert done.returncode == 1
    assert error_line(done).startswith("error: not_supported: ")
    assert "compacts on its schedule" in done.stdout + done.stderr
