"""The optional Kafka gateway: absent by default; when enabled, arm64 Fargate tasks behind a
Network Load Balancer with a TLS listener, scaling on CPU and connections, a role holding
the engine's grants on this environment's data only, logs, alarms and the bootstrap
address as a stable output."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from components.kafka_gateway import (
    BOOTSTRAP_OUTPUT,
    CPU_ALARM_PERCENT,
    GATEWAY_PORT,
    LOAD_BALANCER_OUTPUT,
)
from config import ENVIRONMENTS
from config.environment import KafkaGatewayConfig
from lakelog.environment import ENV_BUCKET, ENV_CATALOG_TABLE, ENV_LEDGER_TABLE
from tests.infra.synth import GATEWAY_DOMAIN, SynthCache, Synthesized, policy_actions, with_gateway

pytestmark = pytest.mark.infra

_GATEWAY_TYPES = ("AWS::ECS::", "AWS::ElasticLoadBalancingV2::", "AWS::EC2::")


@pytest.fixture(scope="module", params=["dev", "prod"])
def gateway_stack(request: pytest.FixtureRequest, synth: SynthCache) -> Synthesized:
    """The stack of dev (no alarms) and of prod (alarms) with the gateway enabled."""
    return synth.gateway(request.param)


def _one(stack: Synthesized, resource_type: str) -> tuple[str, dict[str, Any]]:
    [(logical_id, resource)] = stack.resources(resource_type).items()
    return logical_id, resource["Properties"]


def _container(stack: Synthesized) -> dict[str, Any]:
    [container] = _one(stack, "AWS::ECS::TaskDefinition")[1]["ContainerDefinitions"]
    return dict(container)


def _role_statements(stack: Synthesized, role_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in stack.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _referenced_ids(value: Any) -> set[str]:
    """Logical ids a policy resource refers to (Ref, Fn::GetAtt), anywhere inside it."""
    if isinstance(value, dict):
        if "Ref" in value:
            return {value["Ref"]}
        if "Fn::GetAtt" in value:
            return {value["Fn::GetAtt"][0]}
        return set().union(*(_referenced_ids(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_referenced_ids(v) for v in value)) if value else set()
    return set()


# Off by default ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_every_environment_leaves_the_gateway_off(name: str) -> None:
    assert ENVIRONMENTS[name].kafka_gateway.enabled is False


def test_a_default_stack_has_no_gateway_resources_and_no_bootstrap_output(
    env_stack: Synthesized,
) -> None:
    types = {resource["Type"] for resource in env_stack.template_json["Resources"].values()}
    assert not [t for t in types if t.startswith(_GATEWAY_TYPES)]
    assert BOOTSTRAP_OUTPUT not in env_stack.template_json["Outputs"]
    assert not any("kafka" in name.lower() for name in env_stack.template_json["Outputs"])


# Enabled -----------------------------------------------------------------------------------


def test_the_tasks_run_lakelog_kafka_on_arm64_fargate_at_the_configured_size(
    gateway_stack: Synthesized,
) -> None:
    settings = gateway_stack.config.kafka_gateway
    task = _one(gateway_stack, "AWS::ECS::TaskDefinition")[1]
    assert task["RuntimePlatform"] == {
        "CpuArchitecture": "ARM64",
        "OperatingSystemFamily": "LINUX",
    }
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert (task["Cpu"], task["Memory"]) == (str(settings.cpu), str(settings.memory_mib))
    container = _container(gateway_stack)
    assert container["Command"] == ["--host", "0.0.0.0", "--port", str(GATEWAY_PORT)]
    assert container["PortMappings"] == [{"ContainerPort": GATEWAY_PORT, "Protocol": "tcp"}]
    assert container["ReadonlyRootFilesystem"] is True
    variables = {v["Name"]: v["Value"] for v in container["Environment"]}
    assert {ENV_BUCKET, ENV_LEDGER_TABLE, ENV_CATALOG_TABLE} <= set(variables)
    assert variables["LAKELOG_DEFAULT_ACL_EFFECT"] == gateway_stack.config.default_acl_effect
    assert variables["LAKELOG_KAFKA_ADVERTISED_HOST"] == GATEWAY_DOMAIN
    assert variables["LAKELOG_KAFKA_ADVERTISED_PORT"] == str(GATEWAY_PORT)
    assert variables["LAKELOG_KAFKA_SASL"] == "true"
    service = _one(gateway_stack, "AWS::ECS::Service")[1]
    assert service["LaunchType"] == "FARGATE"
    assert service["DesiredCount"] == settings.min_tasks


def test_the_image_is_built_for_arm64_from_a_context_of_the_dockerfile_and_lakelog_only(
    gateway_stack: Synthesized,
) -> None:
    assets = json.loads(
        (gateway_stack.outdir / f"{gateway_stack.stack.stack_name}.assets.json").read_text()
    )
    [image] = assets["dockerImages"].values()
    assert image["source"]["platform"] == "linux/arm64"
    context = gateway_stack.outdir / image["source"]["directory"]
    assert sorted(p.name for p in context.iterdir()) == [
        "Dockerfile",
        "README.md",
        "lib",
        "pyproject.toml",
    ]
    assert [p.name for p in (context / "lib").iterdir()] == ["lakelog"]
    assert (context / "lib" / "lakelog" / "cli" / "kafka.py").is_file()
    dockerfile = (context / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["lakelog", "kafka"]' in dockerfile
    assert "USER 65534" in dockerfile


def test_an_internet_facing_nlb_terminates_tls_and_forwards_to_the_tasks_port(
    gateway_stack: Synthesized,
) -> None:
    balancer_id, balancer = _one(gateway_stack, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert (balancer["Type"], balancer["Scheme"]) == ("network", "internet-facing")
    listener = _one(gateway_stack, "AWS::ElasticLoadBalancingV2::Listener")[1]
    assert listener["LoadBalancerArn"] == {"Ref": balancer_id}
    assert (listener["Protocol"], listener["Port"]) == ("TLS", GATEWAY_PORT)
    assert listener["Certificates"] == [
        {"CertificateArn": gateway_stack.config.kafka_gateway.certificate_arn}
    ]
    assert listener["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    group_id, group = _one(gateway_stack, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert listener["DefaultActions"] == [{"Type": "forward", "TargetGroupArn": {"Ref": group_id}}]
    assert (group["Protocol"], group["Port"], group["TargetType"]) == ("TCP", GATEWAY_PORT, "ip")
    assert group["HealthCheckProtocol"] == "TCP"
    delay = {a["Key"]: a["Value"] for a in group["TargetGroupAttributes"]}
    assert delay["deregistration_delay.timeout_seconds"] == "30"


def test_only_the_load_balancer_reaches_the_tasks_and_only_configured_clients_the_listener(
    gateway_stack: Synthesized,
) -> None:
    service = _one(gateway_stack, "AWS::ECS::Service")[1]
    [task_group] = service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    task_group_id = task_group["Fn::GetAtt"][0]
    ingress = [
        rule["Properties"]
        for rule in gateway_stack.resources("AWS::EC2::SecurityGroupIngress").values()
        if rule["Properties"]["GroupId"] == {"Fn::GetAtt": [task_group_id, "GroupId"]}
    ]
    [rule] = ingress
    assert (rule["FromPort"], rule["ToPort"]) == (GATEWAY_PORT, GATEWAY_PORT)
    assert "SourceSecurityGroupId" in rule
    groups = gateway_stack.resources("AWS::EC2::SecurityGroup")
    balancer_group = next(g for i, g in groups.items() if i != task_group_id)["Properties"]
    assert [(r["CidrIp"], r["FromPort"]) for r in balancer_group["SecurityGroupIngress"]] == [
        ("0.0.0.0/0", GATEWAY_PORT)
    ]
    task_egress = groups[task_group_id]["Properties"]["SecurityGroupEgress"]
    assert [(r["CidrIp"], r["FromPort"]) for r in task_egress] == [("0.0.0.0/0", 443)]


def test_the_service_scales_on_cpu_and_on_connections_per_healthy_task(
    gateway_stack: Synthesized,
) -> None:
    settings = gateway_stack.config.kafka_gateway
    target = _one(gateway_stack, "AWS::ApplicationAutoScaling::ScalableTarget")[1]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (
        settings.min_tasks,
        settings.max_tasks,
    )
    by_id = gateway_stack.resources("AWS::ApplicationAutoScaling::ScalingPolicy")
    policies = [p["Properties"] for p in by_id.values()]
    [cpu] = [p for p in policies if p["PolicyType"] == "TargetTrackingScaling"]
    tracking = cpu["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == settings.cpu_target_percent
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
    }
    steps = [p for p in policies if p["PolicyType"] == "StepScaling"]
    assert len(steps) == 2  # out and in
    steps_ids = {i for i, p in by_id.items() if p["Properties"]["PolicyType"] == "StepScaling"}
    alarms = [
        a["Properties"]
        for a in gateway_stack.resources("AWS::CloudWatch::Alarm").values()
        if _referenced_ids(a["Properties"].get("AlarmActions", [])) & steps_ids
    ]
    assert len(alarms) == 2
    for alarm in alarms:
        names = {
            m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m
        }
        assert names == {"ActiveFlowCount", "HealthyHostCount"}
        assert [m["Expression"] for m in alarm["Metrics"] if "Expression" in m] == [
            "flows / MAX([hosts, 1])"
        ]
    thresholds = sorted(a["Threshold"] for a in alarms)
    assert thresholds == [settings.connections_per_task // 2, settings.connections_per_task]


def test_the_task_role_holds_the_apis_grants_on_this_environments_data_only(
    gateway_stack: Synthesized,
) -> None:
    template = gateway_stack.template_json
    task = _one(gateway_stack, "AWS::ECS::TaskDefinition")[1]
    task_role = task["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = _role_statements(gateway_stack, task_role)
    storage_ids = {
        *gateway_stack.resources("AWS::S3::Bucket"),
        *gateway_stack.resources("AWS::DynamoDB::Table"),
    }
    assert all(s["Effect"] == "Allow" for s in statements)
    assert all(_referenced_ids(s["Resource"]) <= storage_ids for s in statements)
    assert all(_referenced_ids(s["Resource"]) for s in statements)  # never a bare "*"

    [api_function] = [
        f
        for f in gateway_stack.resources("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == "functions.api.handler.handler"
    ]
    api_role = api_function["Properties"]["Role"]["Fn::GetAtt"][0]
    api_data = {
        a
        for a in policy_actions(_role_statements(gateway_stack, api_role))
        if a.startswith(("s3:", "dynamodb:"))
    }
    assert policy_actions(statements) == api_data
    assert not [a for a in policy_actions(statements) if a.startswith(("sts:", "iam:"))]
    trust = template["Resources"][task_role]["Properties"]["AssumeRolePolicyDocument"]
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "ecs-tasks.amazonaws.com"}]


def test_logs_go_to_a_log_group_kept_as_long_as_the_environments(
    gateway_stack: Synthesized,
) -> None:
    options = _container(gateway_stack)["LogConfiguration"]
    assert options["LogDriver"] == "awslogs"
    group_id = options["Options"]["awslogs-group"]["Ref"]
    group = gateway_stack.template_json["Resources"][group_id]["Properties"]
    assert group["RetentionInDays"] == gateway_stack.config.log_retention_days
    assert group["LogGroupName"] == f"/lakelog/{gateway_stack.config.prefix}-kafka"


def test_alarms_fire_on_an_unhealthy_task_and_on_high_cpu_where_alarms_are_on(
    gateway_stack: Synthesized,
) -> None:
    prefix = gateway_stack.config.prefix
    alarms = {
        a["Properties"].get("AlarmName"): a["Properties"]
        for a in gateway_stack.resources("AWS::CloudWatch::Alarm").values()
    }
    names = {f"{prefix}-kafka-gateway-unhealthy-tasks", f"{prefix}-kafka-gateway-cpu"}
    if not gateway_stack.config.alarms_enabled:
        assert not names & set(alarms)
        return
    unhealthy = alarms[f"{prefix}-kafka-gateway-unhealthy-tasks"]
    assert (unhealthy["MetricName"], unhealthy["Threshold"]) == ("UnHealthyHostCount", 0)
    cpu = alarms[f"{prefix}-kafka-gateway-cpu"]
    assert (cpu["MetricName"], cpu["Namespace"]) == ("CPUUtilization", "AWS/ECS")
    assert cpu["Threshold"] == CPU_ALARM_PERCENT
    assert unhealthy["AlarmActions"] if gateway_stack.config.alarm_notifications else True


def test_the_bootstrap_address_and_the_balancers_name_are_stable_outputs(
    gateway_stack: Synthesized,
) -> None:
    outputs = gateway_stack.template_json["Outputs"]
    assert outputs[BOOTSTRAP_OUTPUT]["Value"] == f"{GATEWAY_DOMAIN}:{GATEWAY_PORT}"
    balancer_id = _one(gateway_stack, "AWS::ElasticLoadBalancingV2::LoadBalancer")[0]
    assert outputs[LOAD_BALANCER_OUTPUT]["Value"] == {"Fn::GetAtt": [balancer_id, "DNSName"]}
    assert "Export" not in outputs[BOOTSTRAP_OUTPUT]


# Configuration -----------------------------------------------------------------------------


def test_an_enabled_gateway_needs_a_certificate_of_the_environments_region() -> None:
    with pytest.raises(ValidationError, match="needs certificate_arn"):
        KafkaGatewayConfig(enabled=True)
    with pytest.raises(ValidationError, match="must be in eu-west-1"):
        with_gateway(
            ENVIRONMENTS["dev"],
            certificate_arn="arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e",
        )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"cpu": 256, "memory_mib": 4096}, "Fargate runs no task"),
        ({"cpu": 300, "memory_mib": 512}, "Fargate runs no task"),
        ({"min_tasks": 3, "max_tasks": 2}, "min_tasks must not exceed"),
        ({"client_cidrs": ("10.0.0.0/33",)}, "does not appear to be"),
        ({"client_cidrs": ()}, "at least one network"),
        ({"domain_name": "Kafka.Example.com"}, "lowercase DNS name"),
        ({"certificate_arn": "arn:aws:iam::123456789012:role/x"}, "not an ACM certificate"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_sizes_and_networks_aws_would_refuse_are_refused(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaGatewayConfig(**settings)


def test_the_smallest_setting_is_the_default() -> None:
    settings = KafkaGatewayConfig()
    assert (settings.min_tasks, settings.cpu, settings.memory_mib) == (1, 256, 512)
