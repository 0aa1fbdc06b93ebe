"""Producer ids are bound to the principal that obtained them (direct mode and service)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lakelog import Engine, ProducerBatch, Record, ResourceNames
from lakelog.errors import UnknownProducerError
from lakelog.service.producers import DIRECT_PRINCIPAL, ProducerIds
from lakelog.storage.keys import PRODUCER_SK, producer_pk
from lakelog.storage.ports import PRODUCER_ID_RETENTION_MS, ProducerIdRecord

TOPIC = "bound"


@pytest.fixture
def topic(engine: Engine) -> str:
    engine.create_topic(TOPIC, partitions=1)
    return TOPIC


def _append(engine: Engine, producer_id: int, value: bytes, principal: str | None = None) -> int:
    batch = ProducerBatch(producer_id, 0, {0: 0})
    records = [Record(value=value, partition=0)]
    if principal is None:
        [ack] = engine.append(TOPIC, records, batch)
    else:
        [ack] = engine.append(TOPIC, records, batch, principal=principal)
    return ack.offset


def _count_reads(engine: Engine) -> list[int]:
    """The ids whose binding ``engine``'s catalog is asked for from now on, in order."""
    reads: list[int] = []
    catalog = engine.context.catalog
    original = catalog.get_producer

    def counting(producer_id: int) -> ProducerIdRecord | None:
        reads.append(producer_id)
        return original(producer_id)

    catalog.get_producer = counting  # type: ignore[method-assign]
    return reads


def test_an_append_under_an_id_never_issued_is_refused_and_writes_nothing(
    engine: Engine, topic: str
) -> None:
    issued = engine.init_producer_id()

    for guessed in (issued + 1, issued - 1, 1, 2**63 - 1):
        with pytest.raises(UnknownProducerError) as info:
            _append(engine, guessed, b"guess")
        assert info.value.producer_id == guessed
    assert engine.list_offset(topic, 0, "latest") == 0


def test_an_id_is_held_only_by_the_principal_that_obtained_it(
    engine: Engine, make_engine: Callable[..., Engine], topic: str
) -> None:
    alice = engine.init_producer_id("alice")

    for other in (engine, make_engine()):
        with pytest.raises(UnknownProducerError):
            _append(other, alice, b"intruder", principal="bob")
        with pytest.raises(UnknownProducerError):
            _append(other, alice, b"direct")  # the direct principal is not alice
    assert engine.list_offset(topic, 0, "latest") == 0

    # Alice's first batch is stored at its own offset, from any process
    offset = _append(make_engine(), alice, b"alice", principal="alice")
    [record] = engine.fetch(topic, 0, offset).records
    assert record.value == b"alice"


def test_direct_mode_holds_the_ids_it_obtained(engine: Engine, topic: str) -> None:
    producer_id = engine.init_producer_id()

    assert _append(engine, producer_id, b"a") == 0
    assert engine.init_producer_id(DIRECT_PRINCIPAL) != producer_id


def test_the_binding_is_read_once_per_process_not_per_append(
    make_engine: Callable[..., Engine], topic: str
) -> None:
    issuer, appender = make_engine(), make_engine()
    producer_id = issuer.init_producer_id("alice")
    reads = _count_reads(appender)
    for sequence in range(5):
        appender.append(
            TOPIC,
            [Record(value=b"v", partition=0)],
            ProducerBatch(producer_id, 0, {0: sequence}),
            principal="alice",
        )

    assert reads == [producer_id]


def test_an_issued_id_is_one_catalog_item_that_expires_by_ttl(
    make_engine: Callable[..., Engine], dynamodb_client: Any, resources: ResourceNames
) -> None:
    engine = make_engine(clock_ms=lambda: 1_700_000_000_000)
    producer_id = engine.init_producer_id("alice")

    item = dynamodb_client.get_item(
        TableName=resources.catalog_table,
        Key={"pk": {"S": producer_pk(producer_id)}, "sk": {"S": PRODUCER_SK}},
    )["Item"]
    assert item["principal"] == {"S": "alice"}
    assert int(item["issued_ms"]["N"]) == 1_700_000_000_000
    assert int(item["epoch"]["N"]) == 0
    expires_ms = 1_700_000_000_000 + PRODUCER_ID_RETENTION_MS
    assert int(item["expires_at"]["N"]) == expires_ms // 1000


