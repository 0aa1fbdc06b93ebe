"""Environment configuration: names, differences between environments, pinned layers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from components.function import RETENTION
from config import ENVIRONMENTS, UnknownEnvironmentError, load_environment
from config.environment import LOG_RETENTION_DAYS, EnvironmentConfig
from config.settings import POWERTOOLS_LAYER, SDK_FOR_PANDAS_LAYER, UnsupportedRegionError

pytestmark = pytest.mark.infra


def test_at_least_dev_staging_and_prod_exist() -> None:
    assert {"dev", "staging", "prod"} <= set(ENVIRONMENTS)


def test_unknown_environment_fails_with_the_list_of_valid_names() -> None:
    with pytest.raises(UnknownEnvironmentError) as caught:
        load_environment("qa")

    message = str(caught.value)
    assert "'qa'" in message
    assert "valid names: dev, prod, staging" in message


def test_environment_config_is_frozen() -> None:
    config = load_environment("dev")

    with pytest.raises(ValidationError):
        config.log_level = "ERROR"


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_names_follow_lakelog_dash_environment(name: str) -> None:
    config = load_environment(name)

    assert config.stack_name == f"lakelog-{name}"
    assert config.prefix == f"lakelog-{name}"
    assert config.function_name("api") == f"lakelog-{name}-api"


def test_dev_and_prod_differ_where_an_environment_should() -> None:
    dev, prod = load_environment("dev"), load_environment("prod")

    assert dev.function_memory_mb < prod.function_memory_mb
    assert (dev.log_level, prod.log_level) == ("DEBUG", "INFO")
    assert (dev.removal_policy, prod.removal_policy) == ("destroy", "retain")
    assert (dev.point_in_time_recovery, prod.point_in_time_recovery) == (False, True)
    assert (dev.deletion_protection, prod.deletion_protection) == (False, True)
    assert (dev.alarms_enabled, prod.alarms_enabled) == (False, True)
    assert (dev.alarm_notifications, prod.alarm_notifications) == (False, True)
    assert (dev.default_acl_effect, prod.default_acl_effect) == ("allow", "deny")
    assert dev.compactor_schedule != prod.compactor_schedule
    assert dev.log_retention_days < prod.log_retention_days


def _with(**changes: object) -> dict[str, object]:
    return {**load_environment("dev").model_dump(), **changes}


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"log_retention_days": 10}, "CloudWatch Logs accepts only"),
        ({"compactor_schedule": "every hour"}, "EventBridge"),
        ({"compactor_full_gc_schedule": "daily"}, "EventBridge"),
        ({"region": "Europe"}, "not an AWS region"),
        ({"account": "1234"}, "12-digit"),
        ({"name": "Dev_1"}, "lowercase"),
        ({"deletion_protection": True}, "deletion_protection"),
        ({"alarm_notifications": True}, "alarms_enabled"),
        ({"alarms_enabled": True, "compactor_schedule": "cron(0/5 * * * ? *)"}, "rate"),
        ({"compactor_backlog_alarm_passes": 0}, "greater than or equal to 1"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_what_aws_or_the_stack_would_refuse(
    changes: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        EnvironmentConfig.model_validate(_with(**changes))


def test_function_name_longer_than_lambda_allows_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 64"):
        load_environment("staging").function_name("x" * 60)


def test_log_retention_choices_match_the_cdk_enum() -> None:
    assert set(RETENTION) == LOG_RETENTION_DAYS


def test_layer_arns_are_the_pinned_managed_layers() -> None:
    assert POWERTOOLS_LAYER.arn("eu-west-1") == (
        "arn:aws:lambda:eu-west-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-arm64:27"
    )
    assert SDK_FOR_PANDAS_LAYER.arn("eu-west-1") == (
        "arn:aws:lambda:eu-west-1:336392948345:layer:AWSSDKPandas-Python312-Arm64:16"
    )


def test_layer_in_a_region_without_a_pinned_version_fails_with_the_lookup_command() -> None:
    with pytest.raises(UnsupportedRegionError) as caught:
        SDK_FOR_PANDAS_LAYER.arn("ap-east-1")

    assert "pinned regions: af-south-1, eu-west-1" in str(caught.value)
    assert "aws lambda list-layer-versions" in str(caught.value)


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_every_environment_deploys_where_both_layers_are_pinned(name: str) -> None:
    region = load_environment(name).region

    assert POWERTOOLS_LAYER.arn(region)
    assert SDK_FOR_PANDAS_LAYER.arn(region)


@pytest.mark.parametrize(
    ("schedule", "minutes"),
    [
        ("rate(1 minute)", 1),
        ("rate(5 minutes)", 5),
        ("rate(2 hours)", 120),
        ("rate(1 day)", 1440),
        ("cron(0/5 * * * ? *)", None),
    ],
)
def test_the_pass_length_is_read_from_a_rate_schedule(schedule: str, minutes: int | None) -> None:
    config = EnvironmentConfig(**_with(compactor_schedule=schedule))

    assert config.compactor_pass_minutes == minutes
