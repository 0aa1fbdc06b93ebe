"""A Kafka consumer group on ``lakelog dev`` (ADR 0016 §5): records produced over HTTP are
consumed by a librdkafka group member, whose commit ``GET /v1/groups/{group}`` shows; an
offset reset over HTTP is where a Kafka consumer of the group starts next."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import confluent_kafka
import httpx

from lakelog.local.process import DevProcess
from tests.e2e.conftest import create_topic, produce

LAKELOG = Path(sys.executable).parent / "lakelog"
DEADLINE_S = 30.0


def _consumer(bootstrap: str, group: str) -> confluent_kafka.Consumer:
    return confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "log_level": 0,
        }
    )


def _read(consumer: confluent_kafka.Consumer, count: int) -> list[tuple[int, bytes]]:
    """The next ``count`` messages (offset, value), waiting up to the deadline."""
    seen: list[tuple[int, bytes]] = []
    until = time.monotonic() + DEADLINE_S
    while len(seen) < count:
        assert time.monotonic() < until, f"read {seen} of {count}"
        message = consumer.poll(0.1)
        if message is not None and message.error() is None:
            offset, value = message.offset(), message.value()
            assert offset is not None and value is not None
            seen.append((offset, value))
    return seen


def test_kafka_group_commits_are_the_http_apis_group_offsets_and_the_reverse() -> None:
    topic, group = f"orders-{uuid.uuid4().hex[:8]}", f"billing-{uuid.uuid4().hex[:8]}"
    dev = DevProcess(
        "--port", "0", "--quiet", "--kafka-port", "0", command=[str(LAKELOG)]
    ).wait_ready()
    with dev, httpx.Client(base_url=dev.api_url, timeout=30.0) as api:
        assert dev.kafka_bootstrap is not None
        create_topic(api, topic)
        produce(api, topic, [{"value": {"type": "STRING", "data": f"v{i}"}} for i in range(5)])

        # A group member reads over Kafka and commits after the first three records
        consumer = _consumer(dev.kafka_bootstrap, group)
        consumer.subscribe([topic])
        try:
            assert [value for _, value in _read(consumer, 3)] == [b"v0", b"v1", b"v2"]
            consumer.commit(
                offsets=[confluent_kafka.TopicPartition(topic, 0, 3)], asynchronous=False
            )
        finally:
            consumer.close()
        described = api.get(f"/v1/groups/{group}")
        assert described.status_code == 200, described.text
        (partition,) = described.json()["partitions"]
        assert (partition["committed_offset"], partition["lag"]) == (3, 2)

        # An offset reset over HTTP is where the group's next Kafka consumer starts
        reset = api.post(
            f"/v1/groups/{group}/offsets/reset", json={"topic": topic, "to": {"offset": 1}}
        )
        assert reset.status_code == 200, reset.text
        again = _consumer(dev.kafka_bootstrap, group)
        again.subscribe([topic])
        try:
            assert _read(again, 4) == [(1, b"v1"), (2, b"v2"), (3, b"v3"), (4, b"v4")]
        finally:
            again.close()
    assert dev.exit_code == 0, dev.output
    assert "Traceback" not in dev.output
