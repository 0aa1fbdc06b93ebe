"""The compactor component: an Express state machine on a schedule, alarms, narrow roles."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.compactor import (
    COLLECT_TIMEOUT_SECONDS,
    COMPACTOR_HANDLERS,
    MAX_CONCURRENCY,
    l0_backlog_threshold_seconds,
)
from config import load_environment
from lakelog.compactor_handler import METRICS
from tests.infra.states import resolve_definition
from tests.infra.synth import Synthesized, policy_actions

pytestmark = pytest.mark.infra


def state_machine_id(stack: Synthesized) -> str:
    """Logical id of the compactor's state machine."""
    [logical_id] = stack.resources("AWS::StepFunctions::StateMachine")
    return logical_id


def task_functions(stack: Synthesized) -> dict[str, str]:
    """Logical id of each compactor task function, by task (``list``, ``compact``, ...)."""
    by_handler = {handler: task for task, handler in COMPACTOR_HANDLERS.items()}
    return {
        by_handler[function["Properties"]["Handler"]]: logical_id
        for logical_id, function in stack.resources("AWS::Lambda::Function").items()
        if function["Properties"]["Handler"] in by_handler
    }


def _role_statements(stack: Synthesized, role_id: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in stack.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def _function_statements(stack: Synthesized, task: str) -> list[dict[str, Any]]:
    function = stack.resources("AWS::Lambda::Function")[task_functions(stack)[task]]
    return _role_statements(stack, function["Properties"]["Role"]["Fn::GetAtt"][0])


def _referenced_ids(value: Any) -> set[str]:
    """Logical ids a policy resource names through Ref or GetAtt."""
    if isinstance(value, dict):
        ids = set()
        if "Ref" in value:
            ids.add(value["Ref"])
        if "Fn::GetAtt" in value:
            ids.add(value["Fn::GetAtt"][0])
        for item in value.values():
            ids |= _referenced_ids(item)
        return ids
    if isinstance(value, list):
        return set().union(*(_referenced_ids(item) for item in value))
    return set()


def test_the_pass_is_an_express_machine_with_a_bounded_map_and_a_topic_loop(
    env_stack: Synthesized,
) -> None:
    machine_id = state_machine_id(env_stack)
    properties = env_stack.resources("AWS::StepFunctions::StateMachine")[machine_id]["Properties"]
    definition = resolve_definition(env_stack.template_json, machine_id)
    states = definition["States"]
    loop = states["EachTopic"]["ItemProcessor"]["States"]
    functions = task_functions(env_stack)

    assert properties["StateMachineType"] == "EXPRESS"
    assert definition["StartAt"] == "ListTopics"
    assert states["ListTopics"]["Resource"].endswith(functions["list"])
    assert states["ListTopics"]["Next"] == "EachTopic"
    assert states["EachTopic"]["MaxConcurrency"] == MAX_CONCURRENCY <= 10
    assert states["EachTopic"]["Next"] == "Collect"
    assert loop["CompactTopic"]["Resource"].endswith(functions["compact"])
    assert loop["TopicDone"]["Choices"] == [
        {"Variable": "$.done", "BooleanEquals": True, "Next": "TopicCompacted"}
    ]
    assert loop["TopicDone"]["Default"] == "CompactTopic"
    assert states["Collect"]["Resource"].endswith(functions["collect"])
    assert definition["TimeoutSeconds"] <= 300  # an Express execution's limit


def test_every_task_retries_with_backoff_and_failures_end_in_a_recorded_fail(
    env_stack: Synthesized,
) -> None:
    definition = resolve_definition(env_stack.template_json, state_machine_id(env_stack))
    states = definition["States"]
    tasks = [states["ListTopics"], states["Collect"]]
    tasks.append(states["EachTopic"]["ItemProcessor"]["States"]["CompactTopic"])

    for task in tasks:
        [retry] = task["Retry"]
        assert "States.TaskFailed" in retry["ErrorEquals"]
        assert retry["BackoffRate"] > 1 and retry["MaxAttempts"] >= 2
    for name in ("ListTopics", "EachTopic", "Collect"):
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "RecordFailure"}
        ]
    assert states["RecordFailure"]["Type"] == "Pass"
    assert states[states["RecordFailure"]["Next"]]["Type"] == "Fail"


