"""The `KafkaGroupStore` contract (ADR 0016 §5): one record per Kafka group, replaced only
at the version read, and the listing of groups. Run on memory and moto (and real AWS on
request); each test looks only at its own namespace."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from lakelog.storage.kafka_groups import (
    DynamoKafkaGroupStore,
    KafkaGroup,
    KafkaGroupStore,
    KafkaMember,
    MemoryKafkaGroupStore,
)
from tests.contract.backends import AwsBackend, Backend


@pytest.fixture
def store(backend: Backend) -> KafkaGroupStore:
    if isinstance(backend, AwsBackend):
        return DynamoKafkaGroupStore(backend.client("dynamodb"), backend.names.catalog_table)
    return MemoryKafkaGroupStore()


def _member(member_id: str, **fields: object) -> KafkaMember:
    values: dict[str, object] = {
        "client_id": "client",
        "client_host": "/127.0.0.1",
        "session_timeout_ms": 6_000,
        "rebalance_timeout_ms": 10_000,
        "heard_ms": 1_000,
        "protocols": (("range", b"\x00\x01range"), ("roundrobin", b"")),
    }
    values.update(fields)
    return KafkaMember(member_id, **values)  # type: ignore[arg-type]


def test_a_group_round_trips_with_every_field(store: KafkaGroupStore, ns: str) -> None:
    assert store.read(ns) is None
    group = KafkaGroup(
        ns,
        state="CompletingRebalance",
        generation=3,
        protocol_type="consumer",
        protocol="range",
        leader="a",
        deadline_ms=9_000,
        members=(
            _member("a", instance_id="i-1", joined=True, assignment=b"\x00\x00"),
            _member("b", assignment=b""),
            _member("c", protocols=()),
        ),
    )
    assert store.write(group)
    assert store.read(ns) == replace(group, version=1)
    bare = KafkaGroup(ns, version=1)
    assert store.write(bare)
    assert store.read(ns) == replace(bare, version=2)


def test_a_write_applies_only_at_the_version_read(store: KafkaGroupStore, ns: str) -> None:
    assert store.write(KafkaGroup(ns, generation=1))
    assert not store.write(KafkaGroup(ns, generation=9))  # version 0: created already
    stored = store.read(ns)
    assert stored is not None
    assert store.write(replace(stored, generation=2))
    assert not store.write(replace(stored, generation=3))  # stale version
    assert store.read(ns) == KafkaGroup(ns, generation=2, version=2)


def test_racing_writers_of_one_version_have_exactly_one_winner(
    store: KafkaGroupStore, ns: str
) -> None:
    assert store.write(KafkaGroup(ns))
    seen = store.read(ns)
    assert seen is not None
    barrier = threading.Barrier(4)
    won: list[int] = []

    def write(generation: int) -> None:
        barrier.wait()
        if store.write(replace(seen, generation=generation)):
            won.append(generation)

    threads = [threading.Thread(target=write, args=(g,)) for g in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert store.read(ns) == KafkaGroup(ns, generation=won[0], version=2)


def test_the_listing_names_every_group_stored_once(store: KafkaGroupStore, ns: str) -> None:
    for name in (f"{ns}-b", f"{ns}-a"):
        assert store.write(KafkaGroup(name))
    stored = store.read(f"{ns}-a")
    assert stored is not None
    assert store.write(stored)
    assert [g for g in store.list_groups() if g.startswith(ns)] == [f"{ns}-a", f"{ns}-b"]
