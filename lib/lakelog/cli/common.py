"""What every command shares: settings, errors, parameter types, options and output.

Only click and the SDK load with the command line; rich loads when something is printed
with it, the local server when ``dev`` runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from types import FrameType, TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, TypeVar

import click

from lakelog.errors import InvalidRequestError, LakelogError
from lakelog.types import GroupDescription, SubscriptionStatus, TopicDescription

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table
    from rich.text import Text

    from lakelog.client import Client

__all__ = [
    "DEFAULT_COMPACT_EVERY",
    "DEFAULT_ENDPOINT",
    "DEFAULT_PORT",
    "EXIT_FAILED",
    "CommandError",
    "Commands",
    "Settings",
    "StopSignals",
    "advancer",
    "batching_options",
    "cell",
    "check_partition",
    "console",
    "counted",
    "duration",
    "iso_datetime",
    "json_option",
    "key_values",
    "make_table",
    "print_json",
    "progress_display",
    "progress_option",
    "show",
    "showing",
    "styled",
    "table_console",
    "topic_config",
    "wants_progress",
]

DEFAULT_PORT: Final = 8080
"""Where ``lakelog dev`` listens (`lakelog.local.server.DEFAULT_PORT`, kept equal by a test)."""
DEFAULT_ENDPOINT: Final = f"http://127.0.0.1:{DEFAULT_PORT}"
DEFAULT_COMPACT_EVERY: Final = 60.0
"""Seconds between ``lakelog dev``'s compactor passes (`lakelog.local.compaction`'s, kept
equal by a test)."""
EXIT_FAILED: Final = 1
"""Exit status of a command that failed (click's usage errors exit with 2)."""

_F = TypeVar("_F", bound=Callable[..., Any])
_D = TypeVar("_D", TopicDescription, GroupDescription, SubscriptionStatus)


class StopSignals:
    """Ctrl-C and SIGTERM: the wait of a command that serves until stopped.

    Inside the ``with`` block the signals only end `wait` (one that came before it ends it
    at once); leaving the block puts the handlers from before back, so that a second
    Ctrl-C interrupts a slow shutdown the usual way. Use from the main thread.

    A Python signal handler runs in the main thread between any two bytecodes, also while
    that thread holds a lock: setting a `threading.Event` from one deadlocks when the
    signal comes while `Event.wait` holds the event's condition. So the handler does
    nothing; the interpreter's C handler writes the signal's number to a pipe
    (`signal.set_wakeup_fd`), and `wait` reads it.
    """

    SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._read_fd = -1
        self._write_fd = -1
        self._previous: dict[int, Any] = {}
        self._previous_wakeup_fd = -1

    def __enter__(self) -> StopSignals:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)  # the C handler must never block
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._previous = {sig: signal.signal(sig, _ignore_signal) for sig in self.SIGNALS}
        return self

    def wait(self) -> int:
        """Until one of `SIGNALS` comes; its number."""
        while True:
            number = os.read(self._read_fd, 1)[0]
            if number in self.SIGNALS:
                return number

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        os.close(self._read_fd)
        os.close(self._write_fd)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """The Python handler of `StopSignals`: the wakeup fd has recorded the signal."""


def console(*, stderr: bool = False) -> Console:
    """A console for messages (on stderr when asked)."""
    from rich.console import Console  # noqa: PLC0415 - rich loads when a command prints

    # soft_wrap: URLs and SQL must stay on one line even in a narrow terminal or a pipe.
    return Console(stderr=stderr, soft_wrap=True, highlight=False)


def table_console() -> Console:
    """The console tables go to: never wrapped or cut when stdout is a pipe or a file."""
    from rich.console import Console  # noqa: PLC0415 - rich loads when a command prints

    return Console(
        soft_wrap=True,
        highlight=False,
        markup=False,
        width=None if sys.stdout.isatty() else 1000,
    )


# Errors ------------------------------------------------------------------------------------
class CommandError(click.ClickException):
    """A failure of the command, shown as one line ``error: CODE: MESSAGE`` (exit status 1)."""

    exit_code = EXIT_FAILED

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def format_message(self) -> str:
        return f"{self.code}: {self.message}"

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


def _network_reason(cause: BaseException) -> str:
    """``connection refused`` out of urllib3's long description of a failed request."""
    import urllib3  # noqa: PLC0415 - loaded already by the request that failed

    text = str(cause)
    found = re.search(r"\[Errno -?\d+\] ([^)'\"]+)", text)
    if found:
        reason = found.group(1).strip()
    elif isinstance(cause, urllib3.exceptions.TimeoutError):
        reason = "timed out"
    else:
        reason = text.rsplit(": ", 1)[-1]
    return reason[:1].lower() + reason[1:]


def _command_error(error: LakelogError, endpoint: str) -> CommandError:
    import urllib3  # noqa: PLC0415 - loaded already when a request failed to send

    cause = error.__cause__
    if isinstance(cause, urllib3.exceptions.HTTPError):
        return CommandError(error.code, f"cannot reach {endpoint}: {_network_reason(cause)}")
    return CommandError(error.code, error.message)


