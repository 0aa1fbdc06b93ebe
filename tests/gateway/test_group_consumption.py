"""A consumer group reading records (ADR 0016 §4 and §5): as members join and leave, every
record is processed exactly once when each member commits after processing.

Members are kafka-python and librdkafka consumers, each polled on its own thread (a
kafka-python join blocks inside poll until the join phase completes). "Processing" a
record is noting its (partition, offset); each member commits the next offsets of what it
processed before it polls again, so a partition that moves to another member is resumed
right after the last record processed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import confluent_kafka
import kafka
import kafka.structs
import pytest

from lakelog.kafka.server import RunningGateway
from lakelog.service.engine import Engine
from lakelog.types import Record

TOPIC = "orders"
PARTITIONS = 6
GROUP = "billing"
DEADLINE_S = 30.0


class Processor:
    """One kafka-python group member: polls, processes each record, then commits what it
    processed."""

    def __init__(self, bootstrap: str, name: str, processed: list[tuple[int, int, str]]) -> None:
        self.name = name
        self._processed = processed
        self.consumer = kafka.KafkaConsumer(
            TOPIC,
            bootstrap_servers=bootstrap,
            group_id=GROUP,
            client_id=name,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
            max_poll_interval_ms=10000,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=20,
        )
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"processor-{name}")
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batches = self.consumer.poll(timeout_ms=50)
                done: dict[kafka.structs.TopicPartition, kafka.structs.OffsetAndMetadata] = {}
                for tp, records in batches.items():
                    for record in records:
                        self._processed.append((record.partition, record.offset, self.name))
                    done[tp] = kafka.structs.OffsetAndMetadata(records[-1].offset + 1, "", -1)
                if done:
                    self.consumer.commit(done)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=DEADLINE_S)
        self.consumer.close(autocommit=False)
        if self.error is not None:
            raise self.error


class RdProcessor:
    """One librdkafka group member: processes each message it polls, then commits it."""

    def __init__(self, bootstrap: str, name: str, processed: list[tuple[int, int, str]]) -> None:
        self.name = name
        self._processed = processed
        self.consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": GROUP,
                "client.id": name,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
                "max.poll.interval.ms": 10000,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer.subscribe([TOPIC])
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"processor-{name}")
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                message = self.consumer.poll(0.05)
                if message is None or message.error() is not None:
                    continue
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None
                self._processed.append((partition, offset, self.name))
                self.consumer.commit(message=message, asynchronous=False)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=DEADLINE_S)
        self.consumer.close()
        if self.error is not None:
            raise self.error


Member = Processor | RdProcessor


def _append(engine: Engine, first: int, count: int) -> None:
    """``count`` records on each partition, values ``{partition}-{first + i}``."""
    engine.append(
        TOPIC,
        [
            Record(value=f"{p}-{first + i}".encode(), partition=p)
            for i in range(count)
            for p in range(PARTITIONS)
        ],
    )


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    until = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > until:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def orders(engine: Engine) -> Engine:
    engine.create_topic(TOPIC, PARTITIONS)
    return engine


@pytest.mark.parametrize(
    "kinds",
    [
        pytest.param((Processor, Processor, Processor), id="kafka-python"),
        pytest.param((RdProcessor, RdProcessor, RdProcessor), id="librdkafka"),
        pytest.param((RdProcessor, Processor, RdProcessor), id="mixed"),
    ],
)
def test_every_record_is_processed_once_as_members_join_and_leave(
    orders: Engine, gateway: RunningGateway, kinds: tuple[type[Member], ...]
) -> None:
    processed: list[tuple[int, int, str]] = []
    _append(orders, 0, 100)
    members: list[Member] = []
    first, second, third = kinds
    try:
        # One member starts alone, two more join while it reads, one leaves, more records
        # come, another leaves
        members.append(first(gateway.bootstrap, "p1", processed))
        _wait_for(lambda: len(processed) >= 60, "the first member reading")
        members.append(second(gateway.bootstrap, "p2", processed))
        _wait_for(lambda: len(processed) >= 200, "two members reading")
        members.append(third(gateway.bootstrap, "p3", processed))
        _wait_for(lambda: len(processed) >= 320, "three members reading")
        members.pop(0).close()
        _append(orders, 100, 100)
        _wait_for(lambda: len(processed) >= 800, "two members reading after a leave")
        members.pop(0).close()
        _wait_for(lambda: len(processed) >= 1200, "every record processed")
    finally:
        for member in members:
            member.close()

    counts = Counter((partition, offset) for partition, offset, _ in processed)
    assert set(counts) == {(p, o) for p in range(PARTITIONS) for o in range(200)}
    assert [key for key, count in counts.items() if count > 1] == []
    assert len({name for _, _, name in processed}) == 3  # every member processed some
    described = orders.describe_group(GROUP)
    assert {p.partition: p.committed_offset for p in described.partitions} == dict.fromkeys(
        range(PARTITIONS), 200
    )
