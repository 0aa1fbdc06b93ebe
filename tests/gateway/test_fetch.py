"""Fetch and ListOffsets through three clients nobody here wrote (librdkafka through
confluent-kafka, kafka-python, aiokafka), without consumer groups (assign and seek).

Records are appended through the engine or the SDK (direct mode), as the HTTP API appends
them, and read over Kafka: every field is compared (offset, timestamp, key, value, headers,
null apart from empty), which is the cross-protocol proof of ADR 0016 §4.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import importlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import aiokafka
import confluent_kafka
import confluent_kafka.admin
import kafka
import pytest
from kio.records.readers import read_batch
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.list_offsets.v8.request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)

from lakelog.client import Client
from lakelog.kafka import GatewayConfig, KafkaGateway
from lakelog.kafka import fetch as fetch_api
from lakelog.kafka import offsets as offsets_api
from lakelog.kafka.apis import Api, Session
from lakelog.kafka.appends import AppendSignal
from lakelog.kafka.protocol import Request, build, encode_response, error_response
from lakelog.kafka.served import SERVED
from lakelog.kafka.server import RunningGateway
from lakelog.service.engine import Engine
from lakelog.storage.ports import AclEntry
from lakelog.types import Header, Record, StoredRecord
from tests.integration.api.conftest import Api as HttpApi
from tests.integration.test_compactor_merge import Clock, clock, make
from tests.integration.test_key_compaction import compact, make_topic, read_log

__all__ = ["clock", "make"]  # fixtures of the key compaction tests

T0 = 1_700_000_000_000
"""The first record's timestamp (ms)."""
DEADLINE_S = 20.0
"""How long a test waits for a client to see what it expects before it fails."""

Seen = tuple[int, int, int, bytes | None, bytes | None, tuple[Header, ...]]
"""What a client read of a record: partition, offset, timestamp, key, value, headers."""
Serve = Callable[..., RunningGateway]


async def _no_produce(body: Any, session: Session) -> Any:
    return error_response(0, body.__version__, ErrorCode.unsupported_version)


def _consumable(apis: Mapping[int, Api]) -> dict[int, Api]:
    """``apis``, with Produce listed if it is not served: librdkafka reads record batches
    v2 (its "MsgVer2" feature) only from a broker that lists Produce v3 or later."""
    served = dict(apis)
    served.setdefault(0, Api(0, 3, 9, _no_produce))
    return served


