"""Topic administration through librdkafka's, kafka-python's and aiokafka's admin clients:
CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs and
IncrementalAlterConfigs on lakelog's topics (ADR 0016 §6)."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import aiokafka.admin
import confluent_kafka
import kafka
import kafka.admin
import kafka.errors
import pytest
from aiokafka.admin.config_resource import ConfigResource as ConfigResourceAio
from aiokafka.admin.config_resource import ConfigResourceType as ConfigResourceTypeAio
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)
from kio.schema.create_topics.v2.request import CreatableTopic as CreatableTopicV2
from kio.schema.create_topics.v2.request import CreateTopicsRequest as CreateTopicsV2
from kio.schema.create_topics.v7.request import CreatableTopic, CreateTopicsRequest
from kio.schema.delete_topics.v1.request import DeleteTopicsRequest as DeleteTopicsV1
from kio.schema.delete_topics.v6.request import DeleteTopicsRequest, DeleteTopicState
from kio.schema.errors import ErrorCode
from kio.schema.incremental_alter_configs.v1.request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)

from lakelog.contract.operations import DescribeTopic
from lakelog.errors import TopicNotFoundError, UnavailableError
from lakelog.kafka.server import RunningGateway
from lakelog.limits import MAX_PARTITIONS
from lakelog.service.engine import Engine
from tests.gateway.wire import Wire

TIMEOUT = 10.0


@pytest.fixture
def admin(gateway: RunningGateway) -> AdminClient:
    return AdminClient({"bootstrap.servers": gateway.bootstrap})


@pytest.fixture
def python_admin(gateway: RunningGateway) -> Iterator[kafka.admin.KafkaAdminClient]:
    client = kafka.admin.KafkaAdminClient(
        bootstrap_servers=gateway.bootstrap, request_timeout_ms=10_000
    )
    yield client
    client.close()


def _error(future: Future[object]) -> int:
    """The Kafka error code a failed admin future holds."""
    with pytest.raises(confluent_kafka.KafkaException) as raised:
        future.result(TIMEOUT)
    return int(raised.value.args[0].code())


def test_librdkafka_creates_a_topic_with_configs(engine: Engine, admin: AdminClient) -> None:
    futures = admin.create_topics(
        [
            NewTopic(
                "orders",
                num_partitions=3,
                replication_factor=3,
                config={"retention.ms": "60000", "cleanup.policy": "compact"},
            )
        ],
        operation_timeout=TIMEOUT,
    )
    futures["orders"].result(TIMEOUT)
    described = engine.describe_topic("orders")
    assert len(described.partitions) == 3
    assert described.config["retention_ms"] == 60000
    assert described.config["cleanup_policy"] == "compact"


def test_num_partitions_minus_one_is_lakelog_s_default(engine: Engine, admin: AdminClient) -> None:
    admin.create_topics([NewTopic("events")])["events"].result(TIMEOUT)
    assert len(engine.describe_topic("events").partitions) == 1


def test_create_topics_answers_each_topic_on_its_own(engine: Engine, admin: AdminClient) -> None:
    engine.create_topic("taken", 1)
    futures = admin.create_topics(
        [
            NewTopic("taken", 1),
            NewTopic("bad/name", 1),
            NewTopic("zero", 0),
            NewTopic("huge", MAX_PARTITIONS + 1),
            NewTopic("replicated", 1, replication_factor=5),
            NewTopic("unknown-config", 1, config={"min.insync.replicas": "2"}),
            NewTopic("bad-value", 1, config={"retention.ms": "soon"}),
            NewTopic("fine", 2),
        ]
    )
    codes = {name: _error(f) for name, f in futures.items() if name != "fine"}
    assert codes == {
        "taken": confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS,
        "bad/name": confluent_kafka.KafkaError.TOPIC_EXCEPTION,
        "zero": confluent_kafka.KafkaError.INVALID_PARTITIONS,
        "huge": confluent_kafka.KafkaError.POLICY_VIOLATION,
        "replicated": confluent_kafka.KafkaError.INVALID_REPLICATION_FACTOR,
        "unknown-config": confluent_kafka.KafkaError.INVALID_CONFIG,
        "bad-value": confluent_kafka.KafkaError.INVALID_CONFIG,
    }
    futures["fine"].result(TIMEOUT)
    assert engine.list_topics() == ["fine", "taken"]


def test_validate_only_creates_nothing(engine: Engine, admin: AdminClient) -> None:
    engine.create_topic("taken", 1)
    futures = admin.create_topics([NewTopic("new", 2), NewTopic("taken", 1)], validate_only=True)
    futures["new"].result(TIMEOUT)
    assert _error(futures["taken"]) == confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS
    assert engine.list_topics() == ["taken"]


def test_validate_only_that_cannot_tell_whether_a_topic_exists_says_so(
    engine: Engine, admin: AdminClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a catalog that cannot be read just now
    call = engine.call

    def unavailable(op: Any, principal: Any = None) -> Any:
        if isinstance(op, DescribeTopic):
            raise UnavailableError("the catalog is not answering")
        return call(op, principal)

    monkeypatch.setattr(engine, "call", unavailable)
    # When a creation is validated, Then it is not declared valid: the topic may exist
    futures = admin.create_topics([NewTopic("new", 1)], validate_only=True)
    assert _error(futures["new"]) == confluent_kafka.KafkaError.REQUEST_TIMED_OUT
    assert engine.list_topics() == []


def test_librdkafka_deletes_topics(engine: Engine, admin: AdminClient) -> None:
    engine.create_topic("old", 1)
    futures = admin.delete_topics(["old", "missing"], operation_timeout=TIMEOUT)
    futures["old"].result(TIMEOUT)
    assert _error(futures["missing"]) == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART
    with pytest.raises(TopicNotFoundError):
        engine.describe_topic("old")


def test_librdkafka_adds_partitions(engine: Engine, admin: AdminClient) -> None:
    engine.create_topic("orders", 2)
    engine.create_topic("fixed", 3)
    futures = admin.create_partitions(
        [NewPartitions("orders", 5), NewPartitions("fixed", 2), NewPartitions("missing", 4)]
    )
    futures["orders"].result(TIMEOUT)
    assert _error(futures["fixed"]) == confluent_kafka.KafkaError.INVALID_PARTITIONS
    assert _error(futures["missing"]) == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART
    assert len(engine.describe_topic("orders").partitions) == 5
    assert len(engine.describe_topic("fixed").partitions) == 3


def test_create_partitions_validate_only_changes_nothing(
    engine: Engine, admin: AdminClient
) -> None:
    engine.create_topic("orders", 2)
    admin.create_partitions([NewPartitions("orders", 4)], validate_only=True)["orders"].result(
        TIMEOUT
    )
    assert len(engine.describe_topic("orders").partitions) == 2


def test_librdkafka_describes_topic_configs_under_kafka_names(
    engine: Engine, admin: AdminClient
) -> None:
    engine.create_topic("orders", 1, {"retention_ms": 1000, "compression": "none"})
    resource = ConfigResource(ConfigResource.Type.TOPIC, "orders")
    entries = admin.describe_configs([resource])[resource].result(TIMEOUT)
    assert {name: entry.value for name, entry in entries.items()} == {
        "cleanup.policy": "delete",
        "compression.type": "uncompressed",
        "delete.retention.ms": "86400000",
        "max.message.bytes": "1048576",
        "retention.bytes": "-1",
        "retention.ms": "1000",
    }
    sources = confluent_kafka.admin.ConfigSource
    assert entries["retention.ms"].source == sources.DYNAMIC_TOPIC_CONFIG.value
    assert entries["retention.bytes"].source == sources.DEFAULT_CONFIG.value


def test_describe_configs_of_the_broker_and_a_missing_topic(admin: AdminClient) -> None:
    broker = ConfigResource(ConfigResource.Type.BROKER, "0")
    missing = ConfigResource(ConfigResource.Type.TOPIC, "missing")
    futures = admin.describe_configs([broker])
    entries = futures[broker].result(TIMEOUT)
    assert entries["auto.create.topics.enable"].value == "false"
    assert entries["num.partitions"].is_read_only
    assert _error(admin.describe_configs([missing])[missing]) == (
        confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART
    )


def test_describe_configs_of_a_topic_name_kafka_refuses_is_invalid_topic(
    admin: AdminClient,
) -> None:
    invalid = ConfigResource(ConfigResource.Type.TOPIC, "bad name")
    assert _error(admin.describe_configs([invalid])[invalid]) == (
        confluent_kafka.KafkaError.TOPIC_EXCEPTION
    )


def test_kafka_python_administers_topics(
    engine: Engine, python_admin: kafka.admin.KafkaAdminClient
) -> None:
    python_admin.create_topics(
        [kafka.admin.NewTopic("orders", 2, 1, topic_configs={"retention.bytes": "1000"})]
    )
    assert engine.describe_topic("orders").config["retention_bytes"] == 1000
    python_admin.create_partitions({"orders": kafka.admin.NewPartitions(4)})
    assert len(engine.describe_topic("orders").partitions) == 4
    described = python_admin.describe_configs(
        [kafka.admin.ConfigResource(kafka.admin.ConfigResourceType.TOPIC, "orders")]
    )
    assert {name: c["value"] for name, c in described["topic"]["orders"].items()} == {
        "retention.bytes": "1000"
    }
    python_admin.delete_topics(["orders"])
    assert engine.list_topics() == []


def test_kafka_python_sees_topic_already_exists(
    engine: Engine, python_admin: kafka.admin.KafkaAdminClient
) -> None:
    engine.create_topic("orders", 1)
    with pytest.raises(kafka.errors.TopicAlreadyExistsError):
        python_admin.create_topics([kafka.admin.NewTopic("orders", 1, 1)])


# Raw frames: the oldest versions served, and what clients do not send ------------------
def test_a_topic_named_twice_in_one_request_is_refused_both_times(
    engine: Engine, gateway: RunningGateway
) -> None:
    topic = CreatableTopic(
        name="twice", num_partitions=1, replication_factor=-1, assignments=(), configs=()
    )
    wire = Wire(gateway.bootstrap)
    try:
        answer = wire.call(CreateTopicsRequest(topics=(topic, topic)))
    finally:
        wire.close()
    assert [t.error_code for t in answer.topics] == [ErrorCode.invalid_request] * 2
    assert engine.list_topics() == []


def test_create_topics_v2_and_delete_topics_v1(engine: Engine, gateway: RunningGateway) -> None:
    wire = Wire(gateway.bootstrap)
    try:
        created = wire.call(
            CreateTopicsV2(
                topics=(
                    CreatableTopicV2(
                        name="old",
                        num_partitions=2,
                        replication_factor=1,
                        assignments=(),
                        configs=(),
                    ),
                ),
                timeout=datetime.timedelta(seconds=5),
                validate_only=False,
            )
        )
        assert [t.error_code for t in created.topics] == [ErrorCode.none]
        assert len(engine.describe_topic("old").partitions) == 2
        deleted = wire.call(
            DeleteTopicsV1(topic_names=("old",), timeout=datetime.timedelta(seconds=5)), 2
        )
        assert [t.error_code for t in deleted.responses] == [ErrorCode.none]
    finally:
        wire.close()
    assert engine.list_topics() == []


def test_deleting_a_topic_by_id_is_an_invalid_request(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("orders", 1)
    topic_id = uuid.UUID(engine.describe_topic("orders").topic_id)
    wire = Wire(gateway.bootstrap)
    try:
        answer = wire.call(
            DeleteTopicsRequest(
                topics=(DeleteTopicState(name=None, topic_id=topic_id),),
                timeout=datetime.timedelta(seconds=5),
            )
        )
    finally:
        wire.close()
    assert [t.error_code for t in answer.responses] == [ErrorCode.invalid_request]
    assert engine.list_topics() == ["orders"]


# AlterConfigs and IncrementalAlterConfigs ------------------------------------------------
def _incremental(topic: str, *entries: tuple[str, str | None, AlterConfigOpType]) -> ConfigResource:
    return ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(name, value, incremental_operation=operation)
            for name, value, operation in entries
        ],
    )


def test_librdkafka_sets_and_deletes_configs_incrementally(
    engine: Engine, admin: AdminClient
) -> None:
    engine.create_topic("orders", 1, {"retention_bytes": 5000})
    resource = _incremental(
        "orders",
        ("retention.ms", "1000", AlterConfigOpType.SET),
        ("retention.bytes", None, AlterConfigOpType.DELETE),
    )
    admin.incremental_alter_configs([resource])[resource].result(TIMEOUT)
    config = engine.describe_topic("orders").config
    assert (config["retention_ms"], config["retention_bytes"]) == (1000, -1)


def test_incremental_alter_configs_refuses_what_lakelog_cannot_apply(
    engine: Engine, admin: AdminClient
) -> None:
    engine.create_topic("orders", 1)
    refused = {
        "unknown": _incremental("orders", ("min.insync.replicas", "2", AlterConfigOpType.SET)),
        "invalid": _incremental("orders", ("retention.ms", "-5", AlterConfigOpType.SET)),
        "append": _incremental("orders", ("cleanup.policy", "compact", AlterConfigOpType.APPEND)),
    }
    for resource in refused.values():
        futures = admin.incremental_alter_configs([resource])
        assert _error(futures[resource]) == confluent_kafka.KafkaError.INVALID_CONFIG
    missing = _incremental("missing", ("retention.ms", "1", AlterConfigOpType.SET))
    futures = admin.incremental_alter_configs([missing])
    assert _error(futures[missing]) == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART
    assert engine.describe_topic("orders").config["retention_ms"] == 7 * 24 * 3600 * 1000


def test_alter_configs_refuse_a_malformed_resource_and_change_nothing(
    engine: Engine, gateway: RunningGateway
) -> None:
    engine.create_topic("orders", 1)
    engine.create_topic("audit", 1)

    def resource(name: str, *configs: tuple[str, int, str | None]) -> AlterConfigsResource:
        return AlterConfigsResource(
            resource_type=2,
            resource_name=name,
            configs=tuple(
                AlterableConfig(name=key, config_operation=op, value=value)
                for key, op, value in configs
            ),
        )

    request = IncrementalAlterConfigsRequest(
        resources=(
            resource("orders", ("retention.ms", 0, "1000")),  # named twice: both refused
            resource("audit", ("retention.ms", 0, "1000"), ("retention.ms", 1, None)),
            resource("audit", ("retention.bytes", 0, None)),  # SET to nothing
            resource("orders", ("retention.bytes", 0, "5000")),
        ),
        validate_only=False,
    )
    wire = Wire(gateway.bootstrap)
    try:
        answer = wire.call(request)
    finally:
        wire.close()
    assert [(r.resource_name, r.error_code) for r in answer.responses] == [
        ("orders", ErrorCode.invalid_request),
        ("audit", ErrorCode.invalid_request),
        ("audit", ErrorCode.invalid_request),
        ("orders", ErrorCode.invalid_request),
    ]
    default = engine.describe_topic("audit").config
    assert engine.describe_topic("orders").config == default
    assert (default["retention_ms"], default["retention_bytes"]) == (7 * 24 * 3600 * 1000, -1)


def test_incremental_alter_configs_validate_only_changes_nothing(
    engine: Engine, admin: AdminClient
) -> None:
    engine.create_topic("orders", 1)
    resource = _incremental("orders", ("cleanup.policy", "compact", AlterConfigOpType.SET))
    admin.incremental_alter_configs([resource], validate_only=True)[resource].result(TIMEOUT)
    assert engine.describe_topic("orders").config["cleanup_policy"] == "delete"


def test_alter_configs_replaces_the_whole_config(engine: Engine, admin: AdminClient) -> None:
    engine.create_topic("orders", 1, {"retention_bytes": 5000})
    resource = ConfigResource(
        ConfigResource.Type.TOPIC, "orders", set_config={"retention.ms": "1000"}
    )
    admin.alter_configs([resource])[resource].result(TIMEOUT)
    config = engine.describe_topic("orders").config
    assert (config["retention_ms"], config["retention_bytes"]) == (1000, -1)


def test_kafka_python_alters_configs(
    engine: Engine, python_admin: kafka.admin.KafkaAdminClient
) -> None:
    engine.create_topic("orders", 1, {"retention_bytes": 5000})
    result = python_admin.alter_configs(
        [
            kafka.admin.ConfigResource(
                kafka.admin.ConfigResourceType.TOPIC, "orders", configs={"retention.ms": "1000"}
            )
        ]
    )
    assert result == {"topic": {"orders": "OK"}}
    config = engine.describe_topic("orders").config
    assert (config["retention_ms"], config["retention_bytes"]) == (1000, 5000)


def test_aiokafka_administers_topics(engine: Engine, gateway: RunningGateway) -> None:
    async def administer() -> list[str]:
        admin = aiokafka.admin.AIOKafkaAdminClient(bootstrap_servers=gateway.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([aiokafka.admin.NewTopic("orders", 2, 1)])
            await admin.create_partitions({"orders": aiokafka.admin.NewPartitions(3)})
            (described,) = await admin.describe_configs(
                [ConfigResourceAio(ConfigResourceTypeAio.TOPIC, "orders")]
            )
            names = [entry[0] for entry in described.resources[0][4]]
            assert len(engine.describe_topic("orders").partitions) == 3
            await admin.delete_topics(["orders"])
            return names
        finally:
            await admin.close()

    assert "retention.ms" in asyncio.run(administer())
    assert engine.list_topics() == []
