"""Storage: the segments bucket and the two DynamoDB tables, plus least-privilege grants.

The tables are built from `lakelog.storage.resources.TABLES`, the description
`create_resources` also uses (tests and the local server), so a deployment and a local
run cannot disagree on key schema, stream or TTL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from aws_cdk import CfnElement, CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from components.nag import acknowledge
from config.environment import EnvironmentConfig
from config.settings import (
    SEGMENTS_PREFIX,
)
from lakelog.environment import (
    ENV_BUCKET,
    ENV_CATALOG_TABLE,
    ENV_LEDGER_TABLE,
)
from lakelog.storage.keys import ResourceNames
from lakelog.storage.resources import TABLES, TableSpec

__all__ = ["PARTITION_KEY", "SORT_KEY", "Storage", "removal_policy"]

PARTITION_KEY: Final = "pk"
"""Partition key attribute of both tables (string), as `create_resources` makes it."""

SORT_KEY: Final = "sk"
"""Sort key attribute of both tables; its type comes from `TableSpec.sort_key_type`."""

INCOMPLETE_UPLOAD_DAYS: Final = 1
"""Parts of a multipart upload nobody completed are deleted after this many days."""

_KEY_TYPES: Final = MappingProxyType(
    {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER}
)

# Actions per grant. TransactWriteItems is authorised per item action (Put, Update,
# Delete, ConditionCheck), so the append grant lists those, never a wildcard.
_LEDGER_READ: Final = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")
_LEDGER_APPEND: Final = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem")
_LEDGER_DELETE: Final = ("dynamodb:DeleteItem", "dynamodb:BatchWriteItem")
_CATALOG_READ: Final = ("dynamodb:GetItem", "dynamodb:Query")
_CATALOG_WRITE: Final = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
)
_STREAM_READ: Final = (
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
)


def removal_policy(config: EnvironmentConfig) -> RemovalPolicy:
    """What deleting the stack does to data-holding resources of ``config``'s environment."""
    return RemovalPolicy.DESTROY if config.destroys_data else RemovalPolicy.RETAIN