def test_schedules_start_light_passes_and_full_gc_passes_as_the_environment_says(
    env_stack: Synthesized,
) -> None:
    prefix = env_stack.config.prefix
    rules = {
        rule["Properties"]["Name"]: rule
        for rule in env_stack.resources("AWS::Events::Rule").values()
        if rule["Properties"]["Name"].startswith(f"{prefix}-compactor")
    }
    expected = {
        f"{prefix}-compactor": (env_stack.config.compactor_schedule, {"gc": "light"}),
        f"{prefix}-compactor-full-gc": (
            env_stack.config.compactor_full_gc_schedule,
            {"gc": "full"},
        ),
    }
    assert set(rules) == set(expected)
    for name, (schedule, execution_input) in expected.items():
        [target] = rules[name]["Properties"]["Targets"]
        assert rules[name]["Properties"]["ScheduleExpression"] == schedule
        assert json.loads(target["Input"]) == execution_input
        assert target["Arn"] == {"Ref": state_machine_id(env_stack)}
        [statement] = _role_statements(env_stack, target["RoleArn"]["Fn::GetAtt"][0])
        assert statement["Action"] == "states:StartExecution"
        assert statement["Resource"] == {"Ref": state_machine_id(env_stack)}


def test_the_stack_outputs_the_state_machine(env_stack: Synthesized) -> None:
    output = env_stack.template_json["Outputs"]["CompactorStateMachineArn"]

    assert output["Value"] == {"Ref": state_machine_id(env_stack)}


def test_failed_or_timed_out_passes_alarm_where_alarms_are_on(env_stack: Synthesized) -> None:
    alarms = {
        alarm["Properties"]["AlarmName"]: alarm["Properties"]
        for alarm in env_stack.resources("AWS::CloudWatch::Alarm").values()
    }
    name = f"{env_stack.config.prefix}-Compactor-failures"

    if not env_stack.config.alarms_enabled:
        assert name not in alarms
        return
    metrics = [q["MetricStat"]["Metric"] for q in alarms[name]["Metrics"] if "MetricStat" in q]
    assert {m["MetricName"] for m in metrics} == {"ExecutionsFailed", "ExecutionsTimedOut"}
    for metric in metrics:
        [dimension] = metric["Dimensions"]
        assert dimension["Value"] == {"Ref": state_machine_id(env_stack)}


def test_the_machine_may_invoke_its_three_tasks_and_nothing_else(env_stack: Synthesized) -> None:
    machine = env_stack.resources("AWS::StepFunctions::StateMachine")[state_machine_id(env_stack)]
    statements = _role_statements(env_stack, machine["Properties"]["RoleArn"]["Fn::GetAtt"][0])
    invoke = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]

    assert policy_actions(statements) <= {
        "lambda:InvokeFunction",
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
    }
    assert set().union(*(_referenced_ids(s["Resource"]) for s in invoke)) == set(
        task_functions(env_stack).values()
    )


@pytest.mark.parametrize(
    ("task", "granted", "refused"),
    [
        ("list", {"dynamodb:Query", "dynamodb:GetItem"}, {"s3:GetObject", "dynamodb:PutItem"}),
        (
            "compact",
            {"s3:GetObject", "s3:PutObject", "dynamodb:PutItem", "dynamodb:DeleteItem"},
            {"s3:DeleteObject", "s3:ListBucket"},
        ),
        ("collect", {"s3:ListBucket", "s3:DeleteObject", "dynamodb:DeleteItem"}, {"s3:PutObject"}),
    ],
)
def test_each_task_role_holds_what_its_task_uses_on_the_bucket_and_tables(
    env_stack: Synthesized, task: str, granted: set[str], refused: set[str]
) -> None:
    statements = _function_statements(env_stack, task)
    data = [
        s
        for s in statements
        if any(a.startswith(("s3:", "dynamodb:")) for a in policy_actions([s]))
    ]
    storage_ids = set(env_stack.resources("AWS::S3::Bucket")) | set(
        env_stack.resources("AWS::DynamoDB::Table")
    )
    actions = policy_actions(statements)

    assert granted <= actions
    assert not refused & actions
    for statement in data:
        assert _referenced_ids(statement["Resource"]) <= storage_ids, statement