class _Watched(AppendSignal):
    """Tells when a fetch asked for the next append (before it reads): on its loop
    (``asked``) and to other threads (``fetching``)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()
        self.fetching = threading.Event()

    def next(self) -> asyncio.Future[None]:
        self.asked.set()
        self.fetching.set()
        return super().next()


@pytest.fixture
def serve(engine: Engine) -> Iterator[Serve]:
    """Start gateways on ``engine`` (or ``on``), ACLs allowing all unless ``access``,
    waking fetches with ``appends`` if given."""
    running: list[RunningGateway] = []

    def start(
        on: Engine | None = None,
        access: Any = None,
        appends: AppendSignal | None = None,
        **config: Any,
    ) -> RunningGateway:
        served = on or engine
        config.setdefault("port", 0)
        gateway = KafkaGateway(
            served,
            access or served.access_control("allow"),
            GatewayConfig(**config),
            _consumable(SERVED),
        )
        if appends is not None:
            gateway.appends = appends
        running.append(RunningGateway(gateway))
        return running[-1]

    yield start
    for gateway in running:
        gateway.stop()


@pytest.fixture
def gateway(serve: Serve) -> RunningGateway:
    return serve()


def _records(count: int, partitions: int, start: int = 0) -> list[Record]:
    """Keyed records with headers (a null header value, an empty one, binary bytes), a
    null value every seventh, spread over ``partitions`` explicitly."""
    return [
        Record(
            key=b"key-%d" % i if i % 5 else None,
            value=None if i % 7 == 3 else b"value-%d-\x00\xff" % i,
            headers=(("trace", b"t%d" % i), ("empty", b""), ("none", None)) if i % 2 else (),
            partition=i % partitions,
            timestamp_ms=T0 + i,
        )
        for i in range(start, start + count)
    ]


def _stored(engine: Engine, topic: str, partitions: int) -> list[Seen]:
    """Every record of ``topic`` as the engine reads it."""
    seen: list[Seen] = []
    for partition in range(partitions):
        offset = 0
        while True:
            result = engine.fetch(topic, partition, offset, max_records=10_000)
            seen.extend(_as_seen(r) for r in result.records)
            if result.next_offset >= result.high_watermark:
                break
            offset = result.next_offset
    return seen


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _as_seen(record: StoredRecord) -> Seen:
    return (
        record.partition,
        record.offset,
        record.timestamp_ms,
        record.key,
        record.value,
        tuple(record.headers),
    )


# librdkafka ----------------------------------------------------------------------------


def _rdkafka(gateway: RunningGateway, **config: Any) -> confluent_kafka.Consumer:
    return confluent_kafka.Consumer(
        {
            "bootstrap.servers": gateway.bootstrap,
            "group.id": "unused",  # assign() only: no group request is sent
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            **config,
        }
    )


def _rd_seen(message: confluent_kafka.Message) -> Seen:
    return (
        message.partition(),
        message.offset(),
        message.timestamp()[1],
        message.key(),
        message.value(),
        tuple(message.headers() or ()),
    )


def _drain(consumer: confluent_kafka.Consumer, count: int) -> list[Seen]:
    """Exactly ``count`` records (fails on a client error or after `DEADLINE_S`)."""
    seen: list[Seen] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(seen) < count:
        assert time.monotonic() < deadline, f"read {len(seen)} of {count} records"
        for message in consumer.consume(num_messages=10_000, timeout=0.2):
            assert message.error() is None, message.error()
            seen.append(_rd_seen(message))
    return seen


def _by_partition(seen: list[Seen]) -> list[Seen]:
    return sorted(seen, key=lambda s: (s[0], s[1]))


def test_records_produced_over_the_sdk_are_read_over_kafka_byte_for_byte(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("orders", 3)
    with Client(transport=engine).producer() as producer:
        for record in _records(60, 3):
            producer.send(
                "orders",
                record.value,
                key=record.key,
                headers=record.headers,
                partition=record.partition,
                timestamp_ms=record.timestamp_ms,
            )
    expected = _stored(engine, "orders", 3)
    consumer = _rdkafka(gateway)
    try:
        consumer.assign([confluent_kafka.TopicPartition("orders", p, 0) for p in range(3)])
        seen = _drain(consumer, len(expected))
    finally:
        consumer.close()
    assert len(expected) == 60
    assert _by_partition(seen) == expected


@pytest.mark.moto
def test_records_produced_over_the_http_api_are_read_over_kafka_byte_for_byte(
    engine: Engine, gateway: RunningGateway, http_api: HttpApi
) -> None:
    api = http_api
    engine.create_topic("orders", 2)
    records = _records(20, 2)

    def data(raw: bytes | None) -> dict[str, str] | None:
        return None if raw is None else {"type": "BINARY", "data": _b64(raw)}

    body = {
        "records": [
            {
                "key": data(r.key),
                "value": data(r.value),
                "headers": [
                    {"key": name, "value": None if value is None else _b64(value)}
                    for name, value in r.headers
                ],
                "partition": r.partition,
                "timestamp_ms": r.timestamp_ms,
            }
            for r in records
        ]
    }
    reply = api.send("produce", topic="orders", body=body)
    assert reply.status == 200, reply.text
    consumer = _rdkafka(gateway)
    try:
        consumer.assign([confluent_kafka.TopicPartition("orders", p, 0) for p in range(2)])
        seen = _drain(consumer, 20)
    finally:
        consumer.close()
    assert _by_partition(seen) == sorted(
        (r.partition, i // 2, r.timestamp_ms, r.key, r.value, r.headers)
        for i, r in enumerate(records)
    )


@pytest.mark.moto
def test_records_appended_on_s3_and_dynamodb_are_read_over_kafka_byte_for_byte(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("orders", 2)
    engine.append("orders", _records(30, 2))
    consumer = _rdkafka(gateway)
    try:
        consumer.assign([confluent_kafka.TopicPartition("orders", p, 0) for p in range(2)])
        seen = _drain(consumer, 30)
    finally:
        consumer.close()
    assert _by_partition(seen) == _stored(engine, "orders", 2)


def test_librdkafka_reads_from_a_seeked_offset(engine: Engine, gateway: RunningGateway) -> None:
    engine.create_topic("orders", 2)
    engine.append("orders", _records(40, 2))
    expected = [s for s in _stored(engine, "orders", 2) if s[0] == 1 and s[1] >= 7]
    consumer = _rdkafka(gateway)
    try:
        consumer.assign([confluent_kafka.TopicPartition("orders", 1, 0)])
        consumer.seek(confluent_kafka.TopicPartition("orders", 1, 7))
        seen = _drain(consumer, len(expected))
    finally:
        consumer.close()
    assert seen == expected


@pytest.mark.parametrize(
    ("start", "first"),
    [(confluent_kafka.OFFSET_BEGINNING, 0), (confluent_kafka.OFFSET_END, 10)],
    ids=["earliest", "latest"],
)
def test_librdkafka_starts_at_earliest_or_latest_and_sees_new_records(
    engine: Engine, serve: Serve, start: int, first: int
) -> None:
    engine.create_topic("orders", 1)
    engine.append("orders", _records(10, 1))
    watched = _Watched()
    gateway = serve(appends=watched)
    consumer = _rdkafka(gateway)
    try:
        consumer.assign([confluent_kafka.TopicPartition("orders", 0, start)])  # ListOffsets
        low, high = consumer.get_watermark_offsets(
            confluent_kafka.TopicPartition("orders", 0), timeout=10
        )
        assert (low, high) == (0, 10)
        # the client fetches once it found where to start: records appended then are new
        seen: list[Seen] = []
        deadline = time.monotonic() + DEADLINE_S
        while not watched.fetching.is_set():
            seen += [_rd_seen(m) for m in consumer.consume(num_messages=100, timeout=0.05)]
            assert time.monotonic() < deadline
        seen += _drain(consumer, 10 - first - len(seen))
        engine.append("orders", _records(5, 1, start=10))
        seen += _drain(consumer, 5)
    finally:
        consumer.close()
    assert [s[1] for s in seen] == list(range(first, 15))


def test_an_offset_out_of_range_takes_the_clients_reset_policy(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("orders", 1)
    engine.append("orders", _records(8, 1))
    consumer = _rdkafka(gateway, **{"auto.offset.reset": "earliest"})
    try:
        consumer.assign([confluent_kafka.TopicPartition("orders", 0, 1000)])
        seen = _drain(consumer, 8)
    finally:
        consumer.close()
    assert [s[1] for s in seen] == list(range(8))


def test_librdkafka_finds_offsets_for_times(engine: Engine, gateway: RunningGateway) -> None:
    engine.create_topic("orders", 2)
    engine.append("orders", _records(20, 2))  # partition 0 has T0+0, +2, ..., +18
    consumer = _rdkafka(gateway)

    def found(*asked: tuple[int, int]) -> list[tuple[int, int]]:
        tps = [confluent_kafka.TopicPartition("orders", p, t) for p, t in asked]
        return [(tp.partition, tp.offset) for tp in consumer.offsets_for_times(tps, timeout=10)]

    try:
        # first at or after T0+5: offset 3 (T0+6) of partition 0, 2 (T0+5) of partition 1
        assert found((0, T0 + 5), (1, T0 + 5)) == [(0, 3), (1, 2)]
        assert found((0, T0 + 10_000)) == [(0, -1)]
    finally:
        consumer.close()


def test_a_large_partition_is_read_completely_in_order(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("big", 1)
    for start in range(0, 5000, 1000):
        engine.append(
            "big", [Record(value=b"%06d" % i + b"x" * 200) for i in range(start, start + 1000)]
        )
    consumer = _rdkafka(gateway, **{"max.partition.fetch.bytes": 64 * 1024})
    try:
        consumer.assign([confluent_kafka.TopicPartition("big", 0, 0)])
        seen = _drain(consumer, 5000)
    finally:
        consumer.close()
    assert [s[1] for s in seen] == list(range(5000))
    assert [s[4][:6] for s in seen if s[4]] == [b"%06d" % i for i in range(5000)]


def test_a_principal_that_may_only_produce_gets_topic_authorization_failed(
    engine: Engine, serve: Serve
) -> None:
    engine.create_topic("orders", 1)
    engine.append("orders", _records(3, 1))
    access = engine.access_control("deny")
    access.add(AclEntry("local", "orders", "allow", frozenset({"produce"})))
    consumer = _rdkafka(serve(access=access))
    try:
        consumer.assign([confluent_kafka.TopicPartition("orders", 0, 0)])
        deadline = time.monotonic() + DEADLINE_S
        errors: list[int] = []
        while not errors:
            assert time.monotonic() < deadline
            for message in consumer.consume(timeout=0.2):
                assert message.error() is not None, "a record was read without rights"
                errors.append(message.error().code())
    finally:
        consumer.close()
    assert errors[0] == confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_key_compacted_log_is_read_over_kafka_with_its_gaps(
    make: Callable[[], Engine], clock: Clock, serve: Serve
) -> None:
    engine, _ = make_topic(make, clock, "compacted")
    compact(engine, "compacted")
    log = read_log(make(), "compacted")
    expected = [_as_seen(record) for partition in sorted(log) for record in log[partition]]
    assert any(
        b.offset - a.offset > 1 for records in log.values() for a, b in itertools.pairwise(records)
    )
    consumer = _rdkafka(serve(on=engine))
    try:
        consumer.assign([confluent_kafka.TopicPartition("compacted", p, 0) for p in sorted(log)])
        seen = _drain(consumer, len(expected))
    finally:
        consumer.close()
    assert _by_partition(seen) == expected


def test_a_waiting_fetch_holds_only_its_own_connection(engine: Engine, serve: Serve) -> None:
    engine.create_topic("orders", 1)
    watched = _Watched()
    gateway = serve(appends=watched, fetch_max_wait_ms=60_000, fetch_poll_ms=60_000)
    consumer = _rdkafka(gateway, **{"fetch.wait.max.ms": 60_000, "socket.timeout.ms": 120_000})
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": gateway.bootstrap})
    try:
        consumer.assign([confluent_kafka.TopicPartition("orders", 0, 0)])
        deadline = time.monotonic() + DEADLINE_S
        while not watched.fetching.is_set():  # a fetch of an empty partition: it waits 60 s
            assert not consumer.consume(timeout=0.05)
            assert time.monotonic() < deadline
        # answered while that fetch still has most of a minute to wait
        assert "orders" in admin.list_topics(timeout=DEADLINE_S).topics
    finally:
        consumer.close()


# kafka-python and aiokafka -------------------------------------------------------------


def test_kafka_python_reads_byte_for_byte_from_a_seek(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("orders", 2)
    engine.append("orders", _records(30, 2))
    expected = [s for s in _stored(engine, "orders", 2) if s[0] == 0 or s[1] >= 4]
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=gateway.bootstrap, enable_auto_commit=False, request_timeout_ms=10_000
    )
    tps = [kafka.TopicPartition("orders", p) for p in range(2)]
    try:
        consumer.assign(tps)
        consumer.seek(tps[0], 0)
        consumer.seek(tps[1], 4)
        seen: list[Seen] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(seen) < len(expected):
            assert time.monotonic() < deadline
            for tp, messages in consumer.poll(timeout_ms=200).items():
                seen.extend(
                    (tp.partition, m.offset, m.timestamp, m.key, m.value, tuple(m.headers))
                    for m in messages
                )
        assert consumer.beginning_offsets(tps) == {tps[0]: 0, tps[1]: 0}
        assert consumer.end_offsets(tps) == {tps[0]: 15, tps[1]: 15}
        times = consumer.offsets_for_times({tps[1]: T0 + 6, tps[0]: T0 + 99})
    finally:
        consumer.close()
    assert _by_partition(seen) == expected
    assert times[tps[0]] is None
    assert (times[tps[1]].offset, times[tps[1]].timestamp) == (3, T0 + 7)


def test_kafka_python_resets_an_out_of_range_offset_to_latest(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("orders", 1)
    engine.append("orders", _records(5, 1))
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=gateway.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        request_timeout_ms=10_000,
    )
    tp = kafka.TopicPartition("orders", 0)
    try:
        consumer.assign([tp])
        consumer.seek(tp, 50)
        deadline = time.monotonic() + DEADLINE_S
        while consumer.position(tp) != 5:
            assert time.monotonic() < deadline
            consumer.poll(timeout_ms=100)
    finally:
        consumer.close()


def test_aiokafka_reads_byte_for_byte_from_earliest_and_by_time(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("orders", 2)
    engine.append("orders", _records(24, 2))
    expected = _stored(engine, "orders", 2)

    async def read() -> tuple[list[Seen], Any]:
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=gateway.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=10_000,
        )
        await consumer.start()
        try:
            tps = [aiokafka.TopicPartition("orders", p) for p in range(2)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            seen: list[Seen] = []
            deadline = time.monotonic() + DEADLINE_S
            while len(seen) < len(expected):
                assert time.monotonic() < deadline
                batches = await consumer.getmany(timeout_ms=200)
                for tp, messages in batches.items():
                    seen.extend(
                        (tp.partition, m.offset, m.timestamp, m.key, m.value, tuple(m.headers))
                        for m in messages
                    )
            times = await consumer.offsets_for_times({tps[0]: T0 + 9})
            return seen, times[tps[0]]
        finally:
            await consumer.stop()

    seen, at = asyncio.run(read())
    assert _by_partition(seen) == expected
    assert (at.offset, at.timestamp) == (5, T0 + 10)


def test_kafka_python_and_aiokafka_start_at_latest_and_see_new_records(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("orders", 1)
    engine.append("orders", _records(10, 1))

    python = kafka.KafkaConsumer(
        bootstrap_servers=gateway.bootstrap, enable_auto_commit=False, request_timeout_ms=10_000
    )
    tp = kafka.TopicPartition("orders", 0)
    try:
        python.assign([tp])
        python.seek_to_end(tp)
        assert python.position(tp) == 10  # resolved (ListOffsets) before the append
        engine.append("orders", _records(3, 1, start=10))
        seen: list[int] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(seen) < 3:
            assert time.monotonic() < deadline
            seen += [m.offset for ms in python.poll(timeout_ms=200).values() for m in ms]
    finally:
        python.close()
    assert seen == [10, 11, 12]

    async def aio() -> list[int]:
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=gateway.bootstrap, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tp = aiokafka.TopicPartition("orders", 0)
            consumer.assign([tp])
            await consumer.seek_to_end(tp)
            assert await consumer.position(tp) == 13
            await asyncio.get_running_loop().run_in_executor(
                None, engine.append, "orders", _records(2, 1, start=13)
            )
            offsets: list[int] = []
            deadline = time.monotonic() + DEADLINE_S
            while len(offsets) < 2:
                assert time.monotonic() < deadline
                batches = await consumer.getmany(timeout_ms=200)
                offsets += [m.offset for ms in batches.values() for m in ms]
            return offsets
        finally:
            await consumer.stop()

    assert asyncio.run(aio()) == [13, 14]


# The handlers themselves: waits, errors ---------------------------------------------------


def _fetch_request(
    topic: str, partition: int, offset: int, max_wait_ms: int, min_bytes: int = 1
) -> Any:
    part = build(
        FetchPartition, partition=partition, fetch_offset=offset, partition_max_bytes=1 << 20
    )
    return build(
        FetchRequest,
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=min_bytes,
        max_bytes=1 << 20,
        topics=(build(FetchTopic, topic=topic, partitions=(part,)),),
        forgotten_topics_data=(),
    )


async def _on_gateway(
    engine: Engine, scenario: Callable[[KafkaGateway, Session, _Watched], Any], **config: Any
) -> Any:
    """Run ``scenario`` with a (not listening) gateway whose appends are watched."""
    gateway = KafkaGateway(engine, engine.access_control("allow"), GatewayConfig(**config))
    watched = _Watched()
    gateway.appends = watched
    watched.start(engine.appender.watch)
    try:
        return await scenario(gateway, Session(gateway, "local"), watched)
    finally:
        watched.stop()
        await gateway.stop()


def test_a_waiting_fetch_answers_as_soon_as_a_record_is_appended(engine: Engine) -> None:
    engine.create_topic("orders", 1)
    engine.append("orders", [Record(value=b"old")])

    async def scenario(gateway: KafkaGateway, session: Session, watched: _Watched) -> Any:
        waiting = asyncio.create_task(
            fetch_api.API.handle(_fetch_request("orders", 0, 1, max_wait_ms=60_000), session)
        )
        await watched.asked.wait()
        await asyncio.get_running_loop().run_in_executor(
            None, engine.append, "orders", [Record(value=b"new")]
        )
        # far sooner than the wait (60 s) and the poll (60 s): the append woke it
        return await asyncio.wait_for(waiting, DEADLINE_S)

    reply = asyncio.run(
        _on_gateway(engine, scenario, fetch_max_wait_ms=60_000, fetch_poll_ms=60_000)
    )
    (part,) = reply.responses[0].partitions
    assert part.error_code == ErrorCode.none
    assert (part.high_watermark, part.last_stable_offset, part.log_start_offset) == (2, 2, 0)
    assert reply.session_id == 0
    assert b"new" in part.records and b"old" not in part.records


def test_a_fetch_with_nothing_to_read_answers_empty_after_the_capped_wait(
    engine: Engine,
) -> None:
    engine.create_topic("orders", 1)

    async def scenario(gateway: KafkaGateway, session: Session, watched: _Watched) -> Any:
        started = time.monotonic()
        reply = await fetch_api.API.handle(
            _fetch_request("orders", 0, 0, max_wait_ms=600_000), session
        )
        return reply, time.monotonic() - started

    reply, took = asyncio.run(
        _on_gateway(engine, scenario, fetch_max_wait_ms=300, fetch_poll_ms=100)
    )
    (part,) = reply.responses[0].partitions
    assert (part.error_code, part.records, part.high_watermark) == (ErrorCode.none, b"", 0)
    assert 0.3 <= took < DEADLINE_S


def test_fetch_errors_are_per_partition_and_answered_at_once(engine: Engine) -> None:
    engine.create_topic("orders", 1)
    engine.append("orders", [Record(value=b"a")])
    request = build(
        FetchRequest,
        max_wait=datetime.timedelta(minutes=10),
        min_bytes=1 << 20,
        max_bytes=1 << 20,
        topics=(
            build(
                FetchTopic,
                topic="orders",
                partitions=tuple(
                    build(FetchPartition, partition=p, fetch_offset=o, partition_max_bytes=99)
                    for p, o in ((0, 5), (0, 0), (3, 0), (-1, 0))
                ),
            ),
            build(
                FetchTopic,
                topic="missing",
                partitions=(build(FetchPartition, partition=0, fetch_offset=0),),
            ),
        ),
        forgotten_topics_data=(),
    )

    async def scenario(gateway: KafkaGateway, session: Session, watched: _Watched) -> Any:
        return await fetch_api.API.handle(request, session)

    reply = asyncio.run(_on_gateway(engine, scenario, fetch_max_wait_ms=60_000))
    orders, missing = reply.responses
    assert [(p.partition_index, p.error_code) for p in orders.partitions] == [
        (0, ErrorCode.offset_out_of_range),  # the first of the partition named twice
        (3, ErrorCode.unknown_topic_or_partition),
        (-1, ErrorCode.unknown_topic_or_partition),
    ]
    assert (orders.partitions[0].high_watermark, orders.partitions[0].log_start_offset) == (1, 0)
    assert [p.error_code for p in missing.partitions] == [ErrorCode.unknown_topic_or_partition]


def test_fetch_and_list_offsets_refuse_a_principal_without_rights(engine: Engine) -> None:
    engine.create_topic("orders", 1)
    engine.append("orders", [Record(value=b"secret")])
    listing = build(
        ListOffsetsRequest,
        replica_id=-1,
        isolation_level=0,
        topics=(
            build(
                ListOffsetsTopic,
                name="orders",
                partitions=(build(ListOffsetsPartition, partition_index=0, timestamp=-2),),
            ),
        ),
    )

    async def scenario(gateway: KafkaGateway, session: Session, watched: _Watched) -> Any:
        gateway.access = engine.access_control("deny")
        fetched = await fetch_api.API.handle(_fetch_request("orders", 0, 0, 0), session)
        listed = await offsets_api.API.handle(listing, session)
        return fetched, listed

    fetched, listed = asyncio.run(_on_gateway(engine, scenario))
    (part,) = fetched.responses[0].partitions
    assert (part.error_code, part.records) == (ErrorCode.topic_authorization_failed, b"")
    (answer,) = listed.topics[0].partitions
    assert (answer.error_code, answer.offset) == (ErrorCode.topic_authorization_failed, -1)


def _listing(asked: list[tuple[int, int]], isolation_level: int = 0) -> Any:
    """A ListOffsets v8 of topic ``orders``: (partition, timestamp) pairs."""
    return build(
        ListOffsetsRequest,
        replica_id=-1,
        isolation_level=isolation_level,
        topics=(
            build(
                ListOffsetsTopic,
                name="orders",
                partitions=tuple(
                    build(ListOffsetsPartition, partition_index=p, timestamp=t) for p, t in asked
                ),
            ),
        ),
    )


def test_list_offsets_answers_each_spec_per_partition(engine: Engine) -> None:
    engine.create_topic("orders", 2)
    engine.append("orders", _records(10, 2))  # partition 1: T0+1, +3, ..., +9
    specs = [-2, -1, T0 + 4, T0 + 100, -3, -4]  # one request each: a partition is named once

    async def scenario(gateway: KafkaGateway, session: Session, watched: _Watched) -> Any:
        listings = [_listing([(1, t), (7, -1)], isolation_level=1) for t in specs]
        return [await offsets_api.API.handle(listing, session) for listing in listings]

    replies = asyncio.run(_on_gateway(engine, scenario))
    answers = [
        [(p.error_code, p.offset, p.timestamp) for p in r.topics[0].partitions] for r in replies
    ]
    unknown = (ErrorCode.unknown_topic_or_partition, -1, -1)
    assert answers == [
        [(ErrorCode.none, 0, -1), unknown],
        [(ErrorCode.none, 5, -1), unknown],
        [(ErrorCode.none, 2, T0 + 5), unknown],
        [(ErrorCode.none, -1, -1), unknown],
        [(ErrorCode.unsupported_version, -1, -1), unknown],
        [(ErrorCode.none, 0, -1), unknown],  # earliest local: lakelog's whole log is "local"
    ]


def test_list_offsets_refuses_a_partition_named_twice_in_one_request(engine: Engine) -> None:
    engine.create_topic("orders", 2)
    engine.append("orders", _records(10, 2))

    async def scenario(gateway: KafkaGateway, session: Session, watched: _Watched) -> Any:
        return await offsets_api.API.handle(_listing([(0, -1), (1, -2), (0, -2)]), session)

    reply = asyncio.run(_on_gateway(engine, scenario))
    assert [(p.error_code, p.offset) for p in reply.topics[0].partitions] == [
        (ErrorCode.invalid_request, -1),  # both times, as Kafka answers
        (ErrorCode.none, 0),
        (ErrorCode.invalid_request, -1),
    ]


def _offsets(records: bytes) -> list[int]:
    """The offsets of the records in a reply's record batches."""
    found: list[int] = []
    at = 0
    while at < len(records):
        batch, used = read_batch(memoryview(records), at)
        found.extend(int(record.offset) for record in batch.records)
        at += used
    return found


