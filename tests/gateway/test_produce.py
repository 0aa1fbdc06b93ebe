"""Produce through three clients nobody here wrote, read back through the engine byte for
byte: keys, values, headers, partitions, every compression codec, idempotent retries,
acks=0, and the refusals (authorization, size, transactions) that leave the log as it
was."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiokafka
import confluent_kafka
import kafka
import pytest
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i16, i32, i32Timedelta
from kio.static.protocol import RequestPayload

from lakelog.contract.operations import Fetch
from lakelog.kafka.apis import Api, Session
from lakelog.kafka.records import MAX_DECOMPRESSED_BYTES, encode_batch
from lakelog.kafka.server import RunningGateway
from lakelog.local.events import http_event
from lakelog.log.partitioner import partition_for_key
from lakelog.service.engine import Engine
from lakelog.storage.ports import AclEntry
from lakelog.types import StoredRecord
from tests.gateway.clients import producing_apis
from tests.integration.api.conftest import Api as HttpApi

StartGateway = Callable[..., RunningGateway]

HEADERS: list[tuple[str, bytes | None]] = [("trace", b"\x00\x01"), ("empty", b""), ("null", None)]
NON_NULL_HEADERS = HEADERS[:2]
"""kafka-python sends no null header value."""
TIMESTAMP = 1_700_000_000_000


@pytest.fixture
def gateway(start_gateway: StartGateway) -> RunningGateway:
    """A gateway whose ApiVersions let librdkafka use record batches v2 and every codec."""
    return start_gateway(apis=producing_apis())


def read_all(engine: Engine, topic: str, partitions: int) -> list[StoredRecord]:
    """Every record of ``topic`` through the engine, by partition then offset."""
    records: list[StoredRecord] = []
    for partition in range(partitions):
        offset = 0
        while True:
            fetched = engine.call(Fetch(topic, partition, offset))
            records.extend(fetched.records)
            if fetched.next_offset >= fetched.high_watermark:
                break
            offset = fetched.next_offset
    return records


def keyed(count: int) -> list[tuple[bytes, bytes]]:
    """``count`` (key, value) pairs with distinct keys and values of varied sizes."""
    return [(f"key-{i}".encode(), bytes([i % 256]) * (i * 7 % 300)) for i in range(count)]


def assert_stored(
    engine: Engine,
    topic: str,
    partitions: int,
    pairs: Sequence[tuple[bytes, bytes]],
    where: Any,
    headers: Sequence[tuple[str, bytes | None]] = HEADERS,
) -> None:
    """The log holds exactly ``pairs`` where the client was told (partition, offset), on
    the partition of murmur2(key), with `HEADERS` and the producer's timestamps."""
    stored = {r.key: r for r in read_all(engine, topic, partitions)}
    assert len(stored) == len(pairs)
    for i, ((key, value), (partition, offset)) in enumerate(zip(pairs, where, strict=True)):
        record = stored[key]
        assert (record.value, record.partition, record.offset) == (value, partition, offset)
        assert record.partition == partition_for_key(key, partitions)
        assert list(record.headers) == headers
        assert record.timestamp_ms == TIMESTAMP + i


# --- librdkafka -----------------------------------------------------------------------------


def librdkafka(gateway: RunningGateway, **config: Any) -> confluent_kafka.Producer:
    return confluent_kafka.Producer(
        {
            "bootstrap.servers": gateway.bootstrap,
            "partitioner": "murmur2_random",  # Kafka's (and lakelog's) partitioner for keys
            "linger.ms": 5,
            "message.timeout.ms": 10_000,
            "retry.backoff.ms": 10,
            **config,
        }
    )


def deliver(producer: confluent_kafka.Producer, messages: Sequence[dict[str, Any]]) -> list[Any]:
    """Produce ``messages`` and flush; each one's delivery report (error, partition,
    offset), in the order sent (reports come partition by partition)."""
    reports: list[Any] = [None] * len(messages)

    def report(position: int) -> Callable[[Any, Any], None]:
        def reported(error: Any, message: Any) -> None:
            reports[position] = (error, message.partition(), message.offset())

        return reported

    for position, message in enumerate(messages):
        producer.produce(on_delivery=report(position), **message)
    assert producer.flush(15) == 0
    return reports


