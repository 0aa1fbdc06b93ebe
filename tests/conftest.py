"""Shared fixtures: the storage backend, engines on it, and moto-backed AWS clients.

Engines (`engine`, `make_engine`, `make_faulty`) run on the in-memory backend
(`lakelog.storage.memory`) unless the test is marked ``moto`` or uses a moto fixture
(``s3_client``, ``dynamodb_client``, ``resources``): then they run on the S3 and DynamoDB
adapters against moto, with the DynamoDB emulation of ADR 0006. Tests that check the
adapters, the emulation, the items DynamoDB holds or an end-to-end path are the ones on
moto; ``tests/contract/`` proves that both backends behave alike in everything the engine
relies on.
"""

from __future__ import annotations

import itertools
import os
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# moto must be imported before any botocore session or client is made, so that it can hook
# into them: keep it at the top, before the backends.
from moto import mock_aws

from lakelog import Engine, ResourceNames
from lakelog.local import serialize_moto_dynamodb
from lakelog.storage import create_resources
from lakelog.storage.faults import (
    FaultInjector,
    FaultyCatalogStore,
    FaultyGroupStore,
    FaultyLedgerStore,
    FaultyObjectStore,
)
from tests.contract.backends import REGION, AwsBackend, Backend, MemoryBackend, new_client
from tests.support import unique_topic_name

__all__ = ["MakeFaulty", "new_client"]

MOTO_MARKER = "moto"
REAL_AWS_MARKER = "real_aws"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MOTO_MARKER}: run the test's engines on moto's S3 and DynamoDB instead of in memory",
    )
    config.addinivalue_line(
        "markers",
        f"{REAL_AWS_MARKER}: the test talks to real AWS; keep the caller's credentials",
    )


@pytest.fixture(autouse=True)
def _aws_credentials(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a test reach real AWS: fake credentials, a fixed region.

    Only the opt-in contract run on real AWS (marked ``real_aws``) keeps the caller's.
    """
    if request.node.get_closest_marker(REAL_AWS_MARKER) is not None:
        return
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


MOTO_FIXTURES = frozenset({"aws", "s3_client", "dynamodb_client", "resources"})
"""Fixtures that reach moto: a test using any of them runs its engines on moto too, so it
reads the very storage its engines write (never an empty moto beside a memory backend)."""


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    """Where the test's engines keep their data: in memory, or on moto for a test marked
    ``moto`` or using a moto fixture (`MOTO_FIXTURES`)."""
    marked = request.node.get_closest_marker(MOTO_MARKER) is not None
    if marked or MOTO_FIXTURES & set(request.fixturenames):
        return AwsBackend(request.getfixturevalue("resources"))
    return MemoryBackend()


@pytest.fixture
def engine_seeds(request: pytest.FixtureRequest) -> Iterator[int]:
    """Seeds for the test's engines (keyless placement, backoff jitter): each engine its
    own, the same ones on every run of the test, so what it checks never depends on luck."""
    return itertools.count(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def make_engine(backend: Backend, engine_seeds: Iterator[int]) -> Callable[..., Engine]:
    """Engines on their own stores of one backend (as separate Lambda containers would be)."""

    def make(**kwargs: Any) -> Engine:
        return Engine(*backend.stores(), **{"seed": next(engine_seeds), **kwargs})

    return make


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(sleep=lambda _seconds: None)


MakeFaulty = Callable[..., tuple[Engine, FaultInjector]]


@pytest.fixture
def make_faulty(backend: Backend, engine_seeds: Iterator[int]) -> MakeFaulty:
    """Engines whose object store, ledger and group store fail where their injector says.

    The group store (``engine.groups.store``) is a `FaultyGroupStore` and the catalog a
    `FaultyCatalogStore` on the same injector.
    """

    def make(seed: int = 0, **kwargs: Any) -> tuple[Engine, FaultInjector]:
        objects, ledger, catalog, groups = backend.stores()
        injector = FaultInjector(seed)
        engine = Engine(
            FaultyObjectStore(objects, injector),
            FaultyLedgerStore(ledger, injector),
            FaultyCatalogStore(catalog, injector),
            FaultyGroupStore(groups, injector),
            **{"sleep": lambda _seconds: None, "seed": next(engine_seeds), **kwargs},
        )
        return engine, injector

    return make


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses (tests against one long-lived server share its topics)."""
    return unique_topic_name(request.node.name)