def test_a_colliding_draw_is_drawn_again_and_never_takes_over_an_issued_id(
    engine: Engine,
) -> None:
    draws = iter([7, 7, 7, 9])
    producers = ProducerIds(engine.context.catalog, engine.context.clock_ms, lambda: next(draws))

    assert producers.issue("alice") == 7
    assert producers.issue("bob") == 9  # 7 is alice's: drawn again twice
    producers.check(7, "alice")
    with pytest.raises(UnknownProducerError):
        producers.check(7, "bob")


def test_a_process_remembers_a_bounded_number_of_bindings(engine: Engine) -> None:
    reads = _count_reads(engine)
    draws = iter([11, 12, 13])
    producers = ProducerIds(
        engine.context.catalog, engine.context.clock_ms, lambda: next(draws), capacity=2
    )
    for principal in ("a", "b", "c"):
        producers.issue(principal)

    producers.check(13, "c")
    producers.check(12, "b")
    assert reads == []  # the two newest are remembered
    producers.check(11, "a")
    assert reads == [11]  # the oldest was forgotten and is read again, still bound to "a"
    producers.check(13, "c")
    assert reads == [11, 13]  # 13 was now the least recently used


DAY_MS = 24 * 3600 * 1000


def test_an_id_in_use_never_expires_and_an_idle_one_expires_although_ttl_has_not_run(
    make_engine: Callable[..., Engine], topic: str
) -> None:
    # Given two producers issued at the same time, on a fake clock
    now = {"ms": 1_700_000_000_000}
    engine = make_engine(clock_ms=lambda: now["ms"])
    busy, idle = engine.init_producer_id("alice"), engine.init_producer_id("alice")
    refreshes: list[int] = []
    catalog = engine.context.catalog
    original = catalog.refresh_producer

    def counting(producer_id: int, principal: str, refreshed_ms: int) -> bool:
        refreshes.append(producer_id)
        return original(producer_id, principal, refreshed_ms)

    catalog.refresh_producer = counting  # type: ignore[method-assign]

    # When one appends every 6 hours for 30 days and the other only on its first day
    batch = ProducerBatch(idle, 0, sequence=0)
    engine.append(TOPIC, [Record(value=b"once", partition=0)], batch, principal="alice")
    for sequence in range(4 * 30):
        engine.append(
            TOPIC,
            [Record(value=b"v", partition=0)],
            ProducerBatch(busy, 0, sequence=sequence),
            principal="alice",
        )
        now["ms"] += 6 * 3600 * 1000

    # Then the busy one still appends, having refreshed its binding about once a day
    assert 29 <= refreshes.count(busy) <= 30
    assert idle not in refreshes
    # And the idle one is refused (by this process and by a fresh one), although its
    # catalog item is still there: the expiry is checked, not left to TTL
    assert catalog.get_producer(idle) is not None
    for process in (engine, make_engine(clock_ms=lambda: now["ms"])):
        with pytest.raises(UnknownProducerError):
            process.append(
                TOPIC,
                [Record(value=b"late", partition=0)],
                ProducerBatch(idle, 0, sequence=1),
                principal="alice",
            )


def test_a_binding_another_process_refreshed_is_read_again_not_refused(
    make_engine: Callable[..., Engine], topic: str
) -> None:
    # Given a process that cached a binding, and another that kept it alive by appending
    # every 20 hours for 8 days
    now = {"ms": 1_700_000_000_000}
    first, second = (make_engine(clock_ms=lambda: now["ms"]) for _ in range(2))
    producer_id = first.init_producer_id("alice")
    sequence = 0

    def append(engine: Engine) -> int:
        nonlocal sequence
        [ack] = engine.append(
            TOPIC,
            [Record(value=b"%d" % sequence, partition=0)],
            ProducerBatch(producer_id, 0, sequence=sequence),
            principal="alice",
        )
        sequence += 1
        return ack.offset

    append(first)
    for _ in range(10):
        now["ms"] += 20 * 3600 * 1000
        append(second)

    # When the first process's cached expiry (7 days after issue) has passed, it reads the
    # binding again and appends
    assert append(first) == 11
