"""lakelog's ACLs on principals authenticated with SASL/PLAIN: a principal without rights
gets TOPIC_AUTHORIZATION_FAILED from Metadata, CreateTopics, DeleteTopics, CreatePartitions,
DescribeConfigs and IncrementalAlterConfigs, and changes nothing (ADR 0016 §7)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import confluent_kafka
import kafka.admin
import kafka.errors
import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from lakelog.kafka.server import RunningGateway
from lakelog.service.acl import AclEntry
from lakelog.service.engine import Engine
from tests.gateway.conftest import StartGateway

USERS = {"alice": "a", "mallory": "m", "root": "r"}
DENIED = confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED
TIMEOUT = 10.0


@pytest.fixture
def guarded(engine: Engine, start_gateway: StartGateway) -> RunningGateway:
    """Deny by default; ``root`` is a bootstrap admin, ``alice`` consumes ``orders`` and
    administers ``team-*``, ``mallory`` has no rule."""
    engine.create_topic("orders", 2)
    access = engine.access_control("deny", admins=["root"])
    access.add(AclEntry("alice", "orders", "allow", frozenset({"consume"})))
    access.add(AclEntry("alice", "team-*", "allow", frozenset({"admin"})))
    return start_gateway(access=access, sasl=True, users=USERS)


def _admin(gateway: RunningGateway, user: str) -> AdminClient:
    """An admin client authenticated as ``user`` (keep it referenced while its futures
    run: librdkafka fails them when the client is destroyed)."""
    return AdminClient(
        {
            "bootstrap.servers": gateway.bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": user,
            "sasl.password": USERS[user],
        }
    )


def _code(future: Future[Any]) -> int:
    try:
        future.result(TIMEOUT)
    except confluent_kafka.KafkaException as error:
        return int(error.args[0].code())
    return 0


def test_metadata_hides_and_refuses_topics_without_rights(guarded: RunningGateway) -> None:
    assert set(_admin(guarded, "alice").list_topics(timeout=TIMEOUT).topics) == {"orders"}
    mallory = _admin(guarded, "mallory")
    assert mallory.list_topics(timeout=TIMEOUT).topics == {}
    named = mallory.list_topics(topic="orders", timeout=TIMEOUT).topics["orders"]
    assert named.error.code() == DENIED


def test_create_topics_needs_admin_on_the_topic(engine: Engine, guarded: RunningGateway) -> None:
    alice, mallory, root = (_admin(guarded, user) for user in ("alice", "mallory", "root"))
    futures = alice.create_topics([NewTopic("team-a", 1), NewTopic("other", 1)])
    assert {name: _code(f) for name, f in futures.items()} == {"team-a": 0, "other": DENIED}
    assert _code(mallory.create_topics([NewTopic("team-b", 1)])["team-b"]) == DENIED
    assert _code(root.create_topics([NewTopic("anything", 1)])["anything"]) == 0
    assert engine.list_topics() == ["anything", "orders", "team-a"]


def test_delete_topics_needs_admin_and_changes_nothing_when_refused(
    engine: Engine, guarded: RunningGateway
) -> None:
    mallory, alice = _admin(guarded, "mallory"), _admin(guarded, "alice")
    for admin in (mallory, alice):
        futures = admin.delete_topics(["orders"], operation_timeout=TIMEOUT)
        assert _code(futures["orders"]) == DENIED
    assert engine.list_topics() == ["orders"]
    # A topic that does not exist is refused the same way: no right, no existence check.
    assert _code(mallory.delete_topics(["missing"])["missing"]) == DENIED


def test_create_partitions_needs_admin(engine: Engine, guarded: RunningGateway) -> None:
    alice = _admin(guarded, "alice")
    futures = alice.create_partitions([NewPartitions("orders", 4)])
    assert _code(futures["orders"]) == DENIED
    assert len(engine.describe_topic("orders").partitions) == 2


def test_describe_configs_needs_a_right_on_the_topic(guarded: RunningGateway) -> None:
    resource = ConfigResource(ConfigResource.Type.TOPIC, "orders")
    alice, mallory = _admin(guarded, "alice"), _admin(guarded, "mallory")
    assert _code(alice.describe_configs([resource])[resource]) == 0
    assert _code(mallory.describe_configs([resource])[resource]) == DENIED


@pytest.fixture
def python_mallory(guarded: RunningGateway) -> Iterator[kafka.admin.KafkaAdminClient]:
    client = kafka.admin.KafkaAdminClient(
        bootstrap_servers=guarded.bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_plain_username="mallory",
        sasl_plain_password=USERS["mallory"],
        request_timeout_ms=10_000,
    )
    yield client
    client.close()


def test_kafka_python_sees_topic_authorization_failed(
    engine: Engine, python_mallory: kafka.admin.KafkaAdminClient
) -> None:
    with pytest.raises(kafka.errors.TopicAuthorizationFailedError):
        python_mallory.create_topics([kafka.admin.NewTopic("team-x", 1, 1)])
    with pytest.raises(kafka.errors.TopicAuthorizationFailedError):
        python_mallory.delete_topics(["orders"])
    assert engine.list_topics() == ["orders"]


def test_altering_configs_needs_admin(engine: Engine, guarded: RunningGateway) -> None:
    alice = _admin(guarded, "alice")
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        "orders",
        incremental_configs=[
            ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    assert _code(alice.incremental_alter_configs([resource])[resource]) == DENIED
    assert engine.describe_topic("orders").config["retention_ms"] != 1
