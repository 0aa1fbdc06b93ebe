"""The storage backends tests run on: in memory, on moto, and (opt-in) on real AWS.

A backend hands out the four storage ports (`Backend.stores`), each call a fresh set on
the same state, as separate Lambda containers get their own clients to the same bucket
and tables.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
import botocore.session

from lakelog.storage import (
    DynamoCatalogStore,
    DynamoGroupStore,
    DynamoLedgerStore,
    ResourceNames,
    S3ObjectStore,
)
from lakelog.storage.memory import MemoryStorage
from lakelog.storage.ports import CatalogStore, GroupStore, LedgerStore, ObjectStore

__all__ = ["AWS_PREFIX_VARIABLE", "Backend", "Stores", "aws_backend", "new_client"]

from tests.support import REGION

AWS_PREFIX_VARIABLE = "LAKELOG_CONTRACT_AWS"
"""Names the resource prefix of a deployed bucket and tables to run the contract on."""

Stores = tuple[ObjectStore, LedgerStore, CatalogStore, GroupStore]

# One botocore session parses the S3 and DynamoDB service models once per process; every
# client made from it is still its own object with its own connection pool, as separate
# Lambda containers' clients would be. Creating clients from a session is not thread-safe.
_SESSION = botocore.session.get_session()
_SESSION_LOCK = threading.Lock()


def new_client(service: str) -> Any:
    """A new boto3-compatible client of ``service`` (moto answers it inside ``aws``)."""
    with _SESSION_LOCK:
        return _SESSION.create_client(service, region_name=REGION)


class Backend(Protocol):
    """Where a test's stores keep their data."""

    name: str

    def stores(self) -> Stores:
        """A fresh object store, ledger, catalog and group store on the backend's state."""

    def contents(self) -> Any:
        """Everything the backend holds, to compare before and after (in its own terms)."""


@dataclass
class MemoryBackend:
    """Every store on one `MemoryStorage`."""

    storage: MemoryStorage = field(default_factory=MemoryStorage)
    name: str = "memory"

    def stores(self) -> Stores:
        return self.storage.stores()

    def contents(self) -> Any:
        state = self.storage
        with state.lock:
            return {
                "objects": {key: body for key, (body, _) in state.objects.items()},
                "ledger": {
                    pk: dict(run.items) for pk, run in state.ledger_items.items() if run.items
                },
                "topics": dict(state.topics),
                "deleted_topics": dict(state.deleted_topics),
                "producers": dict(state.producers),
                "acls": dict(state.acls),
                "groups": {group: dict(items) for group, items in state.groups.items() if items},
                "subscriptions": {pk: dict(s) for pk, s in state.subscriptions.items() if s},
            }


@dataclass
class AwsBackend:
    """The S3 and DynamoDB adapters on the resources ``names`` gives, through new clients.

    ``client`` makes them: moto's in-process clients, or real AWS ones.
    """

    names: ResourceNames
    name: str = "moto"
    client: Any = new_client

    def stores(self) -> Stores:
        dynamodb = self.client("dynamodb")
        return (
            S3ObjectStore(self.client("s3"), self.names.bucket),
            DynamoLedgerStore(dynamodb, self.names.ledger_table),
            DynamoCatalogStore(dynamodb, self.names.catalog_table),
            DynamoGroupStore(dynamodb, self.names.catalog_table),
        )

    def contents(self) -> Any:
        s3, dynamodb = self.client("s3"), self.client("dynamodb")
        objects = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.names.bucket):
            for obj in page.get("Contents", []):
                response = s3.get_object(Bucket=self.names.bucket, Key=obj["Key"])
                objects[obj["Key"]] = response["Body"].read()
        tables = {}
        for table in (self.names.ledger_table, self.names.catalog_table):
            items = []
            for page in dynamodb.get_paginator("scan").paginate(
                TableName=table, ConsistentRead=True
            ):
                items.extend(page["Items"])
            tables[table] = sorted(items, key=lambda item: (item["pk"]["S"], str(item["sk"])))
        return {"objects": objects, **tables}


def aws_backend(prefix: str) -> AwsBackend:
    """Real AWS: the deployed resources of ``prefix``, with the default credentials."""
    session = boto3.Session()
    lock = threading.Lock()

    def client(service: str) -> Any:
        with lock:
            return session.client(service)  # type: ignore[call-overload]

    return AwsBackend(ResourceNames.for_prefix(prefix), name="aws", client=client)
