"""The bucket and tables of a deployment, defined once for the CDK app, the tests and
the local server.

`TABLES` is the single description of both tables; `create_resources` makes them
through boto3 and the CDK storage construct reads the same description, so the two
cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import ClientError

from lakelog.storage.keys import ResourceNames

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

__all__ = ["TABLES", "TTL_ATTRIBUTE", "TableSpec", "create_resources"]

TTL_ATTRIBUTE = "expires_at"
"""Epoch-seconds attribute after which DynamoDB may delete an item: issued producer ids in
the catalog, producer states in the ledger (ADR 0012)."""


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One DynamoDB table: key schema, stream and TTL (billing is always on-demand).

    The ledger's stream is ``KEYS_ONLY``: the trigger dispatcher needs only which chain
    a new item joined (ADR 0015 §4), and a chain item's image (up to 400 KB with a
    snapshot) would only fill the dispatcher's 6 MB invocation payload."""

    role: Literal["ledger", "catalog"]
    sort_key_type: Literal["S", "N"]
    stream_view_type: Literal["KEYS_ONLY"] | None
    ttl_attribute: str | None

    def name(self, names: ResourceNames) -> str:
        """This table's name in the deployment ``names`` describes."""
        return names.ledger_table if self.role == "ledger" else names.catalog_table


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        role="ledger", sort_key_type="N", stream_view_type="KEYS_ONLY", ttl_attribute=TTL_ATTRIBUTE
    ),
    TableSpec(
        role="catalog", sort_key_type="S", stream_view_type=None, ttl_attribute=TTL_ATTRIBUTE
    ),
)


def create_resources(
    s3_client: S3Client, dynamodb_client: DynamoDBClient, names: ResourceNames
) -> None:
    """Create the bucket and both tables; resources that already exist are left alone."""
    try:
        region = s3_client.meta.region_name
        if region and region != "us-east-1":
            s3_client.create_bucket(
                Bucket=names.bucket,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
        else:
            s3_client.create_bucket(Bucket=names.bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise
    existing = set(dynamodb_client.list_tables()["TableNames"])
    for spec in TABLES:
        table = spec.name(names)
        if table in existing:
            continue
        stream = (
            {
                "StreamSpecification": {
                    "StreamEnabled": True,
                    "StreamViewType": spec.stream_view_type,
                }
            }
            if spec.stream_view_type
            else {}
        )
        dynamodb_client.create_table(
            TableName=table,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": spec.sort_key_type},
            ],
            BillingMode="PAY_PER_REQUEST",
            **stream,  # type: ignore[arg-type]
        )
        dynamodb_client.get_waiter("table_exists").wait(TableName=table)
        if spec.ttl_attribute:
            dynamodb_client.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
            )
