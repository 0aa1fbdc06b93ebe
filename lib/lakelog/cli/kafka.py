"""``lakelog kafka``: serve the Kafka protocol over a deployment's bucket and tables.

The deployment comes from the environment (`lakelog.kafka.settings.GatewaySettings`: the
bucket and table names, the default ACL effect, the bootstrap administrators), parsed once
before anything listens; the gateway (`lakelog.kafka.KafkaGateway`), boto3 and the engine
load when the command runs, not when ``lakelog`` starts. It logs JSON lines on stdout and
serves until SIGTERM or Ctrl-C, then closes every connection and exits with status 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Final

import click

from lakelog.cli.common import CommandError
from lakelog.limits import KAFKA_APPEND_LINGER_MS

if TYPE_CHECKING:
    from lakelog.kafka import KafkaGateway

__all__ = ["ANONYMOUS", "DEFAULT_KAFKA_PORT", "SERVICE", "kafka"]

DEFAULT_KAFKA_PORT: Final = 9092
"""Kafka's port, where ``lakelog kafka`` and ``lakelog dev`` listen unless told otherwise."""
ANONYMOUS: Final = "anonymous"
"""The principal of every connection when SASL is off (``--principal`` changes it)."""
SERVICE: Final = "lakelog-kafka"
"""The ``service`` of every log line."""

_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


@click.command(short_help="Serve the Kafka protocol over a deployment.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_KAFKA_PORT,
    show_default=True,
    envvar="LAKELOG_KAFKA_PORT",
    show_envvar=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="LAKELOG_KAFKA_HOST",
    show_envvar=True,
    help="Address to listen on (0.0.0.0 in a container behind a load balancer).",
)
@click.option(
    "--advertised-host",
    envvar="LAKELOG_KAFKA_ADVERTISED_HOST",
    show_envvar=True,
    help="Host clients are told to connect to (the load balancer's)  [default: --host].",
)
@click.option(
    "--advertised-port",
    type=click.IntRange(1, 65535),
    envvar="LAKELOG_KAFKA_ADVERTISED_PORT",
    show_envvar=True,
    help="Port clients are told to connect to  [default: the bound port].",
)
@click.option(
    "--sasl/--no-sasl",
    default=False,
    show_default=True,
    envvar="LAKELOG_KAFKA_SASL",
    show_envvar=True,
    help="Require SASL authentication before any other request (ADR 0016 §7).",
)
@click.option(
    "--principal",
    default=ANONYMOUS,
    show_default=True,
    envvar="LAKELOG_KAFKA_PRINCIPAL",
    show_envvar=True,
    help="Principal of every connection without SASL; lakelog's ACLs apply to it.",
)
@click.option(
    "--append-linger-ms",
    type=click.IntRange(0, 10_000),
    default=KAFKA_APPEND_LINGER_MS,
    show_default=True,
    envvar="LAKELOG_KAFKA_APPEND_LINGER_MS",
    show_envvar=True,
    help="How long plain Produce records of a topic wait to share one append (ADR 0016 §3.1).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    envvar="LAKELOG_LOG_LEVEL",
    show_envvar=True,
    help="Lowest level logged.",
)
def kafka(
    port: int,
    host: str,
    advertised_host: str | None,
    advertised_port: int | None,
    sasl: bool,
    principal: str,
    append_linger_ms: int,
    log_level: str,
) -> None:
    """Serve the Kafka protocol over the deployment named by the environment.

    The environment names the deployment: LAKELOG_BUCKET, LAKELOG_LEDGER_TABLE,
    LAKELOG_CATALOG_TABLE, and optionally LAKELOG_DEFAULT_ACL_EFFECT (allow|deny, default
    deny) and LAKELOG_ADMIN_PRINCIPALS (comma-separated). AWS credentials and region come
    from the usual places. Stops on SIGTERM or Ctrl-C after closing every connection.
    \f

    Parameters
    ----------
    port, host
        Where the gateway listens (port 0 picks a free one; the log line shows it).
    advertised_host, advertised_port
        The address Metadata names as every partition's leader: the load balancer's.
    sasl
        Whether connections must authenticate first, with OAUTHBEARER tokens that STS
        verifies (`lakelog.client.kafka_auth.oauth_callback`) signed for the deployment's
        environment (LAKELOG_ENVIRONMENT) as audience.
    principal
        The principal of connections when SASL is off.
    append_linger_ms
        How long a topic's plain Produce records wait for others to share an append.
    log_level
        Lowest level logged.
    """
    from lakelog.kafka.settings import (  # noqa: PLC0415 - pydantic loads when it runs
        GatewaySettings,
        SettingsError,
    )

    try:
        settings = GatewaySettings.from_env(os.environ)
    except SettingsError as exc:
        raise CommandError("invalid_configuration", str(exc)) from None
    logger = _json_logging(log_level.upper())

    from lakelog.kafka import GatewayConfig, KafkaGateway  # noqa: PLC0415 - kio, the engine
    from lakelog.kafka.sts import StsCallerIdentity  # noqa: PLC0415
    from lakelog.service.engine import Engine  # noqa: PLC0415 - boto3

    engine = Engine.from_session(settings.names)
    try:
        access = engine.access_control(settings.default_acl, admins=settings.admin_principals)
        config = GatewayConfig(
            host=host,
            port=port,
            advertised_host=advertised_host,
            advertised_port=advertised_port,
            default_principal=principal,
            sasl=sasl,
            audience=settings.env,
            append_linger_ms=append_linger_ms,
        )
        # With SASL, connections authenticate with OAUTHBEARER tokens that STS verifies:
        # presigned GetCallerIdentity requests signed for this environment (ADR 0016 §7).
        identity = StsCallerIdentity() if sasl else None
        gateway = KafkaGateway(engine, access, config, identity=identity)
        try:
            asyncio.run(_serve(gateway, logger, settings.env))
        except OSError as exc:
            raise CommandError(
                "unavailable",
                f"cannot serve on {host}:{port}: {exc.strerror or exc}; "
                "pick another port with --port (0 picks a free one)",
            ) from None
    finally:
        engine.close()


async def _serve(gateway: KafkaGateway, logger: logging.Logger, env: str) -> None:
    """Serve until a stop signal, then close every connection."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stopping.set)
    try:
        port = await gateway.start()
        logger.info(
            "serving the Kafka protocol",
            extra={
                "listening": f"{gateway.config.host}:{port}",
                "bootstrap": f"{gateway.advertised_host}:{gateway.advertised_port}",
                "sasl": gateway.config.sasl,
                "audience": gateway.config.audience,
                "append_linger_ms": gateway.config.append_linger_ms,
                "environment": env,
            },
        )
        await stopping.wait()
        logger.info("stopping: closing every connection")
    finally:
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        await gateway.stop()
    logger.info("stopped")


def _json_logging(level: str) -> logging.Logger:
    """JSON lines on stdout for lakelog's loggers (the gateway's included), as the
    deployed functions' logs are."""
    from aws_lambda_powertools.logging.formatter import (  # noqa: PLC0415
        LambdaPowertoolsFormatter,
    )

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LambdaPowertoolsFormatter(service=SERVICE))
    root = logging.getLogger("lakelog")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    return logging.getLogger("lakelog.kafka")
