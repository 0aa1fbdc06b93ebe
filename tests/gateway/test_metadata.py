"""Metadata through three clients nobody here wrote: each sees every topic and partition,
led by the gateway's advertised address."""

from __future__ import annotations

import asyncio
import datetime

import aiokafka
import confluent_kafka.admin
import kafka
from kio.schema.api_versions.v0.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic

from lakelog.errors import UnavailableError
from lakelog.kafka.protocol import build
from lakelog.kafka.server import RunningGateway
from lakelog.service.engine import Engine
from tests.gateway.conftest import StartGateway
from tests.gateway.wire import METADATA, Wire


def test_librdkafka_lists_topics_and_partitions(engine: Engine, gateway: RunningGateway) -> None:
    engine.create_topic("orders", 3)
    engine.create_topic("audit", 1)
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": gateway.bootstrap})
    metadata = admin.list_topics(timeout=10)
    assert {name: len(t.partitions) for name, t in metadata.topics.items()} == {
        "orders": 3,
        "audit": 1,
    }
    (broker,) = metadata.brokers.values()
    assert f"{broker.host}:{broker.port}" == gateway.bootstrap
    assert all(p.leader == broker.id for p in metadata.topics["orders"].partitions.values())


def test_kafka_python_sees_partitions_of_a_topic(engine: Engine, gateway: RunningGateway) -> None:
    engine.create_topic("orders", 3)
    consumer = kafka.KafkaConsumer(bootstrap_servers=gateway.bootstrap)
    try:
        assert consumer.partitions_for_topic("orders") == {0, 1, 2}
        assert consumer.topics() == {"orders"}
    finally:
        consumer.close()


def test_aiokafka_sees_topics(engine: Engine, gateway: RunningGateway) -> None:
    engine.create_topic("orders", 2)

    async def topics() -> set[str]:
        consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=gateway.bootstrap)
        await consumer.start()
        try:
            return set(await consumer.topics())
        finally:
            await consumer.stop()

    assert asyncio.run(topics()) == {"orders"}


def test_an_unknown_topic_is_unknown_topic_or_partition(gateway: RunningGateway) -> None:
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": gateway.bootstrap})
    metadata = admin.list_topics(topic="missing", timeout=10)
    assert metadata.topics["missing"].error.code() == (
        confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART
    )


def test_a_topic_name_kafka_refuses_is_invalid_topic_and_fails_a_produce_at_once(
    gateway: RunningGateway,
) -> None:
    # Given names Kafka would never create (a space, 250 characters)
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": gateway.bootstrap})
    for name in ("bad name", "a" * 250):
        metadata = admin.list_topics(topic=name, timeout=10)
        assert metadata.topics[name].error.code() == confluent_kafka.KafkaError.TOPIC_EXCEPTION
    # When librdkafka produces to one, Then it fails the message with Kafka's error at once,
    # not after its message timeout (which an unknown topic would wait for)
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": gateway.bootstrap, "message.timeout.ms": 300_000}
    )
    failed: list[confluent_kafka.KafkaError] = []
    producer.produce("bad name", b"x", on_delivery=lambda error, _message: failed.append(error))
    assert producer.flush(30) == 0
    assert [error.code() for error in failed] == [confluent_kafka.KafkaError.TOPIC_EXCEPTION]


class _Unavailable:
    """Access control whose rules cannot be read just now."""

    def allowed(self, principal: str, operation: str, topic: str) -> bool:
        raise UnavailableError("the ACL rules are not answering")

    def visible(self, principal: str, topics: list[str]) -> list[str]:
        raise UnavailableError("the ACL rules are not answering")


def test_a_request_that_fails_as_a_whole_is_answered_and_the_connection_stays(
    engine: Engine, start_gateway: StartGateway
) -> None:
    engine.create_topic("orders", 1)
    gateway = start_gateway(access=_Unavailable())
    wire = Wire(gateway.bootstrap)
    try:
        # When a request fails on the way (its ACL lookup), Then it is answered, as a broker
        # answers a request it failed to handle: its error codes say what went wrong
        answer = wire.call(METADATA)
        assert (answer.topics, answer.brokers) == ((), ())
        fetched = wire.call(
            build(
                FetchRequest,
                max_wait=datetime.timedelta(0),
                min_bytes=1,
                max_bytes=1 << 20,
                topics=(build(FetchTopic, topic="orders", partitions=(build(FetchPartition),)),),
                forgotten_topics_data=(),
            ),
            correlation_id=2,
        )
        assert fetched.error_code == ErrorCode.request_timed_out
        # and the connection carries on
        assert wire.call(ApiVersionsRequest(), correlation_id=3).error_code == ErrorCode.none
    finally:
        wire.close()
