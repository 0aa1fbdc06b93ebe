"""Metadata through three clients nobody here wrote: each sees every topic and partition,
led by the gateway's advertised address."""

from __future__ import annotations

import asyncio

import aiokafka
import confluent_kafka.admin
import kafka

from lakelog.kafka.server import RunningGateway
from lakelog.service.engine import Engine


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