class Storage(Construct):
    """The segments bucket, its access-log bucket (when enabled) and the two tables.

    Parameters
    ----------
    scope, construct_id
        Where the construct lives.
    config
        The environment being built (removal policy, PITR, deletion protection, logging).
    names
        Names of the bucket and tables (`ResourceNames.for_prefix`).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        names: ResourceNames,
    ) -> None:
        super().__init__(scope, construct_id)
        self.names = names
        self._config = config
        self.access_log_bucket = self._access_log_bucket() if config.access_logging else None
        self.bucket = self._segments_bucket()
        self.tables: Mapping[str, dynamodb.Table] = MappingProxyType(
            {spec.role: self._table(spec) for spec in TABLES}
        )

    @property
    def ledger_table(self) -> dynamodb.Table:
        """The ledger: partition heads and one entry per batch."""
        return self.tables["ledger"]

    @property
    def catalog_table(self) -> dynamodb.Table:
        """The catalog: topics, deleted topics and counters."""
        return self.tables["catalog"]

    def environment_variables(self) -> dict[str, str]:
        """The variables that tell a function where its data lives."""
        return {
            ENV_BUCKET: self.bucket.bucket_name,
            ENV_LEDGER_TABLE: self.ledger_table.table_name,
            ENV_CATALOG_TABLE: self.catalog_table.table_name,
        }

    # -- segments ------------------------------------------------------------------------

    def grant_read_segments(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` read segment objects (ranged GETs)."""
        self._grant_segments(grantee, ("s3:GetObject",))

    def grant_write_segments(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` create segment objects."""
        self._grant_segments(grantee, ("s3:PutObject",))

    def grant_delete_segments(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` delete segment objects (gc)."""
        self._grant_segments(grantee, ("s3:DeleteObject",))

    def grant_list_segments(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` list keys under the segments prefix only (gc)."""
        self._add(
            grantee,
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{SEGMENTS_PREFIX}*"]}},
            ),
        )

    # -- ledger --------------------------------------------------------------------------

    def grant_ledger_read(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` read heads and entries (fetch, describe)."""
        self._grant_table(grantee, self.ledger_table, _LEDGER_READ)

    def grant_ledger_append(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` run the append transaction (put entries, move heads)."""
        self._grant_table(grantee, self.ledger_table, _LEDGER_APPEND)

    def grant_ledger_delete(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` delete entries and heads (retention, compaction, topic deletion)."""
        self._grant_table(grantee, self.ledger_table, _LEDGER_DELETE)

    def grant_ledger_stream_read(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` consume the ledger's stream (the trigger dispatcher)."""
        stream_arns = f"{self.ledger_table.table_arn}/stream/*"
        self._add(grantee, iam.PolicyStatement(actions=list(_STREAM_READ), resources=[stream_arns]))
        self._acknowledge_wildcard(
            grantee,
            f"Resource::<{self._logical_id(self.ledger_table)}.Arn>/stream/*",
            "The ledger's stream ARN ends in a label that changes whenever the stream is "
            "re-created; AWS documents table/<name>/stream/* for stream consumers, and it "
            "names only this table's streams.",
        )

    # -- catalog -------------------------------------------------------------------------

    def grant_catalog_read(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` read topics and counters."""
        self._grant_table(grantee, self.catalog_table, _CATALOG_READ)

    def grant_catalog_write(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` create, alter and delete topics and hand out producer ids."""
        self._grant_table(grantee, self.catalog_table, _CATALOG_WRITE)

    # -- the engine ----------------------------------------------------------------------

    def grant_engine(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` run every operation a client can ask of the engine (the HTTP
        API, the Kafka gateway): read and write segments, read, append to and delete from
        the ledger (a create that loses its race deletes its chain), read and write the
        catalog. Nothing that lists or deletes segments: that is the compactor's."""
        self.grant_read_segments(grantee)
        self.grant_write_segments(grantee)
        self.grant_ledger_read(grantee)
        self.grant_ledger_append(grantee)
        self.grant_ledger_delete(grantee)
        self.grant_catalog_read(grantee)
        self.grant_catalog_write(grantee)

    # -- construction --------------------------------------------------------------------

    def _segments_bucket(self) -> s3.Bucket:
        config = self._config
        bucket = s3.Bucket(
            self,
            "SegmentsBucket",
            bucket_name=self.names.bucket,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=False,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-multipart-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(INCOMPLETE_UPLOAD_DAYS),
                )
            ],
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix=f"{self.names.bucket}/" if self.access_log_bucket else None,
            removal_policy=removal_policy(config),
            auto_delete_objects=config.destroys_data,
        )
        if config.destroys_data:
            _drop_redundant_provider_dependency(Stack.of(self))
        if self.access_log_bucket is None:
            acknowledge(
                bucket,
                "AwsSolutions-S1",
                f"Server access logging is off in {config.name} to keep it free at idle; "
                "environments with access_logging=True (prod) log to a separate bucket.",
            )
        return bucket

    def _access_log_bucket(self) -> s3.Bucket:
        config = self._config
        bucket = s3.Bucket(
            self,
            "AccessLogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,  # the only kind log delivery supports
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(config.access_log_retention_days),
                    abort_incomplete_multipart_upload_after=Duration.days(INCOMPLETE_UPLOAD_DAYS),
                )
            ],
            removal_policy=removal_policy(config),
            auto_delete_objects=config.destroys_data,
        )
        return bucket

    def _table(self, spec: TableSpec) -> dynamodb.Table:
        config = self._config
        stream = dynamodb.StreamViewType[spec.stream_view_type] if spec.stream_view_type else None
        table = dynamodb.Table(
            self,
            f"{spec.role.capitalize()}Table",
            table_name=spec.name(self.names),
            partition_key=dynamodb.Attribute(
                name=PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(name=SORT_KEY, type=_KEY_TYPES[spec.sort_key_type]),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            stream=stream,
            time_to_live_attribute=spec.ttl_attribute,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=config.point_in_time_recovery
            ),
            deletion_protection=config.deletion_protection,
            removal_policy=removal_policy(config),
        )
        if not config.point_in_time_recovery:
            acknowledge(
                table,
                "AwsSolutions-DDB3",
                f"Point-in-time recovery is off in {config.name}: its data is disposable "
                "and PITR is billed per GB-month; environments with "
                "point_in_time_recovery=True keep 35 days of backups.",
            )
        return table

    # -- helpers -------------------------------------------------------------------------

    def _grant_segments(self, grantee: iam.IGrantable, actions: Sequence[str]) -> None:
        self._add(
            grantee,
            iam.PolicyStatement(
                actions=list(actions),
                resources=[self.bucket.arn_for_objects(f"{SEGMENTS_PREFIX}*")],
            ),
        )
        self._acknowledge_wildcard(
            grantee,
            f"Resource::<{self._logical_id(self.bucket)}.Arn>/{SEGMENTS_PREFIX}*",
            "Segment keys are created at run time (topic id, creation time, uuid); the "
            "grant stops at the segments/ prefix of this one bucket.",
        )

    def _grant_table(
        self, grantee: iam.IGrantable, table: dynamodb.Table, actions: Sequence[str]
    ) -> None:
        # The table ARN only: lakelog's tables have no indexes to grant.
        self._add(grantee, iam.PolicyStatement(actions=list(actions), resources=[table.table_arn]))

    @staticmethod
    def _add(grantee: iam.IGrantable, statement: iam.PolicyStatement) -> None:
        result = grantee.grant_principal.add_to_principal_policy(statement)
        if not result.statement_added:
            raise ValueError(f"{grantee.grant_principal} cannot hold an identity policy")

    @staticmethod
    def _acknowledge_wildcard(grantee: iam.IGrantable, applies_to: str, reason: str) -> None:
        # The finding is raised on the principal's policy; a role owns exactly one default
        # policy, so acknowledging on the role covers that policy and nothing else.
        principal = grantee.grant_principal
        if isinstance(principal, Construct):
            acknowledge(principal, "AwsSolutions-IAM5", reason, applies_to=applies_to)

    @staticmethod
    def _logical_id(construct: Construct) -> str:
        resource = construct.node.default_child
        if not isinstance(resource, CfnElement):
            raise TypeError(f"{construct.node.path} has no CloudFormation resource")
        return Stack.of(construct).get_logical_id(resource)


def _drop_redundant_provider_dependency(stack: Stack) -> None:
    """Remove the DependsOn CDK's bucket-emptying provider puts on its own role.

    The provider's function already references the role in its ``Role`` property, so the
    explicit DependsOn is redundant and cfn-lint reports it (W3005).
    """
    provider = stack.node.try_find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider")
    if provider is None:
        return
    handler = provider.node.try_find_child("Handler")
    role = provider.node.try_find_child("Role")
    if isinstance(handler, CfnResource) and isinstance(role, CfnResource):
        handler.remove_resource_dependency(role)