def messages(topic: str, pairs: Sequence[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    return [
        {"topic": topic, "key": key, "value": value, "headers": HEADERS, "timestamp": TIMESTAMP + i}
        for i, (key, value) in enumerate(pairs)
    ]


def delivered(reports: Sequence[Any]) -> list[tuple[int, int]]:
    assert [str(error) for error, _, _ in reports if error is not None] == []
    return [(partition, offset) for _, partition, offset in reports]


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_librdkafka_records_read_back_byte_for_byte(
    engine: Engine, gateway: RunningGateway, codec: str
) -> None:
    engine.create_topic("orders", 3)
    pairs = keyed(40)
    reports = deliver(librdkafka(gateway, **{"compression.type": codec}), messages("orders", pairs))
    assert_stored(engine, "orders", 3, pairs, delivered(reports))


def test_librdkafka_null_and_empty_keys_and_values_stay_apart(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("edge", 1)
    sent = [(None, b""), (b"", None), (b"k", b"v"), (None, None)]
    reports = deliver(
        librdkafka(gateway), [{"topic": "edge", "key": k, "value": v} for k, v in sent]
    )
    assert [offset for _, offset in delivered(reports)] == [0, 1, 2, 3]
    assert [(r.key, r.value) for r in read_all(engine, "edge", 1)] == sent


# --- kafka-python and aiokafka --------------------------------------------------------------


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_kafka_python_records_read_back_byte_for_byte(
    engine: Engine, gateway: RunningGateway, codec: str | None
) -> None:
    engine.create_topic("orders", 3)
    pairs = keyed(30)
    producer = kafka.KafkaProducer(
        bootstrap_servers=gateway.bootstrap, compression_type=codec, request_timeout_ms=10_000
    )
    try:
        futures = [
            producer.send("orders", value, key, NON_NULL_HEADERS, timestamp_ms=TIMESTAMP + i)
            for i, (key, value) in enumerate(pairs)
        ]
        producer.flush(15)
        where = [(f.get(0).partition, f.get(0).offset) for f in futures]
    finally:
        producer.close(5)
    assert_stored(engine, "orders", 3, pairs, where, NON_NULL_HEADERS)


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_aiokafka_records_read_back_byte_for_byte(
    engine: Engine, gateway: RunningGateway, codec: str | None
) -> None:
    engine.create_topic("orders", 3)
    pairs = keyed(30)

    async def produce() -> list[tuple[int, int]]:
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=gateway.bootstrap, compression_type=codec, request_timeout_ms=10_000
        )
        await producer.start()
        try:
            sent = [
                await producer.send(
                    "orders", value, key, timestamp_ms=TIMESTAMP + i, headers=HEADERS
                )
                for i, (key, value) in enumerate(pairs)
            ]
            return [(m.partition, m.offset) for m in await asyncio.gather(*sent)]
        finally:
            await producer.stop()

    assert_stored(engine, "orders", 3, pairs, asyncio.run(produce()))


# --- idempotent producers -------------------------------------------------------------------


def losing_one_reply(start_gateway: StartGateway) -> tuple[RunningGateway, list[int]]:
    """A gateway that appends the first Produce carrying records, then drops the
    connection instead of answering it (the reply lost); the appends it ran, counted."""
    apis = producing_apis()
    produce = apis[0]
    appended: list[int] = []

    async def lose_first_reply(body: Any, session: Session) -> Any:
        response = await produce.handle(body, session)
        appended.append(1)
        if len(appended) == 1:
            raise ConnectionResetError("the reply is lost")
        return response

    apis = {**apis, 0: Api(0, produce.min_version, produce.max_version, lose_first_reply)}
    return start_gateway(apis=apis), appended


def test_librdkafka_idempotent_retry_after_a_lost_reply_appends_once(
    engine: Engine, start_gateway: StartGateway
) -> None:
    engine.create_topic("payments", 2)
    gateway, appended = losing_one_reply(start_gateway)
    producer = librdkafka(gateway, **{"enable.idempotence": True, "linger.ms": 50})
    pairs = keyed(20)
    first = delivered(deliver(producer, messages("payments", pairs[:10])))
    second = delivered(deliver(producer, messages("payments", pairs[10:])))
    # The first request was appended, its reply lost, and the retry answered from the log
    assert len(appended) >= 3
    where = first + second
    for partition in (0, 1):
        offsets = sorted(o for p, o in where if p == partition)
        assert offsets == list(range(len(offsets)))  # dense: nothing twice, no gap
    stored = read_all(engine, "payments", 2)
    assert len(stored) == 20
    assert sorted((r.partition, r.offset) for r in stored) == sorted(where)


def test_aiokafka_idempotent_retry_after_a_lost_reply_appends_once(
    engine: Engine, start_gateway: StartGateway
) -> None:
    engine.create_topic("payments", 1)
    gateway, appended = losing_one_reply(start_gateway)

    async def produce() -> list[int]:
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=gateway.bootstrap,
            enable_idempotence=True,
            request_timeout_ms=10_000,
            retry_backoff_ms=10,
        )
        await producer.start()
        try:
            sent = [await producer.send("payments", b"v%d" % i, key=b"k") for i in range(6)]
            return [m.offset for m in await asyncio.gather(*sent)]
        finally:
            await producer.stop()

    offsets = asyncio.run(produce())
    assert len(appended) >= 2
    assert sorted(offsets) == list(range(6))
    assert [r.value for r in read_all(engine, "payments", 1)] == [b"v%d" % i for i in range(6)]


def test_kafka_python_idempotent_producer_appends_in_order(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("payments", 2)
    producer = kafka.KafkaProducer(
        bootstrap_servers=gateway.bootstrap, enable_idempotence=True, request_timeout_ms=10_000
    )
    try:
        futures = [producer.send("payments", b"v%d" % i, key=b"k%d" % (i % 4)) for i in range(20)]
        producer.flush(15)
        where = [(f.get(0).partition, f.get(0).offset) for f in futures]
    finally:
        producer.close(5)
    for partition in (0, 1):
        offsets = [o for p, o in where if p == partition]
        assert offsets == list(range(len(offsets)))
    assert len(read_all(engine, "payments", 2)) == 20


# --- acks=0 and the raw protocol ------------------------------------------------------------


class Connection:
    """One raw connection to the gateway: requests as kio types, answers by frame."""

    def __init__(self, gateway: RunningGateway) -> None:
        self.socket = socket.create_connection(
            (gateway.gateway.advertised_host, gateway.gateway.advertised_port), timeout=10
        )

    def send(self, body: RequestPayload, correlation_id: int) -> None:
        header_schema: Any = body.__header_schema__
        buffer = io.BytesIO()
        header = header_schema(
            request_api_key=body.__api_key__,
            request_api_version=body.__version__,
            correlation_id=i32(correlation_id),
            client_id="raw",
        )
        entity_writer(header_schema)(buffer, header)
        entity_writer(type(body))(buffer, body)
        frame = buffer.getvalue()
        self.socket.sendall(struct.pack(">i", len(frame)) + frame)

    def receive(self, request: type[Any]) -> tuple[int, Any]:
        """The next answer's correlation id and body, read as ``request``'s response."""
        from kio.index import load_response_schema  # noqa: PLC0415

        (size,) = struct.unpack(">i", self._exactly(4))
        frame = self._exactly(size)
        schema: Any = load_response_schema(request.__api_key__, request.__version__)
        header, used = entity_reader(schema.__header_schema__)(memoryview(frame), 0)
        body, _ = entity_reader(schema)(memoryview(frame), used)
        return int(header.correlation_id), body

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.socket.recv(size - len(data))
            assert chunk, "the gateway closed the connection"
            data += chunk
        return data

    def close(self) -> None:
        self.socket.close()


def produce_request(
    topic: str, partitions: dict[int, bytes], acks: int = 1, transactional_id: str | None = None
) -> ProduceRequest:
    return ProduceRequest(
        transactional_id=transactional_id,
        acks=i16(acks),
        timeout=i32Timedelta.parse(__import__("datetime").timedelta(seconds=5)),
        topic_data=(
            TopicProduceData(
                name=topic,
                partition_data=tuple(
                    PartitionProduceData(index=i32(index), records=records)
                    for index, records in partitions.items()
                ),
            ),
        ),
    )


def batch(*values: bytes, **fields: Any) -> bytes:
    return encode_batch(
        0, [StoredRecord(0, 0, TIMESTAMP, None, value) for value in values], **fields
    )


def test_acks_0_appends_and_sends_no_reply_so_the_next_reply_correlates(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("fire", 1)
    connection = Connection(gateway)
    try:
        # Given a Produce with acks=0, then an ApiVersions on the same connection
        connection.send(produce_request("fire", {0: batch(b"a", b"b")}, acks=0), 7)
        connection.send(
            ApiVersionsRequest(client_software_name="raw", client_software_version="1"), 8
        )
        # Then the first frame back answers the ApiVersions: the Produce got none
        correlation_id, body = connection.receive(ApiVersionsRequest)
    finally:
        connection.close()
    assert correlation_id == 8 and body.error_code == ErrorCode.none
    assert [r.value for r in read_all(engine, "fire", 1)] == [b"a", b"b"]


def test_a_failed_acks_0_produce_closes_the_connection(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("fire", 1)
    connection = Connection(gateway)
    try:
        connection.send(produce_request("missing", {0: batch(b"a")}, acks=0), 1)
        assert connection.socket.recv(1) == b""  # closed, as Kafka does: no answer to read
    finally:
        connection.close()
    # Other connections carry on
    connection = Connection(gateway)
    try:
        connection.send(produce_request("fire", {0: batch(b"b")}), 2)
        assert connection.receive(ProduceRequest)[0] == 2
    finally:
        connection.close()


def test_librdkafka_acks_0_records_arrive(engine: Engine, gateway: RunningGateway) -> None:
    engine.create_topic("fire", 1)
    pairs = keyed(5)
    deliver(librdkafka(gateway, acks=0), messages("fire", pairs))
    deadline = time.monotonic() + 10
    while len(read_all(engine, "fire", 1)) < len(pairs) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r.key for r in read_all(engine, "fire", 1)] == [k for k, _ in pairs]


def test_one_bad_partition_fails_alone(engine: Engine, gateway: RunningGateway) -> None:
    engine.create_topic("mixed", 3)
    corrupt = bytearray(batch(b"x"))
    corrupt[-1] ^= 1
    connection = Connection(gateway)
    try:
        request = produce_request(
            "mixed", {0: batch(b"a"), 1: bytes(corrupt), 2: batch(b"c", b"d"), 7: batch(b"e")}
        )
        connection.send(request, 1)
        _, body = connection.receive(ProduceRequest)
    finally:
        connection.close()
    ((answer),) = body.responses
    assert [(p.index, p.error_code, p.base_offset) for p in answer.partition_responses] == [
        (0, ErrorCode.none, 0),
        (1, ErrorCode.corrupt_message, -1),
        (2, ErrorCode.none, 0),
        (7, ErrorCode.unknown_topic_or_partition, -1),
    ]
    assert [(r.partition, r.value) for r in read_all(engine, "mixed", 3)] == [
        (0, b"a"),
        (2, b"c"),
        (2, b"d"),
    ]


def test_a_compression_bomb_is_message_too_large_and_the_others_land(
    engine: Engine, gateway: RunningGateway
) -> None:
    # Given a Produce whose partition 1 is a few KiB of zstd that inflate to 64 MiB
    engine.create_topic("bombed", 2)
    bomb = batch(bytes(4 * MAX_DECOMPRESSED_BYTES), compression="zstd")
    connection = Connection(gateway)
    try:
        connection.send(produce_request("bombed", {0: batch(b"a"), 1: bomb}), 1)
        _, body = connection.receive(ProduceRequest)
        # Then partition 1 alone is refused, and the connection carries on
        connection.send(produce_request("bombed", {1: batch(b"b")}), 2)
        _, again = connection.receive(ProduceRequest)
    finally:
        connection.close()
    ((answer),) = body.responses
    assert [(p.index, p.error_code) for p in answer.partition_responses] == [
        (0, ErrorCode.none),
        (1, ErrorCode.message_too_large),
    ]
    assert again.responses[0].partition_responses[0].error_code == ErrorCode.none
    assert [(r.partition, r.value) for r in read_all(engine, "bombed", 2)] == [
        (0, b"a"),
        (1, b"b"),
    ]


def test_unknown_topic_is_unknown_topic_or_partition(gateway: RunningGateway) -> None:
    connection = Connection(gateway)
    try:
        connection.send(produce_request("missing", {0: batch(b"a")}), 1)
        _, body = connection.receive(ProduceRequest)
    finally:
        connection.close()
    assert body.responses[0].partition_responses[0].error_code == (
        ErrorCode.unknown_topic_or_partition
    )


def test_transactions_are_refused_and_nothing_is_appended(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("txn", 1)
    connection = Connection(gateway)
    try:
        connection.send(
            InitProducerIdRequest(
                transactional_id="t1",
                transaction_timeout=i32Timedelta.parse(
                    __import__("datetime").timedelta(seconds=60)
                ),
            ),
            1,
        )
        _, init = connection.receive(InitProducerIdRequest)
        connection.send(produce_request("txn", {0: batch(b"a")}, transactional_id="t1"), 2)
        _, produced = connection.receive(ProduceRequest)
    finally:
        connection.close()
    assert init.error_code == ErrorCode.transactional_id_authorization_failed
    assert produced.responses[0].partition_responses[0].error_code == (
        ErrorCode.transactional_id_authorization_failed
    )
    assert read_all(engine, "txn", 1) == []


def test_init_producer_id_issues_a_fresh_id_each_time(gateway: RunningGateway) -> None:
    connection = Connection(gateway)
    timeout = i32Timedelta.parse(__import__("datetime").timedelta(seconds=60))
    try:
        connection.send(
            InitProducerIdRequest(transactional_id=None, transaction_timeout=timeout), 1
        )
        _, first = connection.receive(InitProducerIdRequest)
        connection.send(
            InitProducerIdRequest(
                transactional_id=None,
                transaction_timeout=timeout,
                producer_id=first.producer_id,
                producer_epoch=first.producer_epoch,
            ),
            2,
        )
        _, second = connection.receive(InitProducerIdRequest)
    finally:
        connection.close()
    assert first.error_code == second.error_code == ErrorCode.none
    assert first.producer_id > 0 and second.producer_id > 0
    assert first.producer_id != second.producer_id
    assert first.producer_epoch == second.producer_epoch == 0


# --- refusals -------------------------------------------------------------------------------


def test_a_principal_without_produce_rights_is_refused_and_nothing_is_appended(
    engine: Engine, start_gateway: StartGateway
) -> None:
    engine.create_topic("audit", 1)
    access = engine.access_control("deny")
    # Given a principal that may read the topic (so clients see it) but not produce to it
    access.add(AclEntry("local", "audit", "allow", frozenset({"consume"})))
    gateway = start_gateway(access=access, apis=producing_apis())
    reports = deliver(librdkafka(gateway), messages("audit", keyed(3)))
    assert {error.code() for error, _, _ in reports} == {
        confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED
    }
    assert read_all(engine, "audit", 1) == []


def test_an_oversized_record_is_message_too_large_and_nothing_is_appended(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("small", 2, {"max_record_bytes": 1000})
    reports = deliver(
        librdkafka(gateway),
        [
            {"topic": "small", "key": b"big", "value": b"x" * 2000},
            {"topic": "small", "key": b"ok", "value": b"y" * 10},
        ],
    )
    (big_error, _, _), (ok_error, ok_partition, _) = reports
    assert big_error.code() == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE
    assert ok_error is None
    assert [(r.partition, r.key) for r in read_all(engine, "small", 2)] == [(ok_partition, b"ok")]


# --- on moto --------------------------------------------------------------------------------


@pytest.mark.moto
def test_librdkafka_produces_on_moto(engine: Engine, gateway: RunningGateway) -> None:
    engine.create_topic("orders", 2)
    pairs = keyed(10)
    reports = deliver(
        librdkafka(gateway, **{"compression.type": "zstd"}), messages("orders", pairs)
    )
    assert_stored(engine, "orders", 2, pairs, delivered(reports))


@pytest.mark.moto
def test_records_produced_over_kafka_are_read_over_the_http_api_byte_for_byte(
    engine: Engine, gateway: RunningGateway, http_api: HttpApi
) -> None:
    api = http_api
    engine.create_topic("orders", 2)
    # Given keyed records with headers (a null header value among them) sent by librdkafka
    pairs = keyed(20)
    sent = messages("orders", pairs)
    reports = delivered(deliver(librdkafka(gateway, **{"compression.type": "lz4"}), sent))

    # When the HTTP API reads each partition
    fetched: dict[tuple[int, int], dict[str, Any]] = {}
    for partition in range(2):
        event = http_event(
            "GET",
            f"/v1/topics/orders/partitions/{partition}/records",
            query="offset=0&max_records=100",
            principal="arn:aws:iam::123456789012:user/reader",
        )
        reply = api.call(event)
        assert reply.status == 200, reply.text
        for record in reply.json["records"]:
            fetched[(record["partition"], record["offset"])] = record

    # Then every record is there, where librdkafka was told it landed, byte for byte
    def b64(raw: bytes | None) -> str | None:
        return None if raw is None else base64.b64encode(raw).decode()

    assert len(fetched) == len(sent)
    for message, place in zip(sent, reports, strict=True):
        record = fetched[place]
        assert record["key"] == b64(message["key"])
        assert record["value"] == b64(message["value"])
        assert record["timestamp_ms"] == message["timestamp"]
        assert [(h["key"], h["value"]) for h in record["headers"]] == [
            (name, b64(value)) for name, value in message["headers"]
        ]
