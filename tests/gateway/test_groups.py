"""Consumer groups through clients nobody here wrote (ADR 0016 §5): librdkafka
(confluent-kafka), kafka-python and aiokafka join, rebalance, commit and fetch offsets,
list and describe groups; the offsets are lakelog's, the same the SDK commits.

A test waits on conditions with deadlines; client timeouts are short (6 s sessions,
500 ms heartbeats) so that a rebalance takes about a second.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import aiokafka
import confluent_kafka
import confluent_kafka.admin
import kafka
import kafka.errors
import kafka.structs
import pytest
from kio.schema.errors import ErrorCode
from kio.schema.leave_group.v5.request import GroupId, LeaveGroupRequest, MemberIdentity

from lakelog import TopicPartition
from lakelog.client import Client
from lakelog.kafka.server import RunningGateway
from lakelog.service.acl import AccessControl
from lakelog.service.engine import Engine
from lakelog.service.kafka_groups import STABLE, Outcome
from lakelog.storage.kafka_groups import DynamoKafkaGroupStore, MemoryKafkaGroupStore
from lakelog.storage.ports import AclEntry
from tests.contract.backends import AwsBackend, Backend
from tests.gateway.wire import Wire

TOPIC = "orders"
PARTITIONS = 6
GROUP = "billing"
DEADLINE_S = 30.0


class Member(Protocol):
    """A group member as the tests drive it: its client's current assignment."""

    def partitions(self) -> set[int]: ...

    def close(self) -> None: ...


@pytest.fixture
def engine(make_engine: Callable[..., Engine], backend: Backend) -> Engine:
    """The gateway's engine; on moto its Kafka groups are in the catalog table too."""
    if isinstance(backend, AwsBackend):
        store = DynamoKafkaGroupStore(backend.client("dynamodb"), backend.names.catalog_table)
        return make_engine(sleep=lambda _seconds: None, kafka_groups=store)
    return make_engine(sleep=lambda _seconds: None)


@pytest.fixture
def orders(engine: Engine) -> Engine:
    engine.create_topic(TOPIC, PARTITIONS)
    return engine


def _wait_for(
    condition: Callable[[], bool], what: str, step: Callable[[], None] | None = None
) -> None:
    """Wait (doing ``step`` each round, else a short pause) until ``condition`` holds."""
    until = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > until:
            raise AssertionError(f"timed out waiting for {what}")
        if step is None:
            time.sleep(0.05)
        else:
            step()


class Librdkafka:
    """A confluent-kafka Consumer in the group; `poll` drives its callbacks."""

    def __init__(self, bootstrap: str, name: str, **config: Any) -> None:
        self.consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": GROUP,
                "client.id": name,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
                "enable.auto.commit": False,
                "log_level": 0,
                **config,
            }
        )
        self.consumer.subscribe([TOPIC])

    def poll(self) -> None:
        self.consumer.poll(0.05)

    def partitions(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def close(self) -> None:
        self.consumer.close()


class KafkaPython:
    """A kafka-python KafkaConsumer in the group, polled on its own thread (its joins block
    inside poll until the join phase completes)."""

    def __init__(self, bootstrap: str, name: str) -> None:
        self.consumer = kafka.KafkaConsumer(
            TOPIC,
            bootstrap_servers=bootstrap,
            group_id=GROUP,
            client_id=name,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
            max_poll_interval_ms=10000,
            enable_auto_commit=False,
        )
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._assigned: set[int] = set()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"kafka-python-{name}")
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.consumer.poll(timeout_ms=50)
                with self._lock:
                    self._assigned = {tp.partition for tp in self.consumer.assignment()}
        except BaseException as exc:  # reported by close
            self.error = exc

    def partitions(self) -> set[int]:
        with self._lock:
            return set(self._assigned)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=DEADLINE_S)
        self.consumer.close()
        if self.error is not None:
            raise self.error


def _group_settled(engine: Engine, members: list[Member], librdkafka: list[Librdkafka]) -> None:
    """Wait until the group is Stable with ``members`` and their assignments cover every
    partition exactly once."""

    def settled() -> bool:
        group = engine.kafka_groups.describe(GROUP)
        if isinstance(group, str) or group.state != STABLE or len(group.members) != len(members):
            return False
        counts = Counter(p for m in members for p in m.partitions())
        return set(counts) == set(range(PARTITIONS)) and set(counts.values()) == {1}

    def step() -> None:
        for consumer in librdkafka:
            consumer.poll()
        if not librdkafka:
            time.sleep(0.05)

    _wait_for(settled, f"a stable group of {len(members)} covering every partition once", step)


def _generation(engine: Engine) -> int:
    group = engine.kafka_groups.describe(GROUP)
    assert not isinstance(group, str)
    return group.generation


