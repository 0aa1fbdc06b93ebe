"""The ``lakelog`` command.

One click group, one module-level function per command::

    lakelog [--endpoint URL] [--json] COMMAND
    lakelog dev [--port 8080] [--host 127.0.0.1] [--principal ARN] [--default-acl allow|deny]
    lakelog topic create NAME [--partitions N] [--config KEY=VALUE ...]
    lakelog topic list | describe NAME | delete NAME [--yes]
    lakelog topic alter NAME [--partitions N] [--config KEY=VALUE ...]
    lakelog produce TOPIC [--key-separator SEP] [--partition P] [--header KEY=VALUE ...]
    lakelog consume TOPIC [--group G] [--from-beginning | --offset N | --since 10m]
                          [--partition P] [--max N] [--timeout SECONDS] [--print-key]
    lakelog group describe GROUP
    lakelog group reset GROUP --topic T (--to-earliest | --to-latest | --to-offset N |
                                         --to-datetime ISO | --since 10m)
    lakelog bench [--records N] [--record-bytes S] [--partitions N | --topic T]

Every command but ``dev`` talks to the service at ``--endpoint`` (``LAKELOG_ENDPOINT``)
through `lakelog.client.Client`. Exit status: 0 done; 1 the command failed, reported as one
line ``error: CODE: MESSAGE`` on stderr (an error of the service, an endpoint that cannot
be reached, an input line without the key separator); 2 the command line is wrong (click's
usage errors).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from types import FrameType
from typing import IO, Any, Final, Literal, TypeVar

import click
import urllib3
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from lakelog import bench as benchmark
from lakelog.client import (
    Client,
    Consumer,
    ConsumerRecord,
)
from lakelog.errors import InvalidRequestError, LakelogError
from lakelog.local.server import (
    DEFAULT_PORT,
    DEFAULT_PRINCIPAL,
    LocalDependencyError,
    LocalService,
)
from lakelog.types import (
    GroupDescription,
    Header,
    RecordMetadata,
    TopicDescription,
    TopicPartition,
)

__all__ = [
    "DEFAULT_ENDPOINT",
    "CommandError",
    "bench",
    "consume",
    "dev",
    "group",
    "lakelog",
    "main",
    "produce",
    "topic",
]

DEFAULT_ENDPOINT: Final = "http://127.0.0.1:8080"
EXIT_FAILED: Final = 1
"""Exit status of a command that failed (click's usage errors exit with 2)."""

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_F = TypeVar("_F", bound=Callable[..., Any])
_D = TypeVar("_D", TopicDescription, GroupDescription)


def _console(*, stderr: bool = False) -> Console:
    # soft_wrap: URLs and SQL must stay on one line even in a narrow terminal or a pipe.
    return Console(stderr=stderr, soft_wrap=True, highlight=False)


def _output() -> Console:
    """The console tables go to: never wrapped or cut when stdout is a pipe or a file."""
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
    cause = error.__cause__
    if isinstance(cause, urllib3.exceptions.HTTPError):
        return CommandError(error.code, f"cannot reach {endpoint}: {_network_reason(cause)}")
    return CommandError(error.code, error.message)


class _Commands(click.Group):
    """The root group: expected errors end the command with one line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LakelogError as error:
            settings = ctx.find_object(_Settings)
            raise _command_error(error, settings.endpoint if settings else "") from None
        except TimeoutError as error:
            raise CommandError("timeout", str(error) or "timed out") from None


@dataclasses.dataclass
class _Settings:
    """The root group's options, shared by every command (``ctx.obj``)."""

    endpoint: str
    json: bool
    _client: Client | None = None

    def client(self) -> Client:
        """The SDK client on ``endpoint`` (made once, on first use)."""
        if self._client is None:
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
def _key_values(
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


_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_SECONDS_PER_UNIT: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``90s``, ``10m``, ``2h``, ``7d`` (a number and a unit) -> seconds."""
    if value is None:
        return None
    found = _DURATION.fullmatch(value.strip())
    if not found:
        raise click.BadParameter(f"{value!r} is not a duration like 30s, 10m, 2h or 7d", ctx, param)
    return float(found.group(1)) * _SECONDS_PER_UNIT[found.group(2)]


def _datetime(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 date and time; without an offset it is local time."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time like 2026-05-01T12:00:00Z", ctx, param
        ) from None


def _config(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Topic config from ``KEY=VALUE`` pairs; integer-looking values become ints."""
    return {key: int(text) if re.fullmatch(r"-?\d+", text) else text for key, text in pairs}


def _json_option(function: _F) -> _F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (same as lakelog --json)."
    )(function)


def _batching_options(function: _F) -> _F:
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
        type=click.FloatRange(min=0),
        default=5.0,
        show_default=True,
        metavar="MS",
        help="How long a record waits for others to share its append.",
    )(function)


