"""KafkaGateway: the optional Kafka protocol gateway of an environment (ADR 0016 §8).

Built only when the environment's ``kafka_gateway.enabled`` is set (off by default: it is
the one part of lakelog that costs money while idle). ``lakelog kafka`` runs in ECS
Fargate tasks (arm64, the image of ``docker/kafka-gateway/Dockerfile``) in a VPC of its
own, behind an internet-facing Network Load Balancer whose TLS listener (the ACM
certificate of the config) forwards to the tasks' port `GATEWAY_PORT`:

- the VPC has public subnets only (no NAT gateway to pay for); tasks get a public address
  to pull their image and write logs, S3 and DynamoDB are reached through free gateway
  endpoints, and the tasks' security group admits only the load balancer's;
- the target group checks each task with a TCP connection; deregistration waits
  `DEREGISTRATION_DELAY` for clients to move, and a task given SIGTERM closes its
  connections itself;
- the service scales between ``min_tasks`` and ``max_tasks`` by target tracking on CPU and
  by steps on open connections per healthy task (the load balancer's ActiveFlowCount over
  its HealthyHostCount, both free metrics);
- the task role holds exactly the grants of the HTTP API (`Storage.grant_engine`): the
  gateway runs the same engine operations, on this environment's bucket and tables only;
- logs go to a log group with the environment's retention; alarms fire on an unhealthy
  task and on high CPU; the bootstrap address is the stack output `BOOTSTRAP_OUTPUT`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aws_cdk import CfnResource, Duration, Stage
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from components.function import retention_days
from components.nag import acknowledge, ignore_cfn_lint_rule
from components.packaging import stage_gateway_image
from components.platform import Platform
from components.storage import removal_policy
from config.settings import ALARM_PERIOD_MINUTES
from lakelog.environment import ENV_ADMIN_PRINCIPALS, ENV_DEFAULT_ACL_EFFECT, ENV_ENVIRONMENT

__all__ = [
    "BOOTSTRAP_OUTPUT",
    "CPU_ALARM_PERCENT",
    "DEREGISTRATION_DELAY",
    "GATEWAY_PORT",
    "LOAD_BALANCER_OUTPUT",
    "TLS_POLICY",
    "KafkaGateway",
]

GATEWAY_PORT: Final = 9092
"""Where the tasks listen and where the listener takes clients (Kafka's port)."""
BOOTSTRAP_OUTPUT: Final = "KafkaBootstrapServers"
"""Logical id of the output holding ``host:port`` for a client's ``bootstrap.servers``."""
LOAD_BALANCER_OUTPUT: Final = "KafkaLoadBalancerDnsName"
"""Logical id of the output holding the load balancer's DNS name."""
TLS_POLICY: Final = elbv2.SslPolicy.RECOMMENDED_TLS
"""TLS 1.3 and 1.2 (ELBSecurityPolicy-TLS13-1-2-2021-06, the recommended policy)."""
DEREGISTRATION_DELAY: Final = Duration.seconds(30)
"""How long a draining task keeps its connections: ECS's default stop timeout, after which
the task is stopped anyway (clients reconnect through the listener to another task)."""
CPU_ALARM_PERCENT: Final = 85
"""Average CPU above which the CPU alarm fires (scaling aims lower, at
``cpu_target_percent``)."""
SCALE_COOLDOWN: Final = Duration.minutes(2)
"""Wait between two scaling actions of either policy."""
MAX_AZS: Final = 2
"""Availability zones of the VPC and the load balancer (one task each at two tasks)."""


class KafkaGateway(Construct):
    """The Kafka protocol gateway of one environment.

    Parameters
    ----------
    scope, construct_id
        Where the construct lives.
    platform
        The environment's shared constructs (``config.kafka_gateway`` must be enabled).

    Attributes
    ----------
    vpc, cluster, service, load_balancer, listener, target_group, log_group
        What it builds.
    task_role
        The role the gateway's engine runs as.
    bootstrap
        ``host:port`` clients bootstrap from.
    """

    def __init__(self, scope: Construct, construct_id: str, *, platform: Platform) -> None:
        super().__init__(scope, construct_id)
        config = platform.config
        settings = config.kafka_gateway
        if not settings.enabled or settings.certificate_arn is None:
            raise ValueError(f"{config.name} has no enabled kafka_gateway with a certificate")
        name = f"{config.prefix}-kafka"

        self.vpc = self._vpc(config.name, name, platform)
        self.cluster = ecs.Cluster(self, "Cluster", cluster_name=name, vpc=self.vpc)
        acknowledge(
            self.cluster,
            "AwsSolutions-ECS4",
            "Scaling and alarms use the service's standard AWS/ECS and AWS/NetworkELB "
            "metrics, which are free; Container Insights would bill per task metric.",
        )
        self.load_balancer = elbv2.NetworkLoadBalancer(
            self,
            "LoadBalancer",
            load_balancer_name=name,
            vpc=self.vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            cross_zone_enabled=True,
            security_groups=[self._load_balancer_group(settings.client_cidrs)],
        )
        acknowledge(
            self.load_balancer,
            "AwsSolutions-ELB2",
            "NLB access logs record TLS handshakes only, into a bucket billed per request; "
            "the gateway logs every connection it closes on an error itself.",
        )
        host = settings.domain_name or self.load_balancer.load_balancer_dns_name
        self.bootstrap = f"{host}:{GATEWAY_PORT}"

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=f"/lakelog/{name}",
            retention=retention_days(config.log_retention_days),
            removal_policy=removal_policy(config),
        )
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"Role of the engine in the {name} tasks",
        )
        platform.storage.grant_engine(self.task_role)
        task = self._task_definition(platform, host)
        self.service = ecs.FargateService(
            self,
            "Service",
            service_name=name,
            cluster=self.cluster,
            task_definition=task,
            desired_count=settings.min_tasks,
            min_healthy_percent=100,
            max_healthy_percent=200,
            assign_public_ip=True,  # image pulls and logs without a NAT gateway
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[self._task_group()],
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            health_check_grace_period=Duration.seconds(60),
        )
        self.listener, self.target_group = self._listener(settings.certificate_arn)
        service = self.service.node.default_child
        if isinstance(service, CfnResource):
            ignore_cfn_lint_rule(
                service,
                "W3005",
                "CDK makes the service depend on its listener's target group, which its "
                "LoadBalancers property already references.",
            )
        self._scaling(platform)
        self._monitor(platform)
        platform.outputs.add(
            BOOTSTRAP_OUTPUT,
            self.bootstrap,
            "bootstrap.servers of Kafka clients (TLS" + (", SASL)" if settings.sasl else ")"),
        )
        platform.outputs.add(
            LOAD_BALANCER_OUTPUT,
            self.load_balancer.load_balancer_dns_name,
            "DNS name of the Kafka gateway's load balancer (the target of domain_name's record)",
        )

    # -- network ---------------------------------------------------------------------------

    def _vpc(self, environment: str, name: str, platform: Platform) -> ec2.Vpc:
        vpc = ec2.Vpc(
            self,
            "Vpc",
            vpc_name=name,
            max_azs=MAX_AZS,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                )
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
                ),
            },
            restrict_default_security_group=False,
        )
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=retention_days(platform.config.log_retention_days),
            removal_policy=removal_policy(platform.config),
        )
        vpc.add_flow_log(
            "RejectedFlows",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        return vpc

    def _load_balancer_group(self, client_cidrs: tuple[str, ...]) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=self.vpc,
            description="Kafka clients to the TLS listener of the gateway",
            allow_all_outbound=False,
        )
        for cidr in client_cidrs:
            peer = ec2.Peer.ipv6(cidr) if ":" in cidr else ec2.Peer.ipv4(cidr)
            group.add_ingress_rule(peer, ec2.Port.tcp(GATEWAY_PORT), "Kafka over TLS")
        if any(cidr.endswith("/0") for cidr in client_cidrs):
            acknowledge(
                group,
                "AwsSolutions-EC23",
                "Kafka clients connect from anywhere the environment's client_cidrs allow; "
                "the listener speaks TLS only and connections authenticate with SASL.",
            )
        self._load_balancer_security_group = group
        return group

    def _task_group(self) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=self.vpc,
            description="The load balancer to the gateway tasks; the tasks to AWS APIs over HTTPS",
            allow_all_outbound=False,
        )
        group.add_ingress_rule(
            self._load_balancer_security_group,
            ec2.Port.tcp(GATEWAY_PORT),
            "Client connections and health checks from the load balancer",
        )
        self._load_balancer_security_group.add_egress_rule(
            group, ec2.Port.tcp(GATEWAY_PORT), "To the gateway's tasks"
        )
        group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "S3, DynamoDB, ECR and CloudWatch Logs"
        )
        return group

    # -- tasks -----------------------------------------------------------------------------

    def _task_definition(self, platform: Platform, host: str) -> ecs.FargateTaskDefinition:
        config = platform.config
        settings = config.kafka_gateway
        stage = Stage.of(self)
        if stage is None:
            raise ValueError(f"{self.node.path} must be inside an App to stage its image")
        task = ecs.FargateTaskDefinition(
            self,
            "Task",
            family=f"{config.prefix}-kafka",
            cpu=settings.cpu,
            memory_limit_mib=settings.memory_mib,
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        context = stage_gateway_image(Path(stage.outdir))
        task.add_container(
            "Gateway",
            image=ecs.ContainerImage.from_asset(
                str(context), platform=ecr_assets.Platform.LINUX_ARM64
            ),
            command=["--host", "0.0.0.0", "--port", str(GATEWAY_PORT)],
            environment={
                **platform.storage.environment_variables(),
                ENV_ENVIRONMENT: config.name,
                ENV_DEFAULT_ACL_EFFECT: config.default_acl_effect,
                **(
                    {ENV_ADMIN_PRINCIPALS: ",".join(config.admin_principals)}
                    if config.admin_principals
                    else {}
                ),
                "LAKELOG_KAFKA_ADVERTISED_HOST": host,
                "LAKELOG_KAFKA_ADVERTISED_PORT": str(GATEWAY_PORT),
                "LAKELOG_KAFKA_SASL": "true" if settings.sasl else "false",
                "LAKELOG_LOG_LEVEL": config.log_level,
                "AWS_REGION": config.region,
            },
            port_mappings=[ecs.PortMapping(container_port=GATEWAY_PORT)],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="gateway", log_group=self.log_group),
            readonly_root_filesystem=True,
            stop_timeout=DEREGISTRATION_DELAY,
        )
        acknowledge(
            task,
            "AwsSolutions-ECS2",
            "The variables are resource names, the ACL default and the advertised address; "
            "the gateway holds no secret (its role's credentials come from the task).",
        )
        execution_role = task.obtain_execution_role()
        acknowledge(
            execution_role,
            "AwsSolutions-IAM5",
            "ecr:GetAuthorizationToken has no resource to name; ECS's image pull needs it.",
            applies_to="Resource::*",
        )
        return task

    def _listener(
        self, certificate_arn: str
    ) -> tuple[elbv2.NetworkListener, elbv2.NetworkTargetGroup]:
        listener = self.load_balancer.add_listener(
            "Tls",
            port=GATEWAY_PORT,
            protocol=elbv2.Protocol.TLS,
            certificates=[elbv2.ListenerCertificate.from_arn(certificate_arn)],
            ssl_policy=TLS_POLICY,
        )
        target_group = listener.add_targets(
            "Tasks",
            port=GATEWAY_PORT,
            protocol=elbv2.Protocol.TCP,
            targets=[
                self.service.load_balancer_target(
                    container_name="Gateway", container_port=GATEWAY_PORT
                )
            ],
            deregistration_delay=DEREGISTRATION_DELAY,
            health_check=elbv2.HealthCheck(
                protocol=elbv2.Protocol.TCP,
                interval=Duration.seconds(10),
                healthy_threshold_count=2,
                unhealthy_threshold_count=2,
            ),
        )
        return listener, target_group

    # -- scaling and monitoring ------------------------------------------------------------

    def _connections_per_task(self) -> cloudwatch.MathExpression:
        period = Duration.minutes(1)
        return cloudwatch.MathExpression(
            expression="flows / MAX([hosts, 1])",
            using_metrics={
                "flows": self.load_balancer.metrics.active_flow_count(
                    period=period, statistic="Average"
                ),
                "hosts": self.target_group.metrics.healthy_host_count(
                    period=period, statistic="Minimum"
                ),
            },
            label="Open connections per healthy task",
            period=period,
        )

    def _scaling(self, platform: Platform) -> None:
        settings = platform.config.kafka_gateway
        scaling = self.service.auto_scale_task_count(
            min_capacity=settings.min_tasks, max_capacity=settings.max_tasks
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=settings.cpu_target_percent,
            scale_in_cooldown=SCALE_COOLDOWN,
            scale_out_cooldown=SCALE_COOLDOWN,
        )
        per_task = settings.connections_per_task
        scaling.scale_on_metric(
            "Connections",
            metric=self._connections_per_task(),
            adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            scaling_steps=[
                autoscaling.ScalingInterval(upper=per_task // 2, change=-1),
                autoscaling.ScalingInterval(lower=per_task, upper=2 * per_task, change=+1),
                autoscaling.ScalingInterval(lower=2 * per_task, change=+2),
            ],
            cooldown=SCALE_COOLDOWN,
            evaluation_periods=2,
            datapoints_to_alarm=2,
        )

    def _monitor(self, platform: Platform) -> None:
        monitoring = platform.monitoring
        period = Duration.minutes(ALARM_PERIOD_MINUTES)
        cpu = self.service.metric_cpu_utilization(period=period, statistic="Average")
        unhealthy = self.target_group.metrics.un_healthy_host_count(
            period=period, statistic="Maximum"
        )
        monitoring.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Kafka gateway: CPU and memory (%)",
                left=[cpu, self.service.metric_memory_utilization(period=period)],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Kafka gateway: connections per task, healthy and unhealthy tasks",
                left=[self._connections_per_task()],
                right=[
                    self.target_group.metrics.healthy_host_count(period=period),
                    unhealthy,
                ],
                width=12,
            ),
        )
        monitoring.alarm_above(
            "kafka-gateway",
            "unhealthy-tasks",
            unhealthy,
            threshold=0,
            description=(
                "A Kafka gateway task fails its load balancer's TCP health check "
                "(runbook: docs/operations.md, 'Kafka gateway')"
            ),
        )
        monitoring.alarm_above(
            "kafka-gateway",
            "cpu",
            cpu,
            threshold=CPU_ALARM_PERCENT,
            description=(
                f"The Kafka gateway's CPU averages above {CPU_ALARM_PERCENT} % although it "
                "scales on CPU: raise max_tasks or the task size "
                "(runbook: docs/operations.md, 'Kafka gateway')"
            ),
        )
