"""Monitoring: dashboard everywhere, alarms where enabled, an encrypted topic in prod."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import aws_dynamodb as dynamodb

from components.monitoring import Monitoring
from config import load_environment
from tests.infra.synth import SynthCache, Synthesized

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module", params=["dev", "prod"])
def watched(request: pytest.FixtureRequest, synth: SynthCache) -> Synthesized:
    """The environment's stack plus a test HTTP API and state machine handed to monitoring."""
    return synth.watched(request.param)


def _alarms(stack: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        alarm["Properties"]["AlarmName"]: alarm["Properties"]
        for alarm in stack.resources("AWS::CloudWatch::Alarm").values()
    }


def _dashboard_body(stack: Synthesized) -> str:
    [dashboard] = stack.resources("AWS::CloudWatch::Dashboard").values()
    return json.dumps(dashboard["Properties"]["DashboardBody"])


def test_every_environment_has_its_dashboard(env_stack: Synthesized) -> None:
    [dashboard] = env_stack.resources("AWS::CloudWatch::Dashboard").values()

    assert dashboard["Properties"]["DashboardName"] == f"lakelog-{env_stack.config.name}"
    body = _dashboard_body(env_stack)
    assert "Ledger table: throttles and errors" in body
    assert "Catalog table: throttles and errors" in body
    assert "UserErrors" in body


def test_alarms_exist_only_where_enabled(env_stack: Synthesized) -> None:
    alarms = _alarms(env_stack)
    prefix = env_stack.config.prefix

    if env_stack.config.alarms_enabled:
        assert set(alarms) == {
            f"{prefix}-Ledger-throttles",
            f"{prefix}-Catalog-throttles",
            f"{prefix}-api-errors",
            f"{prefix}-api-throttles",
            f"{prefix}-Api-5xx",
            f"{prefix}-Compactor-failures",
            f"{prefix}-Compactor-l0-backlog",
            f"{prefix}-dispatcher-errors",
            f"{prefix}-dispatcher-throttles",
            f"{prefix}-dispatcher-stream-failures",
            *(
                f"{prefix}-compactor-{task}-{kind}"
                for task in ("list", "compact", "collect")
                for kind in ("errors", "throttles")
            ),
        }
    else:
        assert alarms == {}


def test_table_throttle_alarm_sums_read_and_write_throttles(synth: SynthCache) -> None:
    prod = synth.environment("prod")
    alarm = _alarms(prod)["lakelog-prod-Ledger-throttles"]

    metric_names = {
        query["MetricStat"]["Metric"]["MetricName"]
        for query in alarm["Metrics"]
        if "MetricStat" in query
    }
    assert metric_names == {"ReadThrottleEvents", "WriteThrottleEvents"}
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


def test_alarm_topic_exists_in_prod_only(env_stack: Synthesized) -> None:
    topics = env_stack.resources("AWS::SNS::Topic")

    assert bool(topics) is env_stack.config.alarm_notifications
    assert ("AlarmTopicArn" in env_stack.template_json["Outputs"]) is bool(topics)


def test_alarm_topic_is_encrypted_with_a_rotated_key_cloudwatch_may_use(
    synth: SynthCache,
) -> None:
    prod = synth.environment("prod")
    [(topic_id, topic)] = prod.resources("AWS::SNS::Topic").items()
    keys = prod.resources("AWS::KMS::Key")

    key_id = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key = keys[key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    assert {
        "Sid": "AllowCloudWatchAlarmsToUseTheKey",
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Resource": "*",
    } in key["KeyPolicy"]["Statement"]
    [policy] = prod.resources("AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )
    [publish] = [s for s in statements if s.get("Sid") == "AllowCloudWatchAlarmsToPublish"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Resource"] == {"Ref": topic_id}


def test_prod_alarms_notify_the_topic_and_staging_alarms_do_not(synth: SynthCache) -> None:
    prod, staging = synth.environment("prod"), synth.environment("staging")
    [topic_id] = prod.resources("AWS::SNS::Topic")

    for alarm in _alarms(prod).values():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["OKActions"] == [{"Ref": topic_id}]
    for alarm in _alarms(staging).values():
        assert "AlarmActions" not in alarm


def test_watch_http_api_alarms_on_5xx(watched: Synthesized) -> None:
    alarms = _alarms(watched)
    name = f"{watched.config.prefix}-ProbeApi-5xx"

    assert "ProbeApi: requests and errors" in _dashboard_body(watched)
    if not watched.config.alarms_enabled:
        assert name not in alarms
        return
    alarm = alarms[name]
    assert alarm["Namespace"] == "AWS/ApiGateway"
    assert alarm["MetricName"] == "5xx"
    assert alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == 1


def test_watch_state_machine_alarms_on_failed_or_timed_out_executions(
    watched: Synthesized,
) -> None:
    alarms = _alarms(watched)
    name = f"{watched.config.prefix}-ProbeCompactor-failures"

    assert "ProbeCompactor: executions" in _dashboard_body(watched)
    if not watched.config.alarms_enabled:
        assert name not in alarms
        return
    metric_names = {
        query["MetricStat"]["Metric"]["MetricName"]
        for query in alarms[name]["Metrics"]
        if "MetricStat" in query
    }
    assert metric_names == {"ExecutionsFailed", "ExecutionsTimedOut"}
    assert {
        query["MetricStat"]["Metric"]["Namespace"]
        for query in alarms[name]["Metrics"]
        if "MetricStat" in query
    } == {"AWS/States"}


def test_watching_the_same_label_twice_is_refused(bare_stack: Any) -> None:
    monitoring = Monitoring(bare_stack, "Monitoring", config=load_environment("staging"))
    table = dynamodb.Table.from_table_name(bare_stack, "Table", "some-table")
    monitoring.watch_table(table, label="Ledger")

    with pytest.raises(ValueError, match="already watched"):
        monitoring.watch_table(table, label="Ledger")
    with pytest.raises(ValueError, match="letters, digits"):
        monitoring.watch_table(table, label="no spaces")
