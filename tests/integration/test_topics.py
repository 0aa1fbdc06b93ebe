"""Topic administration on moto: create, describe, list, alter, add partitions, delete."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from lakelog import (
    Engine,
    InvalidRequestError,
    Record,
    TopicExistsError,
    TopicNotFoundError,
)
from lakelog.limits import MAX_PARTITIONS
from lakelog.storage.faults import FailPoint, InjectedFaultError
from lakelog.storage.keys import topic_segments_prefix
from tests.conftest import MakeFaulty
from tests.contract.backends import Backend

DEFAULT_CONFIG = {
    "retention_ms": 604_800_000,
    "retention_bytes": -1,
    "cleanup_policy": "delete",
    "delete_retention_ms": 86_400_000,
    "max_record_bytes": 1024 * 1024,
    "compression": "zstd",
}


def high_watermarks(engine: Engine, topic: str) -> list[int]:
    return [p.high_watermark for p in engine.describe_topic(topic).partitions]


def append_values(engine: Engine, topic: str, partition: int, *values: bytes) -> None:
    engine.append(topic, [Record(value=v, partition=partition) for v in values])


# Create, describe, list -----------------------------------------------------------------------


def test_create_topic_returns_an_empty_description_with_default_config(engine: Engine) -> None:
    description = engine.create_topic("orders", partitions=3)

    assert description.name == "orders"
    assert re.fullmatch(r"[0-9a-f]{32}", description.topic_id)
    assert description.config == DEFAULT_CONFIG
    assert [(p.partition, p.log_start_offset, p.high_watermark, p.bytes) for p in
            description.partitions] == [(0, 0, 0, 0), (1, 0, 0, 0), (2, 0, 0, 0)]  # fmt: skip


def test_create_topic_defaults_to_one_partition(engine: Engine) -> None:
    assert len(engine.create_topic("single").partitions) == 1


def test_create_topic_with_config_keeps_the_given_keys_and_defaults_the_rest(
    engine: Engine,
) -> None:
    description = engine.create_topic(
        "compacted", config={"cleanup_policy": "compact", "compression": "snappy"}
    )

    assert description.config == {
        **DEFAULT_CONFIG,
        "cleanup_policy": "compact",
        "compression": "snappy",
    }
    assert engine.describe_topic("compacted").config == description.config


def test_create_topic_twice_raises_topic_exists_and_keeps_the_first(
    engine: Engine, backend: Backend
) -> None:
    # Given a topic with data
    first = engine.create_topic("orders", partitions=2)
    append_values(engine, "orders", 1, b"a", b"b")
    before = backend.contents()

    # When it is created again, even with other settings
    with pytest.raises(TopicExistsError) as caught:
        engine.create_topic("orders", partitions=5, config={"compression": "none"})

    # Then the error names it and the first topic is untouched, with nothing stored besides
    assert caught.value.topic == "orders"
    assert caught.value.code == "topic_exists"
    again = engine.describe_topic("orders")
    assert again.topic_id == first.topic_id
    assert again.config == DEFAULT_CONFIG
    assert [p.high_watermark for p in again.partitions] == [0, 2]
    assert backend.contents() == before


@pytest.mark.parametrize("point", [FailPoint.BEFORE_CHAIN_CREATE, FailPoint.AFTER_CHAIN_CREATE])
def test_a_create_that_crashed_before_the_catalog_leaves_nothing_visible_and_the_name_free(
    make_faulty: MakeFaulty, make_engine: Callable[..., Engine], point: FailPoint
) -> None:
    # Given a create that crashed before or after writing the chain's meta and genesis
    engine, injector = make_faulty()
    injector.arm(point)
    with pytest.raises(InjectedFaultError):
        engine.create_topic("orders", partitions=2)

    # Then no process sees the topic, and the name can be created, empty
    other = make_engine()
    assert other.list_topics() == []
    with pytest.raises(TopicNotFoundError):
        other.append("orders", [Record(value=b"lost?", partition=0)])
    created = other.create_topic("orders", partitions=2)
    assert high_watermarks(other, "orders") == [0, 0]
    append_values(engine, "orders", 1, b"a")
    assert [r.value for r in other.fetch("orders", 1, 0).records] == [b"a"]
    assert other.describe_topic("orders").topic_id == created.topic_id


def test_list_topics_returns_every_name_sorted(engine: Engine) -> None:
    assert engine.list_topics() == []

    for name in ("zeta", "alpha", "Mid", "alpha.v2"):
        engine.create_topic(name)

    assert engine.list_topics() == ["Mid", "alpha", "alpha.v2", "zeta"]


def test_describe_reports_each_partitions_offsets_and_bytes(engine: Engine) -> None:
    # Given appends of different sizes to two of three partitions
    topic = engine.create_topic("orders", partitions=3)
    append_values(engine, "orders", 0, b"x" * 100)
    append_values(engine, "orders", 0, b"y" * 10, b"z")
    append_values(engine, "orders", 2, b"w" * 1000)

    description = engine.describe_topic("orders")

    # Then each partition has its own high watermark and byte count
    assert [p.partition for p in description.partitions] == [0, 1, 2]
    assert [p.log_start_offset for p in description.partitions] == [0, 0, 0]
    assert [p.high_watermark for p in description.partitions] == [3, 0, 1]
    # And each byte count is the sum of that partition's batches over the chain's items
    items = list(engine.context.ledger.chain(topic.topic_id))
    for info in description.partitions:
        batches = [item.batch(info.partition) for item in items]
        assert info.bytes == sum(batch.byte_length for batch in batches if batch is not None)
    assert description.partitions[0].bytes > 0
    assert description.partitions[1].bytes == 0
    assert description.partitions[2].bytes > 0


# Alter and add partitions ----------------------------------------------------------------------


def test_alter_config_merges_the_given_keys_into_the_current_config(engine: Engine) -> None:
    engine.create_topic("orders", config={"retention_ms": 60_000, "compression": "snappy"})

    altered = engine.alter_topic("orders", config={"compression": "lz4"})

    expected = {**DEFAULT_CONFIG, "retention_ms": 60_000, "compression": "lz4"}
    assert altered.config == expected
    assert engine.describe_topic("orders").config == expected


def test_alter_config_applies_to_later_appends(engine: Engine) -> None:
    engine.create_topic("orders")
    engine.alter_topic("orders", config={"max_record_bytes": 10})

    with pytest.raises(InvalidRequestError, match="max_record_bytes is 10"):
        engine.append("orders", [Record(value=b"x" * 11)])
    engine.append("orders", [Record(value=b"x" * 10)])


def test_alter_with_bad_config_changes_nothing(engine: Engine) -> None:
    engine.create_topic("orders", config={"retention_ms": 60_000})

    with pytest.raises(InvalidRequestError, match="compression"):
        engine.alter_topic("orders", config={"retention_ms": 1, "compression": "gzip"})

    assert engine.describe_topic("orders").config["retention_ms"] == 60_000


def test_add_partitions_creates_empty_partitions_and_keeps_the_old_ones(engine: Engine) -> None:
    # Given a topic with data in both partitions
    engine.create_topic("orders", partitions=2)
    append_values(engine, "orders", 0, b"a")
    append_values(engine, "orders", 1, b"b", b"c")

    # When it grows to five partitions
    grown = engine.alter_topic("orders", partitions=5)

    # Then the old partitions keep their data and the new ones start empty and writable
    assert [p.high_watermark for p in grown.partitions] == [1, 2, 0, 0, 0]
    append_values(engine, "orders", 4, b"d")
    assert engine.fetch("orders", 4, 0).records[0].value == b"d"
    assert engine.fetch("orders", 1, 0).records[1].value == b"c"


def test_alter_with_the_same_partition_count_is_allowed(engine: Engine) -> None:
    engine.create_topic("orders", partitions=3)

    assert len(engine.alter_topic("orders", partitions=3).partitions) == 3


@pytest.mark.parametrize("partitions", [1, 2])
def test_partitions_can_never_be_removed(engine: Engine, partitions: int) -> None:
    engine.create_topic("orders", partitions=3)

    with pytest.raises(InvalidRequestError, match="partitions can only be added"):
        engine.alter_topic("orders", partitions=partitions)

    assert len(engine.describe_topic("orders").partitions) == 3


@pytest.mark.parametrize("partitions", [0, -1, MAX_PARTITIONS + 1, True, "4", 2.0])
def test_alter_rejects_bad_partition_counts(engine: Engine, partitions: object) -> None:
    engine.create_topic("orders", partitions=2)

    with pytest.raises(InvalidRequestError, match="partitions must be"):
        engine.alter_topic("orders", partitions=partitions)  # type: ignore[arg-type]

    assert len(engine.describe_topic("orders").partitions) == 2


def test_alter_config_and_partitions_together(engine: Engine) -> None:
    engine.create_topic("orders")

    altered = engine.alter_topic("orders", config={"retention_bytes": 1000}, partitions=2)

    assert altered.config["retention_bytes"] == 1000
    assert len(altered.partitions) == 2


# Delete ----------------------------------------------------------------------------------------


def test_delete_topic_removes_it_from_list_and_describe(engine: Engine) -> None:
    engine.create_topic("orders")
    engine.create_topic("payments")

    engine.delete_topic("orders")

    assert engine.list_topics() == ["payments"]
    with pytest.raises(TopicNotFoundError):
        engine.describe_topic("orders")


def test_delete_topic_twice_raises_topic_not_found(engine: Engine) -> None:
    engine.create_topic("orders")
    engine.delete_topic("orders")

    with pytest.raises(TopicNotFoundError):
        engine.delete_topic("orders")


def test_delete_topic_leaves_its_segments_to_gc(engine: Engine) -> None:
    # Given a topic with one segment
    topic = engine.create_topic("orders")
    append_values(engine, "orders", 0, b"a")

    engine.delete_topic("orders")

    # Then the segment stays until gc and the topic is marked for gc
    prefix = topic_segments_prefix(topic.topic_id)
    assert len(list(engine.context.objects.list(prefix))) == 1
    marked = engine.context.catalog.deleted_topics()
    assert [t.topic_id for t in marked] == [topic.topic_id]


def test_delete_then_create_same_name_gets_a_new_id_and_no_old_data(engine: Engine) -> None:
    # Given a topic with data that is deleted
    old = engine.create_topic("orders", partitions=2)
    append_values(engine, "orders", 0, b"old-0", b"old-1")
    append_values(engine, "orders", 1, b"old-2")
    engine.delete_topic("orders")

    # When a topic of the same name is created
    new = engine.create_topic("orders", partitions=2)

    # Then it is a different topic that sees none of the old records
    assert new.topic_id != old.topic_id
    assert high_watermarks(engine, "orders") == [0, 0]
    assert [p.bytes for p in engine.describe_topic("orders").partitions] == [0, 0]
    assert engine.fetch("orders", 0, 0).records == []
    assert engine.offset_for_time("orders", 0, 0) is None
    append_values(engine, "orders", 0, b"new")
    fetched = engine.fetch("orders", 0, 0)
    assert [(r.offset, r.value) for r in fetched.records] == [(0, b"new")]


def test_second_engine_never_sees_old_data_after_delete_and_create(
    make_engine: Callable[..., Engine],
) -> None:
    # Given engine b has read the old topic (and cached it)
    a, b = make_engine(), make_engine()
    a.create_topic("orders")
    append_values(a, "orders", 0, b"old")
    assert b.fetch("orders", 0, 0).records[0].value == b"old"

    # When engine a deletes and re-creates the topic and writes to it
    a.delete_topic("orders")
    a.create_topic("orders")
    append_values(a, "orders", 0, b"new")

    # Then engine b never returns an old record: at worst one TopicNotFoundError, then new data
    def read() -> list[bytes | None]:
        return [r.value for r in b.fetch("orders", 0, 0).records]

    try:
        values = read()
    except TopicNotFoundError:
        values = read()
    assert values == [b"new"]


# Unknown topics ------------------------------------------------------------------------------

UNKNOWN_TOPIC_OPERATIONS: dict[str, Callable[[Engine], object]] = {
    "describe": lambda e: e.describe_topic("nope"),
    "alter_config": lambda e: e.alter_topic("nope", config={"retention_ms": 1}),
    "alter_partitions": lambda e: e.alter_topic("nope", partitions=2),
    "delete": lambda e: e.delete_topic("nope"),
    "append": lambda e: e.append("nope", [Record(value=b"v")]),
    "append_keyed": lambda e: e.append("nope", [Record(key=b"k", value=b"v")]),
    "append_explicit": lambda e: e.append("nope", [Record(value=b"v", partition=0)]),
    "fetch": lambda e: e.fetch("nope", 0, 0),
    "list_offset_earliest": lambda e: e.list_offset("nope", 0, "earliest"),
    "list_offset_latest": lambda e: e.list_offset("nope", 0, "latest"),
    "offset_for_time": lambda e: e.offset_for_time("nope", 0, 0),
}


@pytest.mark.parametrize("operation", sorted(UNKNOWN_TOPIC_OPERATIONS))
def test_unknown_topic_raises_topic_not_found_on_every_operation(
    engine: Engine, operation: str
) -> None:
    engine.create_topic("other")

    with pytest.raises(TopicNotFoundError) as caught:
        UNKNOWN_TOPIC_OPERATIONS[operation](engine)

    assert caught.value.topic == "nope"
    assert caught.value.code == "topic_not_found"
    assert engine.list_topics() == ["other"]


@pytest.mark.parametrize("operation", sorted(UNKNOWN_TOPIC_OPERATIONS))
def test_deleted_topic_raises_topic_not_found_on_every_operation(
    engine: Engine, operation: str
) -> None:
    engine.create_topic("nope")
    append_values(engine, "nope", 0, b"v")
    engine.delete_topic("nope")

    with pytest.raises(TopicNotFoundError):
        UNKNOWN_TOPIC_OPERATIONS[operation](engine)


# A second engine -------------------------------------------------------------------------------


def test_second_engine_sees_creates_alters_appends_and_deletes(
    make_engine: Callable[..., Engine],
) -> None:
    a, b = make_engine(), make_engine()

    # create
    created = a.create_topic("orders", partitions=2)
    assert b.list_topics() == ["orders"]
    assert b.describe_topic("orders").topic_id == created.topic_id

    # alter config
    a.alter_topic("orders", config={"retention_ms": 1234})
    assert b.describe_topic("orders").config["retention_ms"] == 1234

    # add partitions
    a.alter_topic("orders", partitions=4)
    assert len(b.describe_topic("orders").partitions) == 4

    # append
    append_values(a, "orders", 3, b"v")
    assert high_watermarks(b, "orders") == [0, 0, 0, 1]
    assert b.fetch("orders", 3, 0).records[0].value == b"v"

    # delete
    a.delete_topic("orders")
    assert b.list_topics() == []
    with pytest.raises(TopicNotFoundError):
        b.describe_topic("orders")
    with pytest.raises(TopicNotFoundError):
        b.fetch("orders", 3, 0)


def test_second_engine_with_a_cached_topic_cannot_append_after_delete(
    make_engine: Callable[..., Engine],
) -> None:
    # Given engine b has appended (so it caches the topic and the chain's tail)
    a, b = make_engine(), make_engine()
    topic = a.create_topic("orders")
    append_values(b, "orders", 0, b"first")

    # When engine a deletes the topic
    a.delete_topic("orders")

    # Then engine b's next append fails rather than writing into the deleted ledger:
    # nothing follows the seal
    with pytest.raises(TopicNotFoundError):
        append_values(b, "orders", 0, b"late")
    assert a.list_topics() == []
    chain = list(a.context.ledger.chain(topic.topic_id))
    assert [item.kind for item in chain] == ["genesis", "append", "seal"]


def test_an_append_to_a_partition_another_engine_added_is_accepted(
    make_engine: Callable[..., Engine],
) -> None:
    # Given engine b caches the topic with one partition (its topic cache keeps it 30 s)
    a, b = make_engine(), make_engine()
    a.create_topic("t", partitions=1)
    b.append("t", [Record(value=b"cached")])

    # When engine a adds a partition and b appends to it by number
    a.alter_topic("t", partitions=2)
    [ack] = b.append("t", [Record(value=b"new", partition=1)])

    # Then b re-reads the topic instead of refusing the partition as out of range
    assert (ack.partition, ack.offset) == (1, 0)
    assert [r.value for r in a.fetch("t", 1, 0).records] == [b"new"]
