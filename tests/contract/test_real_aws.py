"""The opt-in run on real AWS: its resources must exist before the contract runs on them."""

from __future__ import annotations

import os

import pytest

from tests.contract.backends import AWS_PREFIX_VARIABLE, aws_backend


@pytest.mark.real_aws
@pytest.mark.skipif(
    not os.environ.get(AWS_PREFIX_VARIABLE),
    reason=f"the contract runs on real AWS only when {AWS_PREFIX_VARIABLE}=<prefix> names "
    "a deployment (<prefix>-segments, <prefix>-ledger, <prefix>-catalog)",
)
def test_the_deployment_named_for_the_contract_has_its_bucket_and_tables() -> None:
    backend = aws_backend(os.environ[AWS_PREFIX_VARIABLE])
    backend.client("s3").head_bucket(Bucket=backend.names.bucket)
    dynamodb = backend.client("dynamodb")
    for table in (backend.names.ledger_table, backend.names.catalog_table):
        status = dynamodb.describe_table(TableName=table)["Table"]["TableStatus"]
        assert status == "ACTIVE", (table, status)