class Commands(click.Group):
    """The root group: expected errors end the command with one line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LakelogError as error:
            settings = ctx.find_object(Settings)
            raise _command_error(error, settings.endpoint if settings else "") from None
        except TimeoutError as error:
            raise CommandError("timeout", str(error) or "timed out") from None


@dataclasses.dataclass
class Settings:
    """The root group's options, shared by every command (``ctx.obj``)."""

    endpoint: str
    json: bool
    _client: Client | None = None

    def client(self) -> Client:
        """The SDK client on ``endpoint`` (made once, on first use)."""
        if self._client is None:
            from lakelog.client import Client  # noqa: PLC0415 - `--help` needs no SDK

            try:
                self._client = Client(self.endpoint)
            except InvalidRequestError as error:
                raise click.BadParameter(
                    error.message, param_hint="'--endpoint' / LAKELOG_ENDPOINT"
                ) from None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# Parameter types ---------------------------------------------------------------------------
def key_values(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` options -> ``(key, value)`` pairs."""
    pairs = []
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", ctx, param)
        pairs.append((key, text))
    return tuple(pairs)


class FiniteFloat(click.FloatRange):
    """A float of at least ``min`` that is a number: click's `FloatRange` lets ``nan`` (no
    comparison refuses it) and ``inf`` through, and a wait of either never ends."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def seconds_ago_ms(seconds: float) -> int:
    """The time ``seconds`` before now, in ms since the epoch; never before the epoch (a
    ``--since`` longer than that means from the beginning)."""
    return int(max(0.0, time.time() - seconds) * 1000)


_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_SECONDS_PER_UNIT: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``90s``, ``10m``, ``2h``, ``7d`` (a number and a unit) -> seconds."""
    if value is None:
        return None
    found = _DURATION.fullmatch(value.strip())
    if not found:
        raise click.BadParameter(f"{value!r} is not a duration like 30s, 10m, 2h or 7d", ctx, param)
    return float(found.group(1)) * _SECONDS_PER_UNIT[found.group(2)]


def iso_datetime(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 date and time; without an offset it is local time."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time like 2026-05-01T12:00:00Z", ctx, param
        ) from None


def topic_config(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Topic config from ``KEY=VALUE`` pairs; integer-looking values become ints."""
    return {key: int(text) if re.fullmatch(r"-?\d+", text) else text for key, text in pairs}


def json_option(function: _F) -> _F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (same as lakelog --json)."
    )(function)


def batching_options(function: _F) -> _F:
    """``--linger-ms`` and ``--batch-bytes``: the producer's batching."""
    function = click.option(
        "--batch-bytes",
        type=click.IntRange(min=1),
        default=1 << 20,
        show_default=True,
        metavar="BYTES",
        help="A partition's batch is sent once it holds this many bytes.",
    )(function)
    return click.option(
        "--linger-ms",
        type=FiniteFloat(min=0),
        default=5.0,
        show_default=True,
        metavar="MS",
        help="How long a record waits for others to share its append.",
    )(function)


def progress_option(function: _F) -> _F:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar on stderr  [default: when stderr is a terminal].",
    )(function)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False))


def show(value: _D, as_json: bool, printer: Callable[[_D], None]) -> None:
    """A result dataclass as JSON, or through ``printer`` for people."""
    if as_json:
        print_json(dataclasses.asdict(value))
    else:
        printer(value)


def make_table(*columns: str, numeric: Sequence[str] = ()) -> Table:
    """A table with ``columns``, the ``numeric`` ones aligned right."""
    from rich import box  # noqa: PLC0415 - rich loads when a command prints
    from rich.table import Table  # noqa: PLC0415

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for name in columns:
        table.add_column(name, justify="right" if name in numeric else "left", no_wrap=True)
    return table


def styled(*parts: str | tuple[str, str]) -> Text:
    """Text of ``parts``, each plain or ``(text, style)`` (`rich.text.Text.assemble`)."""
    from rich.text import Text  # noqa: PLC0415 - rich loads when a command prints

    return Text.assemble(*parts)


def cell(value: object) -> str:
    return "-" if value is None else str(value)


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless the count is one (``1 record``, ``2 records``)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def progress_display(stderr: Console, *columns: Any) -> Progress:
    """A progress display on ``stderr`` with ``columns`` and the time elapsed."""
    from rich.progress import Progress, TimeElapsedColumn  # noqa: PLC0415 - when shown only

    return Progress(*columns, TimeElapsedColumn(), console=stderr, transient=False)


def showing(display: Progress | None) -> AbstractContextManager[object]:
    return nullcontext() if display is None else display


def wants_progress(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


def advancer(
    display: Progress | None, description: str, total: int | None
) -> Callable[[int], None] | None:
    """A callback moving a new task of ``display`` forward (thread-safe), or None."""
    if display is None:
        return None
    task = display.add_task(description, total=total)

    def advance(count: int) -> None:
        display.advance(task, count)

    return advance


def check_partition(description: TopicDescription, partition: int | None) -> int:
    """The topic's partition count; fails unless ``partition`` is None or one of them."""
    count = len(description.partitions)
    if partition is not None and partition >= count:
        raise CommandError(
            InvalidRequestError.code,
            f"partition {partition} of {description.name!r} does not exist (it has {count})",
        )
    return count
