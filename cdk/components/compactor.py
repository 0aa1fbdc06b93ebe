"""Compactor: three task functions, the Express state machine of a pass, its schedule.

A pass (ADR 0013): ``ListTopics`` -> ``EachTopic`` (a Map, at most `MAX_CONCURRENCY`
topics at once) running ``CompactTopic`` until its output says ``done`` -> ``Collect``
(gc). Every task retries task failures with exponential backoff; what still fails is
caught, recorded by ``RecordFailure`` and ends the execution in ``PassFailed``, which the
``Compactor-failures`` alarm watches; the ``Compactor-l0-backlog`` alarm watches the
``L0BacklogAge`` the tasks publish. An EventBridge rule starts a light pass
(``{"gc": "light"}``: no scan for orphans) on the environment's ``compactor_schedule``,
another a full one (``{"gc": "full"}``) on its ``compactor_full_gc_schedule``; ``Collect``
reads ``gc`` from the execution's input (ADR 0013, 5.1).
"""

from __future__ import annotations

from typing import Final

from aws_cdk import CfnResource, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from components.function import LakelogFunction, retention_days
from components.nag import acknowledge, ignore_cfn_lint_rule
from components.platform import Platform
from components.storage import removal_policy
from config.environment import EnvironmentConfig
from config.settings import ALARM_PERIOD_MINUTES
from lakelog.compactor_handler import NAMESPACE, SERVICE
from lakelog.service.gc import DEFAULT_GRACE_MS

__all__ = [
    "COLLECT_TIMEOUT_SECONDS",
    "COMPACTOR_HANDLERS",
    "MAX_CONCURRENCY",
    "PASS_TIMEOUT",
    "Compactor",
    "l0_backlog_threshold_seconds",
]

COMPACTOR_HANDLERS: Final = {
    "list": "functions.compactor.handler.list_topics",
    "compact": "functions.compactor.handler.compact_topic",
    "collect": "functions.compactor.handler.collect",
}
"""Handler of each task function, by the function's short name (``compactor-<task>``)."""

MAX_CONCURRENCY: Final = 10
"""Topics compacted at once: bounds the Lambda concurrency and DynamoDB/S3 bursts a pass uses."""

PASS_TIMEOUT: Final = Duration.minutes(5)
"""An Express execution lasts at most 5 minutes; a pass cut short is resumed by the next."""

TASK_TIMEOUT_SECONDS: Final = 120
"""Timeout of the list and compact functions; ``compact_topic`` stops starting steps 20 s
before it."""

COLLECT_TIMEOUT_SECONDS: Final = 240
"""Timeout of the collect function: the daily full gc of a W1-sized topic lists and reads
for about two minutes (ADR 0013 5.5); an Express execution lasts 5 minutes at most."""

RETRY_ERRORS: Final = ("States.TaskFailed", "States.Timeout")
RETRY_INTERVAL: Final = Duration.seconds(2)
RETRY_ATTEMPTS: Final = 3
RETRY_BACKOFF: Final = 2.0