def test_each_partition_gets_at_most_its_bytes_and_none_is_starved(engine: Engine) -> None:
    engine.create_topic("orders", 3)
    engine.append("orders", [Record(value=b"y" * 5000, partition=0)])
    for partition in (1, 2):  # 50 records of 100 bytes each
        engine.append("orders", [Record(value=b"x" * 100, partition=partition)] * 50)
    engine.append("orders", [Record(value=b"y" * 5000, partition=2)])
    request = build(
        FetchRequest,
        max_wait=datetime.timedelta(0),
        min_bytes=1,
        max_bytes=1 << 20,
        topics=(
            build(
                FetchTopic,
                topic="orders",
                partitions=tuple(
                    build(FetchPartition, partition=p, fetch_offset=o, partition_max_bytes=1000)
                    for p, o in ((0, 0), (1, 0), (2, 45))
                ),
            ),
        ),
        forgotten_topics_data=(),
    )

    async def scenario(gateway: KafkaGateway, session: Session, watched: _Watched) -> Any:
        return await fetch_api.API.handle(request, session)

    reply = asyncio.run(_on_gateway(engine, scenario))
    assert [_offsets(p.records) for p in reply.responses[0].partitions] == [
        [0],  # the reply's first record, however large (KIP-74)
        list(range(10)),  # 10 records of 100 bytes
        list(range(45, 50)),  # the large one does not fit in what is left of 1000
    ]


