"""The `CatalogStore` contract: conditional topic writes, gc markers, issued producer ids, ACLs."""

from __future__ import annotations

import pytest

from lakelog.storage.ports import (
    PRODUCER_ID_RETENTION_MS,
    AclEntry,
    CatalogStore,
    ProducerIdRecord,
    TopicRecord,
)
from tests.contract.backends import Backend, Stores


@pytest.fixture
def catalog(stores: Stores) -> CatalogStore:
    return stores[2]


def topic(name: str, topic_id: str = "id-1", version: int = 1, **config: object) -> TopicRecord:
    return TopicRecord(
        name=name,
        topic_id=topic_id,
        partitions=3,
        config={"retention_ms": 1000, **config},
        created_ms=42,
        version=version,
    )


def test_a_created_topic_is_read_back_by_every_store_and_listed_by_name(
    backend: Backend, ns: str
) -> None:
    writer, reader = backend.stores()[2], backend.stores()[2]
    assert writer.create_topic(topic(f"{ns}-b", "id-b"))
    assert writer.create_topic(topic(f"{ns}-a", "id-a"))

    assert reader.get_topic(f"{ns}-b") == topic(f"{ns}-b", "id-b")
    assert reader.get_topic(f"{ns}-never") is None
    mine = [t for t in reader.list_topics() if t.name.startswith(ns)]
    assert mine == [topic(f"{ns}-a", "id-a"), topic(f"{ns}-b", "id-b")]


def test_a_topic_config_is_stored_as_json(catalog: CatalogStore, ns: str) -> None:
    stored = topic(ns, nested={"a": [1, 2]}, pair=(1, 2), none=None)
    config = stored.config
    assert catalog.create_topic(stored)

    assert catalog.get_topic(ns) == topic(ns, nested={"a": [1, 2]}, pair=[1, 2], none=None)
    config["retention_ms"] = 5  # the caller's dict is not the stored one
    assert catalog.get_topic(ns) == topic(ns, nested={"a": [1, 2]}, pair=[1, 2], none=None)


def test_a_topic_is_created_only_once(catalog: CatalogStore, ns: str) -> None:
    assert catalog.create_topic(topic(ns, "id-1"))

    assert not catalog.create_topic(topic(ns, "id-2", retention_ms=1))
    assert catalog.get_topic(ns) == topic(ns, "id-1")


def test_a_topic_is_updated_only_at_the_expected_version_and_id(
    catalog: CatalogStore, ns: str
) -> None:
    catalog.create_topic(topic(ns, "id-1"))

    assert not catalog.update_topic(topic(ns, "id-1", version=2), expected_version=5)
    assert not catalog.update_topic(topic(ns, "id-other", version=2), expected_version=1)
    assert not catalog.update_topic(topic(f"{ns}-never", "id-1", version=2), expected_version=1)
    assert catalog.get_topic(ns) == topic(ns, "id-1")

    assert catalog.update_topic(topic(ns, "id-1", version=2, retention_ms=7), expected_version=1)
    assert catalog.get_topic(ns) == topic(ns, "id-1", version=2, retention_ms=7)
    assert not catalog.update_topic(topic(ns, "id-1", version=3), expected_version=1)


def test_deleting_a_topic_needs_its_id_and_leaves_a_marker_for_gc(
    catalog: CatalogStore, ns: str
) -> None:
    catalog.create_topic(topic(ns, f"{ns}-id-1"))

    assert not catalog.delete_topic(topic(ns, f"{ns}-id-other"), deleted_ms=7)
    assert not catalog.delete_topic(topic(f"{ns}-never", f"{ns}-id-1"), deleted_ms=7)
    assert catalog.delete_topic(topic(ns, f"{ns}-id-1"), deleted_ms=7)
    assert not catalog.delete_topic(topic(ns, f"{ns}-id-1"), deleted_ms=8)

    assert catalog.get_topic(ns) is None
    marked = [t for t in catalog.deleted_topics() if t.topic_id.startswith(ns)]
    assert marked == [TopicRecord(ns, f"{ns}-id-1", 3, {"retention_ms": 1000}, 42, 1, 7)]


def test_deleting_a_topic_needs_the_version_read(catalog: CatalogStore, ns: str) -> None:
    # Given a topic grown (version 2) after a delete read it at version 1
    catalog.create_topic(topic(ns, f"{ns}-id-1"))
    catalog.update_topic(topic(ns, f"{ns}-id-1", version=2), expected_version=1)

    # Then the delete of version 1 changes nothing; the delete of version 2 applies
    assert not catalog.delete_topic(topic(ns, f"{ns}-id-1"), deleted_ms=7)
    assert catalog.get_topic(ns) == topic(ns, f"{ns}-id-1", version=2)
    assert not [t for t in catalog.deleted_topics() if t.topic_id.startswith(ns)]
    assert catalog.delete_topic(topic(ns, f"{ns}-id-1", version=2), deleted_ms=7)
    assert catalog.get_topic(ns) is None