class Compactor(Construct):
    """The compactor of one environment.

    Parameters
    ----------
    scope, construct_id
        Where the construct lives.
    platform
        The environment's shared constructs.

    Attributes
    ----------
    functions
        The task functions by task name (``list``, ``compact``, ``collect``).
    state_machine
        The Express state machine of one pass.
    schedule
        The EventBridge rule that starts its light passes.
    full_gc_schedule
        The EventBridge rule that starts its passes with the full gc.
    """

    def __init__(self, scope: Construct, construct_id: str, *, platform: Platform) -> None:
        super().__init__(scope, construct_id)
        config = platform.config
        self.functions = {
            task: platform.add_function(
                self,
                f"{task.capitalize()}Function",
                short_name=f"compactor-{task}",
                handler=handler,
                description=f"lakelog compactor task: {task}",
                timeout_seconds=(
                    COLLECT_TIMEOUT_SECONDS if task == "collect" else TASK_TIMEOUT_SECONDS
                ),
                memory_mb=1536 if task == "compact" else None,  # a 512 MiB merge step: ADR 0013 5.5
            )
            for task, handler in COMPACTOR_HANDLERS.items()
        }
        self._grant(platform)
        self.state_machine = self._state_machine(platform)
        self.schedule = self._schedule(
            "Schedule",
            f"{config.prefix}-compactor",
            f"Starts a compactor pass of {config.prefix} (light gc)",
            config.compactor_schedule,
            "light",
        )
        self.full_gc_schedule = self._schedule(
            "FullGcSchedule",
            f"{config.prefix}-compactor-full-gc",
            f"Starts a compactor pass of {config.prefix} with the full gc",
            config.compactor_full_gc_schedule,
            "full",
        )
        platform.monitoring.watch_state_machine(self.state_machine, label="Compactor")
        backlog = _metric("L0BacklogAge", "Maximum")
        threshold = l0_backlog_threshold_seconds(config)
        platform.monitoring.dashboard.add_widgets(*_work_widgets(backlog, threshold))
        platform.monitoring.alarm_above(
            "Compactor",
            "l0-backlog",
            backlog,
            threshold=threshold,
            description=(
                "A topic's oldest mergeable L0 chain item has waited more than gc's grace "
                f"period plus {config.compactor_backlog_alarm_passes} compactor passes "
                "beyond its merge eligibility: the compactor is falling behind "
                "(runbook: docs/operations.md, 'L0 backlog')"
            ),
        )
        platform.outputs.add(
            "CompactorStateMachineArn",
            self.state_machine.state_machine_arn,
            "State machine of a compactor pass; start-execution runs one now",
        )

    def _schedule(
        self, construct_id: str, name: str, description: str, expression: str, gc: str
    ) -> events.Rule:
        """A rule starting a pass whose input is ``{"gc": gc}``."""
        return events.Rule(
            self,
            construct_id,
            rule_name=name,
            description=description,
            schedule=events.Schedule.expression(expression),
            targets=[
                targets.SfnStateMachine(
                    self.state_machine,
                    input=events.RuleTargetInput.from_object({"gc": gc}),
                    retry_attempts=2,
                )
            ],
        )

    def _grant(self, platform: Platform) -> None:
        storage = platform.storage
        listing = self.functions["list"]
        storage.grant_catalog_read(listing)
        storage.grant_ledger_read(listing)

        compact = self.functions["compact"]
        storage.grant_catalog_read(compact)
        storage.grant_read_segments(compact)
        storage.grant_write_segments(compact)
        storage.grant_ledger_read(compact)
        storage.grant_ledger_append(compact)
        storage.grant_ledger_delete(compact)

        collect = self.functions["collect"]
        storage.grant_catalog_read(collect)
        storage.grant_catalog_write(collect)  # completes and forgets topic deletions
        storage.grant_list_segments(collect)
        storage.grant_delete_segments(collect)
        storage.grant_ledger_read(collect)
        storage.grant_ledger_append(collect)  # seals the chain of an unfinished deletion
        storage.grant_ledger_delete(collect)

    def _task(self, task: str, state_name: str, **kwargs: object) -> tasks.LambdaInvoke:
        invoke = tasks.LambdaInvoke(
            self,
            state_name,
            lambda_function=self.functions[task].function,
            payload_response_only=True,
            retry_on_service_exceptions=False,  # the retry below covers Lambda.* errors
            **kwargs,  # type: ignore[arg-type]
        )
        invoke.add_retry(
            errors=list(RETRY_ERRORS),
            interval=RETRY_INTERVAL,
            max_attempts=RETRY_ATTEMPTS,
            backoff_rate=RETRY_BACKOFF,
        )
        return invoke

    def _definition(self) -> sfn.IChainable:
        failed = sfn.Pass(
            self,
            "RecordFailure",
            parameters={
                "error": sfn.JsonPath.string_at("$.failure.Error"),
                "cause": sfn.JsonPath.string_at("$.failure.Cause"),
            },
        ).next(sfn.Fail(self, "PassFailed", error="CompactorPassFailed", cause_path="$.cause"))
        compact = self._task("compact", "CompactTopic")
        topic_loop = compact.next(
            sfn.Choice(self, "TopicDone")
            .when(sfn.Condition.boolean_equals("$.done", True), sfn.Succeed(self, "TopicCompacted"))
            .otherwise(compact)
        )
        each_topic = sfn.Map(
            self,
            "EachTopic",
            items_path="$.listed.topics",
            item_selector={"topic": sfn.JsonPath.string_at("$$.Map.Item.Value")},
            max_concurrency=MAX_CONCURRENCY,
            result_path=sfn.JsonPath.DISCARD,
        ).item_processor(topic_loop)
        # The list goes beside the execution's input, whose "gc" Collect reads.
        list_topics = self._task("list", "ListTopics", result_path="$.listed")
        collect = self._task("collect", "Collect", result_path=sfn.JsonPath.DISCARD)
        for state in (list_topics, each_topic, collect):
            state.add_catch(failed, errors=["States.ALL"], result_path="$.failure")
        return list_topics.next(each_topic).next(collect)

    def _state_machine(self, platform: Platform) -> sfn.StateMachine:
        config = platform.config
        log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=f"/aws/vendedlogs/states/{config.prefix}-compactor",
            retention=retention_days(config.log_retention_days),
            removal_policy=removal_policy(config),
        )
        state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=f"{config.prefix}-compactor",
            state_machine_type=sfn.StateMachineType.EXPRESS,
            definition_body=sfn.DefinitionBody.from_chainable(self._definition()),
            timeout=PASS_TIMEOUT,
            tracing_enabled=config.tracing,
            logs=sfn.LogOptions(
                destination=log_group, level=sfn.LogLevel.ERROR, include_execution_data=True
            ),
        )
        self._acknowledge_findings(state_machine, config.tracing)
        resource = state_machine.node.default_child
        if isinstance(resource, CfnResource):
            ignore_cfn_lint_rule(
                resource,
                "W3005",
                "CDK makes the state machine depend on its role and the role's policy; the "
                "role dependency is redundant with RoleArn, the policy one is needed.",
            )
        return state_machine

    def _acknowledge_findings(self, state_machine: sfn.StateMachine, tracing: bool) -> None:
        acknowledge(
            state_machine,
            "AwsSolutions-SF1",
            "Express executions log at ERROR with their data: every failure is kept; logging "
            "ALL events of 1,000 topics every 5 minutes would cost more than the pass (ADR 0013).",
        )
        if not tracing:
            acknowledge(
                state_machine,
                "AwsSolutions-SF2",
                "X-Ray tracing follows the environment's tracing setting, off here to keep it "
                "free at idle; environments with tracing=True trace the compactor.",
            )
        stack = Stack.of(self)
        for function in self.functions.values():
            acknowledge(
                state_machine.role,
                "AwsSolutions-IAM5",
                "lambda:InvokeFunction on the task function's versions and aliases "
                "(<arn>:*) as CDK grants it; the grant names this one function.",
                applies_to=f"Resource::<{_logical_id(stack, function)}.Arn>:*",
            )
        acknowledge(
            state_machine.role,
            "AwsSolutions-IAM5",
            "CloudWatch Logs delivery and X-Ray actions support no resource-level "
            "permissions; Step Functions needs them on '*' to log and trace executions.",
            applies_to="Resource::*",
        )


