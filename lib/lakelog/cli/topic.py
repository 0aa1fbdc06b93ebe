"""``lakelog topic``: create, list, describe, alter and delete topics."""

from __future__ import annotations

import dataclasses

import click

from lakelog.cli.common import (
    Settings,
    cell,
    counted,
    json_option,
    key_values,
    make_table,
    print_json,
    styled,
    table_console,
    topic_config,
)
from lakelog.types import TopicDescription

__all__ = ["topic"]


@click.group(short_help="Create, list, describe, alter and delete topics.")
def topic() -> None:
    """Create, list, describe, alter and delete topics."""


def _show_topic(description: TopicDescription, as_json: bool) -> None:
    """A topic description as JSON (``levels`` only where counted), or as tables."""
    if not as_json:
        _print_topic(description)
        return
    data = dataclasses.asdict(description)
    for part in (data, *data["partitions"]):
        if part["levels"] is None:
            del part["levels"]
    print_json(data)


def _print_topic(description: TopicDescription) -> None:
    out = table_console()
    count = len(description.partitions)
    heading = styled(("topic ", "bold"), (description.name, "bold cyan"))
    heading.append(f"  {counted(count, 'partition')}")
    if description.topic_id:
        heading.append(f", id {description.topic_id}")
    out.print(heading)
    numbers: tuple[str, ...] = ("partition", "log_start_offset", "high_watermark", "bytes")
    if description.levels is not None:
        numbers += ("l0_bytes", "l1_segments", "l1_bytes")
    partitions = make_table(*numbers, numeric=numbers)
    for p in description.partitions:
        row = [p.partition, p.log_start_offset, p.high_watermark, p.bytes]
        if p.levels is not None:
            row += [p.levels.l0_bytes, p.levels.l1.segments, p.levels.l1.bytes]
        partitions.add_row(*map(str, row))
    out.print(partitions)
    out.print()
    if description.levels is not None:
        columns = ("level", "segments", "bytes")
        levels = make_table(*columns, numeric=columns[1:])
        for name, usage in (("L0", description.levels.l0), ("L1", description.levels.l1)):
            levels.add_row(name, str(usage.segments), str(usage.bytes))
        out.print(levels)
        out.print()
    config = make_table("config", "value")
    for key, value in sorted(description.config.items()):
        config.add_row(key, cell(value))
    out.print(config)


config_option = click.option(
    "--config",
    "-c",
    "configs",
    metavar="KEY=VALUE",
    callback=key_values,
    multiple=True,
    help="Topic config KEY=VALUE, repeatable: retention_ms, retention_bytes, cleanup_policy "
    "(delete|compact), delete_retention_ms, max_record_bytes, compression. Integer-looking "
    "values are sent as integers.",
)
"""``--config KEY=VALUE ...`` of ``topic create`` and ``topic alter``."""


@topic.command("create")
@click.argument("name")
@click.option(
    "--partitions",
    "-p",
    type=int,
    default=1,
    show_default=True,
    metavar="N",
    help="Number of partitions.",
)
@config_option
@json_option
@click.pass_obj
def topic_create(
    settings: Settings,
    name: str,
    partitions: int,
    configs: tuple[tuple[str, str], ...],
    as_json: bool,
) -> None:
    """Create topic NAME."""
    description = settings.client().create_topic(name, partitions, topic_config(configs) or None)
    if as_json or settings.json:
        _show_topic(description, as_json=True)
    else:
        click.echo(f"created topic {name} ({counted(len(description.partitions), 'partition')})")


@topic.command("list")
@json_option
@click.pass_obj
def topic_list(settings: Settings, as_json: bool) -> None:
    """Print the name of every topic, one a line."""
    names = sorted(settings.client().list_topics())
    if as_json or settings.json:
        print_json({"topics": names})
    else:
        for name in names:
            click.echo(name)


@topic.command("describe")
@click.argument("name")
@json_option
@click.pass_obj
def topic_describe(settings: Settings, name: str, as_json: bool) -> None:
    """Show each partition's offsets and bytes, the segments and bytes per storage level
    (L0: flush segments not merged yet; L1: merged segments), and the config of topic NAME."""
    description = settings.client().describe_topic(name, levels=True)
    _show_topic(description, as_json or settings.json)


@topic.command("alter")
@click.argument("name")
@click.option(
    "--partitions",
    "-p",
    type=int,
    metavar="N",
    help="New number of partitions (more, never fewer).",
)
@config_option
@json_option
@click.pass_obj
def topic_alter(
    settings: Settings,
    name: str,
    partitions: int | None,
    configs: tuple[tuple[str, str], ...],
    as_json: bool,
) -> None:
    """Change config keys of topic NAME and/or add partitions; prints the result."""
    if partitions is None and not configs:
        raise click.UsageError("give --partitions and/or --config KEY=VALUE")
    description = settings.client().alter_topic(
        name, config=topic_config(configs) or None, partitions=partitions
    )
    _show_topic(description, as_json or settings.json)


@topic.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def topic_delete(settings: Settings, name: str, yes: bool) -> None:
    """Delete topic NAME and every record in it (asks first unless --yes)."""
    client = settings.client()
    if not yes:
        client.describe_topic(name)  # an unknown topic fails before the question
        click.confirm(f"Delete topic {name} and all its records?", abort=True, err=True)
    client.delete_topic(name)
    click.echo(f"deleted topic {name}")
