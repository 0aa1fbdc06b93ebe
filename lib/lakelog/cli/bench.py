"""``lakelog bench``: measure producer and consumer throughput (`lakelog.bench`)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import click

from lakelog import bench as benchmark
from lakelog.cli.common import (
    Settings,
    advancer,
    batching_options,
    console,
    json_option,
    make_table,
    print_json,
    progress_display,
    progress_option,
    showing,
    styled,
    table_console,
    wants_progress,
)

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["bench"]


def _display() -> Progress:
    """One bar for the producer, one for the consumer."""
    from rich.progress import (  # noqa: PLC0415 - only when shown
        BarColumn,
        MofNCompleteColumn,
        TaskProgressColumn,
        TextColumn,
    )

    return progress_display(
        console(stderr=True),
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
    )


@click.command("bench", short_help="Measure producer and consumer throughput.")
@click.option(
    "--records",
    "-n",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    metavar="N",
    help="Records to produce, then consume.",
)
@click.option(
    "--record-bytes",
    "-s",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    metavar="BYTES",
    help="Size of each (random) value.",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    metavar="N",
    help="Partitions of the scratch topic  [default: 1].",
)
@click.option(
    "--topic",
    "topic_name",
    metavar="TOPIC",
    help="Use this existing topic (kept) instead of a scratch topic (deleted after).",
)
@batching_options
@progress_option
@json_option
@click.pass_obj
def bench(
    settings: Settings,
    records: int,
    record_bytes: int,
    partitions: int | None,
    topic_name: str | None,
    linger_ms: float,
    batch_bytes: int,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Produce --records values of --record-bytes, read them back, and report both rates.

    Reports records/s and MiB/s of the producer (first send to end of flush) and of the
    consumer, and the producer's appends per 1,000 records (each append is one S3 object
    and one ledger transaction). The measuring code is lakelog.bench, which also runs
    in-process on Client.direct(...).
    """
    if topic_name is not None and partitions is not None:
        raise click.UsageError("--partitions applies to the scratch topic; not with --topic")
    client = settings.client()
    display = _display() if wants_progress(progress) else None
    with showing(display):
        result = benchmark.run(
            client,
            records=records,
            record_bytes=record_bytes,
            topic=topic_name,
            partitions=partitions or 1,
            produced=advancer(display, "produce", records),
            consumed=advancer(display, "consume", records),
            producer_options={"linger_ms": linger_ms, "batch_bytes": batch_bytes},
        )
    if as_json or settings.json:
        print_json({"endpoint": settings.endpoint, **dataclasses.asdict(result)})
        return
    _print_bench(settings.endpoint, result)


def _print_bench(endpoint: str, result: benchmark.BenchResult) -> None:
    out = table_console()
    count = result.partitions
    out.print(
        styled(
            ("bench ", "bold"),
            (result.topic, "bold cyan"),
            f"  {count} partition{'s' if count != 1 else ''}, {result.records} records of "
            f"{result.record_bytes} bytes, {endpoint}",
        )
    )
    numbers = ("records", "seconds", "records/s", "MiB/s", "appends per 1,000 records")
    table = make_table("", *numbers, numeric=numbers)
    p, c = result.producer, result.consumer
    table.add_row(
        "producer",
        str(p.records),
        f"{p.seconds:.2f}",
        f"{p.records_per_s:,.0f}",
        f"{p.mib_per_s:.2f}",
        f"{p.appends_per_1000:.1f}",
    )
    table.add_row(
        "consumer",
        str(c.records),
        f"{c.seconds:.2f}",
        f"{c.records_per_s:,.0f}",
        f"{c.mib_per_s:.2f}",
        "-",
    )
    out.print(table)
