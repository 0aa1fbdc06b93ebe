"""LakelogFunction: packaging without Docker, layers, roles, logs, least privilege."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.function import LakelogFunction
from components.packaging import PackagingError, stage_code, validate_handler
from config import load_environment
from config.settings import POWERTOOLS_LAYER, SDK_FOR_PANDAS_LAYER
from lakelog import ResourceNames
from tests.infra.synth import PROBE_HANDLER, REPO_ROOT, SynthCache, Synthesized, policy_actions

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module", params=["dev", "prod"])
def probe(request: pytest.FixtureRequest, synth: SynthCache) -> Synthesized:
    """The environment's stack with two probe functions (reader, writer)."""
    return synth.functions(request.param)


def _function(stack: Synthesized, short_name: str) -> dict[str, Any]:
    name = stack.config.function_name(short_name)
    [function] = [
        resource
        for resource in stack.resources("AWS::Lambda::Function").values()
        if resource["Properties"].get("FunctionName") == name
    ]
    return function


def _role_statements(stack: Synthesized, function: dict[str, Any]) -> list[dict[str, Any]]:
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements: list[dict[str, Any]] = []
    for policy in stack.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def test_function_runs_python_312_on_arm64_with_the_regions_managed_layers(
    probe: Synthesized,
) -> None:
    properties = _function(probe, "reader")["Properties"]

    assert properties["Runtime"] == "python3.12"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Handler"] == PROBE_HANDLER
    partition_arn = [
        {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, arn.removeprefix("arn:aws")]]}
        for arn in (
            POWERTOOLS_LAYER.arn(probe.config.region),
            SDK_FOR_PANDAS_LAYER.arn(probe.config.region),
        )
    ]
    assert properties["Layers"] == partition_arn


def test_memory_timeout_and_log_level_come_from_the_environment(probe: Synthesized) -> None:
    config = probe.config
    reader = _function(probe, "reader")["Properties"]
    writer = _function(probe, "writer")["Properties"]

    assert reader["MemorySize"] == config.function_memory_mb
    assert reader["Timeout"] == config.function_timeout_seconds
    assert (writer["MemorySize"], writer["Timeout"]) == (2048, 120)
    assert reader["LoggingConfig"]["LogFormat"] == "JSON"
    lambda_level = {"WARNING": "WARN"}.get(config.log_level, config.log_level)
    assert reader["LoggingConfig"]["ApplicationLogLevel"] == lambda_level
    assert reader["Environment"]["Variables"]["POWERTOOLS_LOG_LEVEL"] == config.log_level


def test_tracing_follows_the_environment(probe: Synthesized) -> None:
    properties = _function(probe, "reader")["Properties"]
    variables = properties["Environment"]["Variables"]

    if probe.config.tracing:
        assert properties["TracingConfig"] == {"Mode": "Active"}
        assert variables["POWERTOOLS_TRACE_DISABLED"] == "false"
    else:
        assert "TracingConfig" not in properties
        assert variables["POWERTOOLS_TRACE_DISABLED"] == "true"


def test_function_knows_the_resource_names_and_environment(probe: Synthesized) -> None:
    variables = _function(probe, "reader")["Properties"]["Environment"]["Variables"]
    buckets = probe.resources("AWS::S3::Bucket")
    tables = probe.resources("AWS::DynamoDB::Table")
    names = ResourceNames.for_prefix(probe.config.prefix)

    bucket_id = variables["LAKELOG_BUCKET"]["Ref"]
    assert buckets[bucket_id]["Properties"]["BucketName"] == names.bucket
    ledger_id = variables["LAKELOG_LEDGER_TABLE"]["Ref"]
    assert tables[ledger_id]["Properties"]["TableName"] == names.ledger_table
    catalog_id = variables["LAKELOG_CATALOG_TABLE"]["Ref"]
    assert tables[catalog_id]["Properties"]["TableName"] == names.catalog_table
    assert variables["LAKELOG_ENVIRONMENT"] == probe.config.name
    assert variables["LAKELOG_DEFAULT_ACL_EFFECT"] == probe.config.default_acl_effect
    assert variables["POWERTOOLS_SERVICE_NAME"] == "lakelog"


