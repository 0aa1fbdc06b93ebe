"""LakelogFunction: how every lakelog Lambda function is built.

One construct so that every function gets the same runtime, architecture, layers, code
asset, logging and naming, and its own role and log group: Python 3.12 on arm64, the
Powertools and AWS SDK for pandas managed layers for the region, the staged ``lakelog``
and ``functions`` code, an explicit log group with the environment's retention, and a role
that can write to that log group and nothing else until a component grants more.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from aws_cdk import Aws, CfnResource, Duration, Stage
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from components.nag import acknowledge, ignore_cfn_lint_rule
from components.packaging import stage_code, validate_handler
from components.storage import removal_policy
from config.environment import EnvironmentConfig
from config.settings import (
    LAMBDA_ARCHITECTURE,
    LAMBDA_RUNTIME,
    POWERTOOLS_LAYER,
    POWERTOOLS_METRICS_NAMESPACE,
    POWERTOOLS_SERVICE_NAME,
    SDK_FOR_PANDAS_LAYER,
)
from lakelog.environment import (
    ENV_ADMIN_PRINCIPALS,
    ENV_DEFAULT_ACL_EFFECT,
    ENV_ENVIRONMENT,
)

__all__ = ["RETENTION", "LakelogFunction", "retention_days"]

_APPLICATION_LOG_LEVELS: Final = {
    "DEBUG": lambda_.ApplicationLogLevel.DEBUG,
    "INFO": lambda_.ApplicationLogLevel.INFO,
    "WARNING": lambda_.ApplicationLogLevel.WARN,
    "ERROR": lambda_.ApplicationLogLevel.ERROR,
}
_RUNTIMES: Final = {"python3.12": lambda_.Runtime.PYTHON_3_12}
_ARCHITECTURES: Final = {"arm64": lambda_.Architecture.ARM_64}


RETENTION: Final[Mapping[int, logs.RetentionDays]] = MappingProxyType(
    {
        1: logs.RetentionDays.ONE_DAY,
        3: logs.RetentionDays.THREE_DAYS,
        5: logs.RetentionDays.FIVE_DAYS,
        7: logs.RetentionDays.ONE_WEEK,
        14: logs.RetentionDays.TWO_WEEKS,
        30: logs.RetentionDays.ONE_MONTH,
        60: logs.RetentionDays.TWO_MONTHS,
        90: logs.RetentionDays.THREE_MONTHS,
        120: logs.RetentionDays.FOUR_MONTHS,
        150: logs.RetentionDays.FIVE_MONTHS,
        180: logs.RetentionDays.SIX_MONTHS,
        365: logs.RetentionDays.ONE_YEAR,
        400: logs.RetentionDays.THIRTEEN_MONTHS,
        545: logs.RetentionDays.EIGHTEEN_MONTHS,
        731: logs.RetentionDays.TWO_YEARS,
        1096: logs.RetentionDays.THREE_YEARS,
        1827: logs.RetentionDays.FIVE_YEARS,
        2192: logs.RetentionDays.SIX_YEARS,
        2557: logs.RetentionDays.SEVEN_YEARS,
        2922: logs.RetentionDays.EIGHT_YEARS,
        3288: logs.RetentionDays.NINE_YEARS,
        3653: logs.RetentionDays.TEN_YEARS,
    }
)
"""CloudWatch Logs retention members by number of days (jsii enums carry names, not days)."""


def retention_days(days: int) -> logs.RetentionDays:
    """The `RetentionDays` member for ``days`` (validated by `EnvironmentConfig`).

    Raises
    ------
    ValueError
        If CloudWatch Logs has no retention of ``days`` days.
    """
    try:
        return RETENTION[days]
    except KeyError:
        raise ValueError(f"CloudWatch Logs has no retention of {days} days") from None


class LakelogFunction(Construct):
    """A lakelog Lambda function with its own role and log group.

    Parameters
    ----------
    scope, construct_id
        Where the construct lives.
    config
        The environment being built: memory, timeout, log level, retention, tracing.
    short_name
        The function's name within the environment; the deployed name is
        ``lakelog-<env>-<short_name>``.
    handler
        ``package.module.function`` inside the code asset, for example
        ``functions.api.handler.handler``; checked at synth time.
    description
        What the function does, shown in the console.
    environment
        Variables added to the common ones (environment name, default ACL effect,
        Powertools settings), typically the resource names from `Storage`.
    memory_mb, timeout_seconds
        Overrides of the environment's defaults for this function.

    Attributes
    ----------
    function
        The `aws_lambda.Function`.
    role
        Its execution role: log group writes only, plus what components grant.
    log_group
        ``/aws/lambda/<function name>`` with the environment's retention.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        short_name: str,
        handler: str,
        description: str,
        environment: Mapping[str, str] | None = None,
        memory_mb: int | None = None,
        timeout_seconds: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stage = Stage.of(self)
        if stage is None:
            raise ValueError(f"{self.node.path} must be inside an App to stage its code")
        code_root = stage_code(Path(stage.outdir))
        validate_handler(code_root, handler)
        function_name = config.function_name(short_name)

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=retention_days(config.log_retention_days),
            removal_policy=removal_policy(config),
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of {function_name}",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=description,
            runtime=_RUNTIMES[LAMBDA_RUNTIME],
            architecture=_ARCHITECTURES[LAMBDA_ARCHITECTURE],
            handler=handler,
            code=lambda_.Code.from_asset(str(code_root)),
            layers=[
                lambda_.LayerVersion.from_layer_version_arn(
                    self, "PowertoolsLayer", POWERTOOLS_LAYER.arn(config.region, Aws.PARTITION)
                ),
                lambda_.LayerVersion.from_layer_version_arn(
                    self,
                    "SdkForPandasLayer",
                    SDK_FOR_PANDAS_LAYER.arn(config.region, Aws.PARTITION),
                ),
            ],
            memory_size=memory_mb or config.function_memory_mb,
            timeout=Duration.seconds(timeout_seconds or config.function_timeout_seconds),
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=_APPLICATION_LOG_LEVELS[config.log_level],
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            tracing=lambda_.Tracing.ACTIVE if config.tracing else lambda_.Tracing.DISABLED,
            environment={
                ENV_ENVIRONMENT: config.name,
                ENV_DEFAULT_ACL_EFFECT: config.default_acl_effect,
                **(
                    {ENV_ADMIN_PRINCIPALS: ",".join(config.admin_principals)}
                    if config.admin_principals
                    else {}
                ),
                "POWERTOOLS_SERVICE_NAME": POWERTOOLS_SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": POWERTOOLS_METRICS_NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": config.log_level,
                "POWERTOOLS_TRACE_DISABLED": "false" if config.tracing else "true",
                **(environment or {}),
            },
        )
        self.log_group.grant_write(self.role)
        self._acknowledge_findings(config)

    @property
    def grant_principal(self) -> iam.IPrincipal:
        """The execution role, so the construct can be passed to `Storage.grant_*`."""
        return self.role

    def _acknowledge_findings(self, config: EnvironmentConfig) -> None:
        resource = self.function.node.default_child
        if isinstance(resource, CfnResource):
            ignore_cfn_lint_rule(
                resource,
                "W3005",
                "CDK makes the function depend on its role and the role's policy; the role "
                "dependency is redundant with the Role property, the policy one is needed.",
            )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            f"Pinned to {LAMBDA_RUNTIME}: the Powertools and AWS SDK for pandas layers it "
            "loads are built for that runtime; move both together (ADR 0007).",
        )
        if config.tracing:
            acknowledge(
                self.role,
                "AwsSolutions-IAM5",
                "xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level "
                "permissions; active tracing needs them on '*'.",
                applies_to="Resource::*",
            )
