"""``lakelog subscribe``: create, list, describe and delete subscriptions (ADR 0015 §1).

Option values go to the service as given: it checks them as a Lambda event source mapping
would (``error: invalid_request: ...``, exit status 1).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import click

from lakelog.cli.common import (
    Settings,
    cell,
    iso_datetime,
    json_option,
    make_table,
    print_json,
    show,
    styled,
    table_console,
)
from lakelog.types import OnFailure, Subscription, SubscriptionStatus

__all__ = ["subscribe"]

_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")


@click.group("subscribe", short_help="Subscribe functions to topics.")
def subscribe() -> None:
    """Create, list, describe and delete subscriptions: functions invoked with a topic's
    records, in the event shape of Lambda's self-managed Kafka event source."""


def _destination(failure: OnFailure | None) -> str:
    if failure is None:
        return "-"
    return f"topic {failure.topic}" if failure.topic is not None else f"sqs {failure.sqs_arn}"


def _start(subscription: Subscription) -> str:
    if subscription.starting_position_timestamp_ms is None:
        return subscription.starting_position
    return f"{subscription.starting_position} {subscription.starting_position_timestamp_ms}"


def _print_list(subscriptions: list[Subscription]) -> None:
    numbers = ("batch_size", "window_ms", "retries")
    table = make_table("name", "function", *numbers, "start", "on_failure", numeric=numbers)
    for s in subscriptions:
        table.add_row(
            s.name,
            s.function_arn,
            str(s.batch_size),
            str(s.max_batching_window_ms),
            str(s.maximum_retry_attempts),
            _start(s),
            _destination(s.on_failure),
        )
    table_console().print(table)


def _print_status(status: SubscriptionStatus) -> None:
    out = table_console()
    s = status.subscription
    total = sum(p.lag or 0 for p in status.partitions)
    out.print(
        styled(
            ("subscription ", "bold"),
            (s.name, "bold cyan"),
            f"  topic {s.topic}  group {s.group}  total lag {total}",
        )
    )
    options = make_table("option", "value")
    for name, value in (
        ("function_arn", s.function_arn),
        ("batch_size", s.batch_size),
        ("max_batching_window_ms", s.max_batching_window_ms),
        ("starting_position", _start(s)),
        ("maximum_retry_attempts", s.maximum_retry_attempts),
        ("maximum_record_age_ms", s.maximum_record_age_ms),
        ("bisect_batch_on_function_error", s.bisect_batch_on_function_error),
        ("report_batch_item_failures", s.report_batch_item_failures),
        ("on_failure", _destination(s.on_failure)),
    ):
        options.add_row(name, str(value).lower() if isinstance(value, bool) else str(value))
    out.print(options)
    out.print()
    numbers = ("partition", "committed_offset", "high_watermark", "lag")
    table = make_table(*numbers, "state", numeric=numbers)
    for p in status.partitions:
        table.add_row(
            str(p.partition),
            cell(p.committed_offset),
            str(p.high_watermark),
            cell(p.lag),
            status.state.get(p.partition, "idle"),
        )
    out.print(table)


