"""HttpApi: the HTTP API v1 behind API Gateway (HTTP API), IAM-authorized, one function.

Every route (``$default`` and the OpenAPI/docs paths alike) needs SigV4: the HTTP API's
IAM authorizer passes the caller's ARN to the function, whose ACL rules decide the rest.
The stage throttles per environment and writes JSON access logs to its own log group.
"""

from __future__ import annotations

import jsii
from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_logs as logs
from constructs import Construct

from components.function import retention_days
from components.nag import acknowledge
from components.platform import Platform
from components.storage import removal_policy

__all__ = ["API_HANDLER", "HttpApi"]

API_HANDLER = "functions.api.handler.handler"
_ACCESS_LOG_FORMAT = (
    '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",'
    '"caller":"$context.identity.userArn","method":"$context.httpMethod",'
    '"path":"$context.path","status":"$context.status","bytes":"$context.responseLength",'
    '"latencyMs":"$context.responseLatency","error":"$context.integrationErrorMessage"}'
)


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """JSON access logs of a stage into ``log_group``."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(_ACCESS_LOG_FORMAT)


class HttpApi(Construct):
    """The API function, its least-privilege grants, the HTTP API and its stage.

    Parameters
    ----------
    scope, construct_id
        Where the construct lives.
    platform
        The environment's shared constructs.
    """

    def __init__(self, scope: Construct, construct_id: str, *, platform: Platform) -> None:
        super().__init__(scope, construct_id)
        config = platform.config
        self.function = platform.add_function(
            self,
            "Function",
            short_name="api",
            handler=API_HANDLER,
            description="lakelog HTTP API v1: topics, records, offsets, groups and ACLs",
            environment=platform.trigger_environment(),  # refuses other subscribed functions
        )
        grantee = self.function.function
        platform.storage.grant_engine(grantee)

        self.api = apigwv2.HttpApi(
            self,
            "Api",
            api_name=f"{config.prefix}-api",
            description=f"lakelog {config.name} HTTP API v1",
            default_authorizer=authorizers.HttpIamAuthorizer(),
            default_integration=integrations.HttpLambdaIntegration(
                "Integration",
                grantee,
                payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
                timeout=Duration.seconds(min(config.function_timeout_seconds, 29)),
            ),
            create_default_stage=False,
        )
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=retention_days(config.log_retention_days),
            removal_policy=removal_policy(config),
        )
        self.stage = apigwv2.HttpStage(
            self,
            "Stage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.api_throttle_rate, burst_limit=config.api_throttle_burst
            ),
            access_log_settings=_AccessLogSettings(access_logs),
        )
        acknowledge(
            self.api,
            "AwsSolutions-APIG4",
            "every route uses the HTTP API's IAM authorizer (default_authorizer)",
        )
        platform.monitoring.watch_http_api(self.api, label="Api")
        platform.outputs.add("ApiUrl", self.stage.url, "Base URL of the HTTP API v1")
