"""Consumer without a group: assign, poll, iterate, seek, offsets for times."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from lakelog import TopicPartition
from lakelog.client import Client, OffsetAndTimestamp
from lakelog.contract.operations import Append
from lakelog.errors import InvalidRequestError, OffsetOutOfRangeError
from lakelog.types import Record
from tests.integration.sdk.conftest import MakeServed, Wire

TP0 = TopicPartition("events", 0)
TP1 = TopicPartition("events", 1)


@pytest.fixture
def events(client: Client) -> Client:
    """``events``: 2 partitions, 20 records each, timestamps 1000 + 10 * i."""
    client.create_topic("events", partitions=2)
    with client.producer(linger_ms=1) as producer:
        for i in range(20):
            for partition in (0, 1):
                producer.send(
                    "events",
                    key=b"k%d" % i,
                    value=json.dumps({"i": i, "p": partition}).encode(),
                    headers=[("trace", b"t%d" % i)],
                    partition=partition,
                    timestamp_ms=1000 + 10 * i,
                )
    return client


def test_poll_returns_records_by_partition_in_order(events: Client) -> None:
    consumer = events.consumer(auto_offset_reset="earliest", value_deserializer=json.loads)
    consumer.assign([TP0, TP1])
    seen: dict[TopicPartition, list[int]] = {TP0: [], TP1: []}
    while sum(map(len, seen.values())) < 40:
        for tp, records in consumer.poll(timeout_ms=5000, max_records=7).items():
            assert len(records) <= 7
            for record in records:
                assert record.value == {"i": record.offset, "p": tp.partition}
                assert record.key == b"k%d" % record.offset
                assert record.headers == [("trace", b"t%d" % record.offset)]
                assert record.timestamp == 1000 + 10 * record.offset
                seen[tp].append(record.offset)
    assert seen == {TP0: list(range(20)), TP1: list(range(20))}
    assert consumer.poll(timeout_ms=100) == {}
    assert consumer.position(TP0) == 20
    consumer.close()


def test_latest_skips_what_is_there(events: Client) -> None:
    consumer = events.consumer(auto_offset_reset="latest")
    consumer.assign([TP0])
    assert consumer.position(TP0) == 20
    with events.producer() as producer:
        producer.send("events", value=b"new", partition=0)
    records = consumer.poll(timeout_ms=5000)[TP0]
    assert [(r.offset, r.value) for r in records] == [(20, b"new")]


def test_iteration_stops_after_consumer_timeout(events: Client) -> None:
    consumer = events.consumer(auto_offset_reset="earliest", consumer_timeout_ms=300)
    consumer.assign([TP1])
    assert [r.offset for r in consumer] == list(range(20))


def test_seek_and_seek_to_beginning_and_end(events: Client) -> None:
    consumer = events.consumer(auto_offset_reset="latest")
    consumer.assign([TP0, TP1])
    consumer.seek(TP0, 15)
    assert [r.offset for r in consumer.poll(timeout_ms=5000)[TP0]] == [15, 16, 17, 18, 19]
    consumer.seek_to_beginning(TP1)
    assert consumer.position(TP1) == 0
    consumer.seek_to_end()
    assert consumer.position(TP0) == consumer.position(TP1) == 20
    assert consumer.beginning_offsets([TP0]) == {TP0: 0}
    assert consumer.end_offsets([TP0, TP1]) == {TP0: 20, TP1: 20}
    with pytest.raises(InvalidRequestError, match="not assigned"):
        consumer.seek(TopicPartition("events", 7), 0)
    with pytest.raises(InvalidRequestError):
        consumer.seek(TP0, -1)


@pytest.mark.parametrize("offset", [True, 1.0, "3", None], ids=repr)
def test_a_seek_to_something_that_is_not_an_offset_is_refused_and_moves_nothing(
    events: Client, offset: Any
) -> None:
    consumer = events.consumer(auto_offset_reset="latest")
    consumer.assign([TP0])
    consumer.seek(TP0, 15)

    with pytest.raises(InvalidRequestError, match="offset must be"):
        consumer.seek(TP0, offset)

    assert consumer.position(TP0) == 15
    assert [r.offset for r in consumer.poll(timeout_ms=5000)[TP0]] == [15, 16, 17, 18, 19]


def test_offsets_for_times(events: Client) -> None:
    consumer = events.consumer()
    found = consumer.offsets_for_times({TP0: 1055, TP1: 0, TopicPartition("events", 0): 1055})
    assert found[TP0] == OffsetAndTimestamp(6, 1060)
    assert found[TP1] == OffsetAndTimestamp(0, 1000)
    assert consumer.offsets_for_times({TP0: 10**12}) == {TP0: None}


def test_offsets_for_times_asks_one_request_per_partition_and_gets_the_records_timestamp(
    wired: tuple[Client, Wire],
) -> None:
    # Given a partition whose records are 1,000 ms apart
    client, wire = wired
    client.create_topic("spaced", partitions=1)
    client.call(
        Append(
            "spaced",
            [Record(value=b"%d" % i, partition=0, timestamp_ms=i * 1000) for i in range(5)],
        )
    )
    wire.calls.clear()

    # When the offset for a time between two records is looked up
    found = client.consumer().offsets_for_times({TopicPartition("spaced", 0): 2_500})

    # Then one request answers it, with the later record's own timestamp (not the time asked)
    assert found == {TopicPartition("spaced", 0): OffsetAndTimestamp(3, 3_000)}
    assert wire.calls == {"offset_for_time": 1}


def test_a_position_past_the_end_follows_auto_offset_reset(events: Client) -> None:
    consumer = events.consumer(auto_offset_reset="earliest")
    consumer.assign([TP0])
    consumer.seek(TP0, 500)
    records = consumer.poll(timeout_ms=5000).get(TP0, [])
    assert consumer.position(TP0) <= 20
    strict = events.consumer(auto_offset_reset="none")
    with pytest.raises(OffsetOutOfRangeError):
        strict.assign([TP0])
    assert all(r.offset < 20 for r in records)


def test_misuse_is_refused(events: Client) -> None:
    with pytest.raises(InvalidRequestError):
        events.consumer(auto_offset_reset="middle")  # type: ignore[arg-type]
    plain = events.consumer()
    with pytest.raises(InvalidRequestError, match="group_id"):
        plain.subscribe(["events"])
    with pytest.raises(InvalidRequestError, match="group"):
        plain.commit()
    grouped = events.consumer("events", group_id="g")
    with pytest.raises(InvalidRequestError, match="mixed"):
        grouped.assign([TP0])
    plain.close()
    with pytest.raises(InvalidRequestError, match="closed"):
        plain.poll()


def test_poll_rides_out_an_unavailable_service(
    make_client: Callable[[], tuple[Client, Wire]],
) -> None:
    client, wire = make_client()
    client.create_topic("flaky", partitions=2)
    consumer = client.consumer(auto_offset_reset="earliest")
    consumer.assign([TopicPartition("flaky", 0), TopicPartition("flaky", 1)])
    wire.cut = True
    assert consumer.poll(timeout_ms=300) == {}  # no exception: 503s are retried
    wire.cut = False
    with client.producer() as producer:
        producer.send("flaky", value=b"after", partition=1)
    records = consumer.poll(timeout_ms=5000)
    assert [r.value for r in records[TopicPartition("flaky", 1)]] == [b"after"]
    assert wire.calls["fetch_many"] == 1  # both partitions in one request, once served


def test_topics_without_a_group_are_read_from_every_partition(events: Client) -> None:
    consumer = events.consumer("events", auto_offset_reset="earliest", consumer_timeout_ms=500)
    assert consumer.assignment() == {TP0, TP1}
    assert len(list(consumer)) == 40


def test_offsets_for_times_cannot_be_changed_by_an_append_landing_meanwhile(
    make_served: MakeServed,
) -> None:
    # Given a partition whose only record is older than T
    transport, engine = make_served()
    client = Client(transport=transport)
    client.create_topic("late", partitions=1)
    client.call(Append("late", [Record(value=b"old", partition=0, timestamp_ms=1_000)]))
    # ... and an append of another old record that lands right after the service has read
    # the high watermark to answer the lookup (between two requests, had it made two)
    read_latest = engine.list_offset
    appended: list[Any] = []

    def latest_then_append(topic: str, partition: int, spec: Any) -> int:
        found = read_latest(topic, partition, spec)
        if spec == "latest" and not appended:
            appended.extend(engine.append("late", [Record(b"x", partition=0, timestamp_ms=500)]))
        return found

    engine.list_offset = latest_then_append  # type: ignore[method-assign]
    consumer = client.consumer()

    # When the offset for T = 2,000 is looked up
    found = consumer.offsets_for_times({TopicPartition("late", 0): 2_000})

    # Then there is none: no record is that recent, before or after the append
    assert found == {TopicPartition("late", 0): None}
