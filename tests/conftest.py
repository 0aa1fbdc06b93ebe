"""Shared fixtures: moto-backed AWS clients, the bucket and tables, and engines on them."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from moto import mock_aws

from lakelog import Engine, ResourceNames
from lakelog.local import serialize_moto_dynamodb
from lakelog.storage import (
    DynamoCatalogStore,
    DynamoGroupStore,
    DynamoLedgerStore,
    S3ObjectStore,
    create_resources,
)
from lakelog.storage.faults import (
    FaultInjector,
    FaultyGroupStore,
    FaultyLedgerStore,
    FaultyObjectStore,
)

REGION = "us-east-1"

# One botocore session parses the S3 and DynamoDB service models once per process; every
# client made from it is still its own object with its own connection pool, as separate
# Lambda containers' clients would be. Creating clients from a session is not thread-safe.
_SESSION = botocore.session.get_session()
_SESSION_LOCK = threading.Lock()


def new_client(service: str) -> Any:
    """A new boto3-compatible client of ``service`` (moto answers it inside ``aws``)."""
    with _SESSION_LOCK:
        return _SESSION.create_client(service, region_name=REGION)


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
    return new_client("s3")


@pytest.fixture
def dynamodb_client(aws: None) -> Any:
    return new_client("dynamodb")


@pytest.fixture
def resources(s3_client: Any, dynamodb_client: Any, names: ResourceNames) -> ResourceNames:
    create_resources(s3_client, dynamodb_client, names)
    return names


@pytest.fixture
def make_engine(resources: ResourceNames) -> Callable[..., Engine]:
    """Engines on their own boto3 clients (as separate Lambda containers would be)."""

    def make(**kwargs: Any) -> Engine:
        return Engine.from_clients(new_client("s3"), new_client("dynamodb"), resources, **kwargs)

    return make


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(sleep=lambda _seconds: None)


MakeFaulty = Callable[..., tuple[Engine, FaultInjector]]


@pytest.fixture
def make_faulty(resources: ResourceNames) -> MakeFaulty:
    """Engines whose object store, ledger and group store fail where their injector says.

    The group store (``engine.groups.store``) is a `FaultyGroupStore` on the same injector.
    """

    def make(seed: int = 0, **kwargs: Any) -> tuple[Engine, FaultInjector]:
        dynamodb = new_client("dynamodb")
        injector = FaultInjector(seed)
        engine = Engine(
            FaultyObjectStore(S3ObjectStore(new_client("s3"), resources.bucket), injector),
            FaultyLedgerStore(DynamoLedgerStore(dynamodb, resources.ledger_table), injector),
            DynamoCatalogStore(dynamodb, resources.catalog_table),
            FaultyGroupStore(DynamoGroupStore(dynamodb, resources.catalog_table), injector),
            **{"sleep": lambda _seconds: None, **kwargs},
        )
        return engine, injector

    return make