def test_three_librdkafka_consumers_rebalance_as_members_join_and_leave(
    orders: Engine, gateway: RunningGateway
) -> None:
    members: list[Librdkafka] = []
    generations = []
    try:
        for name in ("a", "b", "c"):
            members.append(Librdkafka(gateway.bootstrap, name))
            _group_settled(orders, list(members), members)
            generations.append(_generation(orders))
        assert sorted(len(m.partitions()) for m in members) == [2, 2, 2]

        leaving = members.pop(1)
        leaving.close()
        _group_settled(orders, list(members), members)
        assert sorted(len(m.partitions()) for m in members) == [3, 3]
        generations.append(_generation(orders))
    finally:
        for member in members:
            member.close()
    assert generations == sorted(set(generations))  # a new generation each time


def test_kafka_python_and_librdkafka_consumers_share_one_group(
    orders: Engine, gateway: RunningGateway
) -> None:
    librdkafka: list[Librdkafka] = []
    members: list[Member] = []
    try:
        python_member = KafkaPython(gateway.bootstrap, "py-1")
        members.append(python_member)
        _group_settled(orders, members, librdkafka)
        for name in ("rd-1", "rd-2"):
            consumer = Librdkafka(gateway.bootstrap, name)
            librdkafka.append(consumer)
            members.append(consumer)
            _group_settled(orders, members, librdkafka)
        assert sorted(len(m.partitions()) for m in members) == [2, 2, 2]

        members.remove(python_member)
        python_member.close()
        _group_settled(orders, members, librdkafka)
        assert sorted(len(m.partitions()) for m in members) == [3, 3]
    finally:
        for member in members:
            member.close()


_DOOMED = """
import sys, confluent_kafka
consumer = confluent_kafka.Consumer({
    "bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "client.id": "doomed",
    "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "log_level": 0,
})
consumer.subscribe([sys.argv[3]])
while True:
    consumer.poll(0.1)
"""


