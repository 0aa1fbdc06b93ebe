"""Dispatcher: the trigger dispatcher function, its two triggers and its narrow role.

ADR 0015 §4. One function (`DISPATCHER_HANDLER`) is started by

- an event source mapping on the ledger table's stream (``KEYS_ONLY``) whose filter
  (`STREAM_FILTER_PATTERN`) passes only the ``INSERT`` of a chain item, so an idle table,
  a topic's creation, its meta updates, L1 entries, producer states and every deletion
  invoke nothing; batches wait up to `STREAM_BATCHING_WINDOW` for up to
  `STREAM_BATCH_SIZE` records, failed batches are bisected, retried `STREAM_RETRY_ATTEMPTS`
  times and then described to an SQS queue (``<prefix>-dispatcher-stream-failures``), and
  the handler's partial batch replies retry only from the failing topic's first record;
- an EventBridge rule every minute (`SCHEDULE`) that resumes due deliveries.

Its role reads the stream, reads and writes the ledger and catalog (deliveries commit
group offsets; an on-failure topic is appended to), reads and writes segments, sends to SQS
queues of the account and region (on-failure destinations), and may invoke only functions
whose ARN starts with one of the environment's prefixes (`Platform.function_prefixes`),
never lakelog's own (`RESERVED_FUNCTIONS`).
"""

from __future__ import annotations

import json
from typing import Any, Final

from aws_cdk import Aws, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from components.nag import acknowledge
from components.platform import Platform
from components.storage import removal_policy
from config.settings import ALARM_PERIOD_MINUTES
from lakelog.dispatcher_handler import NAMESPACE, SERVICE
from lakelog.environment import ENV_DISPATCH_CONCURRENCY
from lakelog.service.dispatch import deliveries_for_memory
from lakelog.storage.keys import HEAD_SK

__all__ = [
    "DISPATCHER_HANDLER",
    "RESERVED_FUNCTIONS",
    "SCHEDULE",
    "STREAM_BATCHING_WINDOW",
    "STREAM_BATCH_SIZE",
    "STREAM_FILTER_PATTERN",
    "STREAM_MAX_RECORD_AGE",
    "STREAM_RETRY_ATTEMPTS",
    "TIMEOUT_SECONDS",
    "Dispatcher",
]

DISPATCHER_HANDLER: Final = "functions.dispatcher.handler.handler"
"""Routes a stream batch to ``on_stream`` and the schedule's event to ``on_schedule``."""

TIMEOUT_SECONDS: Final = 300
"""A delivery waits for the subscribed function (`LambdaInvoker`'s read timeout); the stream
handler hands over no topic in the last 30 s (`STREAM_RESERVE_MS`)."""

STREAM_FILTER_PATTERN: Final[dict[str, Any]] = {
    "eventName": ["INSERT"],
    "dynamodb": {
        "Keys": {
            "pk": {"S": [{"prefix": "t#"}]},
            "sk": {"N": [{"anything-but": ["0", str(HEAD_SK)]}]},
        }
    },
}
"""Lambda's event filter: the INSERT of a chain item that is neither the genesis (seq 0) nor
the meta item (`HEAD_SK`). Records it drops cost no invocation."""

STREAM_BATCH_SIZE: Final = 1000
"""Records per invocation at most (DynamoDB streams allow 10,000); at W1's ~3 appends/s
the window, not the size, ends a batch."""

STREAM_BATCHING_WINDOW: Final = Duration.seconds(1)
"""How long Lambda gathers records before invoking: at most one invocation a second per
shard under load (ADR 0015 §4 has the arithmetic), for at most 1 s of added latency."""

STREAM_RETRY_ATTEMPTS: Final = 10
"""Retries of a failing batch (bisected each time) before it goes to the failure queue."""

STREAM_MAX_RECORD_AGE: Final = Duration.hours(6)
"""Records older than this are not retried (the stream keeps them 24 hours)."""

SCHEDULE: Final = "rate(1 minute)"
"""How often ``on_schedule`` resumes due deliveries: 43,200 invocations a month."""

RESERVED_FUNCTIONS: Final = ("api", "compactor-*", "dispatcher")
"""lakelog's own function names (``<prefix>-<name>``), never invoked by the dispatcher."""

FAILURE_QUEUE_RETENTION: Final = Duration.days(14)