def test_the_dashboard_shows_what_passes_did(env_stack: Synthesized) -> None:
    [dashboard] = env_stack.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])

    assert "Compactor: executions" in body
    for title in (
        "Compactor: passes and task failures",
        "Compactor: bytes expired and merged",
        "Compactor: L0 backlog age, oldest topic (seconds)",
    ):
        assert title in body, title
    for name in METRICS:
        assert f'\\"{name}\\"' in body, name
    assert "lakelog-compactor" in body


def test_an_l0_backlog_older_than_grace_plus_n_passes_alarms_with_the_failures(
    env_stack: Synthesized,
) -> None:
    alarms = {
        alarm["Properties"]["AlarmName"]: alarm["Properties"]
        for alarm in env_stack.resources("AWS::CloudWatch::Alarm").values()
    }
    config = env_stack.config
    name = f"{config.prefix}-Compactor-l0-backlog"

    if not config.alarms_enabled:
        assert name not in alarms
        return
    backlog = alarms[name]
    assert (backlog["Namespace"], backlog["MetricName"]) == ("lakelog", "L0BacklogAge")
    assert backlog["Dimensions"] == [{"Name": "service", "Value": "lakelog-compactor"}]
    assert backlog["Statistic"] == "Maximum"
    assert backlog["ComparisonOperator"] == "GreaterThanThreshold"
    assert backlog["TreatMissingData"] == "notBreaching"
    passes = config.compactor_backlog_alarm_passes
    assert passes == 3
    assert config.compactor_pass_minutes is not None
    assert backlog["Threshold"] == 3600 + passes * config.compactor_pass_minutes * 60
    assert "docs/operations.md" in backlog["AlarmDescription"]
    failures = alarms[f"{config.prefix}-Compactor-failures"]
    assert backlog.get("AlarmActions") == failures.get("AlarmActions")
    assert backlog.get("OKActions") == failures.get("OKActions")
    assert bool(backlog.get("AlarmActions")) == config.alarm_notifications


def test_the_backlog_threshold_follows_the_environment_settings() -> None:
    prod = load_environment("prod")
    patient = prod.model_copy(update={"compactor_backlog_alarm_passes": 12})

    assert l0_backlog_threshold_seconds(prod) == 3600 + 3 * 5 * 60
    assert l0_backlog_threshold_seconds(patient) == 3600 + 12 * 5 * 60


def test_the_compact_task_has_the_memory_of_a_merge_step_in_every_environment(
    env_stack: Synthesized,
) -> None:
    # A 512 MiB merge step needs about 900 MB (ADR 0013 5.5), whatever the environment's
    # default; the other tasks keep the default
    functions = env_stack.resources("AWS::Lambda::Function")
    ids = task_functions(env_stack)
    assert functions[ids["compact"]]["Properties"]["MemorySize"] == 1536
    for task in ("list", "collect"):
        memory = functions[ids[task]]["Properties"]["MemorySize"]
        assert memory == env_stack.config.function_memory_mb


def test_the_collect_task_has_time_for_a_daily_full_gc_within_the_pass(
    env_stack: Synthesized,
) -> None:
    # The full gc of a W1-sized topic scans for about two minutes (ADR 0013 5.5)
    functions = env_stack.resources("AWS::Lambda::Function")
    ids = task_functions(env_stack)
    timeouts = {task: functions[ids[task]]["Properties"]["Timeout"] for task in ids}
    assert timeouts == {"list": 120, "compact": 120, "collect": COLLECT_TIMEOUT_SECONDS}
    assert 180 <= COLLECT_TIMEOUT_SECONDS < 300  # inside an Express execution's 5 minutes