def test_a_fetch_waits_for_min_bytes_then_answers_with_what_it_has(engine: Engine) -> None:
    engine.create_topic("orders", 1)
    engine.append("orders", [Record(value=b"x" * 100)])

    async def scenario(gateway: KafkaGateway, session: Session, watched: _Watched) -> Any:
        started = time.monotonic()
        short = await fetch_api.API.handle(
            _fetch_request("orders", 0, 0, max_wait_ms=60_000, min_bytes=250), session
        )
        waited = time.monotonic() - started
        # a waiting fetch answers with the append that brings its reply to min_bytes
        watched.asked.clear()
        waiting = asyncio.create_task(
            fetch_api.API.handle(
                _fetch_request("orders", 0, 0, max_wait_ms=60_000, min_bytes=250), session
            )
        )
        await watched.asked.wait()
        await asyncio.get_running_loop().run_in_executor(
            None, engine.append, "orders", [Record(value=b"y" * 200)]
        )
        return short, waited, await asyncio.wait_for(waiting, DEADLINE_S)

    short, waited, enough = asyncio.run(
        _on_gateway(engine, scenario, fetch_max_wait_ms=300, fetch_poll_ms=100)
    )
    assert _offsets(short.responses[0].partitions[0].records) == [0]
    assert 0.3 <= waited < DEADLINE_S
    assert _offsets(enough.responses[0].partitions[0].records) == [0, 1]