def test_a_consumer_killed_without_leaving_is_removed_when_its_session_ends(
    orders: Engine, gateway: RunningGateway
) -> None:
    survivor = Librdkafka(gateway.bootstrap, "survivor")
    doomed = subprocess.Popen([sys.executable, "-c", _DOOMED, gateway.bootstrap, GROUP, TOPIC])
    try:

        def both_in() -> bool:
            survivor.poll()
            group = orders.kafka_groups.describe(GROUP)
            return (
                not isinstance(group, str)
                and group.state == STABLE
                and (len(group.members) == 2 and len(survivor.partitions()) == PARTITIONS // 2)
            )

        _wait_for(both_in, "both consumers in the group")
        doomed.kill()  # no LeaveGroup: only its session ending tells the group
        doomed.wait()
        _group_settled(orders, [survivor], [survivor])
        assert survivor.partitions() == set(range(PARTITIONS))
    finally:
        doomed.kill()
        doomed.wait()
        survivor.close()


# Offsets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["memory", pytest.param("moto", marks=pytest.mark.moto)])
def test_offsets_committed_over_kafka_are_the_groups_lakelog_offsets(
    orders: Engine, gateway: RunningGateway, storage: str
) -> None:
    kind = MemoryKafkaGroupStore if storage == "memory" else DynamoKafkaGroupStore
    assert isinstance(orders.kafka_groups.store, kind)  # the group's state is there
    member = Librdkafka(gateway.bootstrap, "committer")
    try:
        _group_settled(orders, [member], [member])
        offsets = [confluent_kafka.TopicPartition(TOPIC, p, 10 + p) for p in range(3)]
        member.consumer.commit(offsets=offsets, asynchronous=False)

        described = orders.describe_group(GROUP)
        assert {p.partition: p.committed_offset for p in described.partitions} == {
            0: 10,
            1: 11,
            2: 12,
            3: None,
            4: None,
            5: None,
        }
        wanted = [confluent_kafka.TopicPartition(TOPIC, p) for p in range(4)]
        committed = member.consumer.committed(wanted, timeout=10)
        assert [tp.offset for tp in committed] == [10, 11, 12, confluent_kafka.OFFSET_INVALID]
    finally:
        member.close()


def test_offsets_committed_by_the_lakelog_sdk_are_fetched_by_kafka_consumers(
    orders: Engine, gateway: RunningGateway
) -> None:
    # Given offsets committed by an SDK consumer of the group, which then leaves
    sdk = Client(transport=orders).consumer(TOPIC, group_id=GROUP)
    _wait_for(lambda: bool(sdk.poll(timeout_ms=0) or sdk.assignment()), "the SDK's leases")
    sdk.commit({TopicPartition(TOPIC, p): 100 + p for p in range(PARTITIONS)})
    sdk.close(autocommit=False)  # closing would commit its positions (0) otherwise

    # Then librdkafka, kafka-python and aiokafka read them through OffsetFetch
    rd = confluent_kafka.Consumer(
        {"bootstrap.servers": gateway.bootstrap, "group.id": GROUP, "log_level": 0}
    )
    try:
        wanted = [confluent_kafka.TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        assert [tp.offset for tp in rd.committed(wanted, timeout=10)] == [
            100 + p for p in range(PARTITIONS)
        ]
    finally:
        rd.close()
    python = kafka.KafkaConsumer(bootstrap_servers=gateway.bootstrap, group_id=GROUP)
    try:
        assert python.committed(kafka.structs.TopicPartition(TOPIC, 2)) == 102
    finally:
        python.close()

    async def aiokafka_committed() -> int | None:
        consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=gateway.bootstrap, group_id=GROUP)
        await consumer.start()
        try:
            committed: int | None = await consumer.committed(aiokafka.TopicPartition(TOPIC, 5))
            return committed
        finally:
            await consumer.stop()

    assert asyncio.run(aiokafka_committed()) == 105


def test_a_standalone_kafka_python_commit_needs_no_membership(
    orders: Engine, gateway: RunningGateway
) -> None:
    consumer = kafka.KafkaConsumer(bootstrap_servers=gateway.bootstrap, group_id=GROUP)
    try:
        tp = kafka.structs.TopicPartition(TOPIC, 4)
        consumer.assign([tp])
        consumer.commit({tp: kafka.structs.OffsetAndMetadata(42, "", -1)})
        assert consumer.committed(tp) == 42
    finally:
        consumer.close()
    described = {p.partition: p.committed_offset for p in orders.describe_group(GROUP).partitions}
    assert described[4] == 42


def test_a_commit_whose_metadata_is_too_large_is_refused_and_writes_nothing(
    orders: Engine, gateway: RunningGateway
) -> None:
    consumer = kafka.KafkaConsumer(bootstrap_servers=gateway.bootstrap, group_id=GROUP)
    try:
        tp = kafka.structs.TopicPartition(TOPIC, 4)
        consumer.assign([tp])
        # Given metadata of Kafka's largest size, When it is committed, Then it is taken
        consumer.commit({tp: kafka.structs.OffsetAndMetadata(7, "m" * 4096, -1)})
        assert consumer.committed(tp) == 7
        # When a longer one comes, Then Kafka's error, and the offset stays where it was
        with pytest.raises(kafka.errors.OffsetMetadataTooLargeError):
            consumer.commit({tp: kafka.structs.OffsetAndMetadata(42, "m" * 4097, -1)})
        assert consumer.committed(tp) == 7
    finally:
        consumer.close()


def test_aiokafka_joins_commits_and_reads_its_commit(
    orders: Engine, gateway: RunningGateway
) -> None:
    async def run() -> tuple[set[int], int | None]:
        consumer = aiokafka.AIOKafkaConsumer(
            TOPIC,
            bootstrap_servers=gateway.bootstrap,
            group_id=GROUP,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            until = time.monotonic() + DEADLINE_S
            while not consumer.assignment() and time.monotonic() < until:
                await asyncio.sleep(0.05)
            partitions = {tp.partition for tp in consumer.assignment()}
            await consumer.commit({aiokafka.TopicPartition(TOPIC, 1): 7})
            committed: int | None = await consumer.committed(aiokafka.TopicPartition(TOPIC, 1))
            return partitions, committed
        finally:
            await consumer.stop()

    partitions, committed = asyncio.run(run())
    assert partitions == set(range(PARTITIONS))
    assert committed == 7
    assert orders.describe_group(GROUP).partitions[1].committed_offset == 7


def test_a_principal_without_consume_gets_topic_authorization_failed_and_commits_nothing(
    orders: Engine, start_gateway: Callable[..., RunningGateway]
) -> None:
    access: AccessControl = orders.access_control("allow")
    access.add(AclEntry("local", TOPIC, "deny", frozenset({"consume"})))
    gateway = start_gateway(access=access)
    consumer = kafka.KafkaConsumer(bootstrap_servers=gateway.bootstrap, group_id=GROUP)
    try:
        tp = kafka.structs.TopicPartition(TOPIC, 0)
        with pytest.raises(kafka.errors.TopicAuthorizationFailedError):
            consumer.commit({tp: kafka.structs.OffsetAndMetadata(5, "", -1)})
    finally:
        consumer.close()
    assert orders.kafka_groups.committed(GROUP) == {}


# Listing and describing ------------------------------------------------------------------


@contextmanager
def _admin(gateway: RunningGateway) -> Iterator[confluent_kafka.admin.AdminClient]:
    yield confluent_kafka.admin.AdminClient({"bootstrap.servers": gateway.bootstrap})


def test_a_restarted_static_member_takes_its_old_place_and_fences_it(
    orders: Engine, gateway: RunningGateway
) -> None:
    # Given a static member (group.instance.id) with a session longer than the test's wait
    static = {"group.instance.id": "billing-1", "session.timeout.ms": 120_000}
    first = Librdkafka(gateway.bootstrap, "first", **static)
    _group_settled(orders, [first], [first])
    described = orders.kafka_groups.describe(GROUP)
    assert not isinstance(described, str)
    ((old, generation),) = [(m.member_id, described.generation) for m in described.members]
    # When it stops without leaving (static members do not) and starts again
    first.close()
    second = Librdkafka(gateway.bootstrap, "second", **static)
    try:
        # Then the new instance replaces the old at once, as in Kafka, instead of sharing
        # the partitions with it until its session ends
        _group_settled(orders, [second], [second])
        # and the old instance is fenced, not told to rejoin (which would evict the new one)
        groups = orders.kafka_groups
        fenced = Outcome.FENCED_INSTANCE_ID
        assert groups.heartbeat(GROUP, old, generation, "billing-1") is fenced
        assert groups.commit(GROUP, old, generation, {(TOPIC, 0): 1}, "billing-1") == {
            (TOPIC, 0): fenced
        }
        assert groups.sync(GROUP, old, generation, {}, instance_id="billing-1").outcome is fenced
    finally:
        second.close()


def test_an_administrator_removes_a_static_member_by_its_instance_id(
    orders: Engine, gateway: RunningGateway
) -> None:
    # Given a static member that stopped without leaving (static members do not), with a
    # session longer than the test's wait
    static = Librdkafka(
        gateway.bootstrap,
        "static",
        **{"group.instance.id": "billing-1", "session.timeout.ms": 120_000},
    )
    _group_settled(orders, [static], [static])
    static.close()

    # When an administrator removes it by its instance id alone, as Kafka's AdminClient
    # removeMembersFromConsumerGroup does (LeaveGroup v5, member id "")
    wire = Wire(gateway.bootstrap)
    try:
        answer = wire.call(
            LeaveGroupRequest(
                group_id=GroupId(GROUP),
                members=(
                    MemberIdentity(member_id="", group_instance_id="billing-1", reason=None),
                    MemberIdentity(member_id="", group_instance_id="billing-9", reason=None),
                ),
            )
        )
    finally:
        wire.close()

    # Then it is gone at once, and the unknown instance is UNKNOWN_MEMBER_ID
    assert answer.error_code == ErrorCode.none
    assert [(m.member_id, m.group_instance_id, m.error_code) for m in answer.members] == [
        ("", "billing-1", ErrorCode.none),
        ("", "billing-9", ErrorCode.unknown_member_id),
    ]
    described = orders.kafka_groups.describe(GROUP)
    assert not isinstance(described, str)
    assert described.members == ()


def test_admin_client_lists_and_describes_groups(orders: Engine, gateway: RunningGateway) -> None:
    member = Librdkafka(gateway.bootstrap, "described")
    try:
        _group_settled(orders, [member], [member])
        with _admin(gateway) as admin:
            listed = admin.list_consumer_groups(request_timeout=10).result()
            assert [(g.group_id, g.state) for g in listed.valid] == [
                (GROUP, confluent_kafka.ConsumerGroupState.STABLE)
            ]
            description = admin.describe_consumer_groups([GROUP])[GROUP].result()
            assert description.state == confluent_kafka.ConsumerGroupState.STABLE
            assert description.partition_assignor == "range"
            (only,) = description.members
            assert (only.client_id, only.host) == ("described", "/127.0.0.1")
            assert {tp.partition for tp in only.assignment.topic_partitions} == set(
                range(PARTITIONS)
            )
            reserved = admin.describe_consumer_groups(["subscription.orders.s"])
            with pytest.raises(confluent_kafka.KafkaException) as raised:
                reserved["subscription.orders.s"].result()
            assert raised.value.args[0].code() == confluent_kafka.KafkaError.INVALID_GROUP_ID
    finally:
        member.close()


def test_waiting_joins_hold_no_thread_of_the_gateway(
    orders: Engine, start_gateway: Callable[..., RunningGateway]
) -> None:
    # One thread for every service call: members whose JoinGroup waits for the others
    # must not hold it, or the others' joins could never be served
    gateway = start_gateway(threads=1)
    members = [Librdkafka(gateway.bootstrap, name) for name in ("a", "b", "c")]
    try:
        _group_settled(orders, list(members), members)
    finally:
        for member in members:
            member.close()
