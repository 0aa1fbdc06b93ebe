"""The ``lakelog`` command.

One click group, one module-level function per command::

    lakelog dev [--port 8080] [--host 127.0.0.1] [--principal ARN] [--default-acl allow|deny]
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from types import FrameType
from typing import Literal

import click
from rich.console import Console
from rich.text import Text

from lakelog.local.server import (
    DEFAULT_PORT,
    DEFAULT_PRINCIPAL,
    LocalDependencyError,
    LocalService,
)

__all__ = ["dev", "lakelog", "main"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _console(*, stderr: bool = False) -> Console:
    # soft_wrap: URLs and SQL must stay on one line even in a narrow terminal or a pipe.
    return Console(stderr=stderr, soft_wrap=True, highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lakelog", prog_name="lakelog")
def lakelog() -> None:
    """Kafka-style topics on S3 and DynamoDB."""


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


def main() -> None:
    """Entry point of the ``lakelog`` script."""
    lakelog(prog_name="lakelog")


if __name__ == "__main__":
    main()
