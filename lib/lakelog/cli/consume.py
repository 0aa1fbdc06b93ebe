"""``lakelog consume``: print records of a topic, alone or in a consumer group."""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, Literal

import click

from lakelog.cli.common import (
    FiniteFloat,
    Settings,
    check_partition,
    counted,
    duration,
    json_option,
    seconds_ago_ms,
)
from lakelog.errors import LakelogError
from lakelog.types import TopicPartition

if TYPE_CHECKING:
    from lakelog.client import Client, Consumer, ConsumerRecord

__all__ = ["consume"]


def _text(data: bytes | None) -> tuple[str | None, bool]:
    """``(text, False)`` for UTF-8 bytes, ``(base64, True)`` for others, ``(None, False)``."""
    if data is None:
        return None, False
    try:
        return data.decode(), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True


def _record_json(record: ConsumerRecord) -> dict[str, Any]:
    key, key_base64 = _text(record.key)
    value, value_base64 = _text(record.value)
    headers = []
    for name, data in record.headers:
        text, text_base64 = _text(data)
        headers.append({"key": name, "value": text, "value_base64": text_base64})
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": key,
        "key_base64": key_base64,
        "value": value,
        "value_base64": value_base64,
        "headers": headers,
    }


class _RecordPrinter:
    """Writes records to stdout: raw values (keys too with ``print_key``) or JSON lines."""

    def __init__(self, *, as_json: bool, print_key: bool, separator: str) -> None:
        self._stream = sys.stdout.buffer
        self._as_json = as_json
        self._print_key = print_key
        self._separator = separator.encode()

    def line(self, record: ConsumerRecord) -> bytes:
        if self._as_json:
            return json.dumps(_record_json(record), ensure_ascii=False).encode() + b"\n"
        value = b"null" if record.value is None else record.value
        if not self._print_key:
            return value + b"\n"
        key = b"null" if record.key is None else record.key
        return key + self._separator + value + b"\n"

    def write(self, records: Sequence[ConsumerRecord]) -> None:
        self._stream.write(b"".join(self.line(r) for r in records))
        self._stream.flush()


_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _stop_signals(reading: _Reading) -> Iterator[None]:
    """Ctrl-C and SIGTERM end ``reading`` after the poll in progress (a second one
    interrupts it at once, for a request that never ends).

    The handler only records the signal. A Python handler runs in the main thread between
    any two bytecodes: one that raised there interrupted the consumer anywhere, such as in
    a join whose reply was then lost (the member stayed in the group, holding its
    partitions, until its session ended) or after a heartbeat took the turn of membership
    requests and before it gave it back (leaving the group then waited for it forever).
    """

    def stop(signum: int, _frame: FrameType | None) -> None:
        if reading.stopping:
            raise KeyboardInterrupt
        reading.stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _position(
    client: Client,
    consumer: Consumer,
    partitions: Sequence[TopicPartition],
    offset: int | None,
    since: float | None,
) -> None:
    """Seek every partition to ``offset`` (kept inside the log) or to ``since`` ago."""
    if offset is not None:
        topic_name = partitions[0].topic
        state = {p.partition: p for p in client.describe_topic(topic_name).partitions}
        for tp in partitions:
            info = state[tp.partition]
            start = min(max(offset, info.log_start_offset), info.high_watermark)
            if start != offset:
                click.echo(
                    f"warning: offset {offset} is outside {tp.topic}-{tp.partition} "
                    f"[{info.log_start_offset}, {info.high_watermark}]; reading from {start}",
                    err=True,
                )
            consumer.seek(tp, start)
    elif since is not None:
        timestamp_ms = seconds_ago_ms(since)
        found = consumer.offsets_for_times(dict.fromkeys(partitions, timestamp_ms))
        for tp, at in found.items():
            if at is None:
                consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, at.offset)


def _open_consumer(
    client: Client,
    topic_name: str,
    *,
    group_id: str | None,
    from_beginning: bool,
    offset: int | None,
    partition: int | None,
    since: float | None,
) -> Consumer:
    reset: Literal["earliest", "latest"] = "earliest" if from_beginning else "latest"
    if group_id is not None:
        return client.consumer(
            topic_name, group_id=group_id, auto_offset_reset=reset, enable_auto_commit=False
        )
    count = check_partition(client.describe_topic(topic_name), partition)
    wanted = range(count) if partition is None else [partition]
    partitions = [TopicPartition(topic_name, p) for p in wanted]
    consumer = client.consumer(auto_offset_reset=reset, enable_auto_commit=False)
    try:
        consumer.assign(partitions)
        _position(client, consumer, partitions, offset, since)
    except BaseException:
        consumer.close()
        raise
    return consumer