@subscribe.command("create")
@click.argument("topic_name", metavar="TOPIC")
@click.argument("name")
@click.option(
    "--function",
    "function_arn",
    required=True,
    metavar="ARN",
    help="The Lambda function ARN (or local:package.module:function under lakelog dev).",
)
@click.option("--batch-size", type=int, help="Records per invocation, 1-10,000 [100].")
@click.option(
    "--batching-window-ms", type=int, help="Wait this long to fill a batch, 0-300,000 [500]."
)
@click.option(
    "--starting-position",
    type=click.Choice(_POSITIONS, case_sensitive=False),
    help="Where delivery starts [LATEST]; AT_TIMESTAMP needs --at.",
)
@click.option(
    "--at",
    callback=iso_datetime,
    metavar="ISO",
    help="AT_TIMESTAMP's time (ISO 8601; local time without offset); implies AT_TIMESTAMP.",
)
@click.option("--max-retries", type=int, help="Retries of a failed batch, -1 (forever)-10,000.")
@click.option(
    "--max-record-age-ms",
    type=int,
    help="Skip records older than this, -1 (never) or 60,000-604,800,000.",
)
@click.option("--bisect/--no-bisect", default=None, help="Split a failing batch in two.")
@click.option(
    "--report-batch-item-failures/--no-report-batch-item-failures",
    default=None,
    help="The function answers batchItemFailures.",
)
@click.option("--on-failure-topic", metavar="TOPIC", help="Failed batches go to this topic.")
@click.option("--on-failure-sqs", metavar="ARN", help="Failed batches go to this SQS queue.")
@json_option
@click.pass_obj
def subscribe_create(
    settings: Settings,
    topic_name: str,
    name: str,
    function_arn: str,
    batch_size: int | None,
    batching_window_ms: int | None,
    starting_position: str | None,
    at: datetime | None,
    max_retries: int | None,
    max_record_age_ms: int | None,
    bisect: bool | None,
    report_batch_item_failures: bool | None,
    on_failure_topic: str | None,
    on_failure_sqs: str | None,
    as_json: bool,
) -> None:
    """Subscribe the function --function to TOPIC under NAME."""
    if on_failure_topic is not None and on_failure_sqs is not None:
        raise click.UsageError("give at most one of --on-failure-topic and --on-failure-sqs")
    position = starting_position.upper() if starting_position else None
    if position == "AT_TIMESTAMP" and at is None:
        raise click.UsageError("--starting-position AT_TIMESTAMP needs --at")
    if position not in (None, "AT_TIMESTAMP") and at is not None:
        raise click.UsageError("--at goes only with --starting-position AT_TIMESTAMP")
    options: dict[str, Any] = {
        "batch_size": batch_size,
        "max_batching_window_ms": batching_window_ms,
        "starting_position": position,
        "maximum_retry_attempts": max_retries,
        "maximum_record_age_ms": max_record_age_ms,
        "bisect_batch_on_function_error": bisect,
        "report_batch_item_failures": report_batch_item_failures,
    }
    if at is not None:
        options["starting_position"] = options["starting_position"] or "AT_TIMESTAMP"
        options["starting_position_timestamp_ms"] = int(at.timestamp() * 1000)
    if on_failure_topic is not None or on_failure_sqs is not None:
        options["on_failure"] = OnFailure(topic=on_failure_topic, sqs_arn=on_failure_sqs)
    given = {key: value for key, value in options.items() if value is not None}
    created = settings.client().create_subscription(topic_name, name, function_arn, **given)
    if as_json or settings.json:
        print_json(dataclasses.asdict(created))
        return
    click.echo(f"subscribed {created.function_arn} to topic {topic_name} as {created.name}")


@subscribe.command("list")
@click.argument("topic_name", metavar="TOPIC")
@json_option
@click.pass_obj
def subscribe_list(settings: Settings, topic_name: str, as_json: bool) -> None:
    """List the subscriptions of TOPIC."""
    found = settings.client().list_subscriptions(topic_name)
    if as_json or settings.json:
        print_json({"subscriptions": [dataclasses.asdict(s) for s in found]})
        return
    _print_list(found)


@subscribe.command("describe")
@click.argument("topic_name", metavar="TOPIC")
@click.argument("name")
@json_option
@click.pass_obj
def subscribe_describe(settings: Settings, topic_name: str, name: str, as_json: bool) -> None:
    """Show subscription NAME of TOPIC: its options and, per partition, the committed
    offset, high watermark, lag and delivery state."""
    status = settings.client().describe_subscription(topic_name, name)
    show(status, as_json or settings.json, _print_status)


@subscribe.command("delete")
@click.argument("topic_name", metavar="TOPIC")
@click.argument("name")
@click.pass_obj
def subscribe_delete(settings: Settings, topic_name: str, name: str) -> None:
    """Delete subscription NAME of TOPIC and its progress."""
    settings.client().delete_subscription(topic_name, name)
    click.echo(f"deleted subscription {name} of topic {topic_name}")