def test_each_function_has_its_own_role_and_log_group(probe: Synthesized) -> None:
    reader = _function(probe, "reader")["Properties"]
    writer = _function(probe, "writer")["Properties"]
    log_groups = probe.resources("AWS::Logs::LogGroup")

    assert reader["Role"] != writer["Role"]
    for short_name, function in (("reader", reader), ("writer", writer)):
        log_group_id = function["LoggingConfig"]["LogGroup"]["Ref"]
        log_group = log_groups[log_group_id]
        name = probe.config.function_name(short_name)
        assert log_group["Properties"]["LogGroupName"] == f"/aws/lambda/{name}"
        assert log_group["Properties"]["RetentionInDays"] == probe.config.log_retention_days


def test_roles_start_with_no_managed_policies(probe: Synthesized) -> None:
    roles = probe.resources("AWS::IAM::Role")

    for short_name in ("reader", "writer"):
        role_id = _function(probe, short_name)["Properties"]["Role"]["Fn::GetAtt"][0]
        assert "ManagedPolicyArns" not in roles[role_id]["Properties"]


def test_reader_gets_reads_only(probe: Synthesized) -> None:
    statements = _role_statements(probe, _function(probe, "reader"))

    expected = {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "s3:GetObject",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
    }
    if probe.config.tracing:
        expected |= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    assert policy_actions(statements) == expected


def test_writer_gets_exactly_what_it_was_granted(probe: Synthesized) -> None:
    statements = _role_statements(probe, _function(probe, "writer"))

    expected = {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "s3:PutObject",
        "s3:ListBucket",
        "s3:DeleteObject",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
    }
    if probe.config.tracing:
        expected |= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    assert policy_actions(statements) == expected


def test_object_grants_stop_at_the_segments_prefix(probe: Synthesized) -> None:
    statements = _role_statements(probe, _function(probe, "writer"))
    [put] = [s for s in statements if s["Action"] == "s3:PutObject"]
    [listing] = [s for s in statements if s["Action"] == "s3:ListBucket"]

    bucket_arn = put["Resource"]["Fn::Join"][1][0]
    assert put["Resource"] == {"Fn::Join": ["", [bucket_arn, "/segments/*"]]}
    assert listing["Resource"] == bucket_arn
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["segments/*"]}}


def test_functions_are_watched_and_alarmed_where_alarms_are_enabled(probe: Synthesized) -> None:
    alarm_names = {
        alarm["Properties"]["AlarmName"]
        for alarm in probe.resources("AWS::CloudWatch::Alarm").values()
    }
    prefix = probe.config.prefix
    function_alarms = {
        f"{prefix}-{name}-{kind}"
        for name in ("reader", "writer")
        for kind in ("errors", "throttles")
    }

    if probe.config.alarms_enabled:
        assert function_alarms <= alarm_names
    else:
        assert alarm_names == set()


def test_code_asset_holds_lakelog_and_functions_without_bytecode(probe: Synthesized) -> None:
    key = _function(probe, "reader")["Properties"]["Code"]["S3Key"]
    manifest = json.loads((probe.outdir / f"{probe.stack.stack_name}.assets.json").read_text())
    asset = probe.outdir / manifest["files"][key.removesuffix(".zip")]["source"]["path"]

    assert (asset / "lakelog" / "__init__.py").is_file()
    assert (asset / "lakelog" / "storage" / "keys.py").is_file()
    if (REPO_ROOT / "functions").is_dir():
        assert (asset / "functions").is_dir()
    assert not list(asset.rglob("__pycache__"))
    assert not list(asset.rglob("*.pyc"))


def test_both_functions_share_one_code_asset(probe: Synthesized) -> None:
    reader = _function(probe, "reader")["Properties"]["Code"]
    writer = _function(probe, "writer")["Properties"]["Code"]

    assert reader == writer


def test_handler_that_does_not_exist_fails_at_synth(tmp_path: Path) -> None:
    code = stage_code(tmp_path)

    validate_handler(code, PROBE_HANDLER)
    with pytest.raises(PackagingError, match="is not in the code asset"):
        validate_handler(code, "functions.nope.handler.handler")
    with pytest.raises(PackagingError, match="defines no 'handler'"):
        validate_handler(code, "lakelog.storage.keys.handler")
    with pytest.raises(PackagingError, match=r"package\.module\.function"):
        validate_handler(code, "handler")


def test_lakelog_function_refuses_an_unknown_handler(bare_stack: Any) -> None:
    with pytest.raises(PackagingError):
        LakelogFunction(
            bare_stack,
            "Broken",
            config=load_environment("dev"),
            short_name="broken",
            handler="lakelog.no_such_module.handler",
            description="never built",
        )
