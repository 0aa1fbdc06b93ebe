"""Edge cases of the SDK and the group protocol: cancelled futures, lost replies, body
limits, flush under load, re-created topics, iteration positions, races with the heartbeat
thread, failed polls, deleted topics and stale partition counts."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import pytest

from lakelog import Engine, ResourceNames, TopicPartition
from lakelog.client import Client, ConsumerRecord
from lakelog.contract.operations import Append, Fetch, InitProducerId, JoinGroup, Operation
from lakelog.errors import InvalidRequestError, TopicNotFoundError
from lakelog.local.server import LocalService
from lakelog.log.chain import PRODUCER_EXPIRATION_MS
from lakelog.storage.keys import PRODUCER_SK, producer_pk
from tests.integration.group_support import Clock
from tests.integration.sdk.conftest import BACKSTOP_S, Serve, Wire, heartbeated, wait_until

R = TypeVar("R")

MakeClient = Callable[[], tuple[Client, Wire]]


def _values(client: Client, topic: str, partition: int = 0) -> list[bytes | None]:
    high = client.describe_topic(topic).partitions[partition].high_watermark
    result = client.call(Fetch(topic, partition, 0, 10_000, 1 << 20))
    assert result.next_offset == high
    return [r.value for r in result.records]


class _MangledReply(Wire):
    """Appends land, then the reply cannot be read (a non-domain error, e.g. bad JSON)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.mangle = 0

    def call(self, op: Operation[R]) -> R:
        result = super().call(op)
        if isinstance(op, Append) and self.mangle:
            self.mangle -= 1
            raise ValueError("Expecting value: line 1 column 1 (char 0)")
        return result


# Producer -----------------------------------------------------------------------------------
def test_a_cancelled_future_does_not_kill_the_sender_thread(client: Client) -> None:
    client.create_topic("cancel")
    producer = client.producer(linger_ms=60_000)  # nothing is sent before the flush
    cancelled = producer.send("cancel", value=b"a")
    assert cancelled.cancel()
    kept = producer.send("cancel", value=b"b")
    producer.flush(timeout=BACKSTOP_S)
    assert kept.get(timeout=0).partition == 0
    later = producer.send("cancel", value=b"c")
    producer.flush(timeout=BACKSTOP_S)
    assert later.get(timeout=0).topic == "cancel"
    producer.close(timeout=BACKSTOP_S)


def test_an_unexpected_error_after_an_append_landed_never_acks_a_later_record_as_duplicate(
    make_transport: Callable[[], Any],
) -> None:
    wire = _MangledReply(make_transport())
    client = Client(transport=wire)
    client.create_topic("mangled")
    producer = client.producer(linger_ms=0)
    wire.mangle = 1
    with pytest.raises(ValueError, match="Expecting value"):
        producer.send("mangled", value=b"one").get(timeout=BACKSTOP_S)
    second = producer.send("mangled", value=b"two").get(timeout=BACKSTOP_S)
    producer.close(timeout=BACKSTOP_S)
    assert b"two" in _values(client, "mangled")  # acknowledged, so it must be in the log
    assert second.offset == 1


@pytest.fixture
def http_client() -> Iterator[Client]:
    """The SDK over HTTP, on a `LocalService` (moto and the API in this process)."""
    with LocalService(port=0) as service, Client(service.api_url) as client:
        yield client


def test_an_http_batch_within_the_producer_limits_fits_the_request_body_limit(
    http_client: Client,
) -> None:
    http_client.create_topic("wide", partitions=6)
    with http_client.producer(linger_ms=60_000) as producer:
        futures = [
            producer.send("wide", key=b"k%014d" % i, value=bytes(400), partition=i % 6)
            for i in range(10_000)
        ]
        producer.flush(timeout=120)
    assert [f.exception() for f in futures if f.exception() is not None][:1] == []
    assert sum(p.high_watermark for p in http_client.describe_topic("wide").partitions) == 10_000