class Dispatcher(Construct):
    """The trigger dispatcher of one environment.

    Parameters
    ----------
    scope, construct_id
        Where the construct lives.
    platform
        The environment's shared constructs.

    Attributes
    ----------
    function
        The dispatcher function.
    stream_mapping
        The event source mapping on the ledger's stream.
    failure_queue
        Where descriptions of stream batches that failed every retry go.
    schedule
        The EventBridge rule that runs ``on_schedule``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, platform: Platform) -> None:
        super().__init__(scope, construct_id)
        config = platform.config
        self.function = platform.add_function(
            self,
            "Function",
            short_name="dispatcher",
            handler=DISPATCHER_HANDLER,
            description="lakelog trigger dispatcher: delivers appended records to subscriptions",
            environment={
                **platform.trigger_environment(),
                ENV_DISPATCH_CONCURRENCY: str(deliveries_for_memory(config.function_memory_mb)),
            },
            timeout_seconds=TIMEOUT_SECONDS,
        )
        self._grant(platform)
        self.failure_queue = sqs.Queue(
            self,
            "StreamFailures",
            queue_name=f"{config.prefix}-dispatcher-stream-failures",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=FAILURE_QUEUE_RETENTION,
            removal_policy=removal_policy(config),
        )
        acknowledge(
            self.failure_queue,
            "AwsSolutions-SQS3",
            "This queue is the stream mapping's on-failure destination (a dead-letter queue "
            "itself); its messages name shard and sequence range, read by an operator.",
        )
        self.stream_mapping = self._stream_mapping(platform)
        self.schedule = events.Rule(
            self,
            "Schedule",
            rule_name=f"{config.prefix}-dispatcher",
            description=f"Resumes due trigger deliveries of {config.prefix}",
            schedule=events.Schedule.expression(SCHEDULE),
            targets=[
                targets.LambdaFunction(
                    self.function.function,
                    retry_attempts=0,  # the next minute's run resumes the same deliveries
                    max_event_age=Duration.minutes(1),
                )
            ],
        )
        self._monitor(platform)
        platform.outputs.add(
            "DispatcherStreamFailureQueueUrl",
            self.failure_queue.queue_url,
            "Queue describing ledger stream batches the dispatcher failed on every retry",
        )

    def _stream_mapping(self, platform: Platform) -> lambda_.EventSourceMapping:
        stream_arn = platform.storage.ledger_table.table_stream_arn
        if stream_arn is None:
            raise ValueError("the ledger table has no stream to start the dispatcher")
        mapping = lambda_.EventSourceMapping(
            self,
            "LedgerStream",
            target=self.function.function,
            event_source_arn=stream_arn,
            starting_position=lambda_.StartingPosition.LATEST,
            batch_size=STREAM_BATCH_SIZE,
            max_batching_window=STREAM_BATCHING_WINDOW,
            bisect_batch_on_error=True,
            report_batch_item_failures=True,
            retry_attempts=STREAM_RETRY_ATTEMPTS,
            max_record_age=STREAM_MAX_RECORD_AGE,
            parallelization_factor=1,
            on_failure=event_sources.SqsDlq(self.failure_queue),
            filters=[{"pattern": json.dumps(STREAM_FILTER_PATTERN)}],
        )
        # Lambda checks the role can read the stream when the mapping is created.
        mapping.node.add_dependency(self.function.role)
        return mapping

    def _grant(self, platform: Platform) -> None:
        storage, config = platform.storage, platform.config
        function = self.function
        storage.grant_ledger_stream_read(function)
        storage.grant_ledger_read(function)
        storage.grant_ledger_append(function)  # on-failure destinations that are topics
        storage.grant_catalog_read(function)
        storage.grant_catalog_write(function)  # leases, offsets, delivery state
        storage.grant_read_segments(function)
        storage.grant_write_segments(function)

        account = config.account or Aws.ACCOUNT_ID
        nag_account = config.account or "<AWS::AccountId>"
        queues = f"arn:{Aws.PARTITION}:sqs:{config.region}:{account}:*"
        function.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage", "sqs:GetQueueUrl"], resources=[queues])
        )
        acknowledge(
            function.role,
            "AwsSolutions-IAM5",
            "Subscriptions name their on-failure SQS queues at run time; the grant stops at "
            "queues of this account and region.",
            applies_to=f"Resource::arn:<AWS::Partition>:sqs:{config.region}:{nag_account}:*",
        )
        invocable = [f"{prefix}*" for prefix in platform.function_prefixes]
        function.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=invocable)
        )
        own = f"arn:{Aws.PARTITION}:lambda:{config.region}:{account}:function:{config.prefix}-"
        function.role.add_to_principal_policy(
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                actions=["lambda:InvokeFunction"],
                resources=[
                    f"{own}{name}{suffix}" for name in RESERVED_FUNCTIONS for suffix in ("", ":*")
                ],
            )
        )
        for prefix in config.function_prefixes(nag_account, "<AWS::Partition>"):
            acknowledge(
                function.role,
                "AwsSolutions-IAM5",
                "Subscribed functions are chosen at run time; the environment's "
                "trigger_function_prefixes bound them (ADR 0015 §4).",
                applies_to=f"Resource::{prefix}*",
            )

    def _monitor(self, platform: Platform) -> None:
        monitoring = platform.monitoring
        period = Duration.minutes(ALARM_PERIOD_MINUTES)
        waiting = self.failure_queue.metric_approximate_number_of_messages_visible(
            period=period, statistic="Maximum"
        )
        iterator_age = cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name="IteratorAge",
            dimensions_map={"FunctionName": self.function.function.function_name},
            statistic="Maximum",
            period=period,
        )
        monitoring.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Dispatcher: stream records and topics notified",
                left=[_metric("StreamRecords"), _metric("TopicsNotified")],
                right=[_metric("NotifyFailures"), _metric("ScheduleFailures")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Dispatcher: stream iterator age (ms) and failed stream batches",
                left=[iterator_age],
                right=[waiting],
                width=12,
            ),
        )
        monitoring.alarm_above(
            "dispatcher",
            "stream-failures",
            waiting,
            threshold=0,
            description=(
                "A ledger stream batch failed every retry: deliveries of its topics wait for "
                "their next append or the schedule (runbook: docs/operations.md, 'Dispatcher')"
            ),
        )


def _metric(name: str) -> cloudwatch.Metric:
    """One of the metrics the handlers publish (`lakelog.dispatcher_handler.METRICS`)."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE},
        statistic="Sum",
        period=Duration.minutes(ALARM_PERIOD_MINUTES),
    )
