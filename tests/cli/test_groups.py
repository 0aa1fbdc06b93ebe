"""``lakelog consume --group``, ``lakelog group describe`` and ``lakelog group reset``."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable

from lakelog.client import Client
from lakelog.errors import GroupNotFoundError
from tests.cli.conftest import REPO, Run, cli_command, cli_env, error_line


def produce_values(client: Client, topic: str, count: int, partitions: int) -> set[str]:
    """``count`` values spread round-robin over ``partitions``; returns them."""
    values = [f"v{i}" for i in range(count)]
    with client.producer() as producer:
        for i, value in enumerate(values):
            producer.send(topic, value=value.encode(), partition=i % partitions)
    return set(values)


def _sole_owner(client: Client, group: str, partitions: int) -> str | None:
    """The id of ``group``'s one live member if it holds all ``partitions``, else None."""
    try:
        described = client.describe_group(group)
    except GroupNotFoundError:
        return None
    if len(described.members) != 1 or len(described.partitions) != partitions:
        return None
    member_id = described.members[0].member_id
    return member_id if {p.owner for p in described.partitions} == {member_id} else None


def test_a_group_continues_where_the_previous_run_stopped_and_describe_shows_the_lag(
    run: Run, client: Client, topic_name: str, unique: Callable[[str], str]
) -> None:
    # Given six records over two partitions
    client.create_topic(topic_name, partitions=2)
    values = produce_values(client, topic_name, 6, partitions=2)
    group = unique("billing")

    # When a group member reads three of them from the beginning and exits
    first = run("consume", topic_name, "--group", group, "--from-beginning", "--max", "3")
    assert first.returncode == 0, first.stderr
    seen = first.stdout.splitlines()
    assert len(seen) == 3

    # Then the group has committed what was printed: three records of lag, nobody live
    described = json.loads(run("group", "describe", group, "--json").stdout)
    assert described["group"] == group
    assert described["members"] == []
    partitions = {p["partition"]: p for p in described["partitions"]}
    assert sorted(partitions) == [0, 1]
    assert sum(p["lag"] for p in partitions.values()) == 3
    assert all(p["high_watermark"] == 3 for p in partitions.values())
    assert all(p["owner"] is None for p in partitions.values())

    # And the table shows the same, aligned, with the total lag in its heading
    table = run("group", "describe", group)
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["group", group]
    assert "total lag 3" in lines[0]
    header = lines[1].split()
    assert header == [
        "topic", "partition", "owner", "lease_epoch", "committed_offset", "high_watermark", "lag",
    ]  # fmt: skip
    rows = [dict(zip(header, line.split(), strict=True)) for line in lines[3:5]]
    assert [int(r["lag"]) for r in rows] == [partitions[p]["lag"] for p in (0, 1)]
    assert len({len(line.rstrip()) for line in lines[1:5] if "─" not in line}) == 1

    # When the same group runs again (no --from-beginning needed: offsets are committed)
    second = run("consume", topic_name, "--group", group, "--max", "3", "--timeout", "10")

    # Then it prints exactly the other three
    assert second.returncode == 0, second.stderr
    rest = second.stdout.splitlines()
    assert sorted(seen + rest) == sorted(values)
    lags = [p.lag for p in client.describe_group(group).partitions]
    assert lags == [0, 0]


def test_group_reset_to_earliest_replays_and_other_targets_move_offsets(
    run: Run, client: Client, topic_name: str, unique: Callable[[str], str]
) -> None:
    # Given a group that has read all four records of a topic
    client.create_topic(topic_name, partitions=2)
    values = produce_values(client, topic_name, 4, partitions=2)
    group = unique("replay")
    first = run("consume", topic_name, "-g", group, "--from-beginning", "--max", "4")
    assert sorted(first.stdout.splitlines()) == sorted(values)

    # When its offsets are reset to the earliest
    reset = run("group", "reset", group, "--topic", topic_name, "--to-earliest")
    assert reset.returncode == 0, reset.stderr
    lines = reset.stdout.splitlines()
    assert lines[1].split() == ["partition", "committed_offset"]
    assert [line.split() for line in lines[3:]] == [["0", "0"], ["1", "0"]]

    # Then the group reads everything again
    again = run("consume", topic_name, "-g", group, "--max", "4", "--timeout", "10")
    assert sorted(again.stdout.splitlines()) == sorted(values)

    # And the other targets move the offsets where they say (JSON output)
    def reset_json(*target: str) -> dict[int, int]:
        done = run("--json", "group", "reset", group, "-t", topic_name, *target)
        assert done.returncode == 0, done.stderr
        reply = json.loads(done.stdout)
        assert (reply["group"], reply["topic"]) == (group, topic_name)
        return {p["partition"]: p["offset"] for p in reply["partitions"]}

    assert reset_json("--to-offset", "1") == {0: 1, 1: 1}
    assert reset_json("--to-datetime", "2099-01-01T00:00:00+00:00") == {0: 2, 1: 2}
    assert reset_json("--since", "1h") == {0: 0, 1: 0}
    assert reset_json("--to-offset", "1") == {0: 1, 1: 1}
    assert reset_json("--since", "100000000d") == {0: 0, 1: 0}


def test_group_describe_shows_a_live_member_and_reset_refuses_while_it_runs(
    run: Run, client: Client, endpoint: str, topic_name: str, unique: Callable[[str], str]
) -> None:
    # Given a group member consuming in the background
    client.create_topic(topic_name, partitions=2)
    group = unique("live")
    member = subprocess.Popen(
        cli_command("consume", topic_name, "--group", group, "--timeout", "600", endpoint=endpoint),
        cwd=REPO,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # (it joins, then takes its leases at a heartbeat: wait until it holds both)
        deadline = time.monotonic() + 60  # a backstop: it holds both long before
        while (member_id := _sole_owner(client, group, partitions=2)) is None:
            assert member.poll() is None, member.communicate()
            assert time.monotonic() < deadline, "the background consumer never took both leases"
            time.sleep(0.1)

        # Then describe lists it as the owner of both partitions
        described = run("group", "describe", group)
        assert described.returncode == 0, described.stderr
        assert "1 live member" in described.stdout.splitlines()[0]
        assert member_id in described.stdout
        assert f"{topic_name}-0,{topic_name}-1" in described.stdout

        # And a reset is refused while it is live
        refused = run("group", "reset", group, "--topic", topic_name, "--to-earliest")
        assert refused.returncode == 1
        assert error_line(refused).startswith("error: group_not_empty: ")

        # When the member is stopped with SIGTERM, it leaves the group at once and exits 0
        member.send_signal(signal.SIGTERM)
        _, stderr = member.communicate(timeout=30)
        assert member.returncode == 0, stderr
        assert "consumed 0 records" in stderr
        assert client.describe_group(group).members == ()
    finally:
        if member.poll() is None:
            member.kill()
            member.communicate()


def test_group_errors(run: Run, unique: Callable[[str], str]) -> None:
    missing = run("group", "describe", unique("nobody"))
    assert missing.returncode == 1
    assert error_line(missing).startswith("error: group_not_found: group 'nobody-")


def test_group_reset_needs_exactly_one_target(run: Run) -> None:
    failed = run("group", "reset", "g", "--topic", "t", "--to-earliest", "--to-offset", "3")

    assert failed.returncode == 2
    assert "give exactly one of --to-earliest" in failed.stderr
