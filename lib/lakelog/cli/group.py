"""``lakelog group``: describe consumer groups and move their committed offsets."""

from __future__ import annotations

import time
from datetime import datetime

import click

from lakelog.cli.common import (
    Settings,
    cell,
    counted,
    duration,
    iso_datetime,
    json_option,
    make_table,
    print_json,
    seconds_ago_ms,
    show,
    styled,
    table_console,
)
from lakelog.types import GroupDescription, ResetTarget, ToOffset, ToTimestamp

__all__ = ["group"]


@click.group("group", short_help="Describe consumer groups and move their offsets.")
def group() -> None:
    """Describe consumer groups and move their committed offsets."""


def _print_group(description: GroupDescription) -> None:
    out = table_console()
    members = len(description.members)
    heading = styled(("group ", "bold"), (description.group, "bold cyan"))
    heading.append(f"  {counted(members, 'live member')}")
    lags = [p.lag for p in description.partitions if p.lag is not None]
    heading.append(f", total lag {sum(lags)}" if lags else "")
    out.print(heading)
    if description.members:
        now_ms = time.time() * 1000
        table = make_table("member", "topics", "expires_in", "partitions")
        for member in description.members:
            table.add_row(
                member.member_id,
                ",".join(member.topics),
                f"{max(member.expires_ms - now_ms, 0) / 1000:.1f}s",
                ",".join(f"{t}-{p}" for t, p in member.assignments) or "-",
            )
        out.print(table)
        out.print()
    numbers = ("partition", "lease_epoch", "committed_offset", "high_watermark", "lag")
    table = make_table("topic", "partition", "owner", *numbers[1:], numeric=numbers)
    for p in description.partitions:
        table.add_row(
            p.topic,
            str(p.partition),
            cell(p.owner),
            str(p.lease_epoch),
            cell(p.committed_offset),
            str(p.high_watermark),
            cell(p.lag),
        )
    out.print(table)


@group.command("describe")
@click.argument("group_id", metavar="GROUP")
@json_option
@click.pass_obj
def group_describe(settings: Settings, group_id: str, as_json: bool) -> None:
    """Show the live members of GROUP and, per partition, owner, committed offset and lag."""
    description = settings.client().describe_group(group_id)
    show(description, as_json or settings.json, _print_group)


@group.command("reset")
@click.argument("group_id", metavar="GROUP")
@click.option(
    "--topic",
    "-t",
    "topic_name",
    required=True,
    metavar="TOPIC",
    help="The topic whose offsets move.",
)
@click.option("--to-earliest", is_flag=True, help="To each partition's log start.")
@click.option("--to-latest", is_flag=True, help="To each partition's high watermark.")
@click.option("--to-offset", type=click.IntRange(min=0), metavar="N", help="To offset N.")
@click.option(
    "--to-datetime",
    callback=iso_datetime,
    metavar="ISO",
    help="To the first record at or after this time (ISO 8601; local time without offset).",
)
@click.option(
    "--since",
    callback=duration,
    metavar="DURATION",
    help="To the first record of the last DURATION: 30s, 10m, 2h, 7d.",
)
@json_option
@click.pass_obj
def group_reset(
    settings: Settings,
    group_id: str,
    topic_name: str,
    to_earliest: bool,
    to_latest: bool,
    to_offset: int | None,
    to_datetime: datetime | None,
    since: float | None,
    as_json: bool,
) -> None:
    """Move the committed offsets of GROUP on one topic (the group must have no live member).

    Prints the new committed offset of each partition.
    """
    targets = {
        "--to-earliest": to_earliest,
        "--to-latest": to_latest,
        "--to-offset": to_offset is not None,
        "--to-datetime": to_datetime is not None,
        "--since": since is not None,
    }
    chosen = [name for name, given in targets.items() if given]
    if len(chosen) != 1:
        raise click.UsageError(f"give exactly one of {', '.join(targets)}")
    to: ResetTarget
    if to_earliest or to_latest:
        to = "earliest" if to_earliest else "latest"
    elif to_offset is not None:
        to = ToOffset(to_offset)
    else:
        moment_ms = (
            int(to_datetime.timestamp() * 1000)
            if to_datetime is not None
            else seconds_ago_ms(since or 0)
        )
        to = ToTimestamp(moment_ms)
    offsets = settings.client().reset_offsets(group_id, topic_name, to)
    rows = [{"partition": p, "offset": o} for p, o in sorted(offsets.items())]
    if as_json or settings.json:
        print_json({"group": group_id, "topic": topic_name, "partitions": rows})
        return
    out = table_console()
    out.print(styled(("group ", "bold"), (group_id, "bold cyan"), f"  topic {topic_name}"))
    table = make_table("partition", "committed_offset", numeric=("partition", "committed_offset"))
    for row in rows:
        table.add_row(str(row["partition"]), str(row["offset"]))
    out.print(table)
