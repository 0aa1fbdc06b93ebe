"""The dispatcher component: its function, the filtered stream mapping, the schedule and a
role that may invoke only the configured functions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App

from components.dispatcher import (
    DISPATCHER_HANDLER,
    RESERVED_FUNCTIONS,
    SCHEDULE,
    STREAM_BATCH_SIZE,
    STREAM_FILTER_PATTERN,
    STREAM_RETRY_ATTEMPTS,
    TIMEOUT_SECONDS,
)
from config import ENVIRONMENTS, EnvironmentConfig
from lakelog.dispatcher_handler import appended_topics
from lakelog.environment import ENV_DISPATCH_CONCURRENCY, ENV_TRIGGER_FUNCTION_PREFIXES
from lakelog.service.dispatch import DELIVERY_MEMORY_MB, deliveries_for_memory
from stacks import build_app
from tests.infra.synth import REPO_ROOT, Synthesized, policy_actions

pytestmark = pytest.mark.infra

EVENTS = REPO_ROOT / "events" / "dispatcher"


def _function_id(stack: Synthesized, handler: str) -> str:
    [logical_id] = [
        logical_id
        for logical_id, function in stack.resources("AWS::Lambda::Function").items()
        if function["Properties"]["Handler"] == handler
    ]
    return logical_id


def _statements(template: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    function = template["Resources"][function_id]
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::IAM::Policy"
        and {"Ref": role_id} in resource["Properties"]["Roles"]
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]


def _resolve(value: Any, account: str = "ACCOUNT") -> str:
    """A policy resource as text: pseudo parameters by name, other references by id."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_resolve(part, account) for part in parts)
    if "Ref" in value:
        return {"AWS::Partition": "aws", "AWS::AccountId": account}.get(
            value["Ref"], f"<{value['Ref']}>"
        )
    return f"<{value['Fn::GetAtt'][0]}.{value['Fn::GetAtt'][1]}>"


def _mapping(stack: Synthesized) -> dict[str, Any]:
    [mapping] = stack.resources("AWS::Lambda::EventSourceMapping").values()
    return mapping


