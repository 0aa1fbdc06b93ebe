"""Storage: the segments bucket and the tables, in every environment."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from components.storage import PARTITION_KEY, SORT_KEY
from lakelog import ResourceNames
from lakelog.storage import create_resources
from lakelog.storage.resources import TABLES, TTL_ATTRIBUTE
from tests.infra.synth import Synthesized

pytestmark = pytest.mark.infra


def _segments_bucket(stack: Synthesized) -> dict[str, Any]:
    name = ResourceNames.for_prefix(stack.config.prefix).bucket
    [bucket] = [
        bucket
        for bucket in stack.resources("AWS::S3::Bucket").values()
        if bucket["Properties"].get("BucketName") == name
    ]
    return bucket


def _table(stack: Synthesized, name: str) -> dict[str, Any]:
    [table] = [
        table
        for table in stack.resources("AWS::DynamoDB::Table").values()
        if table["Properties"]["TableName"] == name
    ]
    return table


def test_segments_bucket_is_named_by_resource_names(env_stack: Synthesized) -> None:
    bucket = _segments_bucket(env_stack)

    assert bucket["Properties"]["BucketName"] == f"lakelog-{env_stack.config.name}-segments"


def test_every_bucket_is_encrypted_private_and_owner_enforced(env_stack: Synthesized) -> None:
    buckets = env_stack.resources("AWS::S3::Bucket").values()

    for bucket in buckets:
        properties = bucket["Properties"]
        assert properties["BucketEncryption"] == {
            "ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
            ]
        }
        assert properties["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert properties["OwnershipControls"] == {
            "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]
        }
        assert "AccessControl" not in properties


def test_every_bucket_policy_denies_requests_without_tls(env_stack: Synthesized) -> None:
    buckets = env_stack.resources("AWS::S3::Bucket")
    policies = env_stack.resources("AWS::S3::BucketPolicy").values()

    secured = set()
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}:
                assert statement["Effect"] == "Deny"
                assert statement["Action"] == "s3:*"
                assert statement["Principal"] == {"AWS": "*"}
                secured.add(policy["Properties"]["Bucket"]["Ref"])
    assert secured == set(buckets)


def test_incomplete_multipart_uploads_are_aborted(env_stack: Synthesized) -> None:
    rules = _segments_bucket(env_stack)["Properties"]["LifecycleConfiguration"]["Rules"]

    assert {
        "Id": "abort-incomplete-multipart-uploads",
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    } in rules


def test_server_access_logs_go_to_a_separate_bucket_only_where_enabled(
    env_stack: Synthesized,
) -> None:
    bucket = _segments_bucket(env_stack)
    buckets = env_stack.resources("AWS::S3::Bucket")

    if env_stack.config.access_logging:
        logging = bucket["Properties"]["LoggingConfiguration"]
        target = logging["DestinationBucketName"]["Ref"]
        assert target in buckets
        assert (
            buckets[target]["Properties"].get("BucketName") != (bucket["Properties"]["BucketName"])
        )
        assert logging["LogFilePrefix"] == f"{bucket['Properties']['BucketName']}/"
        env_stack.template.has_resource_properties(
            "AWS::S3::BucketPolicy",
            {
                "Bucket": {"Ref": target},
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Action": "s3:PutObject",
                                    "Effect": "Allow",
                                    "Principal": {"Service": "logging.s3.amazonaws.com"},
                                }
                            )
                        ]
                    )
                },
            },
        )
    else:
        assert "LoggingConfiguration" not in bucket["Properties"]
        assert len(buckets) == 1


@pytest.mark.parametrize("spec", TABLES, ids=lambda spec: spec.role)
def test_tables_are_built_exactly_as_tables_describes(env_stack: Synthesized, spec: Any) -> None:
    names = ResourceNames.for_prefix(env_stack.config.prefix)
    properties = _table(env_stack, spec.name(names))["Properties"]

    assert properties["KeySchema"] == [
        {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
    ]
    assert properties["AttributeDefinitions"] == [
        {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
        {"AttributeName": SORT_KEY, "AttributeType": spec.sort_key_type},
    ]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    if spec.stream_view_type:
        assert properties["StreamSpecification"] == {"StreamViewType": spec.stream_view_type}
    else:
        assert "StreamSpecification" not in properties
    if spec.ttl_attribute:
        assert properties["TimeToLiveSpecification"] == {
            "AttributeName": spec.ttl_attribute,
            "Enabled": True,
        }
    else:
        assert "TimeToLiveSpecification" not in properties


def test_both_tables_expire_items_by_the_ttl_attribute(env_stack: Synthesized) -> None:
    # producer ids in the catalog, producer states in the ledger (ADR 0012)
    names = ResourceNames.for_prefix(env_stack.config.prefix)

    for table in (names.ledger_table, names.catalog_table):
        assert _table(env_stack, table)["Properties"]["TimeToLiveSpecification"] == {
            "AttributeName": TTL_ATTRIBUTE,
            "Enabled": True,
        }
    assert TTL_ATTRIBUTE == "expires_at"


def test_only_the_tables_tables_describes_exist(env_stack: Synthesized) -> None:
    names = ResourceNames.for_prefix(env_stack.config.prefix)
    table_names = {
        table["Properties"]["TableName"]
        for table in env_stack.resources("AWS::DynamoDB::Table").values()
    }

    assert table_names == {spec.name(names) for spec in TABLES}


def test_recovery_and_protection_follow_the_environment(env_stack: Synthesized) -> None:
    config = env_stack.config
    for table in env_stack.resources("AWS::DynamoDB::Table").values():
        properties = table["Properties"]
        assert properties["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": config.point_in_time_recovery
        }
        assert properties["DeletionProtectionEnabled"] is config.deletion_protection


def test_data_is_deleted_with_the_stack_in_dev_and_retained_in_prod(
    env_stack: Synthesized,
) -> None:
    expected = "Delete" if env_stack.config.destroys_data else "Retain"
    data = {
        **env_stack.resources("AWS::DynamoDB::Table"),
        **env_stack.resources("AWS::S3::Bucket"),
    }

    for resource in data.values():
        assert resource["DeletionPolicy"] == expected
        assert resource["UpdateReplacePolicy"] == expected
    emptied = env_stack.resources("Custom::S3AutoDeleteObjects")
    assert bool(emptied) is env_stack.config.destroys_data


def test_cdk_tables_match_what_create_resources_makes(
    env_stack: Synthesized, dynamodb_client: Any, s3_client: Any, names: ResourceNames
) -> None:
    # Given the tables create_resources makes for the tests and the local server
    create_resources(s3_client, dynamodb_client, names)
    deployed_names = ResourceNames.for_prefix(env_stack.config.prefix)

    for spec in TABLES:
        # When the same table is read from moto and from the template
        local = dynamodb_client.describe_table(TableName=spec.name(names))["Table"]
        ttl = dynamodb_client.describe_time_to_live(TableName=spec.name(names))
        template = _table(env_stack, spec.name(deployed_names))["Properties"]

        # Then keys, stream and TTL agree
        assert local["KeySchema"] == template["KeySchema"]
        assert sorted(local["AttributeDefinitions"], key=str) == sorted(
            template["AttributeDefinitions"], key=str
        )
        assert local.get("StreamSpecification", {}).get("StreamViewType") == template.get(
            "StreamSpecification", {}
        ).get("StreamViewType")
        local_ttl = ttl["TimeToLiveDescription"].get("AttributeName")
        assert local_ttl == template.get("TimeToLiveSpecification", {}).get("AttributeName")
        assert local["BillingModeSummary"]["BillingMode"] == template["BillingMode"]
