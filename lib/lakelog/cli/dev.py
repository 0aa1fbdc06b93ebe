"""``lakelog dev``: the HTTP API on this machine over AWS emulated in-process by moto.

The local server (and with it boto3, moto and the engine) loads when the command runs, not
when ``lakelog`` starts.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import TYPE_CHECKING, Final, Literal

import click

from lakelog.cli.common import (
    DEFAULT_COMPACT_EVERY,
    DEFAULT_PORT,
    FiniteFloat,
    StopSignals,
    console,
    styled,
)
from lakelog.cli.kafka import DEFAULT_KAFKA_PORT

if TYPE_CHECKING:
    from rich.console import Console

    from lakelog.local.server import LocalService

__all__ = ["DEFAULT_PRINCIPAL", "dev"]

DEFAULT_PRINCIPAL: Final = "arn:aws:iam::000000000000:user/local-developer"
"""The caller of every request (`lakelog.local.server.DEFAULT_PRINCIPAL`, which a test
keeps equal; named here so ``lakelog --help`` does not load the server)."""


@click.command(short_help="Serve the API locally over in-process moto.")
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
@click.option(
    "--compact-every",
    type=FiniteFloat(min=0),
    default=DEFAULT_COMPACT_EVERY,
    show_default=True,
    metavar="SECONDS",
    help="Run a compactor pass this often; 0 runs none (lakelog compact still runs one).",
)
@click.option(
    "--kafka-port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_KAFKA_PORT,
    show_default=True,
    help="Port of the Kafka protocol on --host; 0 picks a free one.",
)
@click.option("--no-kafka", is_flag=True, help="Serve no Kafka protocol.")
@click.option("--quiet", is_flag=True, help="No access log.")
def dev(
    port: int,
    host: str,
    principal: str,
    default_acl: Literal["allow", "deny"],
    compact_every: float,
    kafka_port: int,
    no_kafka: bool,
    quiet: bool,
) -> None:
    """Serve the HTTP API on this machine over AWS emulated in-process by moto.

    The Kafka protocol is served beside it (127.0.0.1:9092 unless --kafka-port moves it or
    --no-kafka turns it off), over the same topics, groups and ACLs.

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
    compact_every
        Seconds between compactor passes over the local storage (0: none).
    kafka_port, no_kafka
        Port of the Kafka protocol (0 picks a free one), or none at all.
    quiet
        Whether to skip the access log (one line per request on stderr).
    """
    from lakelog.local.server import (  # noqa: PLC0415 - boto3, moto and the engine
        KafkaPortError,
        LocalDependencyError,
        LocalService,
    )

    out = console()
    # local: functions are modules of the directory the server runs in, as under python -m
    # (a console script's path starts at its own bin directory instead).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    # Metrics are disabled locally; Powertools still warns when a request recorded none.
    warnings.filterwarnings("ignore", message="No application metrics", category=UserWarning)
    service = LocalService(
        host=host,
        port=port,
        principal=principal or None,
        default_acl=default_acl,
        access_log=None if quiet else sys.stderr,
        compact_every=compact_every,
        kafka_port=None if no_kafka else kafka_port,
    )
    try:
        with StopSignals() as signals:
            try:
                service.start()
            except LocalDependencyError as exc:
                raise click.ClickException(str(exc)) from None
            except KafkaPortError as exc:
                raise click.ClickException(
                    f"cannot serve the Kafka protocol on {host}:{kafka_port}: "
                    f"{exc.strerror or exc}; "
                    "pick another port with --kafka-port (0 picks a free one) or add --no-kafka"
                ) from None
            except OSError as exc:
                raise click.ClickException(
                    f"cannot serve on {host}:{port}: {exc.strerror or exc}; "
                    "pick another port with --port (0 picks a free one)"
                ) from None
            _print_banner(out, service)
            signals.wait()
            out.print("lakelog dev: stopping")
        # From here a second Ctrl-C interrupts the shutdown the usual way.
    finally:
        service.stop()
    out.print("lakelog dev: stopped")


def _print_banner(out: Console, service: LocalService) -> None:
    if service.host not in ("127.0.0.1", "localhost", "::1"):
        console(stderr=True).print(
            f"warning: listening on {service.host}: the local API has no authentication",
            style="yellow",
        )
    endpoint = service.s3_endpoint_url.removeprefix("http://")
    rows = (
        ("API", service.api_url),
        ("Docs", service.docs_url),
        ("S3 endpoint", service.s3_endpoint_url),
        (
            "Kafka",
            f"{service.kafka_bootstrap} (bootstrap.servers)"
            if service.kafka_bootstrap
            else "off (--no-kafka)",
        ),
        ("Bucket", service.bucket),
        ("Principal", f"{service.principal or '(none)'} (default ACL: {service.default_acl})"),
        (
            "Compactor",
            f"a pass every {service.compact_every:g} s (lakelog compact runs one now)"
            if service.compact_every > 0
            else "no scheduled passes (lakelog compact runs one now)",
        ),
        (
            "DuckDB",
            "CREATE SECRET (TYPE s3, KEY_ID 'testing', SECRET 'testing', "
            f"ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false); "
            # union_by_name: L1 segments add an offset column that L0's schema lacks
            f"SELECT * FROM read_parquet('s3://{service.bucket}/segments/**/*.parquet', "
            "union_by_name = true);",
        ),
    )
    out.print("lakelog dev: local API over in-process moto (Ctrl-C to stop)", style="bold")
    for label, value in rows:
        out.print(styled("  ", (f"{label:<12}", "bold cyan"), value))
    out.file.flush()