def test_a_marker_put_ahead_of_a_delete_leaves_the_topic_and_is_replaced_by_the_delete(
    catalog: CatalogStore, ns: str
) -> None:
    catalog.create_topic(topic(ns, f"{ns}-id-1"))

    catalog.mark_deleted_topic(topic(ns, f"{ns}-id-1"), deleted_ms=5)
    catalog.mark_deleted_topic(topic(ns, f"{ns}-id-1"), deleted_ms=6)

    assert catalog.get_topic(ns) == topic(ns, f"{ns}-id-1")
    marked = [t for t in catalog.deleted_topics() if t.topic_id.startswith(ns)]
    assert marked == [TopicRecord(ns, f"{ns}-id-1", 3, {"retention_ms": 1000}, 42, 1, 6)]
    assert catalog.delete_topic(topic(ns, f"{ns}-id-1"), deleted_ms=7)
    marked = [t for t in catalog.deleted_topics() if t.topic_id.startswith(ns)]
    assert [t.deleted_ms for t in marked] == [7]


def test_a_name_can_be_reused_after_delete_and_markers_are_forgotten_one_by_one(
    catalog: CatalogStore, ns: str
) -> None:
    for generation in ("1", "2"):
        catalog.create_topic(topic(ns, f"{ns}-id-{generation}"))
        catalog.delete_topic(topic(ns, f"{ns}-id-{generation}"), deleted_ms=int(generation))
    catalog.create_topic(topic(ns, f"{ns}-id-3"))

    catalog.forget_deleted_topic(f"{ns}-id-1")
    catalog.forget_deleted_topic(f"{ns}-id-never")

    marked = [t.topic_id for t in catalog.deleted_topics() if t.topic_id.startswith(ns)]
    assert marked == [f"{ns}-id-2"]
    assert catalog.get_topic(ns) == topic(ns, f"{ns}-id-3")


def producer_id(ns: str, n: int = 0) -> int:
    """An id of this test alone (a namespace is 48 random bits), as a 63-bit id."""
    return (int(ns[1:], 16) << 8) + n


def test_a_producer_id_is_registered_once_and_read_back_by_every_store(
    backend: Backend, ns: str
) -> None:
    writer, reader = backend.stores()[2], backend.stores()[2]
    alice = ProducerIdRecord(producer_id(ns), "alice", issued_ms=42)

    assert writer.register_producer(alice)
    assert not reader.register_producer(ProducerIdRecord(producer_id(ns), "bob", issued_ms=43))

    assert reader.get_producer(producer_id(ns)) == alice
    assert writer.get_producer(producer_id(ns, 1)) is None
    big = ProducerIdRecord(2**63 - 1 - producer_id(ns), "carol", issued_ms=44, epoch=0)
    assert writer.register_producer(big)
    assert reader.get_producer(big.producer_id) == big


def _acls(catalog: CatalogStore, ns: str) -> list[AclEntry]:
    return [a for a in catalog.list_acls() if a.principal.startswith(ns)]


def acl(ns: str, *operations: str, topic: str = "orders", effect: str = "allow") -> AclEntry:
    return AclEntry(f"{ns}-principal", topic, effect, frozenset(operations))


def test_acl_operations_add_up_per_principal_topic_and_effect(
    catalog: CatalogStore, ns: str
) -> None:
    catalog.add_acl(acl(ns, "read"))
    catalog.add_acl(acl(ns, "write", "read"))
    catalog.add_acl(acl(ns, "read", effect="deny"))
    catalog.add_acl(acl(ns, "describe", topic="a*"))

    assert _acls(catalog, ns) == [  # by topic pattern, effect, principal
        acl(ns, "describe", topic="a*"),
        acl(ns, "read", "write"),
        acl(ns, "read", effect="deny"),
    ]


def test_removing_acl_operations_keeps_the_rest_and_drops_an_empty_rule(
    catalog: CatalogStore, ns: str
) -> None:
    catalog.add_acl(acl(ns, "read", "write"))

    assert not catalog.remove_acl(acl(ns, "read", topic="never"))
    assert not catalog.remove_acl(acl(ns, "describe"))  # none of its operations is granted
    assert _acls(catalog, ns) == [acl(ns, "read", "write")]
    assert catalog.remove_acl(acl(ns, "read", "describe"))
    assert _acls(catalog, ns) == [acl(ns, "write")]
    assert catalog.remove_acl(acl(ns, "write"))
    assert _acls(catalog, ns) == []
    assert not catalog.remove_acl(acl(ns, "write"))


def test_a_binding_refresh_moves_its_expiry_for_its_principal_only(
    backend: Backend, ns: str
) -> None:
    writer, reader = backend.stores()[2], backend.stores()[2]
    alice = ProducerIdRecord(producer_id(ns), "alice", issued_ms=42)
    assert writer.register_producer(alice)

    assert not reader.refresh_producer(alice.producer_id, "bob", 1_000)
    assert not reader.refresh_producer(producer_id(ns, 1), "alice", 1_000)
    assert writer.get_producer(alice.producer_id) == alice

    assert reader.refresh_producer(alice.producer_id, "alice", 1_000)
    refreshed = writer.get_producer(alice.producer_id)
    assert refreshed == ProducerIdRecord(alice.producer_id, "alice", 42, refreshed_ms=1_000)
    assert refreshed.expires_ms == 1_000 + PRODUCER_ID_RETENTION_MS