def l0_backlog_threshold_seconds(config: EnvironmentConfig) -> int:
    """Seconds of L0 backlog age beyond which the alarm fires: gc's grace period (the merge
    of a topic waits that long after its previous one, ADR 0013) plus
    ``compactor_backlog_alarm_passes`` passes of the environment's schedule (1 hour when
    the schedule is a cron expression and alarms are off)."""
    minutes = config.compactor_pass_minutes or 60
    return DEFAULT_GRACE_MS // 1000 + config.compactor_backlog_alarm_passes * minutes * 60


def _metric(name: str, statistic: str = "Sum") -> cloudwatch.Metric:
    """One of the metrics the tasks publish (`METRICS`), per alarm period."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE},
        statistic=statistic,
        period=Duration.minutes(ALARM_PERIOD_MINUTES),
    )


def _work_widgets(backlog: cloudwatch.Metric, threshold: int) -> list[cloudwatch.IWidget]:
    """What the passes did, from the metrics the tasks publish (`METRICS`)."""
    return [
        cloudwatch.GraphWidget(
            title="Compactor: passes and task failures",
            left=[_metric("Passes")],
            right=[_metric("TaskFailures")],
            width=12,
        ),
        cloudwatch.GraphWidget(
            title="Compactor: bytes expired and merged",
            left=[_metric("BytesExpired"), _metric("BytesMerged")],
            width=12,
        ),
        cloudwatch.GraphWidget(
            title="Compactor: topics, steps, items removed, records compacted, segments",
            left=[
                _metric(name)
                for name in (
                    "TopicsNeedingWork",
                    "CompactionSteps",
                    "ChainItemsRemoved",
                    "L1EntriesRemoved",
                    "RecordsCompacted",
                )
            ],
            right=[_metric(name) for name in ("SegmentsMerged", "SegmentsDeleted", "TopicsPurged")],
            width=12,
        ),
        cloudwatch.GraphWidget(
            title="Compactor: L0 backlog age, oldest topic (seconds)",
            left=[backlog],
            left_annotations=[
                cloudwatch.HorizontalAnnotation(value=threshold, label="alarm threshold")
            ],
            width=12,
        ),
    ]


def _logical_id(stack: Stack, function: LakelogFunction) -> str:
    resource = function.function.node.default_child
    if not isinstance(resource, lambda_.CfnFunction):
        raise TypeError(f"{function.node.path} has no CloudFormation function")
    return stack.get_logical_id(resource)
