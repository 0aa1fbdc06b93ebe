"""LakelogStack: one environment of lakelog (``lakelog-<env>``), and how the app builds it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from aws_cdk import App, Environment, Stack, Tags
from constructs import Construct

from components.api import HttpApi
from components.compactor import Compactor
from components.dispatcher import Dispatcher
from components.kafka_gateway import KafkaGateway
from components.monitoring import Monitoring
from components.nag import add_aws_solutions_checks
from components.outputs import StableOutputs
from components.platform import Component, Platform
from components.storage import Storage
from config.environment import EnvironmentConfig
from config.settings import PROJECT
from lakelog.storage.keys import ResourceNames

__all__ = ["COMPONENTS", "FEATURE_FLAGS", "LakelogStack", "build_app"]

COMPONENTS: Final[Sequence[tuple[str, Component]]] = (
    # One line per component, built in this order on the shared platform.
    ("Api", HttpApi),
    ("Compactor", Compactor),
    ("Dispatcher", Dispatcher),
)
"""The components every environment gets, as (construct id, component)."""

FEATURE_FLAGS: Final[Mapping[str, bool]] = MappingProxyType(
    {
        # Grant S3 log delivery through the log bucket's policy, not the legacy
        # LogDeliveryWrite ACL (which BucketOwnerEnforced buckets refuse).
        "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    }
)
"""CDK feature flags the stack depends on, set on the stack so any app gets them."""


class LakelogStack(Stack):
    """Storage, monitoring, stable outputs and the components of one environment (with
    the Kafka gateway when the environment enables it).

    Parameters
    ----------
    scope
        The app.
    config
        The environment to build; it names the stack ``lakelog-<env>``.
    components
        Components to build on the platform (default: `COMPONENTS`).
    """

    def __init__(
        self,
        scope: Construct,
        *,
        config: EnvironmentConfig,
        components: Sequence[tuple[str, Component]] = COMPONENTS,
    ) -> None:
        super().__init__(
            scope,
            config.stack_name,
            stack_name=config.stack_name,
            description=f"lakelog {config.name}: Kafka-style topics on S3 and DynamoDB",
            env=Environment(account=config.account, region=config.region),
            termination_protection=config.deletion_protection,
        )
        for flag, enabled in FEATURE_FLAGS.items():
            self.node.set_context(flag, enabled)
        Tags.of(self).add("project", PROJECT)
        Tags.of(self).add("environment", config.name)

        self.config = config
        self.storage = Storage(
            self, "Storage", config=config, names=ResourceNames.for_prefix(config.prefix)
        )
        self.monitoring = Monitoring(self, "Monitoring", config=config)
        self.monitoring.watch_table(self.storage.ledger_table, label="Ledger")
        self.monitoring.watch_table(self.storage.catalog_table, label="Catalog")
        self.monitoring.watch_dynamodb_user_errors()
        self.outputs = StableOutputs(self)
        self._add_outputs()
        self.platform = Platform(
            config=config, storage=self.storage, monitoring=self.monitoring, outputs=self.outputs
        )
        built = {
            construct_id: component(self, construct_id, platform=self.platform)
            for construct_id, component in components
        }
        if config.kafka_gateway.enabled:
            # Optional: the one component that costs money while idle (ADR 0016 §8)
            built["KafkaGateway"] = KafkaGateway(self, "KafkaGateway", platform=self.platform)
        self.components: Mapping[str, Construct] = MappingProxyType(built)

    def _add_outputs(self) -> None:
        storage = self.storage
        self.outputs.add("BucketName", storage.bucket.bucket_name, "Segments bucket")
        self.outputs.add("LedgerTableName", storage.ledger_table.table_name, "Ledger table")
        self.outputs.add("CatalogTableName", storage.catalog_table.table_name, "Catalog table")
        self.outputs.add(
            "DashboardName", self.monitoring.dashboard.dashboard_name, "CloudWatch dashboard"
        )
        if self.monitoring.alarm_topic is not None:
            self.outputs.add(
                "AlarmTopicArn",
                self.monitoring.alarm_topic.topic_arn,
                "SNS topic the alarms notify; subscribe the on-call address to it",
            )


def build_app(app: App, config: EnvironmentConfig, *, checks: bool = True) -> LakelogStack:
    """Add the stack of ``config`` to ``app``, checked by cdk-nag when ``checks``."""
    stack = LakelogStack(app, config=config)
    if checks:
        add_aws_solutions_checks(app)
    return stack