@pytest.mark.parametrize("version", range(fetch_api.API.min_version, fetch_api.API.max_version + 1))
def test_every_served_fetch_version_answers_and_encodes(engine: Engine, version: int) -> None:
    engine.create_topic("orders", 1)
    engine.append("orders", [Record(key=b"k", value=b"v", headers=(("h", None),))])
    schema = importlib.import_module(f"kio.schema.fetch.v{version}.request")
    part = build(schema.FetchPartition, partition=0, fetch_offset=0, partition_max_bytes=1 << 20)
    request = build(
        schema.FetchRequest,
        max_wait=datetime.timedelta(0),
        min_bytes=1,
        max_bytes=1 << 20,
        topics=(build(schema.FetchTopic, topic="orders", partitions=(part,)),),
        forgotten_topics_data=(),
    )

    async def scenario(gateway: KafkaGateway, session: Session, watched: _Watched) -> Any:
        return await fetch_api.API.handle(request, session)

    reply = asyncio.run(_on_gateway(engine, scenario))
    assert reply.__version__ == version
    (data,) = reply.responses[0].partitions
    assert _offsets(data.records) == [0]
    frame = encode_response(Request(1, version, 7, None, request), reply)
    assert len(frame) > len(data.records)


@pytest.mark.parametrize(
    "version", range(offsets_api.API.min_version, offsets_api.API.max_version + 1)
)
def test_every_served_list_offsets_version_answers_and_encodes(
    engine: Engine, version: int
) -> None:
    engine.create_topic("orders", 1)
    engine.append("orders", [Record(value=b"v")] * 3)
    schema = importlib.import_module(f"kio.schema.list_offsets.v{version}.request")
    request = build(
        schema.ListOffsetsRequest,
        replica_id=-1,
        isolation_level=0,
        topics=(
            build(
                schema.ListOffsetsTopic,
                name="orders",
                partitions=(build(schema.ListOffsetsPartition, partition_index=0, timestamp=-1),),
            ),
        ),
    )

    async def scenario(gateway: KafkaGateway, session: Session, watched: _Watched) -> Any:
        return await offsets_api.API.handle(request, session)

    reply = asyncio.run(_on_gateway(engine, scenario))
    assert reply.__version__ == version
    assert reply.topics[0].partitions[0].offset == 3
    encode_response(Request(2, version, 7, None, request), reply)


def test_a_waiting_fetch_answers_at_once_when_the_gateway_stops(engine: Engine) -> None:
    engine.create_topic("orders", 1)

    async def scenario(gateway: KafkaGateway, session: Session, watched: _Watched) -> Any:
        waiting = asyncio.create_task(
            fetch_api.API.handle(_fetch_request("orders", 0, 0, max_wait_ms=60_000), session)
        )
        await watched.asked.wait()
        watched.stop()  # what stopping the gateway does first
        # far sooner than the wait (60 s) and the poll (60 s): the stop woke it
        return await asyncio.wait_for(waiting, DEADLINE_S)

    reply = asyncio.run(
        _on_gateway(engine, scenario, fetch_max_wait_ms=60_000, fetch_poll_ms=60_000)
    )
    (part,) = reply.responses[0].partitions
    assert part.error_code == ErrorCode.none
    assert not part.records  # nothing to read: answered empty
