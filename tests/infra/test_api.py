"""The HTTP API component: IAM on every route, throttling and access logs, a narrow role."""

from __future__ import annotations

from typing import Any

from lakelog.api.settings import ApiSettings
from tests.infra.synth import Synthesized, policy_actions

_DATA_ACTIONS = ("s3:", "dynamodb:")


def _api_statements(stack: Synthesized) -> list[dict[str, Any]]:
    """Policy statements of the API function's role."""
    roles = {
        logical_id
        for logical_id, role in stack.resources("AWS::IAM::Role").items()
        if "Api" in logical_id
    }
    statements: list[dict[str, Any]] = []
    for policy in stack.resources("AWS::IAM::Policy").values():
        attached = {role.get("Ref") for role in policy["Properties"].get("Roles", [])}
        if attached & roles:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def test_every_route_requires_iam_authorization(env_stack: Synthesized) -> None:
    routes = env_stack.resources("AWS::ApiGatewayV2::Route")

    assert routes, "the HTTP API has routes"
    for route in routes.values():
        assert route["Properties"]["AuthorizationType"] == "AWS_IAM"


def test_the_api_invokes_the_api_function_with_payload_format_2(env_stack: Synthesized) -> None:
    (integration,) = env_stack.resources("AWS::ApiGatewayV2::Integration").values()
    (function_id,) = [
        logical_id
        for logical_id, function in env_stack.resources("AWS::Lambda::Function").items()
        if function["Properties"]["Handler"] == "functions.api.handler.handler"
    ]

    assert integration["Properties"]["PayloadFormatVersion"] == "2.0"
    assert integration["Properties"]["IntegrationType"] == "AWS_PROXY"
    assert function_id in str(integration["Properties"]["IntegrationUri"])


def test_stage_throttles_per_environment_and_writes_access_logs(env_stack: Synthesized) -> None:
    (stage,) = env_stack.resources("AWS::ApiGatewayV2::Stage").values()
    properties = stage["Properties"]
    route_settings = properties["DefaultRouteSettings"]

    assert route_settings["ThrottlingRateLimit"] == env_stack.config.api_throttle_rate
    assert route_settings["ThrottlingBurstLimit"] == env_stack.config.api_throttle_burst
    assert "$context.requestId" in properties["AccessLogSettings"]["Format"]
    assert properties["AccessLogSettings"]["DestinationArn"]


def test_api_function_reads_its_settings_from_the_environment(env_stack: Synthesized) -> None:
    (function,) = [
        f
        for f in env_stack.resources("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == "functions.api.handler.handler"
    ]
    variables = function["Properties"]["Environment"]["Variables"]
    concrete = {
        name: value if isinstance(value, str) else "resolved-at-deploy"
        for name, value in variables.items()
    }

    settings = ApiSettings.from_env(concrete)

    assert settings.default_acl == env_stack.config.default_acl_effect
    assert settings.env == env_stack.config.name


def test_api_function_role_has_only_the_data_actions_it_uses(env_stack: Synthesized) -> None:
    actions = {a for a in policy_actions(_api_statements(env_stack)) if a.startswith(_DATA_ACTIONS)}

    assert "s3:PutObject" in actions and "s3:GetObject" in actions
    assert "dynamodb:TransactWriteItems" in actions or "dynamodb:PutItem" in actions
    assert not {a for a in actions if a.endswith("*")}
    # The API never deletes segments (gc does) and never reads the ledger's stream.
    assert "s3:DeleteObject" not in actions
    assert not {a for a in actions if a.startswith("dynamodb:GetRecords")}