def _matches(pattern: Any, value: Any) -> bool:
    """Lambda event filtering for what `STREAM_FILTER_PATTERN` uses: nested objects, lists
    of exact values, ``prefix`` and ``anything-but``."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and _matches(rule, value[key]) for key, rule in pattern.items()
        )
    return any(_rule_matches(rule, value) for rule in pattern)


def _rule_matches(rule: Any, value: Any) -> bool:
    if isinstance(rule, dict) and "prefix" in rule:
        return isinstance(value, str) and value.startswith(rule["prefix"])
    if isinstance(rule, dict) and "anything-but" in rule:
        return value not in rule["anything-but"]
    return bool(rule == value)


def test_the_function_runs_the_dispatcher_handler_on_arm64_with_the_envs_memory(
    env_stack: Synthesized,
) -> None:
    function = env_stack.resources("AWS::Lambda::Function")[
        _function_id(env_stack, DISPATCHER_HANDLER)
    ]["Properties"]
    assert function["Architectures"] == ["arm64"]
    assert function["MemorySize"] == env_stack.config.function_memory_mb
    assert function["Timeout"] == TIMEOUT_SECONDS
    assert function["FunctionName"] == f"{env_stack.config.prefix}-dispatcher"


def test_the_dispatcher_delivers_as_many_partitions_at_once_as_its_memory_holds(
    env_stack: Synthesized,
) -> None:
    function = env_stack.resources("AWS::Lambda::Function")[
        _function_id(env_stack, DISPATCHER_HANDLER)
    ]["Properties"]
    memory = env_stack.config.function_memory_mb
    expected = deliveries_for_memory(memory)
    assert function["Environment"]["Variables"][ENV_DISPATCH_CONCURRENCY] == str(expected)
    assert expected * DELIVERY_MEMORY_MB < memory  # each at its worst still fits


def test_the_dispatcher_and_the_api_are_told_the_function_prefixes(env_stack: Synthesized) -> None:
    prefix = env_stack.config.prefix
    expected = f"arn:aws:lambda:{env_stack.config.region}:ACCOUNT:function:{prefix}-"
    for handler in (DISPATCHER_HANDLER, "functions.api.handler.handler"):
        variables = env_stack.resources("AWS::Lambda::Function")[_function_id(env_stack, handler)][
            "Properties"
        ]["Environment"]["Variables"]
        assert _resolve(variables[ENV_TRIGGER_FUNCTION_PREFIXES]) == expected


def test_the_stream_mapping_filters_batches_bisects_and_reports_item_failures(
    env_stack: Synthesized,
) -> None:
    mapping = _mapping(env_stack)["Properties"]
    ledger_id = next(
        logical_id
        for logical_id, table in env_stack.resources("AWS::DynamoDB::Table").items()
        if table["Properties"]["TableName"].endswith("-ledger")
    )
    [queue_id] = env_stack.resources("AWS::SQS::Queue")
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [ledger_id, "StreamArn"]}
    assert mapping["FunctionName"] == {"Ref": _function_id(env_stack, DISPATCHER_HANDLER)}
    assert mapping["StartingPosition"] == "LATEST"
    assert mapping["BatchSize"] == STREAM_BATCH_SIZE
    assert mapping["MaximumBatchingWindowInSeconds"] == 1
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["MaximumRetryAttempts"] == STREAM_RETRY_ATTEMPTS
    assert mapping["MaximumRecordAgeInSeconds"] == 6 * 3600
    assert mapping["ParallelizationFactor"] == 1
    assert mapping["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": [queue_id, "Arn"]}}
    }
    [criteria] = mapping["FilterCriteria"]["Filters"]
    assert json.loads(criteria["Pattern"]) == STREAM_FILTER_PATTERN


def test_the_mapping_is_created_after_the_role_may_read_the_stream(env_stack: Synthesized) -> None:
    depends_on = set(_mapping(env_stack).get("DependsOn", []))
    policies = {
        logical_id
        for logical_id, policy in env_stack.resources("AWS::IAM::Policy").items()
        if "dynamodb:GetRecords"
        in policy_actions(policy["Properties"]["PolicyDocument"]["Statement"])
    }
    assert policies and policies <= depends_on


def test_the_filter_passes_exactly_the_records_the_handler_counts() -> None:
    # Lambda drops what the filter rejects before invoking: an idle table (or one whose
    # only writes are topic creations, meta updates, merges and deletions) invokes nothing
    for path in sorted(EVENTS.glob("stream_*.json")):
        records = json.loads(path.read_text())["Records"]
        passed = [r for r in records if _matches(STREAM_FILTER_PATTERN, r)]
        assert len(passed) == appended_topics(records)[1], path.name
        assert appended_topics(passed) == appended_topics(records)
    ignored = json.loads((EVENTS / "stream_batch_ignored.json").read_text())["Records"]
    assert not any(_matches(STREAM_FILTER_PATTERN, r) for r in ignored)


def test_the_ledger_stream_carries_keys_only(env_stack: Synthesized) -> None:
    views = {
        table["Properties"]["TableName"]: table["Properties"].get("StreamSpecification")
        for table in env_stack.resources("AWS::DynamoDB::Table").values()
    }
    prefix = env_stack.config.prefix
    assert views[f"{prefix}-ledger"] == {"StreamViewType": "KEYS_ONLY"}


def test_a_rule_runs_the_schedule_every_minute(env_stack: Synthesized) -> None:
    function_id = _function_id(env_stack, DISPATCHER_HANDLER)
    [rule] = [
        rule["Properties"]
        for rule in env_stack.resources("AWS::Events::Rule").values()
        if rule["Properties"]["Name"].endswith("-dispatcher")
    ]
    assert rule["ScheduleExpression"] == SCHEDULE == "rate(1 minute)"
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 60, "MaximumRetryAttempts": 0}


def test_the_role_holds_what_delivery_uses_and_nothing_that_deletes(env_stack: Synthesized) -> None:
    statements = _statements(env_stack.template_json, _function_id(env_stack, DISPATCHER_HANDLER))
    allowed = policy_actions([s for s in statements if s["Effect"] == "Allow"])
    assert allowed == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",  # catalog only: delivery state and leases
        "dynamodb:ConditionCheckItem",
        "s3:GetObject",
        "s3:PutObject",
        "sqs:SendMessage",
        "sqs:GetQueueUrl",
        "sqs:GetQueueAttributes",  # the stream's failure queue only (the mapping checks it)
        *(
            ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
            if env_stack.config.tracing
            else ()
        ),
        "lambda:InvokeFunction",
    }
    deletes = [s for s in statements if "dynamodb:DeleteItem" in policy_actions([s])]
    assert all("Catalog" in _resolve(s["Resource"]) for s in deletes)


def test_the_role_invokes_only_functions_under_the_prefixes_and_never_lakelogs_own(
    env_stack: Synthesized,
) -> None:
    config = env_stack.config
    statements = _statements(env_stack.template_json, _function_id(env_stack, DISPATCHER_HANDLER))
    invoke = [s for s in statements if policy_actions([s]) == {"lambda:InvokeFunction"}]
    by_effect = {
        effect: sorted(
            _resolve(r)
            for s in invoke
            if s["Effect"] == effect
            for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        )
        for effect in ("Allow", "Deny")
    }
    functions = f"arn:aws:lambda:{config.region}:ACCOUNT:function:{config.prefix}-"
    assert by_effect["Allow"] == [f"{functions}*"]
    assert by_effect["Deny"] == sorted(
        f"{functions}{name}{suffix}" for name in RESERVED_FUNCTIONS for suffix in ("", ":*")
    )
    queues = sorted(
        _resolve(s["Resource"]) for s in statements if "sqs:SendMessage" in policy_actions([s])
    )
    [failure_queue] = env_stack.resources("AWS::SQS::Queue")
    assert queues == [f"<{failure_queue}.Arn>", f"arn:aws:sqs:{config.region}:ACCOUNT:*"]
    attributes = [s for s in statements if "sqs:GetQueueAttributes" in policy_actions([s])]
    assert [_resolve(s["Resource"]) for s in attributes] == [f"<{failure_queue}.Arn>"]


def test_configured_prefixes_replace_the_default_in_iam_and_environment(tmp_path: Path) -> None:
    # Given prod with two teams' function prefixes
    prefixes = (
        "arn:aws:lambda:eu-west-1:111122223333:function:orders-",
        "arn:aws:lambda:eu-west-1:111122223333:function:billing-",
    )
    config = ENVIRONMENTS["dev"].model_copy(update={"trigger_function_prefixes": prefixes})
    app = App(outdir=str(tmp_path))
    stack = build_app(app, config, checks=False)
    template = app.synth().get_stack_by_name(stack.stack_name).template

    # Then the dispatcher may invoke exactly those, and the API and dispatcher know them
    functions = {
        resource["Properties"]["Handler"]: logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    statements = _statements(template, functions[DISPATCHER_HANDLER])
    allowed = [
        s["Resource"]
        for s in statements
        if s["Effect"] == "Allow" and policy_actions([s]) == {"lambda:InvokeFunction"}
    ]
    assert allowed == [[f"{p}*" for p in prefixes]]
    for handler in (DISPATCHER_HANDLER, "functions.api.handler.handler"):
        variables = template["Resources"][functions[handler]]["Properties"]["Environment"]
        assert variables["Variables"][ENV_TRIGGER_FUNCTION_PREFIXES] == ",".join(prefixes)


@pytest.mark.parametrize(
    "prefix",
    [
        "arn:aws:lambda:eu-west-1:111122223333:function:",  # every function of the account
        "arn:aws:lambda:eu-west-1:111122223333:function:orders-*",
        "arn:aws:sqs:eu-west-1:111122223333:orders",
        "orders-",
    ],
)
def test_a_prefix_that_is_not_a_function_name_prefix_is_refused(prefix: str) -> None:
    values = ENVIRONMENTS["dev"].model_dump()
    with pytest.raises(ValueError, match="Lambda function ARN prefix"):
        EnvironmentConfig(**{**values, "trigger_function_prefixes": (prefix,)})


def test_the_failure_queue_is_encrypted_and_tls_only(env_stack: Synthesized) -> None:
    [queue] = env_stack.resources("AWS::SQS::Queue").values()
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    [policy] = env_stack.resources("AWS::SQS::QueuePolicy").values()
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_dashboard_shows_the_dispatcher_and_failed_batches_alarm(
    env_stack: Synthesized,
) -> None:
    [dashboard] = env_stack.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert "Dispatcher: stream records and topics notified" in body
    assert "IteratorAge" in body
    alarms = {
        alarm["Properties"]["AlarmName"]: alarm["Properties"]
        for alarm in env_stack.resources("AWS::CloudWatch::Alarm").values()
    }
    name = f"{env_stack.config.prefix}-dispatcher-stream-failures"
    if env_stack.config.alarms_enabled:
        assert alarms[name]["Threshold"] == 0
        assert alarms[name]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert f"{env_stack.config.prefix}-dispatcher-errors" in alarms
    else:
        assert name not in alarms
