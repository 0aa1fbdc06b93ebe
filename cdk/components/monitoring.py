"""Monitoring: one dashboard per environment, alarms when enabled, an alarm topic in prod.

Every other component hands its resources to a ``watch_*`` method; the method adds the
dashboard widgets and, when the environment has alarms, the alarms that matter for it.
Alarms count missing data as OK: an idle deployment has no datapoints and is healthy.
"""

from __future__ import annotations

import re
from typing import Final

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from config.environment import EnvironmentConfig
from config.settings import ALARM_EVALUATION_PERIODS, ALARM_PERIOD_MINUTES

__all__ = ["Monitoring"]

_LABEL: Final = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")
_WIDGET_WIDTH: Final = 12


class Monitoring(Construct):
    """The environment's dashboard, its alarms and (when notifying) the alarm topic.

    Parameters
    ----------
    scope, construct_id
        Where the construct lives.
    config
        The environment being built (``alarms_enabled``, ``alarm_notifications``).
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._period = Duration.minutes(ALARM_PERIOD_MINUTES)
        self._alarms: list[cloudwatch.Alarm] = []
        self._labels: set[str] = set()
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=config.prefix,
            default_interval=Duration.hours(3),
        )
        self.alarm_topic = self._alarm_topic() if config.alarm_notifications else None

    @property
    def alarms(self) -> tuple[cloudwatch.Alarm, ...]:
        """Every alarm created so far (none when the environment has alarms disabled)."""
        return tuple(self._alarms)

    def watch_function(self, function: lambda_.IFunction, *, label: str) -> None:
        """Chart ``function`` and alarm on any error or throttle."""
        self._claim(label)
        errors = function.metric_errors(period=self._period, statistic="Sum")
        throttles = function.metric_throttles(period=self._period, statistic="Sum")
        self._alarm(label, "errors", errors, f"{label} raised an error (Lambda Errors >= 1)")
        self._alarm(label, "throttles", throttles, f"{label} was throttled (Throttles >= 1)")
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title=f"{label}: invocations, errors, throttles",
                left=[
                    function.metric_invocations(period=self._period, statistic="Sum"),
                    errors,
                    throttles,
                ],
                width=_WIDGET_WIDTH,
            ),
            cloudwatch.GraphWidget(
                title=f"{label}: duration",
                left=[
                    function.metric_duration(period=self._period, statistic="p50"),
                    function.metric_duration(period=self._period, statistic="p99"),
                ],
                width=_WIDGET_WIDTH,
            ),
        )

    def watch_table(self, table: dynamodb.ITable, *, label: str) -> None:
        """Chart ``table`` and alarm on throttled reads or writes."""
        self._claim(label)
        throttles = cloudwatch.MathExpression(
            expression="reads + writes",
            using_metrics={
                "reads": table.metric("ReadThrottleEvents", period=self._period, statistic="Sum"),
                "writes": table.metric("WriteThrottleEvents", period=self._period, statistic="Sum"),
            },
            label=f"{label} throttle events",
            period=self._period,
        )
        self._alarm(
            label,
            "throttles",
            throttles,
            f"DynamoDB throttled requests to the {label} table (read + write throttle events)",
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title=f"{label} table: consumed capacity",
                left=[
                    table.metric_consumed_read_capacity_units(period=self._period),
                    table.metric_consumed_write_capacity_units(period=self._period),
                ],
                width=_WIDGET_WIDTH,
            ),
            cloudwatch.GraphWidget(
                title=f"{label} table: throttles and errors",
                left=[throttles],
                right=[
                    table.metric(
                        "ConditionalCheckFailedRequests", period=self._period, statistic="Sum"
                    ),
                    table.metric("SystemErrors", period=self._period, statistic="Sum"),
                ],
                width=_WIDGET_WIDTH,
            ),
        )

    def watch_dynamodb_user_errors(self) -> None:
        """Chart DynamoDB's account-wide 4xx count (no alarm: it is not per table)."""
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="DynamoDB user errors (whole account and region)",
                left=[
                    cloudwatch.Metric(
                        namespace="AWS/DynamoDB",
                        metric_name="UserErrors",
                        period=self._period,
                        statistic="Sum",
                    )
                ],
                width=_WIDGET_WIDTH,
            )
        )

    def watch_http_api(self, api: apigwv2.IHttpApi, *, label: str = "HttpApi") -> None:
        """Chart ``api`` and alarm on any 5xx reply."""
        self._claim(label)
        server_errors = api.metric_server_error(period=self._period, statistic="Sum")
        self._alarm(label, "5xx", server_errors, f"{label} answered with a 5xx status")
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title=f"{label}: requests and errors",
                left=[
                    api.metric_count(period=self._period, statistic="Sum"),
                    api.metric_client_error(period=self._period, statistic="Sum"),
                    server_errors,
                ],
                width=_WIDGET_WIDTH,
            ),
            cloudwatch.GraphWidget(
                title=f"{label}: latency",
                left=[
                    api.metric_latency(period=self._period, statistic="p50"),
                    api.metric_latency(period=self._period, statistic="p99"),
                ],
                width=_WIDGET_WIDTH,
            ),
        )

    def watch_state_machine(
        self, state_machine: sfn.IStateMachine, *, label: str = "Compactor"
    ) -> None:
        """Chart ``state_machine`` and alarm when an execution fails or times out."""
        self._claim(label)
        failures = cloudwatch.MathExpression(
            expression="failed + timedOut",
            using_metrics={
                "failed": state_machine.metric_failed(period=self._period, statistic="Sum"),
                "timedOut": state_machine.metric_timed_out(period=self._period, statistic="Sum"),
            },
            label=f"{label} failed or timed-out executions",
            period=self._period,
        )
        self._alarm(label, "failures", failures, f"A {label} execution failed or timed out")
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title=f"{label}: executions",
                left=[
                    state_machine.metric_started(period=self._period, statistic="Sum"),
                    state_machine.metric_succeeded(period=self._period, statistic="Sum"),
                    failures,
                ],
                width=_WIDGET_WIDTH,
            )
        )

    def alarm_above(
        self,
        label: str,
        kind: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        description: str,
    ) -> cloudwatch.Alarm | None:
        """Alarm ``<prefix>-<label>-<kind>`` when ``metric`` exceeds ``threshold`` in a
        period, on the same topic as every other alarm; None when alarms are off.

        ``label`` is that of a component already watched (its dashboard has the widgets).
        """
        return self._alarm(
            label,
            kind,
            metric,
            description,
            threshold=threshold,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )

    # -- helpers -------------------------------------------------------------------------

    def _claim(self, label: str) -> None:
        if not _LABEL.fullmatch(label):
            raise ValueError(f"monitoring label {label!r} must be letters, digits and '-'")
        if label in self._labels:
            raise ValueError(f"monitoring label {label!r} is already watched")
        self._labels.add(label)

    def _alarm(
        self,
        label: str,
        kind: str,
        metric: cloudwatch.IMetric,
        description: str,
        *,
        threshold: float = 1,
        comparison: cloudwatch.ComparisonOperator = (
            cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        ),
    ) -> cloudwatch.Alarm | None:
        if not self._config.alarms_enabled:
            return None
        alarm = cloudwatch.Alarm(
            self,
            f"{label}-{kind}-alarm",
            alarm_name=f"{self._config.prefix}-{label}-{kind}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=ALARM_EVALUATION_PERIODS,
            datapoints_to_alarm=ALARM_EVALUATION_PERIODS,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if self.alarm_topic is not None:
            action = cloudwatch_actions.SnsAction(self.alarm_topic)
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
        self._alarms.append(alarm)
        return alarm

    def _alarm_topic(self) -> sns.Topic:
        """An SNS topic encrypted with a key CloudWatch may use.

        The AWS managed key ``alias/aws/sns`` does not let CloudWatch alarms publish, so
        the topic gets its own customer managed key whose policy admits CloudWatch.
        """
        stack = Stack.of(self)
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description=f"Encrypts the alarm notifications of {self._config.prefix}",
            enable_key_rotation=True,
            pending_window=Duration.days(7),
            removal_policy=RemovalPolicy.DESTROY,  # protects only in-flight notifications
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToUseTheKey",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        topic = sns.Topic(
            self,
            "AlarmTopic",
            topic_name=f"{self._config.prefix}-alarms",
            display_name=f"{self._config.prefix} alarms",
            master_key=key,
            enforce_ssl=True,
        )
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                    "StringEquals": {"aws:SourceAccount": stack.account},
                },
            )
        )
        return topic