@click.command(short_help="Print records of a topic, alone or in a consumer group.")
@click.argument("topic_name", metavar="TOPIC")
@click.option(
    "--group",
    "-g",
    "group_id",
    metavar="GROUP",
    help="Read in consumer group GROUP: start at its committed offsets, commit what was "
    "printed, leave the group on exit.",
)
@click.option(
    "--from-beginning",
    is_flag=True,
    help="Start at the log start (with --group: where the group has no committed offset).",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    metavar="N",
    help="Start at offset N of each partition read (without --group).",
)
@click.option(
    "--since",
    callback=duration,
    metavar="DURATION",
    help="Start at the first record of the last DURATION: 30s, 10m, 2h, 7d (without --group).",
)
@click.option(
    "--partition",
    "-p",
    type=click.IntRange(min=0),
    metavar="P",
    help="Read only partition P (without --group; default: every partition).",
)
@click.option(
    "--max", "max_records", type=click.IntRange(min=1), metavar="N", help="Stop after N records."
)
@click.option(
    "--timeout",
    type=FiniteFloat(min=0),
    metavar="SECONDS",
    help="Stop after SECONDS without a new record (default: run until Ctrl-C).",
)
@click.option("--print-key", is_flag=True, help="Print KEY SEP VALUE instead of VALUE.")
@click.option(
    "--key-separator",
    "-k",
    default="\t",
    metavar="SEP",
    help="Separator printed by --print-key  [default: tab].",
)
@json_option
@click.pass_obj
def consume(
    settings: Settings,
    topic_name: str,
    group_id: str | None,
    from_beginning: bool,
    offset: int | None,
    since: float | None,
    partition: int | None,
    max_records: int | None,
    timeout: float | None,
    print_key: bool,
    key_separator: str,
    as_json: bool,
) -> None:
    """Print the records of TOPIC as they arrive, one a line.

    Plain output is each record's value ('null' for none), or KEY SEP VALUE with
    --print-key. --json prints one object a line: topic, partition, offset, timestamp,
    key, value and headers; keys and values that are not UTF-8 are base64 with
    key_base64/value_base64 set. Without --group every partition is read (from the end
    unless told otherwise). Stops at --max records, after --timeout idle seconds, or on
    Ctrl-C; a count goes to stderr.
    """
    starts = [name for name, given in _start_options(from_beginning, offset, since) if given]
    if len(starts) > 1:
        raise click.UsageError(f"{' and '.join(starts)} cannot be combined")
    if group_id is not None and (offset is not None or since is not None or partition is not None):
        raise click.UsageError(
            "--offset, --since and --partition read without a group; "
            "move a group with 'lakelog group reset'"
        )
    printer = _RecordPrinter(
        as_json=as_json or settings.json, print_key=print_key, separator=key_separator
    )
    consumer = _open_consumer(
        settings.client(),
        topic_name,
        group_id=group_id,
        from_beginning=from_beginning,
        offset=offset,
        partition=partition,
        since=since,
    )
    reading = _Reading(consumer, printer, commit=group_id is not None)
    _read_until_stopped(reading, max_records, timeout)
    click.echo(f"consumed {counted(reading.printed, 'record')}", err=True)


def _read_until_stopped(reading: _Reading, max_records: int | None, timeout: float | None) -> None:
    """Run ``reading`` until it is done or a stop signal comes, then finish it."""
    try:
        with _stop_signals(reading):
            reading.run(max_records, timeout)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        _silence_stdout()
    finally:
        reading.finish()


def _start_options(
    from_beginning: bool, offset: int | None, since: float | None
) -> list[tuple[str, bool]]:
    return [
        ("--from-beginning", from_beginning),
        ("--offset", offset is not None),
        ("--since", since is not None),
    ]


class _Reading:
    """One ``consume`` run: prints what polls return; in a group, commits what it printed.

    After each batch the offsets following the printed records are committed. On exit the
    position of every partition held is committed too (so partitions that returned nothing
    keep their start), except partitions of a batch interrupted before it was printed.
    """

    def __init__(self, consumer: Consumer, printer: _RecordPrinter, *, commit: bool) -> None:
        self.consumer = consumer
        self.printer = printer
        self.commit = commit
        self.printed = 0
        self.stopping = False
        """Set by Ctrl-C or SIGTERM: `run` returns after the poll in progress."""
        self._unprinted: set[TopicPartition] = set()

    def run(self, max_records: int | None, timeout: float | None) -> None:
        """Print until ``max_records`` were printed, ``timeout`` seconds pass idle or
        `stopping` is set."""
        idle_since = time.monotonic()
        while not self.stopping and (max_records is None or self.printed < max_records):
            left = None if timeout is None else timeout - (time.monotonic() - idle_since)
            if left is not None and left <= 0:
                return
            wait_s = 1.0 if left is None else min(1.0, left)
            remaining = None if max_records is None else max_records - self.printed
            batch = self.consumer.poll(timeout_ms=wait_s * 1000, max_records=remaining)
            if not batch:
                continue
            idle_since = time.monotonic()
            self._unprinted = set(batch)
            done: dict[TopicPartition, int] = {}
            for tp, records in batch.items():
                self.printer.write(records)
                self.printed += len(records)
                done[tp] = records[-1].offset + 1
                self._unprinted.discard(tp)
            if self.commit:
                self._commit(done)

    def finish(self) -> None:
        """Commit the final positions (in a group), then close: leave the group at once."""
        try:
            if self.commit:
                held = self.consumer.assignment() - self._unprinted
                self._commit({tp: self.consumer.position(tp) for tp in held})
        finally:
            self.consumer.close()

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except LakelogError as error:  # a moved lease: another member reads it now
            click.echo(f"warning: commit failed: {error.code}: {error.message}", err=True)


def _silence_stdout() -> None:
    """The reader of stdout went away (``| head``): drop what is left, quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
