"""The settings one deployment environment (dev, staging, prod, ...) is built with."""

from __future__ import annotations

import ipaddress
import re
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.settings import (
    DEFAULT_FUNCTION_TIMEOUT_SECONDS,
    MAX_FUNCTION_NAME_LENGTH,
    resource_prefix,
    stack_name,
)

__all__ = ["FARGATE_SIZES", "LOG_RETENTION_DAYS", "EnvironmentConfig", "KafkaGatewayConfig"]

LOG_RETENTION_DAYS: Final = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557}
    | {2922, 3288, 3653}
)
"""Retention periods CloudWatch Logs accepts, in days."""

FARGATE_SIZES: Final = {
    256: frozenset({512, 1024, 2048}),
    512: frozenset(range(1024, 4097, 1024)),
    1024: frozenset(range(2048, 8193, 1024)),
    2048: frozenset(range(4096, 16385, 1024)),
    4096: frozenset(range(8192, 30721, 1024)),
}
"""Memory (MiB) Fargate accepts with each CPU size (CPU units, 1024 per vCPU)."""

_CERTIFICATE = re.compile(
    r"^arn:aws[a-z-]*:acm:[a-z]{2}(-[a-z]+)+-\d:\d{12}:certificate/[0-9a-f-]+$"
)
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_SCHEDULE = re.compile(r"^(rate\(([1-9]\d*) (minute|minutes|hour|hours|day|days)\)|cron\(.+\))$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ACCOUNT = re.compile(r"^\d{12}$")
_NAME = re.compile(r"^[a-z][a-z0-9]{0,15}$")
_FUNCTION_PREFIX = re.compile(
    r"^arn:aws[a-z-]*:lambda:[a-z]{2}(-[a-z]+)+-\d:\d{12}:function:[A-Za-z0-9_-]+$"
)


class KafkaGatewayConfig(BaseModel):
    """The optional Kafka protocol gateway of an environment (ADR 0016 §8).

    Off by default: it is the one part of lakelog that costs money while idle (a Fargate
    task and a Network Load Balancer, see docs/operations.md "Kafka gateway").

    Parameters
    ----------
    enabled
        Build the gateway: ECS Fargate tasks (arm64) behind a Network Load Balancer with
        a TLS listener.
    min_tasks, max_tasks
        Bounds of the service's task count; scaling moves between them.
    cpu, memory_mib
        Size of one task (CPU units, 1024 per vCPU; a combination Fargate accepts).
    certificate_arn
        ACM certificate of the TLS listener, in the environment's region (required when
        enabled); it must cover ``domain_name``.
    domain_name
        The name clients connect to (a DNS record pointing at the load balancer, which the
        certificate covers); advertised in Metadata and output as the bootstrap address.
        None: the load balancer's own DNS name (then the certificate must cover it).
    client_cidrs
        Networks allowed to reach the listener.
    sasl
        Connections must authenticate (SASL, ADR 0016 §7) before any other request.
    cpu_target_percent
        Average CPU utilization the service's target tracking keeps.
    connections_per_task
        Open client connections per healthy task above which a task is added (twice as
        many: two); below half of it one is removed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    min_tasks: int = Field(default=1, ge=1, le=100)
    max_tasks: int = Field(default=4, ge=1, le=100)
    cpu: int = 256
    memory_mib: int = 512
    certificate_arn: str | None = None
    domain_name: str | None = None
    client_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    sasl: bool = True
    cpu_target_percent: int = Field(default=60, ge=10, le=90)
    connections_per_task: int = Field(default=1000, ge=10)

    @field_validator("certificate_arn")
    @classmethod
    def _check_certificate(cls, value: str | None) -> str | None:
        if value is not None and not _CERTIFICATE.fullmatch(value):
            raise ValueError(f"{value!r} is not an ACM certificate ARN")
        return value

    @field_validator("domain_name")
    @classmethod
    def _check_domain(cls, value: str | None) -> str | None:
        if value is not None and not _DOMAIN.fullmatch(value):
            raise ValueError(f"{value!r} is not a lowercase DNS name such as kafka.example.com")
        return value

    @field_validator("client_cidrs")
    @classmethod
    def _check_cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr)  # its ValueError names what is wrong
        if not value:
            raise ValueError("name at least one network, or disable the gateway")
        return value

    @model_validator(mode="after")
    def _check_sizes(self) -> KafkaGatewayConfig:
        if self.min_tasks > self.max_tasks:
            raise ValueError("min_tasks must not exceed max_tasks")
        if self.memory_mib not in FARGATE_SIZES.get(self.cpu, frozenset()):
            raise ValueError(
                f"Fargate runs no task of cpu={self.cpu} with memory_mib={self.memory_mib}"
            )
        if self.enabled and self.certificate_arn is None:
            raise ValueError("an enabled gateway needs certificate_arn (its TLS listener's)")
        return self


class EnvironmentConfig(BaseModel):
    """Everything that differs between two deployments of lakelog.

    Parameters
    ----------
    name
        Environment name, as given to ``cdk deploy -c env=<name>``.
    region
        AWS region the stack deploys to; it picks the managed layer versions.
    account
        AWS account id, or None to deploy to the account of the caller's credentials.
    function_memory_mb
        Memory of every function unless a component asks for more (CPU scales with it).
    function_timeout_seconds
        Timeout of every function unless a component asks otherwise.
    log_level
        Level of the functions' Powertools logger (and Lambda's application log filter).
    log_retention_days
        How long function logs are kept.
    removal_policy
        ``destroy``: deleting the stack deletes the bucket (emptied first) and the tables.
        ``retain``: they outlive the stack and must be removed by hand.
    point_in_time_recovery
        Continuous backups of both tables (35 days).
    deletion_protection
        DynamoDB refuses to delete a table while this is on.
    alarms_enabled
        Create CloudWatch alarms (each costs money beyond the free tier).
    alarm_notifications
        Send alarm state changes to an encrypted SNS topic.
    access_logging
        Server access logs of the segments bucket, into a separate log bucket.
    access_log_retention_days
        How long server access logs are kept.
    default_acl_effect
        What the HTTP API does when no ACL rule matches a request: ``allow`` (open) or
        ``deny`` (deny unless a rule allows).
    admin_principals
        Principal patterns (exact, or prefix ending in ``*``) that always hold ``admin`` in
        the HTTP API: the bootstrap administrators who write the first ACL rules under a
        deny default. Set them per account, e.g. the deploying role's
        ``arn:aws:sts::ACCOUNT:assumed-role/ROLE/*``.
    compactor_schedule
        EventBridge schedule expression that starts the compactor (light passes: gc
        without the scan of every topic's segments).
    compactor_full_gc_schedule
        EventBridge schedule expression that starts a compactor pass with the full gc
        (the scan for orphans of crashed appends, merges and deletions; ADR 0013 5.1).
    compactor_backlog_alarm_passes
        The L0 backlog alarm fires when a topic's oldest mergeable chain item has waited
        longer than gc's grace period plus this many passes (N): the merge waits up to one
        grace period between two merges of a topic by design (ADR 0013), so only a wait
        beyond it means the compactor falls behind.
    tracing
        Active X-Ray tracing of the functions.
    trigger_function_prefixes
        Lambda function ARN prefixes a subscription may deliver to (ADR 0015 §4): the
        dispatcher may invoke only functions whose ARN starts with one of them, and the
        API refuses any other ``function_arn``. Each is a full ARN up to a name prefix,
        e.g. ``arn:aws:lambda:eu-west-1:123456789012:function:orders-``. Empty (the
        default): functions named ``<prefix>-*`` in the stack's account and region.
    kafka_gateway
        The optional Kafka protocol gateway (`KafkaGatewayConfig`; off by default).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    region: str
    account: str | None = None
    function_memory_mb: int = Field(ge=128, le=10240)
    function_timeout_seconds: int = Field(default=DEFAULT_FUNCTION_TIMEOUT_SECONDS, ge=1, le=900)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]
    log_retention_days: int
    removal_policy: Literal["destroy", "retain"]
    point_in_time_recovery: bool
    deletion_protection: bool
    alarms_enabled: bool
    alarm_notifications: bool
    access_logging: bool
    access_log_retention_days: int = Field(default=90, ge=1)
    default_acl_effect: Literal["allow", "deny"]
    admin_principals: tuple[str, ...] = ()
    api_throttle_rate: float = Field(default=100.0, gt=0)
    """Steady requests per second the HTTP API stage accepts before answering 429."""
    api_throttle_burst: int = Field(default=200, gt=0)
    """Requests the stage accepts in a burst above the steady rate."""
    compactor_schedule: str
    compactor_full_gc_schedule: str = "rate(1 day)"
    compactor_backlog_alarm_passes: int = Field(default=3, ge=1)
    tracing: bool
    trigger_function_prefixes: tuple[str, ...] = ()
    kafka_gateway: KafkaGatewayConfig = KafkaGatewayConfig()

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be 1-16 lowercase letters or digits, starting with a letter")
        return value

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        if not _REGION.fullmatch(value):
            raise ValueError(f"{value!r} is not an AWS region name such as 'eu-west-1'")
        return value

    @field_validator("account")
    @classmethod
    def _check_account(cls, value: str | None) -> str | None:
        if value is not None and not _ACCOUNT.fullmatch(value):
            raise ValueError("must be a 12-digit AWS account id, or None")
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _check_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            allowed = ", ".join(str(days) for days in sorted(LOG_RETENTION_DAYS))
            raise ValueError(f"CloudWatch Logs accepts only: {allowed}")
        return value

    @field_validator("trigger_function_prefixes")
    @classmethod
    def _check_function_prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            if not _FUNCTION_PREFIX.fullmatch(prefix):
                raise ValueError(
                    f"{prefix!r} is not a Lambda function ARN prefix such as "
                    "'arn:aws:lambda:eu-west-1:123456789012:function:orders-'"
                )
        return value

    @field_validator("compactor_schedule", "compactor_full_gc_schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        if not _SCHEDULE.fullmatch(value):
            raise ValueError("must be an EventBridge 'rate(N unit)' or 'cron(...)' expression")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> EnvironmentConfig:
        if self.alarm_notifications and not self.alarms_enabled:
            raise ValueError("alarm_notifications needs alarms_enabled")
        if self.deletion_protection and self.removal_policy == "destroy":
            raise ValueError("deletion_protection would make removal_policy 'destroy' fail")
        certificate = self.kafka_gateway.certificate_arn
        if certificate is not None and f":acm:{self.region}:" not in certificate:
            raise ValueError(f"kafka_gateway.certificate_arn must be in {self.region}")
        if self.alarms_enabled and self.compactor_pass_minutes is None:
            raise ValueError(
                "alarms_enabled needs a 'rate(N unit)' compactor_schedule: the L0 backlog "
                "alarm's threshold is counted in passes"
            )
        return self

    @property
    def compactor_pass_minutes(self) -> int | None:
        """Minutes between two compactor passes (None: a ``cron(...)`` schedule)."""
        match = _SCHEDULE.fullmatch(self.compactor_schedule)
        if match is None or match.group(2) is None:
            return None
        minutes = {"minute": 1, "hour": 60, "day": 24 * 60}[match.group(3).rstrip("s")]
        return int(match.group(2)) * minutes

    @property
    def prefix(self) -> str:
        """Prefix of every resource name (``lakelog-<env>``)."""
        return resource_prefix(self.name)

    @property
    def stack_name(self) -> str:
        """CloudFormation stack name (``lakelog-<env>``)."""
        return stack_name(self.name)

    @property
    def destroys_data(self) -> bool:
        """True when deleting the stack deletes the bucket and the tables."""
        return self.removal_policy == "destroy"

    def function_prefixes(self, account: str, partition: str = "aws") -> tuple[str, ...]:
        """The ARN prefixes of the functions subscriptions may deliver to:
        ``trigger_function_prefixes``, or those named ``<prefix>-`` in ``account`` (the
        stack's, possibly a CloudFormation token) and this environment's region."""
        if self.trigger_function_prefixes:
            return self.trigger_function_prefixes
        return (f"arn:{partition}:lambda:{self.region}:{account}:function:{self.prefix}-",)

    def function_name(self, short_name: str) -> str:
        """Full name of the function ``short_name`` (``lakelog-<env>-<short_name>``).

        Raises
        ------
        ValueError
            If the name is longer than Lambda allows.
        """
        full = f"{self.prefix}-{short_name}"
        if len(full) > MAX_FUNCTION_NAME_LENGTH:
            raise ValueError(
                f"function name {full!r} is longer than {MAX_FUNCTION_NAME_LENGTH} characters"
            )
        return full
