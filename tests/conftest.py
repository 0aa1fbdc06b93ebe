"""Shared fixtures: moto-backed AWS clients, the bucket and tables, and engines on them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lakelog import Engine, ResourceNames
from lakelog.local import serialize_moto_dynamodb
from lakelog.storage import create_resources

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a test reach real AWS: fake credentials, a fixed region."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    os.environ.pop("AWS_ENDPOINT_URL", None)


@pytest.fixture
def aws() -> Iterator[None]:
    """Every boto3 call inside the test goes to moto, in-process."""
    serialize_moto_dynamodb()
    with mock_aws():
        yield


@pytest.fixture
def names() -> ResourceNames:
    return ResourceNames.for_prefix("lakelog-test")


@pytest.fixture
def s3_client(aws: None) -> Any:
    return boto3.client("s3", region_name=REGION)


@pytest.fixture
def dynamodb_client(aws: None) -> Any:
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def resources(s3_client: Any, dynamodb_client: Any, names: ResourceNames) -> ResourceNames:
    create_resources(s3_client, dynamodb_client, names)
    return names


@pytest.fixture
def make_engine(resources: ResourceNames) -> Callable[..., Engine]:
    """Engines on their own boto3 clients (as separate Lambda containers would be)."""

    def make(**kwargs: Any) -> Engine:
        session = boto3.Session(region_name=REGION)
        return Engine.from_clients(
            session.client("s3"), session.client("dynamodb"), resources, **kwargs
        )

    return make


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(sleep=lambda _seconds: None)
