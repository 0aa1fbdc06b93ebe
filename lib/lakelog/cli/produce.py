"""``lakelog produce``: append lines of stdin to a topic, one record each."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import IO, TYPE_CHECKING

import click

from lakelog.cli.common import (
    CommandError,
    Settings,
    advancer,
    batching_options,
    check_partition,
    console,
    counted,
    key_values,
    progress_display,
    progress_option,
    showing,
    wants_progress,
)
from lakelog.errors import LakelogError
from lakelog.types import Header, RecordMetadata

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["produce"]


class _Acks:
    """Keeps the first failed send and reports each acknowledged one (futures call it)."""

    def __init__(self, on_ack: Callable[[int], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._on_ack = on_ack
        self.error: BaseException | None = None

    def __call__(self, future: Future[RecordMetadata]) -> None:
        error = future.exception()
        if error is None:
            if self._on_ack is not None:
                self._on_ack(1)
            return
        self.fail(error)

    def fail(self, error: BaseException) -> None:
        """Keep ``error`` unless an earlier one is kept."""
        with self._lock:
            if self.error is None:
                self.error = error


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """``(line number, line without its end of line)`` of a binary stream."""
    for number, raw in enumerate(stream, start=1):
        line = raw
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        yield number, line


def _display(stderr: Console, topic_name: str) -> Progress:
    """A spinner and the count of acknowledged records."""
    from rich.progress import SpinnerColumn, TextColumn  # noqa: PLC0415 - only when shown

    return progress_display(
        stderr,
        SpinnerColumn(),
        TextColumn(f"producing to {topic_name}"),
        TextColumn("{task.completed:,.0f} records acknowledged"),
    )


@click.command(short_help="Append lines from stdin to a topic, one record each.")
@click.argument("topic_name", metavar="TOPIC")
@click.option(
    "--key-separator",
    "-k",
    metavar="SEP",
    help="Split each line at the first SEP into key and value; a line without SEP is an "
    "error (the lines before it are produced). Without it, lines are values with no key.",
)
@click.option(
    "--partition",
    "-p",
    type=click.IntRange(min=0),
    metavar="P",
    help="Send every record to partition P (default: by key; keyless: sticky).",
)
@click.option(
    "--header",
    "-H",
    "headers",
    metavar="KEY=VALUE",
    callback=key_values,
    multiple=True,
    help="Header KEY=VALUE added to every record, repeatable.",
)
@batching_options
@progress_option
@click.pass_obj
def produce(
    settings: Settings,
    topic_name: str,
    key_separator: str | None,
    partition: int | None,
    headers: tuple[tuple[str, str], ...],
    linger_ms: float,
    batch_bytes: int,
    progress: bool | None,
) -> None:
    """Append each line of stdin to TOPIC as one record (UTF-8 value, no end of line).

    Records are batched by the producer and acknowledged before the command ends; a
    summary line (records, bytes, seconds, records/s) goes to stderr.
    """
    if key_separator == "":
        raise click.BadParameter("must not be empty", param_hint="'--key-separator'")
    separator = None if key_separator is None else key_separator.encode()
    record_headers: list[Header] = [(key, value.encode()) for key, value in headers]
    client = settings.client()
    # An unknown topic or partition fails before the first line is read.
    check_partition(client.describe_topic(topic_name), partition)
    stderr = console(stderr=True)
    display = _display(stderr, topic_name) if wants_progress(progress) else None
    acks = _Acks(advancer(display, "produce", None))
    bad_line: int | None = None
    producer = client.producer(linger_ms=linger_ms, batch_bytes=batch_bytes)
    started = time.perf_counter()
    with showing(display), producer:
        for number, line in _lines(sys.stdin.buffer):
            key: bytes | None = None
            value = line
            if separator is not None:
                key, found, value = line.partition(separator)
                if not found:
                    bad_line = number
                    break
            try:
                future = producer.send(
                    topic_name, value=value, key=key, headers=record_headers, partition=partition
                )
            except LakelogError as error:  # this record can never be sent (too large, ...)
                acks.fail(error)
                break
            future.add_done_callback(acks)
            if acks.error is not None:
                break
        producer.flush()
    seconds = time.perf_counter() - started
    metrics = producer.metrics()
    rate = metrics.records / seconds if seconds > 0 else 0.0
    stderr.print(
        f"produced {counted(metrics.records, 'record')} ({metrics.bytes} bytes) to {topic_name} "
        f"in {seconds:.2f} s: {rate:,.0f} records/s"
    )
    if acks.error is not None:
        if isinstance(acks.error, LakelogError):
            raise acks.error
        raise CommandError("internal", f"{type(acks.error).__name__}: {acks.error}")
    if bad_line is not None:
        raise CommandError(
            "invalid_input",
            f"line {bad_line} has no key separator {key_separator!r}; "
            f"the {bad_line - 1} lines before it were produced",
        )