def test_flush_returns_while_other_threads_keep_sending(client: Client) -> None:
    client.create_topic("busy")
    producer = client.producer(linger_ms=5)
    stop = threading.Event()

    def keep_sending() -> None:
        while not stop.is_set():
            producer.send("busy", value=b"x")
            time.sleep(0.001)

    other = threading.Thread(target=keep_sending)
    other.start()
    try:
        mine = producer.send("busy", value=b"mine")
        producer.flush(timeout=BACKSTOP_S)  # waits for what was sent before it, as Kafka's does
        assert mine.done()
    finally:
        stop.set()
        other.join()
        producer.close(timeout=30)


def test_the_first_send_to_a_re_created_topic_succeeds(client: Client) -> None:
    client.create_topic("again")
    with client.producer(linger_ms=0) as producer:
        producer.send("again", value=b"old").get(timeout=BACKSTOP_S)
        client.delete_topic("again")
        client.create_topic("again")
        assert producer.send("again", value=b"new").get(timeout=BACKSTOP_S).offset == 0


class _Issued(Wire):
    """Remembers the producer ids the service issued through it."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.issued: list[int] = []

    def call(self, op: Operation[R]) -> R:
        result = super().call(op)
        if isinstance(op, InitProducerId):
            self.issued.append(int(result))  # type: ignore[call-overload]
        return result


def test_a_producer_whose_id_expired_goes_on_under_a_fresh_one(
    serve: Serve, make_engine: Callable[..., Engine], dynamodb_client: Any, resources: ResourceNames
) -> None:
    wire = _Issued(serve(make_engine()))
    client = Client(transport=wire)
    client.create_topic("ttl")
    with client.producer(linger_ms=0) as producer:
        producer.send("ttl", value=b"before", partition=0).get(timeout=BACKSTOP_S)
        [expired] = wire.issued
        # The id's catalog item is removed by its TTL; the next append reaches a process
        # that never met the id, which refuses it (nothing written)
        dynamodb_client.delete_item(
            TableName=resources.catalog_table,
            Key={"pk": {"S": producer_pk(expired)}, "sk": {"S": PRODUCER_SK}},
        )
        wire.inner = serve(make_engine())

        assert producer.send("ttl", value=b"after", partition=0).get(timeout=BACKSTOP_S).offset == 1

    assert wire.issued[0] == expired
    assert len(wire.issued) == 2
    assert _values(client, "ttl") == [b"before", b"after"]


def test_a_producer_whose_state_expired_goes_on_under_a_fresh_one(
    serve: Serve, make_engine: Callable[..., Engine]
) -> None:
    # Engines on a clock the test moves (their backoff sleeps move it too)
    clock = Clock()

    def sleep(seconds: float) -> None:
        clock.advance(int(seconds * 1000) + 1)

    wire = _Issued(serve(make_engine(clock_ms=clock, sleep=sleep)))
    client = Client(transport=wire)
    client.create_topic("idle", partitions=2)
    with client.producer(linger_ms=0) as producer:
        producer.send("idle", value=b"first", partition=0).get(timeout=BACKSTOP_S)
        producer.send("idle", value=b"second", partition=1).get(timeout=BACKSTOP_S)
        [first_id] = wire.issued
        # The producer stays idle longer than the topic remembers producers (ADR 0012, 2.5):
        # its state there expires, while its id (7 days) is still held
        clock.advance(PRODUCER_EXPIRATION_MS + 1_000)

        # Its next request (sequence 2) is out of order; the producer goes on under a new id
        last = producer.send("idle", value=b"last", partition=0).get(timeout=BACKSTOP_S)

    assert last.offset == 1
    assert len(wire.issued) == 2 and wire.issued[0] == first_id
    assert _values(client, "idle", 0) == [b"first", b"last"]
    assert _values(client, "idle", 1) == [b"second"]


# Consumer -----------------------------------------------------------------------------------
def _produce(client: Client, topic: str, count: int, partitions: int = 1) -> None:
    with client.producer(linger_ms=0) as producer:
        for i in range(count):
            producer.send(topic, value=b"%d" % i, partition=i % partitions)
        producer.flush()


def _first_offset(client: Client, topic: str, group: str) -> int:
    """The offset a new member of ``group`` starts reading ``topic``-0 at."""
    consumer = client.consumer(
        topic, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    records: list[ConsumerRecord] = []
    try:
        wait_until(
            lambda: bool(records),
            lambda: records.extend(consumer.poll(timeout_ms=100).get(TopicPartition(topic, 0), [])),
        )
        return records[0].offset
    finally:
        consumer.close()


def test_commit_while_iterating_commits_only_the_records_returned(client: Client) -> None:
    client.create_topic("iter")
    _produce(client, "iter", 10)
    consumer = client.consumer(
        "iter", group_id="gi", auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        assert next(consumer).offset == 0
        consumer.commit()
    finally:
        consumer.close()
    assert _first_offset(client, "iter", "gi") == 1  # not 10: records 1-9 were never returned


def test_close_after_breaking_out_of_iteration_does_not_skip_records(client: Client) -> None:
    client.create_topic("brk")
    _produce(client, "brk", 10)
    consumer = client.consumer("brk", group_id="gb", auto_offset_reset="earliest")
    for record in consumer:
        if record.offset == 3:
            break
    consumer.close()  # auto-commit
    assert _first_offset(client, "brk", "gb") == 4  # not 10: records 4-9 were never returned


def _extend(
    found: dict[TopicPartition, list[ConsumerRecord]],
    polled: dict[TopicPartition, list[ConsumerRecord]],
) -> None:
    for tp, records in polled.items():
        found.setdefault(tp, []).extend(records)


def _owners(client: Client, group: str) -> list[str | None]:
    return [p.owner for p in client.describe_group(group).partitions]


def test_auto_commit_after_a_background_heartbeat_moved_a_lease_keeps_the_others(
    make_timed_client: MakeClient, clock: Clock
) -> None:
    client, _ = make_timed_client()
    client.create_topic("moved", partitions=2)
    _produce(client, "moved", 10, partitions=2)
    options: dict[str, Any] = {
        "group_id": "gm",
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 1500,
        "auto_commit_interval_ms": 100,
        "_clock": clock,
    }
    first = make_timed_client()[0].consumer("moved", **options)
    second = make_timed_client()[0].consumer("moved", **options)
    try:
        got: dict[TopicPartition, list[ConsumerRecord]] = {}
        wait_until(  # joins alone: both partitions
            lambda: sum(map(len, got.values())) == 10,
            lambda: _extend(got, first.poll(timeout_ms=100)),
        )
        assert {tp.partition for tp in got} == {0, 1}
        second.poll(timeout_ms=0)  # joins; nothing is free yet
        # When a heartbeat falls due, first's heartbeat thread gives partition 1 up (no
        # poll meanwhile)
        clock.advance(500)
        wait_until(lambda: _owners(client, "gm")[0] != _owners(client, "gm")[1])
        again = first.poll(timeout_ms=300)
        # partition 0 never moved and its records were returned: not again
        assert again.get(TopicPartition("moved", 0), []) == []
    finally:
        first.close()
        second.close()


def test_a_poll_that_raises_does_not_move_positions_past_records_it_never_returned(
    client: Client,
) -> None:
    client.create_topic("kept")
    client.create_topic("dropped")
    kept = TopicPartition("kept", 0)
    consumer = client.consumer(auto_offset_reset="earliest")
    consumer.assign([TopicPartition("dropped", 0), kept])
    client.delete_topic("dropped")
    _produce(client, "kept", 3)
    returned: list[int] = []
    for _ in range(4):
        with contextlib.suppress(TopicNotFoundError):
            returned += [r.offset for r in consumer.poll(timeout_ms=200).get(kept, [])]
    assert consumer.position(kept) == len(returned)  # 3 == 0: records 0-2 were skipped
    consumer.close()


def test_a_member_subscribed_to_a_deleted_topic_keeps_its_other_topics(
    make_timed_client: MakeClient, clock: Clock
) -> None:
    client, _ = make_timed_client()
    client.create_topic("stays")
    client.create_topic("goes")
    consumer = make_timed_client()[0].consumer(
        "stays",
        "goes",
        group_id="gd",
        auto_offset_reset="earliest",
        session_timeout_ms=1500,
        _clock=clock,
    )
    try:
        consumer.poll(timeout_ms=0)
        client.delete_topic("goes")
        _produce(client, "stays", 3)
        returned: list[int] = []
        deleted_at = clock()

        def poll_one_heartbeat_later() -> None:
            clock.advance(500)
            with contextlib.suppress(TopicNotFoundError):
                for records in consumer.poll(timeout_ms=100).values():
                    returned.extend(r.offset for r in records)
            wait_until(lambda: heartbeated(consumer, clock))

        # Until three sessions passed and its records came: it heartbeats all along
        wait_until(
            lambda: len(returned) >= 3 and clock() - deleted_at >= 3 * 1500,
            poll_one_heartbeat_later,
        )
        assert [m.topics for m in client.describe_group("gd").members] != []  # still live
        assert returned == [0, 1, 2]
    finally:
        consumer.close()


# Group service ------------------------------------------------------------------------------
def test_a_heartbeat_served_with_a_stale_partition_count_keeps_the_new_partitions(
    make_engine: Callable[..., Any],
) -> None:
    """Over HTTP, successive heartbeats of one member reach different Lambda containers."""
    clock = Clock()
    fresh, stale = make_engine(clock_ms=clock), make_engine(clock_ms=clock)
    fresh.create_topic("grown", partitions=2)
    stale.join_group("gg", ["grown"], "m1")  # this container caches 2 partitions (30 s)
    fresh.alter_topic("grown", partitions=4)
    assert len(fresh.join_group("gg", ["grown"], "m1").assignments) == 4
    epochs = [p.lease_epoch for p in fresh.describe_group("gg").partitions]
    reply = stale.join_group("gg", ["grown"], "m1")
    assert [p.lease_epoch for p in fresh.describe_group("gg").partitions] == epochs
    assert [a.partition for a in reply.assignments] == [0, 1, 2, 3]


def test_subscribing_to_one_name_subscribes_to_that_topic_not_its_letters(
    client: Client,
) -> None:
    for name in ("a", "b", "ab"):
        client.create_topic(name)
    consumer = client.consumer(group_id="letters", auto_offset_reset="earliest")
    consumer.subscribe("ab")  # one name, as kafka-python takes it
    consumer.poll(timeout_ms=0)
    assert consumer.subscription() == {"ab"}
    assert consumer.assignment() == {TopicPartition("ab", 0)}
    consumer.close()


def test_a_join_naming_a_string_for_its_topics_is_refused_on_every_transport(
    client: Client,
) -> None:
    for name in ("a", "b", "ab"):
        client.create_topic(name)
    with pytest.raises(InvalidRequestError, match="list of topic names"):
        client.call(JoinGroup("letters", "ab"))


def test_calling_something_that_is_no_operation_is_refused_on_every_transport(
    client: Client,
) -> None:
    with pytest.raises(InvalidRequestError, match="no operation object"):
        client.call(cast("Operation[None]", object()))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.describe_topic(""), "topic name must be a non-empty string"),
        (lambda c: c.describe_topic(None), "topic name must be a non-empty string"),
        (lambda c: c.describe_topic(".."), "topic name cannot be '.' or '..'"),
        (lambda c: c.delete_topic("."), "topic name cannot be '.' or '..'"),
        (lambda c: c.describe_group(""), "group id must be a non-empty string"),
        (lambda c: c.delete_subscription("orders", ".."), "subscription name"),
        (lambda c: c.call(Fetch("orders", True, 0, 1, 1)), "partition must be an integer"),
    ],
    ids=["empty", "none", "dot-dot", "dot", "empty-group", "dot-dot-name", "bool-partition"],
)
def test_a_name_no_path_can_carry_is_refused_alike_on_every_transport(
    client: Client, call: Callable[[Client], Any], message: str
) -> None:
    # Over HTTP ".." and "" left the path ("/v1/topics/.." is "/v1/"): "no route"; None
    # became the topic "None"
    client.create_topic("orders")

    with pytest.raises(InvalidRequestError, match=message):
        call(client)

    assert client.list_topics() == ["orders"]
