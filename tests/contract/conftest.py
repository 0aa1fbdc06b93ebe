"""The backends every contract test runs on: memory and moto always, real AWS on request.

The tests of this directory state what a storage backend must do for the engine: every
method of the four ports (`lakelog.storage.ports`), the conditional and all-or-nothing
writes, writes racing from threads (``test_races.py``), missing keys, empty listings, and
listings and batch reads past one page (S3 lists 1,000 keys a page, ``BatchGetItem`` reads
100 keys, ``BatchWriteItem`` deletes 25). Not covered: a DynamoDB query past its 1 MB page
(about 4,000 ledger entries, too slow to write on moto for every run); the adapters read
every query through botocore's paginator, and ``query`` asks for one page on purpose.

Set ``LAKELOG_CONTRACT_AWS=<prefix>`` to run the suite on the deployed bucket and tables of
that prefix too (``<prefix>-segments``, ``<prefix>-ledger``, ``<prefix>-catalog``, as
``cdk deploy`` names them), with the default AWS credentials. Every test works under its
own namespace (`ns`), so runs never see each other's keys, topics or groups; tests of
catalog-wide listings look only at their own namespace.
"""

from __future__ import annotations

import os
import uuid

import pytest

from lakelog.storage.ports import LedgerStore
from tests.contract.backends import (
    AWS_PREFIX_VARIABLE,
    AwsBackend,
    Backend,
    MemoryBackend,
    Stores,
    aws_backend,
)
from tests.contract.chain_support import new_topic_id

_AWS_PREFIX = os.environ.get(AWS_PREFIX_VARIABLE, "")

BACKENDS = [
    pytest.param("memory"),
    pytest.param("moto"),
    *([pytest.param("aws", marks=pytest.mark.real_aws)] if _AWS_PREFIX else []),
]
"""Real AWS joins only when asked for (``test_real_aws.py`` says so when it is not)."""


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn."""
    if request.param == "memory":
        return MemoryBackend()
    if request.param == "moto":
        return AwsBackend(request.getfixturevalue("resources"))
    return aws_backend(_AWS_PREFIX)


@pytest.fixture
def stores(backend: Backend) -> Stores:
    return backend.stores()


@pytest.fixture
def ns() -> str:
    """A prefix no other test (or run) uses: for keys, partition keys, topics and groups."""
    return f"c{uuid.uuid4().hex[:12]}"


@pytest.fixture
def chains(stores: Stores) -> LedgerStore:
    """The backend's ledger."""
    return stores[1]


@pytest.fixture
def topic_id() -> str:
    """A topic id no other test uses."""
    return new_topic_id()
