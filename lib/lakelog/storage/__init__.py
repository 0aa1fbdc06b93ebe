"""Storage ports and their adapters: S3, DynamoDB, in memory, and fault injection."""

from __future__ import annotations

from lakelog.storage.dynamodb import DynamoCatalogStore, DynamoLedgerStore
from lakelog.storage.groups import DynamoGroupStore
from lakelog.storage.keys import ResourceNames
from lakelog.storage.memory import MemoryStorage
from lakelog.storage.ports import CatalogStore, GroupStore, LedgerStore, ObjectStore
from lakelog.storage.resources import create_resources
from lakelog.storage.s3 import S3ObjectStore

__all__ = [
    "CatalogStore",
    "DynamoCatalogStore",
    "DynamoGroupStore",
    "DynamoLedgerStore",
    "GroupStore",
    "LedgerStore",
    "MemoryStorage",
    "ObjectStore",
    "ResourceNames",
    "S3ObjectStore",
    "create_resources",
]