def _progress_option(function: _F) -> _F:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar on stderr  [default: when stderr is a terminal].",
    )(function)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False))


def _show(value: _D, as_json: bool, printer: Callable[[_D], None]) -> None:
    """A result dataclass as JSON, or through ``printer`` for people."""
    if as_json:
        _print_json(dataclasses.asdict(value))
    else:
        printer(value)


def _table(*columns: str, numeric: Sequence[str] = ()) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for name in columns:
        table.add_column(name, justify="right" if name in numeric else "left", no_wrap=True)
    return table


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _progress(stderr: Console, *columns: Any) -> Progress:
    return Progress(*columns, TimeElapsedColumn(), console=stderr, transient=False)


def _showing(display: Progress | None) -> AbstractContextManager[object]:
    return nullcontext() if display is None else display


def _wants_progress(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


def _advancer(
    display: Progress | None, description: str, total: int | None
) -> Callable[[int], None] | None:
    """A callback moving a new task of ``display`` forward (thread-safe), or None."""
    if display is None:
        return None
    task = display.add_task(description, total=total)

    def advance(count: int) -> None:
        display.advance(task, count)

    return advance


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lakelog", prog_name="lakelog")
@click.option(
    "--endpoint",
    envvar="LAKELOG_ENDPOINT",
    show_envvar=True,
    default=DEFAULT_ENDPOINT,
    show_default=True,
    metavar="URL",
    help="Base URL of the lakelog API, without /v1.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON instead of tables and messages (commands that print results).",
)
@click.pass_context
def lakelog(ctx: click.Context, endpoint: str, as_json: bool) -> None:
    """Kafka-style topics on S3 and DynamoDB.

    Exit status: 0 done, 1 the command failed (one line 'error: CODE: MESSAGE' on
    stderr), 2 the command line is wrong.
    """
    settings = ctx.obj = _Settings(endpoint=endpoint, json=as_json)
    ctx.call_on_close(settings.close)


@lakelog.command(short_help="Serve the API locally over in-process moto.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port of the API; 0 picks a free one.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--principal",
    default=DEFAULT_PRINCIPAL,
    show_default=True,
    help="IAM caller ARN every request is made as; '' sends no caller (401s).",
)
@click.option(
    "--default-acl",
    type=click.Choice(["allow", "deny"]),
    default="allow",
    show_default=True,
    help="Decision when no ACL rule matches.",
)
@click.option("--quiet", is_flag=True, help="No access log.")
def dev(
    port: int, host: str, principal: str, default_acl: Literal["allow", "deny"], quiet: bool
) -> None:
    """Serve the HTTP API on this machine over AWS emulated in-process by moto.

    Stops on Ctrl-C (SIGINT) or SIGTERM; all data lives in memory and is gone after.
    \f

    Parameters
    ----------
    port, host
        Where the API listens (port 0 picks a free one; the banner shows the real one).
    principal
        IAM caller ARN of every request; empty for none.
    default_acl
        Decision when no ACL rule matches.
    quiet
        Whether to skip the access log (one line per request on stderr).
    """
    out = _console()
    # Metrics are disabled locally; Powertools still warns when a request recorded none.
    warnings.filterwarnings("ignore", message="No application metrics", category=UserWarning)
    service = LocalService(
        host=host,
        port=port,
        principal=principal or None,
        default_acl=default_acl,
        access_log=None if quiet else sys.stderr,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in _STOP_SIGNALS}
    try:
        try:
            service.start()
        except LocalDependencyError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(
                f"cannot serve on {host}:{port}: {exc.strerror or exc}; "
                "pick another port with --port (0 picks a free one)"
            ) from None
        _print_banner(out, service)
        stop.wait()
        out.print("lakelog dev: stopping")
    finally:
        # From here a second Ctrl-C interrupts the shutdown the usual way.
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        service.stop()
    out.print("lakelog dev: stopped")


def _print_banner(out: Console, service: LocalService) -> None:
    if service.host not in ("127.0.0.1", "localhost", "::1"):
        _console(stderr=True).print(
            f"warning: listening on {service.host}: the local API has no authentication",
            style="yellow",
        )
    endpoint = service.s3_endpoint_url.removeprefix("http://")
    rows = (
        ("API", service.api_url),
        ("Docs", service.docs_url),
        ("S3 endpoint", service.s3_endpoint_url),
        ("Bucket", service.bucket),
        ("Principal", f"{service.principal or '(none)'} (default ACL: {service.default_acl})"),
        (
            "DuckDB",
            "CREATE SECRET (TYPE s3, KEY_ID 'testing', SECRET 'testing', "
            f"ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false); "
            f"SELECT * FROM 's3://{service.bucket}/segments/**/*.parquet';",
        ),
    )
    out.print("lakelog dev: local API over in-process moto (Ctrl-C to stop)", style="bold")
    for label, value in rows:
        out.print(Text.assemble("  ", (f"{label:<12}", "bold cyan"), value))
    out.file.flush()


# Topics --------------------------------------------------------------------------------------
@lakelog.group(short_help="Create, list, describe, alter and delete topics.")
def topic() -> None:
    """Create, list, describe, alter and delete topics."""


def _print_topic(description: TopicDescription) -> None:
    out = _output()
    count = len(description.partitions)
    heading = Text.assemble(("topic ", "bold"), (description.name, "bold cyan"))
    heading.append(f"  {count} partition{'s' if count != 1 else ''}")
    if description.topic_id:
        heading.append(f", id {description.topic_id}")
    out.print(heading)
    numbers = ("partition", "log_start_offset", "high_watermark", "bytes")
    partitions = _table(*numbers, numeric=numbers)
    for p in description.partitions:
        partitions.add_row(
            str(p.partition), str(p.log_start_offset), str(p.high_watermark), str(p.bytes)
        )
    out.print(partitions)
    out.print()
    config = _table("config", "value")
    for key, value in sorted(description.config.items()):
        config.add_row(key, _cell(value))
    out.print(config)


_CONFIG_HELP: Final = (
    "Topic config KEY=VALUE, repeatable: retention_ms, retention_bytes, cleanup_policy "
    "(delete|compact), max_record_bytes, compression. Integer-looking values are sent as "
    "integers."
)


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
@click.option(
    "--config",
    "-c",
    "configs",
    metavar="KEY=VALUE",
    callback=_key_values,
    multiple=True,
    help=_CONFIG_HELP,
)
@_json_option
@click.pass_obj
def topic_create(
    settings: _Settings,
    name: str,
    partitions: int,
    configs: tuple[tuple[str, str], ...],
    as_json: bool,
) -> None:
    """Create topic NAME."""
    description = settings.client().create_topic(name, partitions, _config(configs) or None)
    if as_json or settings.json:
        _print_json(dataclasses.asdict(description))
    else:
        count = len(description.partitions)
        click.echo(f"created topic {name} ({count} partition{'s' if count != 1 else ''})")


@topic.command("list")
@_json_option
@click.pass_obj
def topic_list(settings: _Settings, as_json: bool) -> None:
    """Print the name of every topic, one a line."""
    names = sorted(settings.client().list_topics())
    if as_json or settings.json:
        _print_json({"topics": names})
    else:
        for name in names:
            click.echo(name)


@topic.command("describe")
@click.argument("name")
@_json_option
@click.pass_obj
def topic_describe(settings: _Settings, name: str, as_json: bool) -> None:
    """Show each partition's offsets and bytes, and the config of topic NAME."""
    description = settings.client().describe_topic(name)
    _show(description, as_json or settings.json, _print_topic)


@topic.command("alter")
@click.argument("name")
@click.option(
    "--partitions",
    "-p",
    type=int,
    metavar="N",
    help="New number of partitions (more, never fewer).",
)
@click.option(
    "--config",
    "-c",
    "configs",
    metavar="KEY=VALUE",
    callback=_key_values,
    multiple=True,
    help=_CONFIG_HELP,
)
@_json_option
@click.pass_obj
def topic_alter(
    settings: _Settings,
    name: str,
    partitions: int | None,
    configs: tuple[tuple[str, str], ...],
    as_json: bool,
) -> None:
    """Change config keys of topic NAME and/or add partitions; prints the result."""
    if partitions is None and not configs:
        raise click.UsageError("give --partitions and/or --config KEY=VALUE")
    description = settings.client().alter_topic(
        name, config=_config(configs) or None, partitions=partitions
    )
    _show(description, as_json or settings.json, _print_topic)


@topic.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def topic_delete(settings: _Settings, name: str, yes: bool) -> None:
    """Delete topic NAME and every record in it (asks first unless --yes)."""
    client = settings.client()
    if not yes:
        client.describe_topic(name)  # an unknown topic fails before the question
        click.confirm(f"Delete topic {name} and all its records?", abort=True, err=True)
    client.delete_topic(name)
    click.echo(f"deleted topic {name}")


# Produce -------------------------------------------------------------------------------------
def _check_partition(description: TopicDescription, partition: int | None) -> int:
    """The topic's partition count; fails unless ``partition`` is None or one of them."""
    count = len(description.partitions)
    if partition is not None and partition >= count:
        raise CommandError(
            InvalidRequestError.code,
            f"partition {partition} of {description.name!r} does not exist (it has {count})",
        )
    return count


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


@lakelog.command(short_help="Append lines from stdin to a topic, one record each.")
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
    callback=_key_values,
    multiple=True,
    help="Header KEY=VALUE added to every record, repeatable.",
)
@_batching_options
@_progress_option
@click.pass_obj
def produce(
    settings: _Settings,
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
    _check_partition(client.describe_topic(topic_name), partition)
    stderr = _console(stderr=True)
    display = (
        _progress(
            stderr,
            SpinnerColumn(),
            TextColumn(f"producing to {topic_name}"),
            TextColumn("{task.completed:,.0f} records acknowledged"),
        )
        if _wants_progress(progress)
        else None
    )
    acks = _Acks(_advancer(display, "produce", None))
    bad_line: int | None = None
    producer = client.producer(linger_ms=linger_ms, batch_bytes=batch_bytes)
    started = time.perf_counter()
    with _showing(display), producer:
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
        f"produced {metrics.records} records ({metrics.bytes} bytes) to {topic_name} "
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


# Consume -------------------------------------------------------------------------------------
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


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the command like Ctrl-C does (so a group member leaves cleanly)."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        timestamp_ms = int((time.time() - since) * 1000)
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
    count = _check_partition(client.describe_topic(topic_name), partition)
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


@lakelog.command(short_help="Print records of a topic, alone or in a consumer group.")
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
    callback=_duration,
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
    type=click.FloatRange(min=0),
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
@_json_option
@click.pass_obj
def consume(
    settings: _Settings,
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
    try:
        with _sigterm_interrupts():
            reading.run(max_records, timeout)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        _silence_stdout()
    finally:
        reading.finish()
    click.echo(f"consumed {reading.printed} records", err=True)


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
        self._unprinted: set[TopicPartition] = set()

    def run(self, max_records: int | None, timeout: float | None) -> None:
        """Print until ``max_records`` were printed or ``timeout`` seconds pass idle."""
        idle_since = time.monotonic()
        while max_records is None or self.printed < max_records:
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


# Groups --------------------------------------------------------------------------------------
@lakelog.group("group", short_help="Describe consumer groups and move their offsets.")
def group() -> None:
    """Describe consumer groups and move their committed offsets."""


def _print_group(description: GroupDescription) -> None:
    out = _output()
    members = len(description.members)
    heading = Text.assemble(("group ", "bold"), (description.group, "bold cyan"))
    heading.append(f"  {members} live member{'s' if members != 1 else ''}")
    lags = [p.lag for p in description.partitions if p.lag is not None]
    heading.append(f", total lag {sum(lags)}" if lags else "")
    out.print(heading)
    if description.members:
        now_ms = time.time() * 1000
        table = _table("member", "topics", "expires_in", "partitions")
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
    table = _table("topic", "partition", "owner", *numbers[1:], numeric=numbers)
    for p in description.partitions:
        table.add_row(
            p.topic,
            str(p.partition),
            _cell(p.owner),
            str(p.lease_epoch),
            _cell(p.committed_offset),
            str(p.high_watermark),
            _cell(p.lag),
        )
    out.print(table)


@group.command("describe")
@click.argument("group_id", metavar="GROUP")
@_json_option
@click.pass_obj
def group_describe(settings: _Settings, group_id: str, as_json: bool) -> None:
    """Show the live members of GROUP and, per partition, owner, committed offset and lag."""
    description = settings.client().describe_group(group_id)
    _show(description, as_json or settings.json, _print_group)


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
    callback=_datetime,
    metavar="ISO",
    help="To the first record at or after this time (ISO 8601; local time without offset).",
)
@click.option(
    "--since",
    callback=_duration,
    metavar="DURATION",
    help="To the first record of the last DURATION: 30s, 10m, 2h, 7d.",
)
@_json_option
@click.pass_obj
def group_reset(
    settings: _Settings,
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
    client = settings.client()
    if to_earliest or to_latest:
        offsets = client.reset_offsets(
            group_id, topic_name, to="earliest" if to_earliest else "latest"
        )
    elif to_offset is not None:
        offsets = client.reset_offsets(group_id, topic_name, offset=to_offset)
    else:
        moment = to_datetime.timestamp() if to_datetime is not None else time.time() - (since or 0)
        offsets = client.reset_offsets(group_id, topic_name, timestamp_ms=int(moment * 1000))
    rows = [{"partition": p, "offset": o} for p, o in sorted(offsets.items())]
    if as_json or settings.json:
        _print_json({"group": group_id, "topic": topic_name, "partitions": rows})
        return
    out = _output()
    out.print(Text.assemble(("group ", "bold"), (group_id, "bold cyan"), f"  topic {topic_name}"))
    table = _table("partition", "committed_offset", numeric=("partition", "committed_offset"))
    for row in rows:
        table.add_row(str(row["partition"]), str(row["offset"]))
    out.print(table)


# Bench ---------------------------------------------------------------------------------------
@lakelog.command("bench", short_help="Measure producer and consumer throughput.")
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
@_batching_options
@_progress_option
@_json_option
@click.pass_obj
def bench(
    settings: _Settings,
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
    display = (
        _progress(
            _console(stderr=True),
            TextColumn("{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
        )
        if _wants_progress(progress)
        else None
    )
    with _showing(display):
        result = benchmark.run(
            client,
            records=records,
            record_bytes=record_bytes,
            topic=topic_name,
            partitions=partitions or 1,
            produced=_advancer(display, "produce", records),
            consumed=_advancer(display, "consume", records),
            producer_options={"linger_ms": linger_ms, "batch_bytes": batch_bytes},
        )
    if as_json or settings.json:
        _print_json({"endpoint": settings.endpoint, **dataclasses.asdict(result)})
        return
    _print_bench(settings.endpoint, result)


def _print_bench(endpoint: str, result: benchmark.BenchResult) -> None:
    out = _output()
    count = result.partitions
    out.print(
        Text.assemble(
            ("bench ", "bold"),
            (result.topic, "bold cyan"),
            f"  {count} partition{'s' if count != 1 else ''}, {result.records} records of "
            f"{result.record_bytes} bytes, {endpoint}",
        )
    )
    numbers = ("records", "seconds", "records/s", "MiB/s", "appends per 1,000 records")
    table = _table("", *numbers, numeric=numbers)
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


def main() -> None:
    """Entry point of the ``lakelog`` script."""
    lakelog(prog_name="lakelog")


if __name__ == "__main__":
    main()
