"""The ``lakelog`` command.

One click group, one module per command group::

    lakelog [--endpoint URL] [--json] COMMAND
    lakelog dev [--port 8080] [--host 127.0.0.1] [--principal ARN] [--default-acl allow|deny]
                [--compact-every SECONDS] [--kafka-port 9092 | --no-kafka]
    lakelog kafka [--port 9092] [--host 127.0.0.1] [--advertised-host H] [--advertised-port P]
                  [--sasl] [--principal P]
    lakelog topic create NAME [--partitions N] [--config KEY=VALUE ...]
    lakelog topic list | describe NAME | delete NAME [--yes]
    lakelog topic alter NAME [--partitions N] [--config KEY=VALUE ...]
    lakelog produce TOPIC [--key-separator SEP] [--partition P] [--header KEY=VALUE ...]
    lakelog consume TOPIC [--group G] [--from-beginning | --offset N | --since 10m]
                          [--partition P] [--max N] [--timeout SECONDS] [--print-key]
    lakelog group describe GROUP
    lakelog group reset GROUP --topic T (--to-earliest | --to-latest | --to-offset N |
                                         --to-datetime ISO | --since 10m)
    lakelog subscribe create TOPIC NAME --function ARN [--batch-size N] [--batching-window-ms N]
                      [--starting-position P | --at ISO] [--max-retries N]
                      [--max-record-age-ms N] [--bisect] [--report-batch-item-failures]
                      [--on-failure-topic T | --on-failure-sqs ARN]
    lakelog subscribe list TOPIC | describe TOPIC NAME | delete TOPIC NAME
    lakelog bench [--records N] [--record-bytes S] [--partitions N | --topic T]
    lakelog compact [TOPIC] [--dry-run]

========================  ===================================================================
module                    holds
========================  ===================================================================
`lakelog.cli`             the root group (``--endpoint``, ``--json``) and `main`
`lakelog.cli.common`      settings, errors, parameter types, shared options, tables, progress
`lakelog.cli.dev`         ``dev`` (loads the local server, boto3 and moto when it runs)
`lakelog.cli.kafka`       ``kafka`` (loads the gateway, boto3 and the engine when it runs)
`lakelog.cli.topic`       ``topic create | list | describe | alter | delete``
`lakelog.cli.produce`     ``produce``
`lakelog.cli.consume`     ``consume``
`lakelog.cli.group`       ``group describe | reset``
`lakelog.cli.subscribe`   ``subscribe create | list | describe | delete``
`lakelog.cli.bench`       ``bench`` (`lakelog.bench` measures)
`lakelog.cli.compact`     ``compact`` (a pass of ``lakelog dev``, run by the dev server)
========================  ===================================================================

Every command but ``dev`` and ``kafka`` talks to the service at ``--endpoint``
(``LAKELOG_ENDPOINT``) through `lakelog.client.Client`, so starting one loads neither the
engine, pyarrow nor boto3.
Exit status: 0 done; 1 the command failed, reported as one line ``error: CODE: MESSAGE`` on
stderr (an error of the service, an endpoint that cannot be reached, an input line without
the key separator); 2 the command line is wrong (click's usage errors).
"""

from __future__ import annotations

import click

from lakelog.cli import bench, compact, consume, dev, group, kafka, produce, subscribe, topic
from lakelog.cli.common import DEFAULT_ENDPOINT, CommandError, Commands, Settings

__all__ = ["DEFAULT_ENDPOINT", "CommandError", "lakelog", "main"]


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
    settings = ctx.obj = Settings(endpoint=endpoint, json=as_json)
    ctx.call_on_close(settings.close)


for _command in (
    bench.bench,
    compact.compact,
    consume.consume,
    dev.dev,
    group.group,
    kafka.kafka,
    produce.produce,
    subscribe.subscribe,
    topic.topic,
):
    lakelog.add_command(_command)


def main() -> None:
    """Entry point of the ``lakelog`` script."""
    lakelog(prog_name="lakelog")
